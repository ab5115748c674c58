"""Training and evaluation: the paper's protocol and the reproductions' variants.

``train(TrainConfig(...))`` and ``python -m unetlib.train --option value`` take the same options;
the papermill ``parameters`` cells of the training notebooks mirror :class:`TrainConfig`.

- Optimisers: the paper's SGD with momentum 0.99 and batch 1 of large tiles (section 3);
  Nesterov SGD (the Keras reproduction); Adam with AMSGrad (the LIVECell reproduction).
- Losses: the paper's pixel-wise softmax cross-entropy weighted by the weight map of eq. 2
  (``loss="weighted_ce"``; ``w0=0`` keeps only the class balance), or BCE + Dice.
- Targets: cells after :func:`unetlib.weights.separate_touching` (two classes), so that touching
  cells are separated by background, as in the paper's Fig. 3.
- Augmentation on the batch's device (:class:`unetlib.Augment`), each part switchable.
- Validation every ``eval_every`` steps on held-out training frames (overlap-tile prediction of
  whole frames), early stopping with ``patience`` and the best weights restored (Keras
  reproduction), then the test split: pixel IoU/F1/error, the Cell Tracking Challenge SEG measure,
  split and merge counts, and for ISBI 2012 the Rand, information and warping errors.
- Checkpoints are written atomically; ``resume=True`` continues an interrupted run; a finished run
  with the same configuration is reused (``reuse=True``) instead of retrained.
- Several GPUs or machines: run under ``torchrun``; each rank trains on its slice of every global
  batch (DistributedDataParallel); rank 0 validates, saves and evaluates.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from unetlib.config import AUGMENT_PARTS, TrainConfig, augment_parts, parser
from unetlib.evaluate import evaluate_model, predict_frames, validation_scores, validation_seg
from unetlib.interrupt import sigterm_as_interrupt
from unetlib.losses import center_crop
from unetlib.model import save_checkpoint
from unetlib.provenance import command_line, hardware, write_json_atomic

# ------------------------------------------------------------------------------------------------
# data


@dataclass
class Frames:
    """Frames of one split on the training device: image, target classes, weight map, labels."""

    images: torch.Tensor  # (F, H, W) float32
    targets: torch.Tensor  # (F, H, W) int64, 1 = cell (after separating touching cells)
    weights: torch.Tensor | None  # (F, H, W) float32, paper eq. 2
    labels: list[np.ndarray]  # instance labels, for the instance metrics
    names: list[str]


def prepare_frames(samples: list, config: TrainConfig, device: torch.device) -> Frames:
    """Targets and weight maps for each frame (computed once: the paper precomputes w(x))."""
    from unetlib.weights import binary_target, weight_map

    images, targets, weights = [], [], []
    for s in samples:
        images.append(np.asarray(s.image, np.float32))
        targets.append(binary_target(s.labels).astype(np.int64))
        if config.loss == "weighted_ce":
            cw = config.class_weights if config.class_weights not in ("none", "") else None
            weights.append(weight_map(s.labels, w0=config.w0, sigma=config.sigma, class_weights=cw))
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise ValueError(f"frames of different sizes {sorted(shapes)}: crop or resize them first")
    return Frames(
        images=torch.from_numpy(np.stack(images)).to(device),
        targets=torch.from_numpy(np.stack(targets)).to(device),
        weights=torch.from_numpy(np.stack(weights)).to(device) if weights else None,
        labels=[np.asarray(s.labels) for s in samples],
        names=[s.name for s in samples],
    )


def _spread(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (neighbouring frames look alike, so the
    validation frames are spread over the sequence, not taken from its end)."""
    return sorted(set(np.linspace(0, n - 1, k).round().astype(int).tolist())) if k else []


def _n_val(config: TrainConfig, n: int) -> int:
    if config.val_fraction <= 0 or n < 2:
        return 0
    return max(1, min(int(round(config.val_fraction * n)), n - 1))


