"""Do the cells' outlines belong further out? The beyond-the-paper instance method's cells of a
training page's runs (the distance-transform watershed as each run chose it on validation),
grown into the pixels above a lower probability level (``instances.grow_cells``), the level
chosen on the validation frames; the test frames are scored at every level.

    python studies/outline_growth.py --seeds 0 1 2 --out-dir book/runs \
        --out book/results/outline_growth.json

The SEG breakdowns (``studies/seg_breakdown.py``) found cells matched one to one losing a tenth
of their area at the outline on the test sequence, pixels of the reference left out. Growing the
outlines would be adopted only if the level chosen on validation raised the mean validation SEG
over the seeds by at least ``ADOPT_GAIN`` (the studies' rule, fixed before any test score was
seen). The test scores at every level are recorded to say where the test sequence's outlines lie,
not to choose by: the best of them is a look-up on the test frames, labelled as such.

Nothing is retrained: each run of ``--page`` (default ``02_train``) under ``--profile`` is reused
from ``--out-dir`` (trained first where it is missing).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from unetlib.book import add_rescoring_arguments, kept_models
from unetlib.evaluate import predict_frames
from unetlib.instances import BEYOND_PAPER, InstanceParams, grow_cells, pooled_seg
from unetlib.interrupt import sigterm_as_interrupt
from unetlib.provenance import command_line, hardware, write_json_atomic
from unetlib.report import ADOPT_GAIN
from unetlib.train import load_splits

# the probability levels the outlines may grow to; "none" keeps the method's own outlines
LEVELS: tuple[float, ...] = (0.5, 0.4, 0.3, 0.2, 0.1)


def seg_by_level(params: InstanceParams, probs: list[np.ndarray],
                 labels: list[np.ndarray]) -> dict[str, float]:
    """Pooled SEG of the method's cells as they are (``"none"``) and grown to each level (a
    level at or above the method's threshold grows nothing)."""
    cells = [params(p) for p in probs]
    out = {"none": pooled_seg(cells, labels)}
    for level in LEVELS:
        out[str(level)] = pooled_seg([grow_cells(c, p, level) for c, p in
                                      zip(cells, probs, strict=True)], labels)
    return out


def choose_level(val: dict[str, float]) -> str:
    """The level with the best validation SEG; ties keep the outlines (``"none"``), then the
    higher level (the smaller change)."""
    order = ["none", *(str(level) for level in LEVELS)]
    return max(order, key=lambda k: (round(val[k], 12), -order.index(k)))


def score_run(model, config, params: InstanceParams) -> dict:
    """One run: validation and test SEG at every level, and the validation's choice."""
    _, val_s, test_s = load_splits(config)
    val = seg_by_level(params, predict_frames(model, [s.image for s in val_s], config),
                       [np.asarray(s.labels) for s in val_s])
    test = seg_by_level(params, predict_frames(model, [s.image for s in test_s], config),
                        [np.asarray(s.labels) for s in test_s])
    chosen = choose_level(val)
    return {"params": params.as_dict(), "val_seg": val, "test_seg": test, "chosen": chosen,
            "val_gain": val[chosen] - val["none"], "test_at_chosen": test[chosen]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_rescoring_arguments(p, out="book/results/outline_growth.json", page="02_train")
    args = p.parse_args(argv)
    start = time.perf_counter()
    runs: dict[str, dict] = {}
    with sigterm_as_interrupt():
        for config, result, model in kept_models(args):
            record = result["instances"][BEYOND_PAPER]
            params = InstanceParams(**record["params"])
            runs[f"seed {config.seed}"] = {"run": result["run"], **score_run(model, config,
                                                                             params)}
            r = runs[f"seed {config.seed}"]
            print(f"seed {config.seed}: validation chose {r['chosen']} "
                  f"({r['val_gain']:+.4f}); test SEG {r['test_seg']['none']:.3f} as they are, "
                  f"{r['test_at_chosen']:.3f} at the choice", flush=True)
    keys = ["none", *(str(level) for level in LEVELS)]
    mean_val = {k: float(np.mean([r["val_seg"][k] for r in runs.values()])) for k in keys}
    mean_test = {k: float(np.mean([r["test_seg"][k] for r in runs.values()])) for k in keys}
    gain = float(np.mean([r["val_gain"] for r in runs.values()]))
    look_up = max(keys, key=lambda k: mean_test[k])
    data = {
        "experiment": Path(args.out).stem, "dataset": config.dataset, "profile": args.profile,
        "page": args.page, "overrides": dict(args.overrides), "seeds": args.seeds,
        "method": BEYOND_PAPER, "levels": list(LEVELS), "runs": runs,
        "mean_val_seg": mean_val, "mean_test_seg": mean_test, "val_gain": gain,
        "adopt_gain": ADOPT_GAIN, "adopted": bool(gain >= ADOPT_GAIN),
        "test_at_chosen": {"values": [r["test_at_chosen"] for r in runs.values()],
                           "mean": float(np.mean([r["test_at_chosen"] for r in runs.values()]))},
        # not a result: the level the test frames would pick, to say where their outlines lie
        "test_look_up": {"level": look_up, "mean_test_seg": mean_test[look_up],
                         "mean_val_seg": mean_val[look_up]},
        "hardware": hardware(), "wall_seconds": round(time.perf_counter() - start, 1),
        "command": command_line(),
    }
    write_json_atomic(args.out, data)
    verdict = "adopt" if data["adopted"] else "keep the outlines"
    print(f"mean validation SEG gain of the chosen level {gain:+.4f}: {verdict} (rule: a gain "
          f"of at least {ADOPT_GAIN}); the test frames alone would pick {look_up} "
          f"({mean_test[look_up]:.3f} against {mean_test['none']:.3f}), not a result")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
