"""The paper's depth on the quick profile: five resolution levels (four poolings, the paper's
Fig. 1) against four, on the gold truth at 1,000 steps (the profile's budget when it ran).

    python studies/depth.py --seeds 0 1 2 -p steps=1000 --out-dir runs --out book/results/depth.json

Why: the quick profile took four levels to be fast, and nothing chose them. This study chose:
five passed the rule below, and the profile has had them since (both arms name their depth, so
the study reruns the same whatever the profile's depth; ``-p steps=1000`` gives the steps it ran
with, before the five-level network's own budget curve chose 800). On the silver truth
(``studies/silver_truth.py --experiment silver_truth_deep``) the fifth level raised test SEG by
every instance method at 5,000 steps, while the two gold validation frames of that protocol
could not see it. The gold profile validates on 2 gold and 8 silver frames
(``silver_val=8``), ten frames, so here validation can decide. With same-padded double 3 x 3
convolutions the fifth level doubles the network's field of view
(``unetlib.model.receptive_field``: 92-100 to 188-204 pixels), more than a HeLa cell's width,
for about a tenth more time a step (1.94 M parameters against 0.48 M, most of them in the
16 x 16 bottom level).

The rule, fixed before the runs: the paper's depth is worth naming a gain only if its mean
**validation** SEG (distance-transform watershed, the book's headline method, parameters chosen
on validation as always) beats the four levels' by at least 0.01 over the same seeds; the test
frames' SEG is reported, never used to choose.
"""

from __future__ import annotations

import sys

from unetlib.book import run_arm_study

ARMS: dict[str, dict] = {
    "four levels": {"depth": 4},
    "five levels (the paper's)": {"depth": 5},
}

QUESTIONS: dict[str, tuple[str, ...]] = {"depth": tuple(ARMS)}


def main(argv: list[str] | None = None) -> int:
    return run_arm_study(__doc__.split("\n\n")[0], "depth", ARMS, QUESTIONS,
                         "book/results/depth.json", argv, page="02_train")


if __name__ == "__main__":
    sys.exit(main())
