"""Where SEG's shortfall comes from: the kept runs of a training page scored again, and
``1 - SEG`` split over the reference cells (:func:`unetlib.metrics.seg_breakdown`): cells
merged with a neighbour, split, missed, or found whole and alone but with outlines that leave
out part of the cell or add to it.

    python studies/seg_breakdown.py --page 02_train --seeds 0 1 2 --out-dir book/runs \\
        --out book/results/seg_breakdown_quick.json
    python studies/seg_breakdown.py --page 02_train --seeds 0 1 2 -p truth=silver \\
        -p silver_val=0 -p steps=10000 --out-dir runs \\
        --out book/results/seg_breakdown_silver_10k.json

Nothing is trained: a run missing from ``--out-dir`` is an error naming its folder. Each run
(and, for several seeds, their averaged probabilities: ``studies/ensemble.py``) chooses every
instance method's parameters on the validation frames as its own evaluation did; the breakdown
is then taken on the test frames and, for comparison, on the validation frames themselves.

A probe of the test sequence's other contrast (``contrast_matched``): each run again with every
frame, validation and test, brought to the training frames' mean gray value and standard
deviation before prediction (:func:`unetlib.evaluate.at_training_contrast`), its parameters
again chosen on the validation frames. It is not part of any run's method.

With ``--figure PATH`` (a PNG) the first test frame is drawn for the first seed: the reference
outlines and the cells found the paper's way and beyond it (:func:`unetlib.plots.plot_outlines`).

One figure is *not* a result, and the file says so: ``test_lookup``, the best SEG any parameters
of the method beyond the paper reach on the test frames (its validation grid scanned on them).
It bounds what a better choice of parameters could give these probabilities, so it tells the
instance method's share of the shortfall from the network's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from unetlib.book import add_rescoring_arguments, kept_models, study_splits
from unetlib.evaluate import (
    at_training_contrast,
    ensemble_probabilities,
    evaluate_probabilities,
    predict_frames,
)
from unetlib.instances import InstanceParams, beyond_method, choose_instances
from unetlib.interrupt import sigterm_as_interrupt
from unetlib.metrics import seg_breakdown
from unetlib.provenance import command_line, hardware, write_atomic, write_json_atomic

TEST_LOOKUP_NOTE = ("looked up on the test frames: a bound on what the method's parameters "
                    "could give these probabilities, not a result")


def breakdowns(probs: list[np.ndarray], labels: list[np.ndarray],
               params: dict[str, dict]) -> dict[str, dict]:
    """The breakdown of each method's instances (``params``: method -> its parameters)."""
    return {m: seg_breakdown([InstanceParams(**p)(q) for q in probs], labels)
            for m, p in params.items()}


def score_arm(val_p: list[np.ndarray], val_labels: list[np.ndarray], test_p: list[np.ndarray],
              test_labels: list[np.ndarray], config, run: str) -> dict:
    """One run's (or ensemble's) parameters chosen on validation, its breakdowns and the
    test look-up of the method beyond the paper."""
    instances = evaluate_probabilities(val_p, val_labels, test_p, test_labels, config)
    beyond = beyond_method(instances)
    params = {m: instances[m]["params"] for m in ("components", beyond)}
    best, scan = choose_instances(test_p, test_labels, beyond)
    return {
        "run": run,
        "params": params,
        "val_seg": {m: instances[m].get("val_seg") for m in params},
        "test": breakdowns(test_p, test_labels, params),
        "validation": breakdowns(val_p, val_labels, params),
        "test_lookup": {"method": beyond, "params": best.as_dict(),
                        "seg": max(row["seg"] for row in scan), "note": TEST_LOOKUP_NOTE},
    }


