"""The learning-rate schedule of the quick profile: a constant rate (the paper says nothing of a
decay; the book's quick recipe) against nnU-Net's polynomial decay ``lr (1 - step/steps)^0.9``,
at the quick profile's budget, with every seed.

    python studies/schedule.py --seeds 0 1 2 --out-dir book/runs --out book/results/schedule.json

Why: every seed of the book's quick run kept its last checkpoint (step 700, validation loss
still falling) and its neighbouring checkpoints swing (book/results/budget_curve.json), so at a
fixed budget a rate that decays to zero by the last step may be worth what more steps would be.
Arms (the options in which each differs from the training chapter's configuration, whose runs
are the first arm and are reused from ``--out-dir``): the poly decay from the same initial rate
2e-3, and from twice it (a decaying rate tolerates a larger start).

The rule, fixed before any arm was trained: an arm replaces the quick profile's schedule only if
its mean **validation** SEG (of the instance method the headline reports, the distance-transform
watershed, chosen on the validation frames as always) beats the book's by at least 0.01 over the
same seeds; the test frames' SEG is reported, never used to choose.
"""

from __future__ import annotations

import sys

from unetlib.book import run_arm_study

BOOK = "constant rate (the book)"

ARMS: dict[str, dict] = {
    BOOK: {},
    "poly decay": {"lr_schedule": "poly"},
    "poly decay from 4e-3": {"lr_schedule": "poly", "lr": 4e-3},
}

QUESTIONS: dict[str, tuple[str, ...]] = {"schedule": tuple(ARMS)}


def main(argv: list[str] | None = None) -> int:
    return run_arm_study(__doc__.split("\n\n")[0], "schedule", ARMS, QUESTIONS,
                         "book/results/schedule.json", argv, page="02_train")


if __name__ == "__main__":
    sys.exit(main())
