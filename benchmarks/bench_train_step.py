"""Benchmark: where a training step's time goes, and steps/s before and after the fast path.

A step of ``unetlib.train`` is: sample crops, augment (image, targets and weight map jointly),
forward, loss, backward, optimiser step, EMA update, and the logged loss and batch F1. This
script times each phase on a profile's configuration (default: the book's ``quick`` profile,
DIC-C2DH-HeLa, 2 x 256 x 256 crops, five levels, 16 channels, BatchNorm, Adam, EMA), then the whole
step as the training loop runs it, for three variants measured alternately in one process:

* ``before``: the step as it was: fp32, contiguous (NCHW) memory and the batch F1 through
  ``argmax`` over the class dimension;
* ``channels_last``: ``channels_last=True`` (NHWC weights and batches) and the batch F1 through
  one comparison of the two logits (equal to the argmax, ties to class 0, tested);
* ``channels_last + bf16``: the same with ``amp_cpu=True``, bf16 autocast of the forward pass
  (fast on CPUs with bf16 instructions; the loss stays fp32).

All variants train from the same initial weights on the same crops and draws; the fp32 steps'
arithmetic differs only by rounding (the convolutions sum in another order), bf16's by its
8-bit mantissa, and dropout's masks, drawn in memory order, fall on other units in channels-last
memory (the JSON records the first losses of each). Wall clock: run it on quiet cores.

    python benchmarks/bench_train_step.py --out benchmarks/results/bench_train_step_cpu.json
    python benchmarks/bench_train_step.py --profile smoke --steps 4 --warmup 1 --out /tmp/s.json
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from unetlib import train as T  # noqa: E402
from unetlib.book import parse_override  # noqa: E402
from unetlib.config import TrainConfig  # noqa: E402
from unetlib.model import center_crop  # noqa: E402
from unetlib.profiles import PROFILES  # noqa: E402
from unetlib.provenance import command_line, hardware, write_json_atomic  # noqa: E402

PHASES = ("sample", "augment", "forward", "loss", "backward", "optimizer", "ema", "log")


def argmax_f1(logits: torch.Tensor, target: torch.Tensor) -> float:
    """The batch F1 as the training loop computed it before: through ``argmax``."""
    with torch.no_grad():
        pred = logits.argmax(1)
        tgt = center_crop(target, pred.shape[-2:])
        tp = ((pred == 1) & (tgt == 1)).sum().item()
        denom = (pred == 1).sum().item() + (tgt == 1).sum().item()
    return 2 * tp / denom if denom else 1.0


def make_run(config: TrainConfig, frames: T.Frames) -> T._Run:
    torch.manual_seed(config.seed)  # the same initial weights for both variants
    return T._build_run(config, 0, 1, torch.device("cpu"), Path("unused"), frames, None)


def phase_times(run: T._Run, f1, steps: int, warmup: int) -> dict[str, float]:
    """Median seconds of each phase over ``steps`` steps after ``warmup``; the phases are the
    body of ``unetlib.train._train_step`` and of the loop's logging, timed one by one."""
    config = run.config
    times: dict[str, list[float]] = {p: [] for p in PHASES}
    rows = slice(0, config.batch_size)
    for i in range(warmup + steps):
        t = [time.perf_counter()]
        run.net.train()
        image, target, weight = T.sample_batch(run.train_f, config.batch_size,
                                               config.image_size, run.sampler)
        image, target = image[rows], target[rows]
        t.append(time.perf_counter())
        if run.augment is not None:
            image, target, weight = T._apply_augment(run.augment, image, target, weight,
                                                     run.aug_gen)
        if config.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        t.append(time.perf_counter())
        with T.training_autocast(config, torch.device("cpu")):
            logits = run.net(image)
        t.append(time.perf_counter())
        loss = T.compute_loss(config, logits.float(), target, weight)
        t.append(time.perf_counter())
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t.append(time.perf_counter())
        run.optimizer.step()
        t.append(time.perf_counter())
        if run.ema is not None:
            run.ema.update_parameters(run.model)
        t.append(time.perf_counter())
        T._logged_loss(loss, 1)
        f1(logits, target)
        t.append(time.perf_counter())
        if i >= warmup:
            for name, a, b in zip(PHASES, t[:-1], t[1:], strict=True):
                times[name].append(b - a)
    return {name: float(np.median(v)) for name, v in times.items()}


