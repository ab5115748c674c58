"""The seeds' training recipes as rows of one table, and the paper's elastic field against a
Simard-style one and against none, each trained with every seed on the same split and budget.

    python studies/recipes.py --seeds 0 1 2 --out-dir book/runs --out book/results/recipes.json

Rows (the options in which each differs from the book's quick configuration, the training
chapter's, which is the first row and is reused from ``--out-dir``):

- the paper's recipe: the valid (unpadded) network without BatchNorm, weighted cross-entropy with
  the weight map (w0 = 10), SGD with momentum 0.99, no weight averaging; 252-pixel crops (the
  valid size nearest 256) and a 604-pixel prediction tile;
- the Keras reproduction's: Nesterov SGD 0.99, early stopping after 5 evaluations without a
  lower validation loss with the best weights kept, dropout, plain (unweighted) cross-entropy,
  no BatchNorm, no weight averaging;
- the PyTorch (LIVECell) reproduction's: BatchNorm double convolutions, BCE + Dice, Adam with
  AMSGrad, a Simard-style elastic field plus rotation only, no weight averaging.

The elastic question keeps everything else of the quick configuration and changes the field:
the paper's 3 x 3 B-spline grid (sigma 10 px), a Simard-style Gaussian-smoothed per-pixel field
of the same root-mean-square displacement (``elastic_alpha=1000``, ``elastic_smooth=20``; the
PyTorch reproduction does not report its alpha and sigma), or no elastic deformation.

Every run has the same crops per step, steps, validation frames and scoring (checkpoint by
validation loss, every instance method's parameters by validation SEG, the test frames of
sequence 02 scored once). Learning rates are the configuration's unless a row says otherwise:
the papers give none (SGD rows: 0.01, the default).
"""

from __future__ import annotations

import sys

from unetlib.book import run_arm_study

QUICK = "the book's quick recipe"
SIMARD = {"elastic_field": "gaussian", "elastic_alpha": 1000.0, "elastic_smooth": 20.0}

ARMS: dict[str, dict] = {
    QUICK: {},
    "the paper's recipe": {"padding": "valid", "batch_norm": False, "optimizer": "sgd",
                           "momentum": 0.99, "lr": 0.01, "ema": 0.0, "image_size": 252,
                           "input_tile": 604},
    "the Keras reproduction's recipe": {"batch_norm": False, "optimizer": "nesterov",
                                        "momentum": 0.99, "lr": 0.01, "patience": 5, "w0": 0.0,
                                        "class_weights": None, "ema": 0.0},
    "the PyTorch reproduction's recipe": {"loss": "bce_dice", "optimizer": "adam", "ema": 0.0,
                                          "augment": "rotation,elastic", **SIMARD},
    "Simard-style elastic field": dict(SIMARD),
    "no elastic deformation": {"augment": "shift,rotation,gray,flip"},
}

QUESTIONS: dict[str, tuple[str, ...]] = {
    "recipes": (QUICK, "the paper's recipe", "the Keras reproduction's recipe",
                "the PyTorch reproduction's recipe"),
    "elastic": (QUICK, "Simard-style elastic field", "no elastic deformation"),
}


def main(argv: list[str] | None = None) -> int:
    return run_arm_study(__doc__.split("\n\n")[0], "recipes", ARMS, QUESTIONS,
                         "book/results/recipes.json", argv, page="02_train")


if __name__ == "__main__":
    sys.exit(main())
