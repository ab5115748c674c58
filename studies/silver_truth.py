"""Beyond the gold frames (beyond the paper): the training chapter's configuration trained on
the Cell Tracking Challenge's silver-truth masks of every frame of sequence 01 instead of its 8
gold frames, validated on the same held-out gold frames and tested on sequence 02's gold frames.

    python studies/silver_truth.py --profile quick --seeds 0 1 --steps 2500 \
        --out book/results/silver_truth.json
    python studies/silver_truth.py --profile quick --seeds 0 1 2 --steps 5000 \
        --experiment silver_truth_long --out book/results/silver_truth_long.json
    python studies/silver_truth.py --profile quick --seeds 0 1 2 --steps 10000 \
        --experiment silver_truth_10k --out book/results/silver_truth_10k.json

A longer run continues the shorter one of the same seed where ``runs/`` holds it
(:func:`unetlib.train.extendable_run`: the same weights as training straight through).

The paper (and the book's headline) trains on the gold frames only; this study says what the
84 silver masks add at the same budget. The JSON has the results table's layout (metrics, runs,
instances, summary), so the results chapter shows it beside the gold-trained rows.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from unetlib.book import add_study_arguments
from unetlib.interrupt import sigterm_as_interrupt
from unetlib.profiles import train_config
from unetlib.report import record_experiment, seed_summary
from unetlib.train import train_seeds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (default 0)")
    p.add_argument("--steps", type=int, default=None,
                   help="training steps (default: the profile's)")
    p.add_argument("--experiment", default="silver_truth",
                   choices=("silver_truth", "silver_truth_long", "silver_truth_10k"),
                   help="the name the results table shows (silver_truth_long for the 5,000-step "
                        "runs, silver_truth_10k for the 10,000-step ones)")
    add_study_arguments(p, out="book/results/silver_truth.json")
    args = p.parse_args(argv)
    fields = dict(args.overrides)
    if fields.get("truth", "silver") != "silver":
        p.error(f"-p truth={fields['truth']}: this study trains on the silver truth")
    if args.steps is not None:
        fields["steps"] = args.steps
    config = train_config(args.profile, "02_train", **{"truth": "silver", "silver_val": 0,
                                                       **fields},
                          out_dir=args.out_dir, progress=False, check_data=True)
    if config.dataset == "synthetic":
        print("error: the silver truth needs a Cell Tracking Challenge data set", file=sys.stderr)
        return 2
    with sigterm_as_interrupt():
        runs = {f"seed {s}": r for seed in args.seeds
                for s, r in train_seeds(dataclasses.replace(config, seed=seed), 1).items()}
    summary = seed_summary(runs)
    from unetlib.provenance import command_line

    record_experiment(args.out, args.experiment, args.profile, runs, command=command_line(),
                      summary=summary)
    for method, s in summary.items():
        print(f"{method}: SEG {s['seg']['mean']:.3f} ± {s['seg']['sd']:.3f} over "
              f"{s['seeds']} seed(s)")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
