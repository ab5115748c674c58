"""Benchmark the U-Net: one training step and the inference of a full image, time and peak memory.

For every width (base channels; 64 = the paper's network) and every image size S:

* ``train``: forward + backward + SGD step (momentum 0.99, batch 1, paper eq. 1 loss with a random
  weight map) on the smallest valid input tile whose output covers S x S (valid padding: S = 512
  -> 700x700 input, 516x516 output; S = 388 -> the paper's 572 -> 388 tile).
* ``infer``: one forward pass (eval, no_grad, softmax) on that same tile.
* ``tiled572``: ``predict_tiled`` of a full S x S image with the paper's 572x572 tile (batch of
  ``--batch-size`` tiles), i.e. the overlap-tile strategy of Fig. 2 including the mirroring.
* ``tiled``: ``predict_tiled`` with its default tile (:func:`unetlib.tiling.default_tile`: the
  smallest valid tile covering the image within ``--memory-budget``, so one pass for S = 512).
  Its output equals ``tiled572``'s up to rounding; the ratio to ``infer`` is the cost of tiling.
  ``--large 4096`` adds this case for a 4096 x 4096 image, where the budget caps the tile.

Peak memory: CUDA -> ``torch.cuda.max_memory_allocated`` minus the memory held before the step
(model, inputs, optimizer state already allocated). CPU -> every case runs in a fresh process
and we report the growth of ``ru_maxrss`` during the measured calls (peak resident memory of the
process beyond what model, inputs and optimizer occupied before), plus the absolute peak.

Usage::

    python benchmarks/bench_model.py --device cpu --sizes 512 --widths 64 32 16 --out X.json
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# run from a checkout without installing: make `unetlib` importable (also in spawned workers)
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from unetlib.provenance import command_line, cpu_name, write_json_atomic  # noqa: E402

TASKS = ("train", "infer", "tiled572", "tiled")


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _run_case(case: dict[str, Any]) -> dict[str, Any]:
    """Measure one (task, width, size) case; runs in the calling process."""
    import torch

    from unetlib.losses import weighted_cross_entropy
    from unetlib.model import UNet
    from unetlib.tiling import default_tile, predict_tiled

    if case["threads"]:
        torch.set_num_threads(case["threads"])
    device = torch.device(case["device"])
    torch.manual_seed(0)
    model = UNet(depth=case["depth"], base_channels=case["width"], padding=case["padding"])
    model.to(device)
    S = case["size"]
    diff = 0 if case["padding"] == "same" else model.valid_input_size(1) - model.output_size(
        model.valid_input_size(1))
    tile_in = model.valid_input_size(S + diff)
    tile_out = model.output_size(tile_in)
    task = case["task"]
    result_extra: dict[str, Any] = {}
    if task == "train":
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.99)
        x = torch.randn(1, 1, tile_in, tile_in, device=device)
        target = torch.randint(0, 2, (1, tile_in, tile_in), device=device)
        weight = 1 + 9 * torch.rand(1, tile_in, tile_in, device=device)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            loss = weighted_cross_entropy(model(x), target, weight)
            loss.backward()
            opt.step()

        shape = f"{tile_in}->{tile_out}"
    elif task == "infer":
        model.eval()
        x = torch.randn(1, 1, tile_in, tile_in, device=device)

        def step() -> None:
            with torch.no_grad():
                torch.softmax(model(x), dim=1)

        shape = f"{tile_in}->{tile_out}"
    else:
        image = torch.randn(S, S, device=device)
        budget = case.get("memory_budget", 4 * 2**30)
        tile = 572 if task == "tiled572" else default_tile(model, (S, S), budget)

        def step() -> None:
            predict_tiled(model, image, tile=tile, batch_size=case["batch_size"])

        shape = f"{S}x{S} image, tile {tile}->{model.output_size(tile)}"
        if task == "tiled":
            result_extra["memory_budget_mib"] = budget / 2**20

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base_alloc = torch.cuda.memory_allocated(device)
    rss_before = _maxrss_mib()
    for _ in range(case["warmup"]):
        step()
    sync()
    times = []
    for _ in range(case["reps"]):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    result = {
        **case,
        "shape": shape,
        "params": sum(p.numel() for p in model.parameters()),
        "times_s": times,
        "median_s": statistics.median(times),
        "min_s": min(times),
        **result_extra,
    }
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
        result["peak_mem_mib"] = peak / 2**20
        result["peak_mem_delta_mib"] = (peak - base_alloc) / 2**20
        result["memory_method"] = "torch.cuda.max_memory_allocated"
    else:
        rss_after = _maxrss_mib()
        result["peak_mem_mib"] = rss_after
        result["peak_mem_delta_mib"] = rss_after - rss_before
        result["memory_method"] = "ru_maxrss growth in a fresh process"
    return result


def _worker(case: dict[str, Any], queue: Any) -> None:
    try:
        queue.put(_run_case(case))
    except BaseException as e:  # report, do not hang the parent
        queue.put({**case, "error": f"{type(e).__name__}: {e}"})


def _run_isolated(case: dict[str, Any]) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_worker, args=(case, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def _hardware(device: str, threads: int | None) -> dict[str, Any]:
    import torch

    if threads:
        torch.set_num_threads(threads)
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "device": device,
    }
    if device.startswith("cuda"):
        info["device_name"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    else:
        info["device_name"] = info["cpu"]
    return info


def main(argv: list[str] | None = None) -> int:
    import torch

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--sizes", type=int, nargs="+", default=[512],
                   help="image side S the output must cover (default 512)")
    p.add_argument("--widths", type=int, nargs="+", default=[64, 32, 16],
                   help="base channels (64 = paper)")
    p.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    p.add_argument("--padding", choices=("valid", "same"), default="valid")
    p.add_argument("--depth", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=4, help="tiles per pass for 'tiled'")
    p.add_argument("--reps", type=int, default=None,
                   help="timed repetitions (default: 10 on CUDA; on CPU 2 for width >= 64, else 3)")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed calls first (default: 3 on CUDA, 1 on CPU)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--memory-budget", type=float, default=4.0,
                   help="GiB of working memory the default tile may take ('tiled'; default 4)")
    p.add_argument("--large", type=int, nargs="*", default=[],
                   help="extra image sizes for the 'tiled' task only (e.g. 4096)")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = p.parse_args(argv)

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda requested but CUDA is not available")
    on_cuda = args.device.startswith("cuda")
    hardware = _hardware(args.device, args.threads)
    # CPU timings on a shared machine depend on the load: record it
    hardware["loadavg_start"] = list(os.getloadavg())
    rows = []
    cases = [(width, size, task) for width in args.widths for size in args.sizes
             for task in args.tasks]
    cases += [(width, size, "tiled") for width in args.widths for size in args.large]
    for width, size, task in cases:
        reps = args.reps or (10 if on_cuda else (2 if width >= 64 else 3))
        warmup = args.warmup if args.warmup is not None else (3 if on_cuda else 1)
        case = dict(task=task, width=width, size=size, depth=args.depth,
                    padding=args.padding, device=args.device, reps=reps,
                    warmup=warmup, batch_size=args.batch_size, threads=args.threads,
                    memory_budget=int(args.memory_budget * 2**30))
        r = _run_case(case) if on_cuda else _run_isolated(case)
        rows.append(r)
        if "error" in r:
            print(f"{task:6s} width={width:3d} S={size}: {r['error']}", flush=True)
            continue
        print(
            f"{task:6s} width={width:3d} params={r['params'] / 1e6:6.2f}M "
            f"{r['shape']:34s} median {r['median_s'] * 1e3:9.1f} ms "
            f"(min {r['min_s'] * 1e3:9.1f}, n={reps})  peak mem +"
            f"{r['peak_mem_delta_mib']:8.1f} MiB (abs {r['peak_mem_mib']:8.1f})",
            flush=True,
        )
    hardware["loadavg_end"] = list(os.getloadavg())
    payload = {
        "benchmark": "unetlib UNet train step / inference",
        "command": command_line(),
        "timestamp_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "hardware": hardware,
        "results": rows,
    }
    if args.out is not None:
        write_json_atomic(args.out, payload)
        print(f"wrote {args.out}")
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
