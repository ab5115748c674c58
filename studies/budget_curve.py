"""The training budget made visible: test SEG (the paper's way and the seeded watershed) and
pixel IoU against training steps, from one run's kept checkpoints.

    python studies/budget_curve.py --profile quick --steps 3000 --eval-every 200 \
        --out book/results/budget_curve.json

Trains the profile's ``02_train`` configuration (reused when already trained) with
``keep_checkpoints``, then evaluates every checkpoint exactly as the end of training does
(:func:`unetlib.evaluate.checkpoint_curve`: parameters chosen on validation SEG, test frames
scored). The JSON holds the rows, the configuration, hardware, wall time and this command.
"""

from __future__ import annotations

import argparse
import sys
import time

from unetlib.evaluate import checkpoint_curve
from unetlib.interrupt import sigterm_as_interrupt
from unetlib.profiles import train_config
from unetlib.provenance import command_line, hardware, write_json_atomic
from unetlib.train import train


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="quick", help="run profile (default quick)")
    p.add_argument("--steps", type=int, default=3000, help="training steps (default 3000)")
    p.add_argument("--eval-every", type=int, default=200, help="steps between checkpoints")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", default="runs", help="where runs are kept (default runs)")
    p.add_argument("--out", default="book/results/budget_curve.json", help="result JSON")
    args = p.parse_args(argv)
    config = train_config(args.profile, "02_train", steps=args.steps, seed=args.seed,
                          eval_every=args.eval_every, keep_checkpoints=True,
                          out_dir=args.out_dir, progress=False)
    start = time.perf_counter()
    with sigterm_as_interrupt():
        result = train(config)
        rows = checkpoint_curve(result, progress=True)
    write_json_atomic(args.out, {
        "experiment": "budget_curve", "profile": args.profile, "dataset": config.dataset,
        "run": result["run"], "config": result["config"], "best_step": result["best_step"],
        "rows": rows, "train_seconds": result["train_seconds"],
        "wall_seconds": round(time.perf_counter() - start, 1), "hardware": hardware(),
        "command": command_line()})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