def load_splits(config: TrainConfig) -> tuple[list, list, list]:
    """(train, validation, test) sample lists for ``config``.

    The test split is always scored against the gold truth. With ``truth="silver"`` (a Cell
    Tracking Challenge set; beyond the paper, which trained on the gold frames) the validation
    frames are the same gold frames the gold protocol holds out, so that the instance
    parameters are still chosen against gold truth, and the training frames are the silver
    masks of every other time point of the training sequences. With ``silver_val`` (gold
    training, beyond the paper) that many silver-truth frames of time points without gold truth
    join the validation frames: two gold frames are few to choose a checkpoint and three instance
    parameters by."""
    from unetlib.data import load_dataset

    gold = list(load_dataset(config.dataset, "train", config.data_root))
    gold_names = {s.name for s in gold}  # every gold time point, used or not
    test = list(load_dataset(config.dataset, "test", config.data_root))
    if config.n_train:
        gold = gold[: config.n_train]
    if config.n_test:
        test = test[: config.n_test]
    if not gold:
        raise ValueError(f"data set {config.dataset!r} has no training frames")
    val_idx = set(_spread(len(gold), _n_val(config, len(gold))))
    val = [gold[i] for i in sorted(val_idx)]
    if config.truth == "gold":
        train = [s for i, s in enumerate(gold) if i not in val_idx]
        if config.silver_val:
            val += _silver_validation(config, gold_names)
    else:
        silver = load_dataset(config.dataset, "train", config.data_root, truth=config.truth,
                              frames_without_mask="skip")
        held_out = {s.name for s in val}
        train = [s for s in silver if s.name not in held_out]
    return train, val, test


def _silver_validation(config: TrainConfig, gold_names: set[str]) -> list:
    """``config.silver_val`` silver-truth frames of the training sequences whose time points have
    no gold truth (neither trained on nor already validating), spread evenly over them."""
    from unetlib.data import load_dataset

    try:
        silver = load_dataset(config.dataset, "train", config.data_root, truth="silver",
                              frames_without_mask="skip")
    except TypeError:  # a loader without truth options: not a Cell Tracking Challenge set
        raise ValueError(f"silver_val: data set {config.dataset!r} has no silver truth (Cell "
                         "Tracking Challenge sets have); set silver_val=0") from None
    spare = [s for s in silver if s.name not in gold_names]
    if len(spare) < config.silver_val:
        raise ValueError(f"silver_val={config.silver_val}: data set {config.dataset!r} has only "
                         f"{len(spare)} silver frames outside its gold frames")
    return [spare[i] for i in _spread(len(spare), config.silver_val)]


def sample_batch(
    frames: Frames, batch: int, size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """A batch of random ``size`` x ``size`` crops (mirror-padded where the frame is smaller)."""
    n, h, w = frames.images.shape
    idx = torch.randint(n, (batch,), generator=generator).tolist()
    ys = torch.randint(max(h - size, 0) + 1, (batch,), generator=generator).tolist()
    xs = torch.randint(max(w - size, 0) + 1, (batch,), generator=generator).tolist()

    def crops(t: torch.Tensor) -> torch.Tensor:
        windows = zip(idx, ys, xs, strict=True)
        out = torch.stack([t[i, y : y + size, x : x + size] for i, y, x in windows])
        ph, pw = size - out.shape[-2], size - out.shape[-1]
        if ph or pw:  # frames smaller than the crop: extend by mirroring (paper Fig. 2)
            mode = "reflect" if out.is_floating_point() else "replicate"
            out = nn.functional.pad(out[:, None].float(), (0, pw, 0, ph), mode=mode)[:, 0]
            out = out.to(t.dtype)
        return out

    weights = crops(frames.weights) if frames.weights is not None else None
    return crops(frames.images)[:, None], crops(frames.targets), weights


# ------------------------------------------------------------------------------------------------
# model, optimiser, loss


def build_model(config: TrainConfig, frames: Frames | None = None) -> nn.Module:
    """The U-Net of ``config``; its input is standardised with the training frames' mean and
    standard deviation (kept in the model, so every later use of it sees the same scale)."""
    from unetlib.model import UNet

    mean, std = 0.0, 1.0
    if frames is not None:
        mean = float(frames.images.mean())
        std = max(float(frames.images.std()), 1e-6)
    return UNet(
        in_channels=1, num_classes=2, depth=config.depth, base_channels=config.base_channels,
        padding=config.padding, batch_norm=config.batch_norm, dropout=config.dropout,
        up_mode=config.up_mode, input_mean=mean, input_std=std,
    )


def build_optimizer(config: TrainConfig, params) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay,
                                amsgrad=True)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                           nesterov=config.optimizer == "nesterov",
                           weight_decay=config.weight_decay)


def learning_rate(config: TrainConfig, step: int) -> float:
    """The learning rate of step ``step`` (0-based): constant (the paper does not say it
    decayed), or nnU-Net's polynomial decay ``lr (1 - step / steps)^0.9``."""
    if config.lr_schedule == "poly":
        return config.lr * (1.0 - min(step, config.steps) / config.steps) ** 0.9
    return config.lr