def step_times(run: T._Run, f1, steps: int, warmup: int) -> list[float]:
    """Seconds of each whole step as the training loop runs it (``_train_step``, the logged
    loss and the batch F1)."""
    autocast = T.training_autocast(run.config, torch.device("cpu"))
    rows = slice(0, run.config.batch_size)
    out = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        loss, logits, target = T._train_step(run, i, rows, autocast)
        T._logged_loss(loss, 1)
        f1(logits, target)
        if i >= warmup:
            out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    parser.add_argument("--page", default="02_train", help="the training page whose options")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--steps", type=int, default=40, help="timed steps per variant and round")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the two variants")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("-p", dest="overrides", action="append", type=parse_override,
                        default=[], metavar="FIELD=VALUE",
                        help="a TrainConfig override of the page's options (e.g. depth=4)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    options = dict(PROFILES[args.profile]["train"][args.page])
    options.update(args.overrides)
    for name in ("channels_last", "amp_cpu"):  # the variants set these
        options.pop(name, None)
    base = TrainConfig(**options, data_root=args.data_root, progress=False)
    train_s, _, _ = T.load_splits(base)  # a missing data set is an error, not a synthetic run
    frames = T.prepare_frames(train_s, base, torch.device("cpu"))
    variants = {
        "before": (dataclasses.replace(base, channels_last=False, amp_cpu=False), argmax_f1),
        "channels_last": (dataclasses.replace(base, channels_last=True, amp_cpu=False),
                          T._batch_f1),
        "channels_last + bf16": (dataclasses.replace(base, channels_last=True, amp_cpu=True),
                                 T._batch_f1),
    }
    phases: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    steps: dict[str, list[float]] = {v: [] for v in variants}
    losses: dict[str, list[float]] = {}
    for r in range(args.rounds):
        for name, (config, f1) in variants.items():
            phases[name].append(phase_times(make_run(config, frames), f1, args.steps,
                                            args.warmup))
            run = make_run(config, frames)
            steps[name] += step_times(run, f1, args.steps, args.warmup)
            if r == 0:  # the same crops, draws and initial weights: the losses agree
                run = make_run(config, frames)
                autocast = T.training_autocast(config, torch.device("cpu"))
                losses[name] = [T._train_step(run, i, slice(0, config.batch_size),
                                              autocast)[0].item() for i in range(5)]
            print(f"round {r} {name}: {np.median(steps[name]) * 1000:.1f} ms/step", flush=True)

    results = {}
    for name in variants:
        median = float(np.median(steps[name]))
        results[name] = {
            "channels_last": variants[name][0].channels_last,
            "amp_cpu": variants[name][0].amp_cpu,
            "batch_f1": "argmax" if variants[name][1] is argmax_f1 else "comparison",
            "median_s_per_step": median,
            "steps_per_s": 1.0 / median,
            "phase_median_s": {p: float(np.median([ph[p] for ph in phases[name]]))
                               for p in PHASES},
            "first_losses": losses[name],
        }
    before = results["before"]
    for r in results.values():
        r["speedup_vs_before"] = before["median_s_per_step"] / r["median_s_per_step"]
        r["first_losses_max_abs_diff_vs_before"] = float(np.max(np.abs(
            np.subtract(r["first_losses"], before["first_losses"]))))
    out = {
        "benchmark": "one training step of unetlib.train, by phase; before/after the fast path",
        "command": command_line(),
        "hardware": hardware("cpu"),
        "workload": {"profile": args.profile, "page": args.page, "dataset": base.dataset,
                     "training_frames": len(train_s), "crop": base.image_size,
                     "batch_size": base.batch_size, "depth": base.depth,
                     "base_channels": base.base_channels, "batch_norm": base.batch_norm,
                     "optimizer": base.optimizer, "augment": base.augment, "ema": base.ema,
                     "overrides": dict(args.overrides),
                     "steps_timed": args.steps * args.rounds, "rounds": args.rounds},
        "results": results,
    }
    write_json_atomic(args.out, out)
    for name, r in results.items():
        print(f"{name}: {r['steps_per_s']:.2f} steps/s ({r['speedup_vs_before']:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
