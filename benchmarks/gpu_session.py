"""Everything this project needs a GPU for, in one run of under 9 minutes.

    python benchmarks/gpu_session.py --out OUT            # on a CUDA machine
    python benchmarks/gpu_session.py --out OUT --dry-run  # the same steps, tiny, on CPU (CI)

Steps, each writing into OUT and each time-boxed (within ``--budget`` seconds for the whole
session), so that one failing step does not lose the others (``OUT/session.json`` says what ran,
how long, and how it ended):

1. ``cuda_tests``: the CUDA tests of the suite (the test files that hold any), which skip on CPU.
2. ``bench_elastic``: elastic deformation on the GPU against ``elasticdeform`` (same batch as
   the CPU benchmark: 8 x 512 x 512, image order 3 + labels order 0; equality checked there).
2b. ``bench_elastic_b64``: the same deformation at batch 64 (the issue's throughput goal:
   10,000 images/s at 512 x 512), without ``elasticdeform``, whose CPU would take minutes.
3. ``bench_model``: the paper's network, whole-image and overlap-tile prediction.
3b. ``bench_weights``: the weight map (eq. 2) by ``weight_map_torch`` on the GPU (a map per
   augmented sample without leaving the device) beside the exact NumPy map and the naive one,
   at 10 and 100 cells: whether the torch path earns its place in GPU training.
4. ``paper_train``: the ``paper`` profile's DIC-HeLa configuration (the 2015 network, valid
   convolutions, 572 tiles, SGD with momentum 0.99, the weight map) for ``--paper-seconds`` of
   training (at most ``--train-steps`` steps), with the instance parameters chosen on validation
   SEG -> ``gpu_paper.json``, the GPU headline.
5. ``quick_seeds``: the ``quick`` profile's DIC-HeLa configuration (the book's headline run)
   trained for ``--quick-steps`` steps instead of the profile's 1,000, three seeds: what a
   longer budget buys the same recipe (beyond the book's 2-core budget) ->
   ``gpu_quick_long.json``.

Weights go to ``--runs-dir`` (not OUT: at most 8 files of 16 MiB come back, and the paper's
network alone is 124 MB). What comes back instead of them is every trained run's validation and
test probabilities, rounded to 1/65535 (``OUT/gpu_probabilities_<experiment>.npz``, with the
frames' names): an instance method added after the session is scored from them on a CPU,

    python benchmarks/gpu_session.py --rescore book/results

which chooses its parameters on the validation frames and scores the test frames exactly as at
the end of training, and rewrites ``gpu_*.json`` with every method. The dry run uses
the CPU, tiny sizes and two training steps: it proves that every step's code runs, not how fast.
Copy OUT's ``bench_*.json`` into ``benchmarks/results/`` and ``gpu_*.json`` into ``book/results/``
to put them in the book (the performance and results chapters show every file they find).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# each step's own time limit (seconds); the session's --budget can shorten the later ones. The
# training steps' limits are their training time plus what comes around it (start, the data,
# validation, the test frames): LIMITS holds that overhead, --paper-seconds and --quick-seconds
# (three seeds) the training, so that a session given to the paper profile alone
# (--only paper_train --paper-seconds 420) is not cut at the default's limit
DRY_RUN_SCALE = 3
LIMITS = {"cuda_tests": 60, "bench_elastic": 75, "bench_elastic_b64": 60, "bench_model": 75,
          "bench_weights": 45,
          "paper_train": 90, "quick_seeds": 65}


def step_limit(name: str, args: argparse.Namespace) -> float:
    """The time limit (seconds) of step ``name`` before the session's budget shortens it: 210 s
    for the paper's network and 200 s for the three quick seeds at the default training times."""
    if name == "paper_train":
        return LIMITS[name] + args.paper_seconds
    if name == "quick_seeds":
        return LIMITS[name] + 3 * args.quick_seconds
    return LIMITS[name]


def cuda_test_files() -> list[str]:
    """The test files that hold a test named ``test_*cuda*`` (collecting the others needs
    packages a GPU image may lack: papermill, the notebook stack)."""
    pattern = re.compile(r"^def test_\w*cuda", re.MULTILINE)
    return sorted(str(f) for f in (ROOT / "tests").glob("test_*.py")
                  if pattern.search(f.read_text()))