def compute_loss(config: TrainConfig, logits: torch.Tensor, target: torch.Tensor,
                 weight: torch.Tensor | None) -> torch.Tensor:
    from unetlib.losses import bce_dice_loss, weighted_cross_entropy

    if config.loss == "weighted_ce":
        return weighted_cross_entropy(logits, target, weight)
    return bce_dice_loss(logits, target)


# ------------------------------------------------------------------------------------------------
# evaluation


# ------------------------------------------------------------------------------------------------
# checkpoints


def _save(path: Path, obj: dict) -> None:
    from unetlib.provenance import write_atomic

    write_atomic(path, lambda f: torch.save(obj, f))


def _load(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated or foreign file: say which and how to go on
        raise ValueError(f"{path}: unreadable checkpoint ({type(err).__name__}: {err}); delete "
                         "it or pass resume=False (--resume false) to start the run afresh"
                         ) from None


def _rng_state(generator: torch.Generator) -> dict:
    state = {"torch": torch.get_rng_state(), "sampler": generator.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


# ------------------------------------------------------------------------------------------------
# distributed


def _dist_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) without it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    return int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0"))


def resolve_device(spec: str, local_rank: int = 0) -> torch.device:
    if spec == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={spec!r} but CUDA is not available")
    return device


# ------------------------------------------------------------------------------------------------
# the training loop


def _ema(model: nn.Module, decay: float):
    """An exponential moving average of ``model``'s weights and BatchNorm statistics
    (``decay`` per step), or None for ``decay == 0``."""
    if not decay:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _augmenter(config: TrainConfig) -> nn.Module | None:
    parts = augment_parts(config.augment)
    if not parts:
        return None
    from unetlib.augment import Augment

    return Augment(**{part: part in parts for part in AUGMENT_PARTS},
                   elastic_sigma=config.elastic_sigma, elastic_points=config.elastic_points)


def train(config: TrainConfig | None = None, **overrides: Any) -> dict[str, Any]:
    """Train, validate, restore the best weights and evaluate on the test split.

    Returns a dict with the configuration, the history (one row per evaluation), the test
    metrics, wall times, the hardware and the command; the same dict is saved as
    ``<out_dir>/<run_name>/result.json`` beside ``best.pt`` (the restored weights, loadable with
    :func:`unetlib.model.load_checkpoint`). Under ``torchrun`` every rank trains and rank 0
    returns the result (other ranks return ``{"rank": r}``).
    """
    config = dataclasses.replace(config or TrainConfig(), **overrides)
    rank, world, local_rank = _dist_info()
    run_dir = Path(config.out_dir) / config.run_name()
    result_path = run_dir / "result.json"
    if config.reuse and world == 1 and result_path.is_file():
        try:
            cached = json.loads(result_path.read_text())
        except ValueError as err:
            raise ValueError(f"{result_path}: not valid JSON ({err}); delete it or pass "
                             "reuse=False") from None
        # a result is reused only with its weights beside it; otherwise it is recomputed
        if (cached.get("config") == _config_dict(config, comparable=True)
                and (run_dir / "best.pt").is_file()):
            cached["reused"] = True
            return cached

    device = resolve_device(config.device, local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} is not divisible by {world} processes")
    local_batch = config.batch_size // world

    start = time.perf_counter()
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    train_s, val_s, test_s = load_splits(config)
    train_f = prepare_frames(train_s, config, device)
    val_f = prepare_frames(val_s, config, device) if val_s else None

    model = build_model(config, train_f).to(device)
    optimizer = build_optimizer(config, model.parameters())
    # the weights that are validated, kept and tested: the network's own, or their exponential
    # moving average (beyond the paper: it damps the step-to-step swings of a short run)
    ema = _ema(model, config.ema)
    evaluated = ema.module if ema is not None else model
    augment = _augmenter(config)
    # the same sampler seed on every rank: each rank takes its slice of one global batch
    sampler = torch.Generator().manual_seed(config.seed)
    # augmentation draws come from a CPU generator (Augment samples its parameters there), so a
    # resumed run continues the same random sequence on any device
    aug_gen = torch.Generator().manual_seed(config.seed * 1000 + rank + 1)
    step, history, best = 0, [], {"val_loss": math.inf, "step": 0, "state": None}
    stale, stopped_early, train_seconds = 0, False, 0.0
    stopped_by: str | None = None  # "patience" or "time_limit"
    last_path = run_dir / "last.pt"
    if config.resume and last_path.is_file():
        ckpt = _load(last_path)
        if ckpt.get("key") == config.key():
            model.load_state_dict(ckpt["model"])
            if ema is not None:
                ema.load_state_dict(ckpt["ema"])
            optimizer.load_state_dict(ckpt["optimizer"])
            step, history = int(ckpt["step"]), list(ckpt["history"])
            best = {"val_loss": float(ckpt["best_val_loss"]), "step": int(ckpt["best_step"]),
                    "state": ckpt["best_model"]}
            torch.set_rng_state(ckpt["rng"]["torch"])
            sampler.set_state(ckpt["rng"]["sampler"])
            aug_gen.set_state(ckpt["rng"]["aug"])
            if "cuda" in ckpt["rng"] and device.type == "cuda":
                torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
            # early stopping's state: a resumed run stops exactly where the straight one did
            stale, stopped_early = int(ckpt.get("stale", 0)), bool(ckpt.get("stopped", False))
            stopped_by = ckpt.get("stopped_by")
            train_seconds = float(ckpt.get("train_seconds", 0.0))
    net = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    autocast = torch.autocast("cuda", dtype=torch.bfloat16,
                              enabled=config.amp and device.type == "cuda")
    from tqdm.auto import tqdm

    bar = tqdm(total=config.steps, initial=step, disable=not config.progress or rank != 0,
               desc=f"train {config.run_name()}", unit="step")
    running, run_f1 = [], []
    while step < config.steps and not stopped_early:
        t0 = time.perf_counter()
        net.train()
        image, target, weight = sample_batch(train_f, config.batch_size, config.image_size,
                                             sampler)
        sl = slice(rank * local_batch, (rank + 1) * local_batch)
        image, target = image[sl], target[sl]
        weight = weight[sl] if weight is not None else None
        if augment is not None:
            image, target, weight = _apply_augment(augment, image, target, weight, aug_gen)
        with autocast:
            logits = net(image)
        loss = compute_loss(config, logits.float(), target, weight)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        optimizer.step()
        if ema is not None:
            ema.update_parameters(model)
        step += 1
        logged = loss.detach()
        if world > 1:  # the global batch's loss, as a single process would log it
            logged = logged.clone()
            dist.all_reduce(logged)
            logged /= world
        running.append(logged.item())
        with torch.no_grad():
            pred = logits.argmax(1)
            tgt = center_crop(target, pred.shape[-2:])
            tp = ((pred == 1) & (tgt == 1)).sum().item()
            denom = (pred == 1).sum().item() + (tgt == 1).sum().item()
            run_f1.append(2 * tp / denom if denom else 1.0)
        train_seconds += time.perf_counter() - t0
        bar.update(1)
        bar.set_postfix(loss=f"{running[-1]:.3f}")
        out_of_time = torch.tensor([float(bool(config.time_limit)
                                          and train_seconds >= config.time_limit)])
        if world > 1 and config.time_limit:  # every rank stops at the same step
            dist.all_reduce(out_of_time, op=dist.ReduceOp.MAX)

        if step % config.eval_every == 0 or step == config.steps or out_of_time.item():
            stop = torch.zeros(1)
            if rank == 0:
                row = {"step": step, "train_loss": float(np.mean(running)),
                       "train_f1": float(np.mean(run_f1)), "seconds": round(train_seconds, 2)}
                running, run_f1 = [], []
                if val_f is not None:
                    probs = predict_frames(evaluated, val_f.images, config)
                    row.update(validation_scores(
                        probs, val_f.targets.cpu().numpy(),
                        val_f.weights.cpu().numpy() if val_f.weights is not None else None,
                        config.threshold))
                    if config.select_by == "val_seg":
                        row.update(validation_seg(probs, val_f.labels))
                    # lower is better: the validation loss, or minus the best validation SEG
                    score = row["val_loss"] if config.select_by == "val_loss" else -row["val_seg"]
                    if score < best["val_loss"]:
                        best = {"val_loss": score, "step": step,
                                "state": {k: v.detach().cpu().clone()
                                          for k, v in evaluated.state_dict().items()}}
                        stale = 0
                    else:
                        stale += 1
                history.append(row)
                bar.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in row.items()), file=sys.stderr)
                rng = _rng_state(sampler)
                rng["aug"] = aug_gen.get_state()
                if config.patience and stale >= config.patience:
                    stop[0] = 1
                    stopped_by = "patience"
                if out_of_time.item() and step < config.steps:
                    stop[0] = 1
                    stopped_by = "time_limit"
                _save(last_path, {
                    "key": config.key(), "step": step, "model": model.state_dict(),
                    "ema": ema.state_dict() if ema is not None else None,
                    "optimizer": optimizer.state_dict(), "history": history,
                    "best_val_loss": best["val_loss"], "best_step": best["step"],
                    "best_model": best["state"], "rng": rng, "stale": stale,
                    "stopped": bool(stop.item()), "stopped_by": stopped_by,
                    "train_seconds": train_seconds,
                })
                if config.keep_checkpoints:
                    save_checkpoint(run_dir / "checkpoints" / f"step{step:06d}.pt", evaluated,
                                    step=step, key=config.key())
            if world > 1:
                dist.broadcast(stop, src=0)
            if stop.item():
                stopped_early = True
                break
    bar.close()
    # identical on every rank under DDP (the gradients are all-reduced); tests compare them
    checksum = float(sum(p.detach().double().sum() for p in model.parameters()))

    if rank != 0:
        dist.barrier()
        return {"rank": rank, "param_checksum": checksum, "history": history}
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    elif ema is not None:  # no validation: the averaged weights of the last step
        model.load_state_dict(ema.module.state_dict())
    model.eval()
    save_checkpoint(run_dir / "best.pt", model, step=best["step"] or step, run=config.run_name())
    # evaluation: instance parameters chosen on validation SEG, then the test frames
    instances = evaluate_model(
        model, config, val_f.images if val_f is not None else [],
        val_f.labels if val_f is not None else [], [s.image for s in test_s],
        [np.asarray(s.labels) for s in test_s])
    paper_way = instances["components"]
    threshold = {"value": paper_way["params"]["threshold"], "chosen_on": paper_way["chosen_on"]}
    result = {
        "run": config.run_name(),
        "config": _config_dict(config, comparable=True),
        "dataset": config.dataset,
        "frames": {"train": [s.name for s in train_s], "val": [s.name for s in val_s],
                   "test": [s.name for s in test_s]},
        "history": history,
        "best_step": best["step"] or step,
        "steps_done": step,
        "stopped_early": stopped_early,
        "stopped_by": stopped_by,
        "metrics": paper_way["metrics"],
        "threshold": threshold,
        "instances": instances,
        "per_image": paper_way["per_image"],
        "train_seconds": round(train_seconds, 1),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "world_size": world,
        "param_checksum": checksum,
        "hardware": hardware(device),
        "command": command_line(),
        "checkpoint": str(run_dir / "best.pt"),
    }
    write_json_atomic(result_path, result)
    if world > 1:
        dist.barrier()
    result["reused"] = False
    return result


