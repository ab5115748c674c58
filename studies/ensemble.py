"""An ensemble of seeds (beyond the paper): the kept runs of a training page, each predicting the
validation and test frames alone, then the mean cell probability of every pair of them and of all
of them (:func:`unetlib.evaluate.ensemble_probabilities`), each scored as one run is: every
instance method's parameters chosen on the validation frames with the averaged probabilities,
then the test frames scored.

    python studies/ensemble.py --page 02_train --seeds 0 1 2 -p truth=silver -p silver_val=0 \\
        -p steps=10000 --out-dir runs --out book/results/ensemble_silver_10k.json

Nothing is trained: a run missing from ``--out-dir`` is an error naming its folder. The single
runs are scored again from their kept weights (the same numbers as their own evaluation), so
every arm's figures come from the same code. The seconds each run took to predict the frames
(``predict_seconds``) and each arm to choose and score (``wall_seconds``) are kept. Arms: one
run (one entry a seed), two runs averaged (every pair) and all runs averaged (one entry), each
with its test SEG and its validation SEG.
The studies' rule decides on validation frames alone whether the ensemble is worth its cost: its
validation SEG (the method beyond the paper) against the mean of its runs' alone, adopted at a
gain of ``ADOPT_GAIN`` (``val_gains``, ``adopted``).
An ensemble of k runs costs k trainings and k predictions a frame. With ``--tta`` every run
predicts with the 8-fold test-time augmentation (``studies/tta.py``) first, and the result says
so (``tta``).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import time
from pathlib import Path

import numpy as np

from unetlib.book import add_rescoring_arguments, kept_models, study_splits
from unetlib.evaluate import (
    ensemble_probabilities,
    evaluate_probabilities,
    paper_way_fields,
    predict_frames,
)
from unetlib.instances import beyond_method
from unetlib.interrupt import sigterm_as_interrupt
from unetlib.provenance import command_line
from unetlib.report import ADOPT_GAIN, ENSEMBLE_ARM, record_experiment, seed_summary

ARMS = ("one run", "two runs averaged", ENSEMBLE_ARM)


def arm_of(k: int, n: int) -> str:
    """The arm of an ensemble of ``k`` of the ``n`` runs."""
    return ARMS[0] if k == 1 else ARMS[2] if k == n else ARMS[1] if k == 2 else f"{k} runs averaged"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_rescoring_arguments(p, out="book/results/ensemble.json", page="02_train")
    p.add_argument("--tta", action="store_true",
                   help="each run predicts with the 8-fold test-time augmentation")
    args = p.parse_args(argv)
    if len(set(args.seeds)) < 2:
        p.error("--seeds: an ensemble needs at least two different seeds")
    experiment = Path(args.out).stem
    probs: dict[int, tuple[list, list]] = {}
    results: dict[int, dict] = {}
    runs: dict[str, dict] = {}
    members: dict[str, tuple[int, ...]] = {}
    predict_seconds: dict[int, float] = {}
    _, val_s, test_s = study_splits(args)
    with sigterm_as_interrupt():
        for config, result, model in kept_models(args, train_missing=False):
            config = dataclasses.replace(config, tta=args.tta)
            val_labels = [np.asarray(s.labels) for s in val_s]
            test_labels = [np.asarray(s.labels) for s in test_s]
            start = time.perf_counter()
            probs[config.seed] = (predict_frames(model, [s.image for s in val_s], config),
                                  predict_frames(model, [s.image for s in test_s], config))
            predict_seconds[config.seed] = round(time.perf_counter() - start, 1)
            results[config.seed] = result
        seeds = sorted(probs)
        for k in range(1, len(seeds) + 1):
            for group in itertools.combinations(seeds, k):
                start = time.perf_counter()
                val_p = ensemble_probabilities([probs[s][0] for s in group])
                test_p = ensemble_probabilities([probs[s][1] for s in group])
                instances = evaluate_probabilities(val_p, val_labels, test_p, test_labels, config)
                seconds = time.perf_counter() - start
                first = results[group[0]]
                name = (f"{arm_of(k, len(seeds))}, seed{'s' if k > 1 else ''} "
                        + "+".join(map(str, group)))
                members[name] = group
                runs[name] = {**first, "config": {**first["config"], "tta": args.tta},
                              "run": "+".join(results[s]["run"] for s in group),
                              "members": [results[s]["run"] for s in group],
                              # what the ensemble cost: every member's training
                              "train_seconds": sum(results[s]["train_seconds"] for s in group),
                              "instances": instances, **paper_way_fields(instances),
                              "wall_seconds": seconds}
                print(f"{name}: test SEG " + ", ".join(
                    f"{m} {instances[m]['metrics']['seg']:.3f}"
                    + (f" (val {instances[m]['val_seg']:.3f})" if "val_seg" in instances[m] else "")
                    for m in ("components", "watershed", "distance")) + f" ({seconds:.0f} s)",
                    flush=True)
    # the studies' rule, on validation frames only: an ensemble is adopted where its validation
    # SEG (the method beyond the paper) beats the mean of its members' alone by ADOPT_GAIN
    method = beyond_method(runs[f"{ARMS[0]}, seed {seeds[0]}"]["instances"])
    alone = {s: runs[f"{ARMS[0]}, seed {s}"]["instances"][method].get("val_seg") for s in seeds}
    val_gains = {name: r["instances"][method]["val_seg"]
                 - float(np.mean([alone[s] for s in members[name]]))
                 for name, r in runs.items() if len(members[name]) > 1
                 and r["instances"][method].get("val_seg") is not None
                 and None not in alone.values()}
    everything = f"{ENSEMBLE_ARM}, seeds " + "+".join(map(str, seeds))
    adopted = val_gains.get(everything, -1.0) >= ADOPT_GAIN
    for name, gain in val_gains.items():
        print(f"{name}: validation SEG ({method}) {gain:+.3f} against its runs alone")
    print(f"all runs averaged: {'passes' if adopted else 'does not pass'} the rule "
          f"(a gain of at least {ADOPT_GAIN})")
    arms = list(dict.fromkeys(name.rsplit(", seed", 1)[0] for name in runs))
    summaries = {arm: seed_summary({n: r for n, r in runs.items() if n.startswith(arm + ",")})
                 for arm in arms}
    record_experiment(args.out, experiment, args.profile, runs, command=command_line(),
                      summaries=summaries, seeds=seeds, page=args.page,
                      questions={"ensemble": arms}, tta=args.tta,
                      members={n: r["members"] for n, r in runs.items()},
                      method=method, val_gains=val_gains, adopted=adopted,
                      predict_seconds=predict_seconds)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
