"""Benchmark: latency of one control change in each explorer of ``unetlib.widgets``.

The issue's target: under 200 ms per change at 512 x 512 on one CPU core. One change = setting a
control's value from code, which runs the explorer's redraw synchronously (render with NumPy and
Pillow, PNG encoding, widget update); the time is taken around that assignment. Torch and the
BLAS libraries are limited to one thread before they are imported.

Changes timed, each a value different from the previous one, cycled ``--repeats`` times:

* augmentation: elastic sigma, grid points, rotation, shift, gamma, reseed;
* weight map: w0, sigma, line row; the first visit of a frame (distances d1, d2 computed) and a
  revisit (cached) are timed separately;
* prediction: threshold, min_size; the first visit of an image (network run with
  ``predict_tiled``) and a revisit are timed separately. The network is a small untrained UNet
  (depth 4, 16 channels, same padding) unless ``--checkpoint`` names a trained one; an untrained
  network's noisy probabilities give many components, the expensive case for the labelling and
  the SEG score.

Data: DIC-C2DH-HeLa test frames (512 x 512) when found under the data root, else synthetic
512 x 512 images (said in the JSON).

    python benchmarks/bench_widgets.py --out results/bench_widgets.json
    python benchmarks/bench_widgets.py --dataset synthetic --repeats 3 --out /tmp/bw.json
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy and torch are imported

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from unetlib.provenance import command_line, hardware, write_json_atomic  # noqa: E402


def load_samples(dataset: str, n: int, size: int) -> tuple[list, str]:
    from unetlib.data import load_dataset

    if dataset != "synthetic":
        try:
            ds = load_dataset(dataset, "test")
            out = []
            for s in list(ds)[:n]:
                out.append((s.image[:size, :size], s.labels[:size, :size], s.name))
            if out and out[0][0].shape == (size, size):
                return out, dataset
            print(f"{dataset}: frames smaller than {size}; using synthetic data", flush=True)
        except (FileNotFoundError, ValueError) as err:
            print(f"{dataset} not available ({err}); using synthetic data", flush=True)
    ds = load_dataset("synthetic", "test", n=n, size=size)
    return [(s.image, s.labels, s.name) for s in ds], "synthetic"


def timed(explorer, name: str, value) -> float:
    control = explorer.controls[name]
    t0 = time.perf_counter()
    if value == "click":
        control.click()
    else:
        control.value = value
    return time.perf_counter() - t0


def summary(times: list[float]) -> dict:
    ms = np.asarray(times) * 1e3
    return {"n": int(ms.size), "median_ms": round(float(np.median(ms)), 1),
            "p90_ms": round(float(np.percentile(ms, 90)), 1), "max_ms": round(float(ms.max()), 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="JSON file to write (atomically)")
    ap.add_argument("--dataset", default="DIC-C2DH-HeLa", help="data set (else synthetic)")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--images", type=int, default=3, help="images/frames to visit")
    ap.add_argument("--repeats", type=int, default=5, help="cycles over each control's values")
    ap.add_argument("--checkpoint", default=None, help="trained UNet for the prediction explorer")
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    load_before = os.getloadavg()  # other processes on the machine slow every number down
    from unetlib import widgets as W
    from unetlib.model import UNet, load_checkpoint

    samples, used = load_samples(args.dataset, args.images, args.size)
    rows: dict[str, dict] = {}

    def record(explorer_name: str, control: str, times: list[float]) -> None:
        rows[f"{explorer_name}/{control}"] = summary(times)

    # augmentation
    aug = W.augmentation_explorer(samples)
    plan = {
        "sigma": [5.0, 10.0, 25.0, 0.0],
        "points": [4, 5, 3],
        "rotation": [30.0, -45.0, 0.0],
        "shift_y": [12.0, -20.0, 0.0],
        "gamma": [0.7, 1.4, 1.0],
        "reseed": ["click"] * 3,
    }
    for name, values in plan.items():
        record("augmentation", name, [timed(aug, name, v) for _ in range(args.repeats)
                                      for v in values])
    record("augmentation", "index", [timed(aug, "index", i % len(samples))
                                     for i in range(1, args.repeats * len(samples) + 1)])

    # weight map
    wm = W.weight_map_explorer(samples)
    cold = [timed(wm, "index", i) for i in range(1, len(samples))]  # first visits
    record("weight_map", "index (first visit)", cold)
    record("weight_map", "index (revisit)", [timed(wm, "index", i % len(samples))
                                             for i in range(args.repeats * len(samples))])
    for name, values in {"w0": [0.0, 5.0, 20.0, 10.0], "sigma": [2.0, 8.0, 5.0],
                         "row": [100, 300, 256]}.items():
        record("weight_map", name, [timed(wm, name, v) for _ in range(args.repeats)
                                    for v in values])

    # prediction
    if args.checkpoint:
        model, _ = load_checkpoint(args.checkpoint)
        model_desc = args.checkpoint
    else:
        torch.manual_seed(0)
        model = UNet(in_channels=1, num_classes=2, depth=4, base_channels=16, padding="same",
                     batch_norm=True)
        model_desc = "untrained UNet(depth=4, base_channels=16, padding='same', batch_norm=True)"
    t0 = time.perf_counter()
    pe = W.prediction_explorer(model, samples, tile=256)
    first = [time.perf_counter() - t0]
    first += [timed(pe, "index", i) for i in range(1, len(samples))]
    record("prediction", "index (first visit: network run)", first)
    record("prediction", "index (revisit)", [timed(pe, "index", i % len(samples))
                                             for i in range(args.repeats * len(samples))])
    record("prediction", "threshold", [timed(pe, "threshold", v) for _ in range(args.repeats)
                                       for v in (0.3, 0.5, 0.7, 0.1, 0.9)])
    record("prediction", "min_size", [timed(pe, "min_size", v) for _ in range(args.repeats)
                                      for v in (20, 100, 0)])
    load_after = os.getloadavg()

    print(f"data: {used}, {args.size}x{args.size}, torch threads {torch.get_num_threads()}, "
          f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
          f"({os.cpu_count()} CPUs)")
    print(f"{'explorer/control':42s} {'n':>4s} {'median ms':>10s} {'p90 ms':>8s} {'max ms':>8s}")
    for k, r in rows.items():
        print(f"{k:42s} {r['n']:4d} {r['median_ms']:10.1f} {r['p90_ms']:8.1f} {r['max_ms']:8.1f}")
    result = {
        "benchmark": "widgets: latency per control change",
        "data": used,
        "size": args.size,
        "images": len(samples),
        "model": model_desc,
        "threads": {"torch": torch.get_num_threads(), "OMP_NUM_THREADS": "1"},
        "processor": platform.processor(),
        "hardware": hardware("cpu"),
        "command": command_line(),
        "load_average_1_5_15min": {"before": [round(x, 2) for x in load_before],
                                   "after": [round(x, 2) for x in load_after]},
        "cpu_count": os.cpu_count(),
        "target_ms": 200,
        "results": rows,
    }
    write_json_atomic(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