def train_seeds(config: TrainConfig, n_seeds: int) -> dict[int, dict[str, Any]]:
    """:func:`train` with seeds ``config.seed``, ``config.seed + 1``, ... (``n_seeds`` runs that
    differ only in their seed); results by seed, each reused when already trained."""
    if int(n_seeds) < 1:
        raise ValueError(f"n_seeds must be >= 1, got {n_seeds!r}")
    seeds = range(config.seed, config.seed + int(n_seeds))
    return {s: train(dataclasses.replace(config, seed=s)) for s in seeds}


def _apply_augment(augment: nn.Module, image: torch.Tensor, target: torch.Tensor,
                   weight: torch.Tensor | None, generator: torch.Generator):
    """Image (order 3), target classes (order 0) and weight map (order 1), jointly deformed."""
    out = augment(image, target, weight, generator=generator)
    return out[0], out[1], out[2]


def _config_dict(config: TrainConfig, comparable: bool = False) -> dict:
    d = dataclasses.asdict(config)
    if comparable:
        for k in ("out_dir", "resume", "reuse", "progress", "keep_checkpoints"):
            d.pop(k, None)
    return d


# ------------------------------------------------------------------------------------------------
# command line


def main(argv: list[str] | None = None) -> int:
    args = vars(parser().parse_args(argv))
    try:
        with sigterm_as_interrupt():
            result = train(TrainConfig(**args))
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; the last checkpoint is kept (rerun to resume)", file=sys.stderr)
        return 130
    if "metrics" in result:
        print(json.dumps({"run": result["run"], "metrics": result["metrics"],
                          "wall_seconds": result["wall_seconds"]}, indent=2))
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