def _steps(out: Path, dry: bool, args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """(name, command) of each step, in the order they run."""
    py = sys.executable
    device = "cpu" if dry else "cuda"
    elastic = [py, str(HERE / "bench_elastic.py"), "--device", device,
               "--out", str(out / f"bench_elastic_{device}.json")]
    elastic64 = [py, str(HERE / "bench_elastic.py"), "--device", device, "--batch", "64",
                 "--no-reference", "--no-torchvision", "--repeats", "10",
                 "--out", str(out / f"bench_elastic_{device}_b64.json")]
    model = [py, str(HERE / "bench_model.py"), "--device", device,
             "--out", str(out / f"bench_model_{device}.json")]
    weights = [py, str(HERE / "bench_weights.py"), "--torch", "--no-hela", "--cells", "10",
               "100", "--repeats", "3", "--naive-repeats", "1",
               "--out", str(out / f"bench_weights_{device}.json")]
    train = [py, str(HERE / "gpu_session.py"), "--out", str(out), "--runs-dir",
             str(args.runs_dir), "--train-steps", str(args.train_steps), "--paper-seconds",
             str(args.paper_seconds), "--quick-steps", str(args.quick_steps),
             "--quick-seconds", str(args.quick_seconds)]
    if importlib.util.find_spec("elasticdeform") is None:  # said in session.json, not hidden
        elastic += ["--no-reference"]
    if dry:
        elastic += ["--batch", "1", "--size", "64", "--repeats", "1", "--warmup", "0",
                    "--no-compile", "--no-torchvision"]
        elastic64 += ["--batch", "2", "--size", "64", "--repeats", "1", "--warmup", "0",
                      "--no-compile"]
        model += ["--sizes", "188", "--widths", "4", "--reps", "1", "--warmup", "0"]
        weights += ["--cells", "5", "--size", "64", "--repeats", "1"]
        train += ["--dry-run"]
    tests = [py, "-m", "pytest", "-q", "-k", "cuda", "-p", "no:cacheprovider",
             *cuda_test_files()]
    return [("cuda_tests", tests), ("bench_elastic", elastic), ("bench_elastic_b64", elastic64),
            ("bench_model", model),
            ("bench_weights", weights), ("paper_train", train + ["--train-only", "paper"]),
            ("quick_seeds", train + ["--train-only", "quick"])]


def _relative(cmd: list[str]) -> str:
    """The command as one would type it in the project root (no path of this machine)."""
    from unetlib.paths import shown

    return " ".join("python" if c == sys.executable
                    else shown(c, data=False) if Path(c).is_absolute() else c for c in cmd)


def _record(out: Path, experiment: str, profile: str, runs: dict[str, dict], dry: bool,
            **extra) -> None:
    """``OUT/<experiment>.json`` in the layout of the book's results (``book/results``): copy it
    there and the results chapter shows it beside the CPU runs."""
    from unetlib.provenance import command_line
    from unetlib.report import record_experiment, seed_summary

    record_experiment(out / f"{experiment}.json", experiment, profile, runs,
                      command=command_line(), summary=seed_summary(runs), dry_run=dry, **extra)


PROBABILITY_SCALE = 65535  # probabilities are kept as uint16: p = stored / 65535, to 1.5e-5


def _probabilities_path(folder: Path, experiment: str) -> Path:
    return folder / f"gpu_probabilities_{experiment}.npz"


def keep_probabilities(out: Path, experiment: str, run: str, result: dict) -> None:
    """The validation and test probabilities of a trained run (predicted with its restored
    weights on the session's device) into ``OUT/gpu_probabilities_<experiment>.npz``, one file
    per experiment, rewritten whole after each run."""
    import numpy as np

    from unetlib.config import config_from
    from unetlib.evaluate import predict_frames
    from unetlib.model import load_checkpoint
    from unetlib.provenance import write_atomic
    from unetlib.train import load_splits, resolve_device

    config = config_from(result["config"])
    model, _ = load_checkpoint(result["checkpoint"], map_location=resolve_device(config.device))
    _, val_s, test_s = load_splits(config)
    path = _probabilities_path(out, experiment)
    arrays = dict(np.load(path)) if path.is_file() else {}
    for split, samples in (("val", val_s), ("test", test_s)):
        probs = np.stack(predict_frames(model, [s.image for s in samples], config))
        arrays[f"{run}|{split}"] = np.round(probs * PROBABILITY_SCALE).astype(np.uint16)
        arrays[f"{run}|{split}|names"] = np.array([s.name for s in samples])
    write_atomic(path, lambda f: np.savez_compressed(f, **arrays))


def rescore(folder: Path) -> list[Path]:
    """Every ``gpu_*.json`` in ``folder`` that has its probabilities file beside it, scored
    again from those probabilities with every instance method (:mod:`unetlib.instances`),
    parameters chosen on the validation frames; the files are rewritten (``rescored`` says
    when and with what). The frames' names must match the run's: the labels are loaded here."""
    import numpy as np

    from unetlib.config import config_from
    from unetlib.evaluate import evaluate_probabilities, paper_way_fields
    from unetlib.instances import METHODS
    from unetlib.provenance import command_line, hardware, write_json_atomic
    from unetlib.report import seed_summary
    from unetlib.train import load_splits

    written = []
    for path in sorted(folder.glob("gpu_*.json")):
        probs_path = _probabilities_path(folder, path.stem)
        if not probs_path.is_file():
            continue
        data = json.loads(path.read_text())
        stored = np.load(probs_path)
        for run, record in data["runs"].items():
            config = config_from(record["config"])
            _, val_s, test_s = load_splits(config)
            split_probs = {}
            for split, samples in (("val", val_s), ("test", test_s)):
                names = [str(n) for n in stored[f"{run}|{split}|names"]]
                if names != [s.name for s in samples] or names != record["frames"][split]:
                    raise ValueError(f"{probs_path}: the {split} frames of {run!r} are not the "
                                     "ones this data set's split gives; not rescored")
                split_probs[split] = [p.astype(np.float32) / PROBABILITY_SCALE
                                      for p in stored[f"{run}|{split}"]]
            instances = evaluate_probabilities(
                split_probs["val"], [np.asarray(s.labels) for s in val_s], split_probs["test"],
                [np.asarray(s.labels) for s in test_s], config)
            paper_way = paper_way_fields(instances)
            data["instances"][run] = instances
            data["metrics"][run] = paper_way["metrics"]
            data["thresholds"][run] = paper_way["threshold"]
        data["summary"] = seed_summary({run: {"instances": inst}
                                        for run, inst in data["instances"].items()})
        data["rescored"] = {"methods": list(METHODS), "from": probs_path.name,
                            "hardware": hardware(), "command": command_line()}
        write_json_atomic(path, data)
        written.append(path)
    return written


def train_paper(out: Path, runs: Path, steps: int, seconds: float, dry: bool) -> dict:
    """The paper profile's training chapter configuration for ``seconds`` of training (at most
    ``steps`` steps), validated every 500 steps -> ``OUT/gpu_paper.json``."""
    from unetlib.profiles import train_config
    from unetlib.train import train

    overrides = {"steps": steps, "eval_every": 500, "time_limit": seconds,
                 "tune_threshold": True, "out_dir": str(runs), "progress": False}
    if dry:
        overrides.update(device="cpu", n_test=1, steps=2, eval_every=1, time_limit=0.0)
    result = train(train_config("paper", "02_train", check_data=True, **overrides))
    _record(out, "gpu_paper", "paper", {"seed 0": result}, dry)
    keep_probabilities(out, "gpu_paper", "seed 0", result)
    return result


def train_quick(out: Path, runs: Path, steps: int, seconds: float, dry: bool) -> dict:
    """The quick profile's headline configuration, ``steps`` steps (each seed stopped after
    ``seconds`` of training if not done), three seeds, validated every 200 steps ->
    ``OUT/gpu_quick_long.json``, rewritten after each seed."""
    from unetlib.profiles import train_config
    from unetlib.train import train

    overrides = {"steps": steps, "eval_every": 200, "time_limit": seconds,
                 "out_dir": str(runs), "progress": False}
    n_seeds = 3
    if dry:
        overrides.update(device="cpu", n_test=1, steps=2, eval_every=1, time_limit=0.0)
        n_seeds = 1
    config = train_config("quick", "02_train", check_data=True, **overrides)
    results: dict[str, dict] = {}
    for seed in range(config.seed, config.seed + n_seeds):
        results[f"seed {seed}"] = train(dataclasses.replace(config, seed=seed))
        _record(out, "gpu_quick_long", "quick", results, dry, steps=steps,
                seconds_per_seed=seconds)
        keep_probabilities(out, "gpu_quick_long", f"seed {seed}", results[f"seed {seed}"])
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, help="folder for every result file")
    p.add_argument("--rescore", type=Path, metavar="FOLDER",
                   help="on a CPU, after the session: score the gpu_*.json in FOLDER again from "
                        "their probabilities with every instance method")
    p.add_argument("--dry-run", action="store_true", help="tiny, on CPU: check the code paths")
    p.add_argument("--budget", type=float, default=540.0,
                   help="seconds for the whole session; later steps get what is left (540)")
    p.add_argument("--runs-dir", type=Path, default=None,
                   help="folder for the trained weights (default OUT/runs)")
    p.add_argument("--train-steps", type=int, default=20000,
                   help="most training steps of the paper profile (default 20000)")
    p.add_argument("--paper-seconds", type=float, default=120.0,
                   help="seconds of training of the paper profile (default 120)")
    p.add_argument("--quick-steps", type=int, default=4000,
                   help="training steps of each quick-profile seed (default 4000)")
    p.add_argument("--quick-seconds", type=float, default=45.0,
                   help="most seconds of training of each quick-profile seed (default 45)")
    p.add_argument("--only", nargs="+", default=None, help="run only these steps")
    p.add_argument("--train-only", choices=("paper", "quick"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.rescore is not None:
        written = rescore(args.rescore)
        if not written:
            print(f"error: --rescore: no gpu_*.json with its gpu_probabilities_*.npz in "
                  f"{args.rescore}", file=sys.stderr)
            return 2
        print("rescored " + ", ".join(str(w) for w in written))
        return 0
    if args.out is None:
        p.error("--out is required (or --rescore FOLDER)")
    for name in ("train_steps", "quick_steps"):
        if getattr(args, name) < 1:
            flag = "--" + name.replace("_", "-")
            print(f"error: {flag} must be >= 1, got {getattr(args, name)}", file=sys.stderr)
            return 2
    for name in ("budget", "paper_seconds", "quick_seconds"):
        if not getattr(args, name) > 0:
            flag = "--" + name.replace("_", "-")
            print(f"error: {flag} must be > 0 seconds, got {getattr(args, name)}",
                  file=sys.stderr)
            return 2
    args.out.mkdir(parents=True, exist_ok=True)
    if args.runs_dir is None:
        args.runs_dir = args.out / "runs"
    if args.train_only:
        fn = train_paper if args.train_only == "paper" else train_quick
        steps = args.train_steps if args.train_only == "paper" else args.quick_steps
        seconds = args.paper_seconds if args.train_only == "paper" else args.quick_seconds
        fn(args.out, args.runs_dir, steps, seconds, args.dry_run)
        return 0
    if not args.dry_run:
        import torch

        if not torch.cuda.is_available():
            print("error: no CUDA device; use --dry-run to check the steps on CPU",
                  file=sys.stderr)
            return 2
    from unetlib.provenance import hardware, write_json_atomic

    steps = _steps(args.out, args.dry_run, args)
    unknown = set(args.only or ()) - {name for name, _ in steps}
    if unknown:
        print(f"error: --only: unknown step(s) {sorted(unknown)}", file=sys.stderr)
        return 2
    record = {"dry_run": args.dry_run, "hardware": hardware(), "budget_seconds": args.budget,
              "elasticdeform": importlib.util.find_spec("elasticdeform") is not None,
              "steps": {}}
    # a dry run on a CPU proves the code paths, not the speed: three times each limit, so that
    # a busy 2-core CI machine does not time out what a GPU does in seconds
    scale = DRY_RUN_SCALE if args.dry_run else 1
    deadline = time.perf_counter() + args.budget * scale
    failed = 0
    for name, cmd in steps:
        if args.only and name not in args.only:
            continue
        limit = min(step_limit(name, args) * scale, deadline - time.perf_counter())
        start = time.perf_counter()
        if limit < 10:
            status, tail = "skipped: the session's budget is spent", ""
        else:
            try:
                proc = subprocess.run(cmd, cwd=ROOT, timeout=limit, capture_output=True,
                                      text=True)
                status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
                tail = (proc.stdout + proc.stderr).replace(str(ROOT) + "/", "")[-3000:]
            except subprocess.TimeoutExpired as err:
                out = err.stdout or ""
                out = out.decode(errors="replace") if isinstance(out, bytes) else out
                status, tail = f"timeout after {limit:.0f} s", out[-3000:]
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
