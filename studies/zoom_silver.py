"""Zoom augmentation (beyond the paper) on the silver truth: does a random zoom teach the network
the faint cell margins of sequence 02 that the silver-truth runs leave out?

    python studies/zoom_silver.py --seeds 0 1 2 -p steps=5000 --out-dir runs \
        --out book/results/zoom_silver.json

Why: of what the silver-truth runs miss of SEG on sequence 02 (``studies/seg_breakdown.py``),
most is the outline of cells found whole and alone, and most of that is pixels of the cell left
out; on the validation frames of sequence 01 the same outlines are balanced, so no parameter
chosen there can widen them. Neither post-processing, a matched contrast nor a wider network
did it. The paper augments shift, rotation, elastic deformation and gray values but names no
scaling; nnU-Net draws a zoom in 0.7 to 1.4 by default. Cells of another sequence may lie
flatter or larger than those of the one trained on, and a zoom shows the network cells of
other sizes. The range (``max_scale = 0.4``: log-uniform in 1/1.4 to 1.4) is nnU-Net's, fixed
before any run, not tuned.

Both arms are the training chapter's quick configuration trained on the silver truth of
sequence 01 (``truth="silver"``, validated on its held-out gold frames, ``silver_val=0``, as
``studies/silver_truth.py``), trained here on one machine, so that they compare like with like;
``-p steps=N`` sets the budget of both. The rule, fixed before the runs: the zoom is worth
naming a gain only if its mean **validation** SEG (distance-transform watershed, the silver
runs' best method, parameters chosen on validation as always) beats the arm without it by at
least 0.01 over the same seeds; the test frames' SEG and its breakdown are reported, never used
to choose.
"""

from __future__ import annotations

import sys

from unetlib.book import run_arm_study

SILVER = {"truth": "silver", "silver_val": 0}

ARMS: dict[str, dict] = {
    "silver truth, the paper's augmentation": dict(SILVER),
    "silver truth, + zoom 0.71-1.4 (beyond the paper)": {**SILVER, "max_scale": 0.4},
}

QUESTIONS: dict[str, tuple[str, ...]] = {"zoom_silver": tuple(ARMS)}


def main(argv: list[str] | None = None) -> int:
    return run_arm_study(__doc__.split("\n\n")[0], "zoom_silver", ARMS, QUESTIONS,
                         "book/results/zoom_silver.json", argv, page="02_train")


if __name__ == "__main__":
    sys.exit(main())
