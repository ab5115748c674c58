"""The book's two ablations with every seed: augmentation on or off, and the weight map's border
term w0 = 10 (the paper) or 0 (class balance only).

    python studies/ablations.py --seeds 0 1 2 --out book/results/ablations.json

The chapters of the augmentation ablation and of the weight maps train one seed per arm, within
`make book`'s 30 minutes; one seed cannot tell an effect from the spread between seeds (three
seeds of one configuration differ by more than either ablation's measured effect). This study
trains each arm with every seed in the chapters' own configuration (``--profile``, default
``quick``), so the arm with augmentation and w0 = 10 is exactly the training chapter's runs
(reused from ``runs/`` when they are there), and scores every run the same way: instance
parameters and checkpoint chosen on the validation frames, the test frames of sequence 02 scored
once.

The JSON has the results table's layout (metrics, runs, instances) with one summary per arm
(``summaries``), rewritten after each arm, so that an interrupted study keeps what it finished
and a rerun reuses the trained runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from unetlib.book import add_study_arguments
from unetlib.interrupt import sigterm_as_interrupt
from unetlib.profiles import train_config
from unetlib.provenance import command_line
from unetlib.report import record_experiment, seed_summary
from unetlib.train import train

# arm -> the options in which it differs from the chapters' configuration
ARMS: dict[str, dict] = {
    "augmentation, w0 = 10 (the paper)": {},
    "no augmentation": {"augment": "none"},
    "w0 = 0 (class balance only)": {"w0": 0.0},
}

# which two arms answer which chapter's question
QUESTIONS: dict[str, tuple[str, str]] = {
    "03_augmentation_ablation": ("augmentation, w0 = 10 (the paper)", "no augmentation"),
    "04_weight_maps": ("augmentation, w0 = 10 (the paper)", "w0 = 0 (class balance only)"),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (0 1 2)")
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS), metavar="ARM",
                   help=f"arms to run (default all: {'; '.join(ARMS)})")
    add_study_arguments(p, out="book/results/ablations.json")
    args = p.parse_args(argv)
    base = train_config(args.profile, "03_augmentation_ablation", check_data=True,
                        out_dir=args.out_dir, progress=False, **dict(args.overrides))
    runs: dict[str, dict] = {}
    summaries: dict[str, dict] = {}
    with sigterm_as_interrupt():
        for arm in args.arms:
            arm_runs = {}
            for seed in args.seeds:
                config = dataclasses.replace(base, seed=seed, **ARMS[arm])
                result = arm_runs[f"{arm}, seed {seed}"] = train(config)
                segs = ", ".join(f"{m} {r['metrics']['seg']:.3f}"
                                 for m, r in result["instances"].items() if "metrics" in r)
                print(f"{arm}, seed {seed}: SEG {segs}", flush=True)
            runs.update(arm_runs)
            summaries[arm] = seed_summary(arm_runs)
            record_experiment(args.out, "ablations", args.profile, runs, command=command_line(),
                              summaries=summaries, seeds=args.seeds,
                              questions={k: list(v) for k, v in QUESTIONS.items()})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
