"""The few-images curve: does augmentation let the U-Net learn from very few annotated frames?

    python studies/few_images.py --frames 1 2 4 8 --seeds 0 1 2 --steps 300 \
        --out book/results/few_images.json

The paper's claim (abstract, section 3.1) is that elastic deformation lets the network learn
"from very few annotated images". For each number of training frames (the first k gold frames
of DIC-HeLa's sequence 01) the augmentation chapter's configuration trains with and without
augmentation, each with every seed, and is scored on sequence 02's gold frames. Every arm
validates on the same frames, 8 silver-truth frames of sequence 01 at time points without gold
truth (``silver_val``; no gold frame is held out, so k counts every frame the network sees), on
which the checkpoint and the instance parameters are chosen as in the book's chapters.

The JSON has the results table's layout (metrics, runs, instances) with one summary per arm
(``summaries``: ``"k frames, augmented"``, ``"k frames, not augmented"``), rewritten after each
arm, so that an interrupted study keeps what it finished and a rerun reuses the trained runs.
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

ARMS = (("augmented", "all"), ("not augmented", "none"))


def arm_name(frames: int, augmented: str) -> str:
    return f"{frames} frame{'s' if frames != 1 else ''}, {augmented}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, nargs="+", default=[1, 2, 4, 8],
                   help="numbers of training frames (default 1 2 4 8)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (0 1 2)")
    p.add_argument("--steps", type=int, default=300, help="training steps (default 300)")
    p.add_argument("--silver-val", type=int, default=8,
                   help="silver-truth validation frames (default 8)")
    add_study_arguments(p, out="book/results/few_images.json")
    args = p.parse_args(argv)
    if any(k < 1 for k in args.frames):
        p.error(f"--frames must be >= 1, got {args.frames}")
    base = train_config(args.profile, "03_augmentation_ablation", check_data=True,
                        steps=args.steps, val_fraction=0.0, silver_val=args.silver_val,
                        out_dir=args.out_dir, progress=False, **dict(args.overrides))
    if base.dataset == "synthetic" and args.silver_val:
        print("error: the silver validation frames need a Cell Tracking Challenge data set "
              "(or --silver-val 0)", file=sys.stderr)
        return 2
    runs: dict[str, dict] = {}
    summaries: dict[str, dict] = {}
    with sigterm_as_interrupt():
        for frames in args.frames:
            for augmented, augment in ARMS:
                arm = arm_name(frames, augmented)
                arm_runs = {}
                for seed in args.seeds:
                    config = dataclasses.replace(base, n_train=frames, augment=augment,
                                                 seed=seed)
                    result = arm_runs[f"{arm}, seed {seed}"] = train(config)
                    seg = result["instances"]["watershed"]["metrics"]["seg"]
                    print(f"{arm}, seed {seed}: SEG (watershed) {seg:.3f}", flush=True)
                runs.update(arm_runs)
                summaries[arm] = seed_summary(arm_runs)
                record_experiment(args.out, "few_images", args.profile, runs,
                                  command=command_line(), summaries=summaries,
                                  frames=args.frames, seeds=args.seeds, steps=args.steps,
                                  silver_val=args.silver_val)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
