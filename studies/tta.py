"""Test-time augmentation, as the paper scored the ISBI 2012 EM challenge ("averaging over 7
rotated versions of the input data"): the trained runs of a training page scored again from their
kept weights, once from the image alone and once averaging the cell probability over its 8 flips
and rotations (the dihedral group of the square: the identity and 7 transformed versions).

    python studies/tta.py --out-dir book/runs --out book/results/tta_em.json

Nothing is retrained: each run of ``--page`` (default the EM chapter, ``02_train_em``) under
``--profile`` with ``--seeds`` is reused from ``--out-dir`` (trained first where it is missing),
and both arms choose their instance parameters on the validation frames with their own
probabilities, as training does, before the held-out frames are scored: the challenge's Rand,
information, warping and pixel errors on the EM stack, SEG and pixel scores everywhere. The
seconds each evaluation took are kept (``eval_seconds``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from unetlib.book import add_rescoring_arguments, kept_models, study_splits
from unetlib.evaluate import evaluate_model, paper_way_fields
from unetlib.interrupt import sigterm_as_interrupt
from unetlib.provenance import command_line
from unetlib.report import record_experiment, seed_summary

ARMS = {False: "no TTA", True: "8-fold TTA"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_rescoring_arguments(p, out="book/results/tta_em.json", page="02_train_em")
    args = p.parse_args(argv)
    experiment = Path(args.out).stem
    runs: dict[str, dict] = {}
    _, val_s, test_s = study_splits(args)
    with sigterm_as_interrupt():
        for config, result, model in kept_models(args, tta=False):
            seed = config.seed
            frames = ([s.image for s in val_s], [np.asarray(s.labels) for s in val_s],
                      [s.image for s in test_s], [np.asarray(s.labels) for s in test_s])
            for tta, arm in ARMS.items():
                start = time.perf_counter()
                instances = evaluate_model(model, dataclasses.replace(config, tta=tta), *frames)
                seconds = time.perf_counter() - start
                runs[f"{arm}, seed {seed}"] = {
                    **result, "config": {**result["config"], "tta": tta},
                    "instances": instances, **paper_way_fields(instances),
                    "wall_seconds": seconds}
                isbi = instances["components"]["metrics"].get("isbi_rand_error")
                print(f"seed {seed}, {arm}: SEG {instances['components']['metrics']['seg']:.3f}"
                      + (f", Rand error {isbi:.4f}" if isbi is not None else "")
                      + f" ({seconds:.0f} s)", flush=True)
    summaries = {arm: seed_summary({k: r for k, r in runs.items() if k.startswith(arm + ",")})
                 for arm in ARMS.values()}
    record_experiment(args.out, experiment, args.profile, runs, command=command_line(),
                      summaries=summaries, seeds=args.seeds, page=args.page,
                      questions={"tta": list(ARMS.values())},
                      eval_seconds={k: r["wall_seconds"] for k, r in runs.items()})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
