"""Is the instance grid wide enough? The training chapter's runs, their distance-transform
watershed chosen on the validation frames over today's grid (``instances.GRIDS["distance"]``) and
over a wider one (seed heights ``h`` up to 16 px instead of 4: the method's errors on DIC-HeLa are
mostly cells cut in two, which a higher ``h`` merges back), then the test frames scored with each
choice.

    python studies/instance_grid.py --seeds 0 1 2 --out-dir book/runs \
        --out book/results/instance_grid.json

Nothing is retrained: each run of ``--page`` (default ``02_train``) under ``--profile`` is reused
from ``--out-dir`` (trained first where it is missing). The wider grid would replace today's only
if it raised the mean validation SEG over the seeds by at least ``ADOPT_GAIN`` (a rule fixed
before any of its test scores was seen); the test scores are recorded for the record, not for the
choice.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from unetlib.book import add_rescoring_arguments, kept_models
from unetlib.evaluate import predict_frames, score_split
from unetlib.instances import GRIDS, choose_instances
from unetlib.interrupt import sigterm_as_interrupt
from unetlib.provenance import command_line, hardware, write_json_atomic
from unetlib.report import ADOPT_GAIN
from unetlib.train import load_splits

WIDER: dict[str, tuple] = {**GRIDS["distance"], "h": (1.0, 2.0, 4.0, 8.0, 16.0)}
ARMS: dict[str, dict[str, tuple]] = {"today's grid": GRIDS["distance"], "wider grid": WIDER}


def score_run(model, config, arms: dict[str, dict[str, tuple]]) -> dict[str, dict]:
    """Each arm's validation choice of the distance watershed for one trained model, and the
    test scores of that choice."""
    _, val_s, test_s = load_splits(config)
    val_probs = predict_frames(model, [s.image for s in val_s], config)
    test_probs = predict_frames(model, [s.image for s in test_s], config)
    val_labels = [np.asarray(s.labels) for s in val_s]
    test_labels = [np.asarray(s.labels) for s in test_s]
    out = {}
    for arm, grid in arms.items():
        params, scan = choose_instances(val_probs, val_labels, "distance", grid)
        test = score_split(test_probs, test_labels, params)["mean"]
        out[arm] = {"params": params.as_dict(), "val_seg": max(r["seg"] for r in scan),
                    "settings": len(scan), "test": test}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_rescoring_arguments(p, out="book/results/instance_grid.json", page="02_train")
    args = p.parse_args(argv)
    start = time.perf_counter()
    runs: dict[str, dict] = {}
    with sigterm_as_interrupt():
        for config, result, model in kept_models(args):
            seed = config.seed
            runs[f"seed {seed}"] = {"run": result["run"], **score_run(model, config, ARMS)}
            print(f"seed {seed}: " + "; ".join(
                f"{arm} validation SEG {r['val_seg']:.3f}, test SEG {r['test']['seg']:.3f}"
                for arm, r in runs[f"seed {seed}"].items() if arm in ARMS), flush=True)
    mean_val = {arm: float(np.mean([r[arm]["val_seg"] for r in runs.values()])) for arm in ARMS}
    gain = mean_val["wider grid"] - mean_val["today's grid"]
    data = {
        "experiment": Path(args.out).stem, "dataset": config.dataset, "profile": args.profile,
        "page": args.page, "seeds": args.seeds, "grids": ARMS, "runs": runs,
        "mean_val_seg": mean_val, "val_gain": gain, "adopt_gain": ADOPT_GAIN,
        "adopted": bool(gain >= ADOPT_GAIN),
        "mean_test_seg": {arm: float(np.mean([r[arm]["test"]["seg"] for r in runs.values()]))
                          for arm in ARMS},
        "hardware": hardware(), "wall_seconds": round(time.perf_counter() - start, 1),
        "command": command_line(),
    }
    write_json_atomic(args.out, data)
    verdict = "adopt the wider grid" if data["adopted"] else "keep today's grid"
    print(f"mean validation SEG gain of the wider grid {gain:+.4f}: {verdict} (rule: a gain of "
          f"at least {ADOPT_GAIN})")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
