"""Everything this project needs a GPU for, in one run of under 9 minutes.

    python benchmarks/gpu_session.py --out OUT            # on a CUDA machine
    python benchmarks/gpu_session.py --out OUT --dry-run  # the same steps, tiny, on CPU (CI)

Steps, each writing into OUT and each time-boxed, so that one failing step does not lose the
others (``OUT/session.json`` says what ran, how long, and how it ended):

1. ``cuda_tests``: the CUDA tests of the suite (``pytest -k cuda``), which skip on CPU.
2. ``bench_elastic``: elastic deformation on the GPU against ``elasticdeform`` (same batch as
   the CPU benchmark: 8 x 512 x 512, image order 3 + labels order 0).
3. ``bench_model``: the paper's network, whole-image and overlap-tile prediction.
4. ``paper_train``: the ``paper`` profile's DIC-HeLa configuration (the 2015 network, valid
   convolutions, 572 tiles, SGD with momentum 0.99, the weight map) for ``--train-steps`` steps,
   with the instance parameters chosen on validation SEG; its result JSON is the GPU headline.

The dry run uses the CPU, tiny sizes and two training steps: it proves that every step's code
runs, not how fast. Copy OUT's JSON files into ``benchmarks/results/`` and ``book/results/`` to
put them in the book.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _steps(out: Path, dry: bool, train_steps: int) -> list[tuple[str, list[str], int]]:
    """(name, command, time limit in seconds) of each step."""
    py = sys.executable
    device = "cpu" if dry else "cuda"
    elastic = [py, str(HERE / "bench_elastic.py"), "--device", device,
               "--out", str(out / f"bench_elastic_{device}.json")]
    model = [py, str(HERE / "bench_model.py"), "--device", device,
             "--out", str(out / f"bench_model_{device}.json")]
    train = [py, str(HERE / "gpu_session.py"), "--train-only", "--out", str(out),
             "--train-steps", str(train_steps)]
    if dry:
        elastic += ["--batch", "1", "--size", "64", "--repeats", "1", "--warmup", "0",
                    "--no-compile", "--no-torchvision"]
        model += ["--sizes", "188", "--widths", "4", "--reps", "1", "--warmup", "0"]
        train += ["--dry-run"]
    tests = [py, "-m", "pytest", "-q", "-k", "cuda", "-p", "no:cacheprovider",
             str(ROOT / "tests")]
    return [("cuda_tests", tests, 90), ("bench_elastic", elastic, 90),
            ("bench_model", model, 90), ("paper_train", train, 300)]


def _relative(cmd: list[str]) -> str:
    """The command as one would type it in the project root (no path of this machine)."""
    from unetlib.paths import shown

    return " ".join("python" if c == sys.executable else shown(c) if Path(c).is_absolute()
                    else c for c in cmd)


def train_paper(out: Path, steps: int, dry: bool) -> dict:
    """The paper profile's training chapter configuration for ``steps`` steps."""
    from unetlib.profiles import train_config
    from unetlib.provenance import write_json_atomic
    from unetlib.train import train

    overrides = {"steps": steps, "eval_every": max(1, steps // 4), "tune_threshold": True,
                 "out_dir": str(out / "runs"), "progress": False}
    if dry:
        overrides.update(device="cpu", n_test=1, steps=2, eval_every=1)
    config = train_config("paper", "02_train", check_data=True, **overrides)
    result = train(config)
    summary = {k: result[k] for k in ("run", "config", "history", "best_step", "steps_done",
                                      "metrics", "instances", "train_seconds", "wall_seconds",
                                      "hardware", "command")}
    summary["dry_run"] = dry
    write_json_atomic(out / "paper_train.json", summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder for every result file")
    p.add_argument("--dry-run", action="store_true", help="tiny, on CPU: check the code paths")
    p.add_argument("--train-steps", type=int, default=4000,
                   help="training steps of the paper profile (default 4000)")
    p.add_argument("--only", nargs="+", default=None, help="run only these steps")
    p.add_argument("--train-only", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.train_steps < 1:
        print(f"error: --train-steps must be >= 1, got {args.train_steps}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    if args.train_only:
        train_paper(args.out, args.train_steps, args.dry_run)
        return 0
    if not args.dry_run:
        import torch

        if not torch.cuda.is_available():
            print("error: no CUDA device; use --dry-run to check the steps on CPU",
                  file=sys.stderr)
            return 2
    from unetlib.provenance import hardware, write_json_atomic

    steps = _steps(args.out, args.dry_run, args.train_steps)
    unknown = set(args.only or ()) - {name for name, _, _ in steps}
    if unknown:
        print(f"error: --only: unknown step(s) {sorted(unknown)}", file=sys.stderr)
        return 2
    record = {"dry_run": args.dry_run, "hardware": hardware(), "steps": {}}
    failed = 0
    for name, cmd, limit in steps:
        if args.only and name not in args.only:
            continue
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=ROOT, timeout=limit, capture_output=True, text=True)
            status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
            tail = (proc.stdout + proc.stderr)[-3000:]
        except subprocess.TimeoutExpired as err:
            status, tail = f"timeout after {limit} s", str(err.stdout or "")[-3000:]
        failed += status != "ok"
        seconds = round(time.perf_counter() - start, 1)
        record["steps"][name] = {"status": status, "seconds": seconds,
                                 "command": _relative(cmd), "output_tail": tail}
        print(f"{name}: {status} in {seconds} s", flush=True)
        write_json_atomic(args.out / "session.json", record)
    print(json.dumps({k: v["status"] for k, v in record["steps"].items()}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
