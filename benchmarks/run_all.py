"""Run every benchmark and write its JSON to benchmarks/results/<name>_<device>.json.

    python benchmarks/run_all.py                  # CPU (and CUDA too when a GPU is present)
    python benchmarks/run_all.py --only elastic weights --device cuda

The performance chapter (notebooks/06_performance.ipynb) reads these files. Run it on a quiet
machine: the scripts time wall clock.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name -> (arguments for CPU, arguments for CUDA); None: not run on that device
BENCHMARKS: dict[str, tuple[list[str] | None, list[str] | None]] = {
    "elastic": (["--device", "cpu", "--threads", "2"], ["--device", "cuda"]),
    "weights": ([], None),
    "model": (["--device", "cpu", "--sizes", "512", "--widths", "64", "32", "16"],
              ["--device", "cuda", "--sizes", "512", "--widths", "64", "32", "16"]),
    "widgets": ([], None),
    "train_step": ([], None),
    "predict_tile": ([], None),
    # the peers are installed by `make bench` into .venv-bench, which runs this script
    "elastic_peers": (["--threads", "2"], None),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), default=None)
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all",
                        help="'all': CPU, and CUDA when available")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)

    import torch

    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        if args.device == "cuda":
            print("error: --device cuda but no CUDA device is available", file=sys.stderr)
            return 1
        devices.remove("cuda")
    failed = []
    for name in args.only or BENCHMARKS:
        for device in devices:
            extra = BENCHMARKS[name][0 if device == "cpu" else 1]
            if extra is None:
                continue
            out = args.out / f"bench_{name}_{device}.json"
            cmd = [sys.executable, str(HERE / f"bench_{name}.py"), *extra, "--out", str(out)]
            print("+", " ".join(cmd), flush=True)
            if subprocess.run(cmd).returncode != 0:
                failed.append(f"{name} ({device})")
    if failed:
        print(f"error: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
