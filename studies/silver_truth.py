"""Beyond the gold frames (beyond the paper): the training chapter's configuration trained on
the Cell Tracking Challenge's silver-truth masks of every frame of sequence 01 instead of its 8
gold frames, validated on the same held-out gold frames and tested on sequence 02's gold frames.

    python studies/silver_truth.py --profile quick --seeds 0 1 --steps 2500 -p depth=4 \
        --out book/results/silver_truth.json
    python studies/silver_truth.py --profile quick --seeds 0 1 2 --steps 5000 -p depth=4 \
        --experiment silver_truth_long --out book/results/silver_truth_long.json
    python studies/silver_truth.py --profile quick --seeds 0 1 2 --steps 10000 -p depth=4 \
        --experiment silver_truth_10k --out book/results/silver_truth_10k.json
    python studies/silver_truth.py --profile quick --seeds 0 1 2 --steps 20000 -p depth=4 \
        --experiment silver_truth_20k --out book/results/silver_truth_20k.json
    python studies/silver_truth.py --profile quick --seeds 0 1 2 --steps 5000 -p silver_gap=5 \
        -p depth=4 --experiment silver_truth_gap --out book/results/silver_truth_gap.json
    python studies/silver_truth.py --profile quick --seeds 0 1 --steps 2500 -p base_channels=24 \
        -p depth=4 --experiment silver_truth_wide --out book/results/silver_truth_wide.json
    python studies/silver_truth.py --profile quick --seeds 0 1 2 --steps 5000 -p depth=5 \
        --experiment silver_truth_deep --out book/results/silver_truth_deep.json
    python studies/silver_truth.py --profile quick --seeds 0 1 2 --steps 10000 -p depth=5 \
        --experiment silver_truth_deep_10k --out book/results/silver_truth_deep_10k.json

A longer run continues the shorter one of the same seed where ``runs/`` holds it
(:func:`unetlib.train.extendable_run`: the same weights as training straight through).

With ``-p silver_gap=N`` no time point within N frames of a validation frame is trained on
either, and the result records ``neighbour_seg``: how much a silver mask d frames away already
gives of a validation frame's gold mask. With ``-p base_channels=N`` (``silver_truth_wide``)
the network is wider than the four-level profile's (24 channels: 1.08 M parameters against
0.48 M, about twice the time a step): does capacity buy the faint cell margins of sequence 02
that the 0.48 M network leaves out (``studies/seg_breakdown.py``)? With ``-p depth=5``
(``silver_truth_deep``) the network has the paper's five levels instead of four (the quick
profile had four when the other experiments ran, and has had five since; ``-p depth=4`` reruns
those):
a fourth pooling doubles the field of view (``unetlib.model.receptive_field``: 92-100 to 188-204
pixels), more than a HeLa cell's width; does context draw the faint margins?

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


def neighbour_seg(config) -> dict[str, float]:
    """How much the silver mask of a time point near a validation frame already gives of that
    frame's gold mask: SEG of the silver masks ``d`` time points away (``d`` from
    ``-(silver_gap + 1)`` to ``silver_gap + 1``, 0 the frame's own silver mask) against the
    gold validation frames, pooled over them. ``silver_gap + 1`` is the nearest frame trained on
    with the gap, 1 the nearest without it."""
    from unetlib.data import load_dataset
    from unetlib.data.stats import truth_agreement
    from unetlib.train import load_splits

    val = load_splits(config)[1]
    silver = list(load_dataset(config.dataset, "train", config.data_root, truth="silver",
                               frames_without_mask="skip"))
    reach = config.silver_gap + 1
    return {f"{d:+d}": round(truth_agreement(val, silver, offset=d)["seg"], 4)
            for d in range(-reach, reach + 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (default 0)")
    p.add_argument("--steps", type=int, default=None,
                   help="training steps (default: the profile's)")
    p.add_argument("--experiment", default="silver_truth",
                   choices=("silver_truth", "silver_truth_long", "silver_truth_10k",
                            "silver_truth_20k",
                            "silver_truth_gap", "silver_truth_wide", "silver_truth_deep",
                            "silver_truth_deep_10k", "silver_truth_deep_20k"),
                   help="the name the results table shows (silver_truth_long for the 5,000-step "
                        "runs, silver_truth_10k and silver_truth_20k for the 10,000- and "
                        "20,000-step ones, silver_truth_gap for "
                        "5,000-step runs with -p silver_gap=N, silver_truth_wide for runs "
                        "with a wider network, -p base_channels=N, silver_truth_deep for "
                        "runs with a deeper one, -p depth=N, and silver_truth_deep_10k and "
                        "silver_truth_deep_20k for those at 10,000 and 20,000 steps)")
    add_study_arguments(p, out="book/results/silver_truth.json")
    args = p.parse_args(argv)
    fields = dict(args.overrides)
    if fields.get("truth", "silver") != "silver":
        p.error(f"-p truth={fields['truth']}: this study trains on the silver truth")
    if (args.experiment == "silver_truth_gap") != bool(fields.get("silver_gap")):
        p.error("--experiment silver_truth_gap goes with -p silver_gap=N (N > 0), and only it")
    page = train_config(args.profile, "02_train")
    profile_width = page.base_channels
    wider = int(fields.get("base_channels", profile_width)) > profile_width
    if (args.experiment == "silver_truth_wide") != wider:
        p.error(f"--experiment silver_truth_wide goes with -p base_channels=N above the "
                f"profile's {profile_width}, and only it")
    # the names record the depth: silver_truth_deep* the paper's five levels, the others the
    # four the quick profile had when they were made (it has had five since)
    depth, paper_depth = int(fields.get("depth", page.depth)), train_config("paper").depth
    deep = args.experiment.startswith("silver_truth_deep")
    if deep != (depth >= paper_depth):
        need = (f"the paper's {paper_depth} levels" if deep else
                "fewer levels than the paper's (-p depth=4: the quick profile's when it ran)")
        p.error(f"--experiment {args.experiment} names runs with {need}; these would have "
                f"{depth} levels (the profile's: {page.depth})")
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

    extra = {"neighbour_seg": neighbour_seg(config)} if config.silver_gap else {}
    record_experiment(args.out, args.experiment, args.profile, runs, command=command_line(),
                      summary=summary, **extra)
    for method, s in summary.items():
        print(f"{method}: SEG {s['seg']['mean']:.3f} ± {s['seg']['sd']:.3f} over "
              f"{s['seeds']} seed(s)")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
