"""The fast training step (channels-last memory and bf16 autocast on the CPU) against the step
as it was (fp32, contiguous memory), each trained with every seed on the same split and budget.

    python studies/fast_step.py --seeds 0 1 2 --out-dir book/runs --out book/results/fast_step.json

The question: does the faster step (``benchmarks/bench_train_step.py`` measures its steps/s)
leave the results unchanged? Both arms are the training chapter's quick configuration with the
same crops, draws, initial weights, validation frames and scoring; only the arithmetic of the
training step differs (validation and test predictions are fp32 in both). An effect within the
seeds' spread is no change.
"""

from __future__ import annotations

import sys

from unetlib.book import run_arm_study

BEFORE = "fp32, contiguous memory"
AFTER = "bf16 autocast, channels-last memory"

ARMS: dict[str, dict] = {
    BEFORE: {"channels_last": False, "amp_cpu": False},
    AFTER: {"channels_last": True, "amp_cpu": True},
}

QUESTIONS: dict[str, tuple[str, ...]] = {"fast_step": (BEFORE, AFTER)}


def main(argv: list[str] | None = None) -> int:
    return run_arm_study(__doc__.split("\n\n")[0], "fast_step", ARMS, QUESTIONS,
                         "book/results/fast_step.json", argv, page="02_train")


if __name__ == "__main__":
    sys.exit(main())