def outline_figure(sample, prob: np.ndarray, arm: dict):
    """The test frame ``sample`` with its reference outlines and the cells found from ``prob``
    by the paper's way and by the method beyond it, with the parameters ``arm`` chose."""
    from unetlib.instances import METHOD_NAMES
    from unetlib.plots import plot_outlines

    found = {("the paper's way" if m == "components" else METHOD_NAMES[m])
             + f"\n(SEG {arm['test'][m]['seg']:.3f} on all test frames)":
             InstanceParams(**params)(prob) for m, params in arm["params"].items()}
    return plot_outlines(np.asarray(sample.image), np.asarray(sample.labels), found,
                         title=f"{sample.name}: reference outlines yellow, cells found red, "
                               "each reference cell's Jaccard index")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_rescoring_arguments(p, out="book/results/seg_breakdown.json", page="02_train")
    p.add_argument("--figure", default=None,
                   help="also draw the first test frame of the first seed into this PNG file")
    args = p.parse_args(argv)
    if args.figure is not None and Path(args.figure).suffix.lower() != ".png":
        p.error(f"--figure {args.figure}: the figure is a .png file")
    if args.figure is not None and (Path(args.figure).resolve().parent
                                    != Path(args.out).resolve().parent):
        p.error(f"--figure {args.figure}: the figure goes beside --out {args.out} (the result "
                "names it by its file name)")
    start = time.perf_counter()
    figure = None
    probs: dict[int, tuple[list, list]] = {}
    arms: dict[str, dict] = {}
    contrast_matched: dict[str, dict] = {}
    names: dict[int, str] = {}  # each seed's run folder, for the averaged arm's name
    _, val_s, test_s = study_splits(args)
    with sigterm_as_interrupt():
        for config, result, model in kept_models(args, train_missing=False):
            if not val_s:
                raise ValueError(f"{result['run']}: no validation frames to choose parameters on")
            val_labels = [np.asarray(s.labels) for s in val_s]
            test_labels = [np.asarray(s.labels) for s in test_s]
            probs[config.seed] = (predict_frames(model, [s.image for s in val_s], config),
                                  predict_frames(model, [s.image for s in test_s], config))
            names[config.seed] = result["run"]
            val_p, test_p = probs[config.seed]
            arms[f"seed {config.seed}"] = score_arm(val_p, val_labels, test_p, test_labels,
                                                    config, result["run"])
            if args.figure is not None and figure is None:
                figure = outline_figure(test_s[0], test_p[0], arms[f"seed {config.seed}"])
            matched = [[at_training_contrast(s.image, model) for s in split]
                       for split in (val_s, test_s)]
            contrast_matched[f"seed {config.seed}"] = score_arm(
                predict_frames(model, matched[0], config), val_labels,
                predict_frames(model, matched[1], config), test_labels, config, result["run"])
        seeds = sorted(probs)
        if len(seeds) > 1:
            arms["all runs averaged"] = score_arm(
                ensemble_probabilities([probs[s][0] for s in seeds]), val_labels,
                ensemble_probabilities([probs[s][1] for s in seeds]), test_labels, config,
                "+".join(names[s] for s in seeds))
    for name, arm in arms.items():
        for m, b in arm["test"].items():
            c, o = b["categories"], b["one_to_one_loss"]
            losses = " - ".join(f"{k} {c[k]['loss']:.3f}" for k in c)
            print(f"{name}, {m}: test SEG {b['seg']:.3f} = 1 - {losses} (one-to-one: left out "
                  f"{o['left_out']:.3f}, added {o['added']:.3f})", flush=True)
        print(f"{name}: best {arm['test_lookup']['method']} SEG on the test frames "
              f"{arm['test_lookup']['seg']:.3f} (looked up there, not a result)")
    for name, arm in contrast_matched.items():
        print(f"{name}, every frame at the training frames' contrast: test SEG " + ", ".join(
            f"{m} {b['seg']:.3f}" for m, b in arm["test"].items()), flush=True)
    record = {
        "experiment": Path(args.out).stem,
        "dataset": config.dataset,
        "profile": args.profile,
        "page": args.page,
        "overrides": dict(args.overrides),
        "seeds": seeds,
        "arms": arms,
        "contrast_matched": contrast_matched,
        # each frame's gray-value spread: how the test sequence's contrast compares
        "image_std": {"validation": [float(np.std(np.asarray(s.image))) for s in val_s],
                      "test": [float(np.std(np.asarray(s.image))) for s in test_s]},
        "hardware": hardware(),
        "command": command_line(),
        "wall_seconds": round(time.perf_counter() - start, 1),
    }
    if figure is not None:
        record["figure"] = {"path": Path(args.figure).name, "frame": test_s[0].name,
                            "seed": seeds[0]}
        write_atomic(args.figure, lambda f: figure.savefig(f, format="png"))
    write_json_atomic(args.out, record)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
