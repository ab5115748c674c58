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

import sys

from unetlib.book import run_arm_study

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
    return run_arm_study(__doc__.split("\n\n")[0], "ablations", ARMS, QUESTIONS,
                         "book/results/ablations.json", argv)


if __name__ == "__main__":
    sys.exit(main())
