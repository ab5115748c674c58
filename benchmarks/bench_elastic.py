"""Throughput of elastic deformation: unetlib vs elasticdeform vs torchvision.

Workload (paper section 3.1): 512x512 float32 images with uint8 label maps, batch 8, one random
3x3 control grid per sample (sigma 10 px), image spline order 3 + labels order 0, mirror borders.

* unetlib eager and unetlib ``compiled=True`` (torch.compile of the sampler);
* elasticdeform 0.5.1 (CPU only), one call per sample, sequential and in a 2-thread pool (its C
  loop releases the GIL), checked to give the same output as unetlib (max abs difference of the
  images, fraction of differing labels);
* torchvision's ``v2.ElasticTransform`` (one call per sample, image bilinear + mask nearest): a
  different field (Gaussian-smoothed per-pixel noise) and order 1, so NOT equal output; shown
  for scale only.

Usage:
    python benchmarks/bench_elastic.py --device cpu --threads 2 --out results.json
    python benchmarks/bench_elastic.py --device cuda --out results_cuda.json
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from unetlib.elastic import deform_grid  # noqa: E402
from unetlib.provenance import command_line, cpu_name, write_json_atomic  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (and pool size)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--no-eager", action="store_true", help="skip unetlib eager")
    ap.add_argument("--no-compile", action="store_true", help="skip unetlib compiled=True")
    ap.add_argument("--no-reference", action="store_true", help="skip elasticdeform")
    ap.add_argument("--no-torchvision", action="store_true")
    ap.add_argument("--out", default=None, help="write results as JSON here (atomically)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    n, s = args.batch, args.size
    g = torch.Generator().manual_seed(0)
    image = torch.rand(n, 1, s, s, generator=g)
    labels = torch.randint(0, 255, (n, 1, s, s), generator=g, dtype=torch.uint8)
    disp = torch.randn(n, 2, 3, 3, generator=g, dtype=torch.float64) * 10.0
    img_d, lab_d, disp_d = image.to(device), labels.to(device), disp.to(device)

    # name -> (function running one batch, note, extra fields for the JSON)
    methods: dict[str, tuple[Callable[[], object], str, dict]] = {}
    print(f"device={device} threads={args.threads} batch={n} size={s}x{s}", flush=True)
    ours: dict[str, list[torch.Tensor]] = {}
    for compiled in (False, True):
        if (compiled and args.no_compile) or (not compiled and args.no_eager):
            continue
        name = "unetlib (compiled)" if compiled else "unetlib (eager)"

        def run(compiled: bool = compiled) -> list[torch.Tensor]:
            return deform_grid(
                [img_d, lab_d], disp_d, order=[3, 0], mode="mirror", compiled=compiled
            )

        t0 = time.perf_counter()
        ours[name] = [t.cpu() for t in run()]
        first = time.perf_counter() - t0
        methods[name] = (run, f"first call {first:.1f} s", {"first_call_s": first})

    pool = ThreadPoolExecutor(args.threads)
    if not args.no_reference and device.type == "cpu":
        import elasticdeform

        xs, ls, ds = image[:, 0].numpy(), labels[:, 0].numpy(), disp.numpy()

        def one(i: int):
            return elasticdeform.deform_grid([xs[i], ls[i]], ds[i], order=[3, 0], mode="mirror")

        ref = [one(i) for i in range(n)]
        parity = {}
        for name, out in ours.items():
            img_err = max(float(np.abs(out[0][i, 0].numpy() - ref[i][0]).max()) for i in range(n))
            lab_diff = float(
                np.mean([np.mean(out[1][i, 0].numpy() != ref[i][1]) for i in range(n)])
            )
            parity[name] = {"image_max_abs_diff": img_err, "label_fraction_differing": lab_diff}
            print(
                f"  parity {name}: image max |diff| {img_err:.2e}, labels differing {lab_diff:.2e}"
            )
        methods["elasticdeform 0.5.1 (1 thread)"] = (
            lambda: [one(i) for i in range(n)],
            "reference",
            {"parity": parity},
        )
        methods[f"elasticdeform 0.5.1 ({args.threads} threads)"] = (
            lambda: list(pool.map(one, range(n))),
            "reference, thread pool",
            {},
        )

    if not args.no_torchvision:
        try:
            from torchvision import tv_tensors
            from torchvision.transforms import v2
        except ImportError:
            print("torchvision not installed: skipped")
        else:
            tv = v2.ElasticTransform(alpha=50.0, sigma=5.0)
            torch.manual_seed(0)

            def run_tv():
                return [tv(tv_tensors.Image(img_d[i]), tv_tensors.Mask(lab_d[i])) for i in range(n)]

            methods["torchvision v2.ElasticTransform"] = (
                run_tv,
                "different field, bilinear: NOT equal output",
                {},
            )

    # Interleaved (round-robin) timing, so that a shared machine's load hits all methods alike.
    times: dict[str, list[float]] = {name: [] for name in methods}
    for fn, _, _ in methods.values():
        for _ in range(args.warmup):
            fn()
    for _ in range(args.repeats):
        for name, (fn, _, _) in methods.items():
            times[name].extend(_time(fn, device, 1, 0))
    pool.shutdown()
    rows: list[dict] = []
    for name, (_, note, extra) in methods.items():
        med = float(np.median(times[name]))
        rows.append(
            {
                "method": name,
                "median_s_per_batch": med,
                "images_per_s": n / med,
                "times_s": times[name],
                "note": note,
                **extra,
            }
        )
        print(f"{name:34s} {n / med:10.1f} img/s   ({med * 1e3:8.1f} ms/batch)  {note}", flush=True)

    rows_by = {r["method"]: r for r in rows}
    ratios = {}
    for ours_name in ("unetlib (eager)", "unetlib (compiled)"):
        for ref_name in [k for k in rows_by if k.startswith("elasticdeform")]:
            if ours_name in rows_by:
                ratios[f"{ours_name} / {ref_name}"] = (
                    rows_by[ours_name]["images_per_s"] / rows_by[ref_name]["images_per_s"]
                )
    for k, v in ratios.items():
        print(f"  speed-up {k}: {v:.2f}x")

    payload = {
        "command": command_line(),
        "workload": {
            "batch": n,
            "size": [s, s],
            "grid": [3, 3],
            "sigma": 10.0,
            "orders": {"image": 3, "labels": 0},
            "mode": "mirror",
        },
        "hardware": {
            "cpu": cpu_name(),
            "processor": platform.processor(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "load_average": os.getloadavg(),
        },
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
        "results": rows,
        "speedups": ratios,
    }
    if args.out:
        write_json_atomic(args.out, payload)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
