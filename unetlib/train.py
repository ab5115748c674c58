"""Training: the paper's protocol and the reproductions' variants (the scores are
:mod:`unetlib.evaluate`'s, the options :mod:`unetlib.config`'s).

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
- Checkpoints are written atomically; ``resume=True`` continues an interrupted run, and a run
  with more ``steps`` than a finished one of the same options continues from its last step
  (:func:`extendable_run`; the same weights as training straight through); a finished run with
  the same configuration is reused (``reuse=True``) instead of retrained.
- Several GPUs or machines: run under ``torchrun``; each rank trains on its slice of every global
  batch (DistributedDataParallel); rank 0 validates, saves and evaluates.
- Speed (beyond the paper): ``channels_last`` keeps weights and batches in NHWC memory (the
  same sums in another order); ``amp`` (CUDA) and ``amp_cpu`` run the forward pass under bf16
  autocast (8-bit mantissas; the loss, validation and test stay fp32).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from unetlib.config import AUGMENT_PARTS, TrainConfig, augment_parts, parser
from unetlib.evaluate import (
    evaluate_model,
    paper_way_fields,
    predict_frames,
    validation_scores,
    validation_seg,
)
from unetlib.instances import METHODS, scanned_current_grid
from unetlib.interrupt import run_command
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
    masks of every other time point of the training sequences, less those within
    ``silver_gap`` frames of a validation frame. With ``silver_val`` (gold
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
        from unetlib.data.ctc import time_point

        held_out = {s.name for s in val}
        near = {(seq, t + d) for seq, t in map(time_point, held_out)
                for d in range(-config.silver_gap, config.silver_gap + 1)}
        train = [s for s in silver if s.name not in held_out and time_point(s.name) not in near]
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


def build_optimizer(config: TrainConfig,
                    params: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
    """Returns the optimiser of ``config`` over ``params``: the paper's SGD with momentum,
    Nesterov SGD (the Keras reproduction) or Adam with AMSGrad (the LIVECell reproduction), at
    ``config.lr`` (the schedule sets each step's rate, see :func:`learning_rate`)."""
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
    """Returns the scalar loss of ``logits`` (N, 2, h, w) against the target classes (cropped to
    the logits for a valid network): the weighted cross-entropy with the weight map ``weight``
    (paper eq. 1), or BCE + Dice."""
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
    """Returns the device named by ``spec``; ``"auto"`` is this process's GPU (``local_rank``
    under torchrun) when CUDA is available, else the CPU. A CUDA device without CUDA is an
    error."""
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
    """The augmentation of ``config.augment`` on the batch's device, or None without one."""
    parts = augment_parts(config.augment)
    if not parts:
        return None
    from unetlib.augment import Augment

    return Augment(**{part: part in parts for part in AUGMENT_PARTS},
                   elastic_sigma=config.elastic_sigma, elastic_points=config.elastic_points,
                   elastic_field=config.elastic_field, elastic_alpha=config.elastic_alpha,
                   elastic_smooth=config.elastic_smooth, max_scale=config.max_scale)


@dataclass
class _Run:
    """What one training run works with and never replaces: shared by the phases of
    :func:`train` so that each helper takes one argument instead of a dozen."""

    config: TrainConfig
    rank: int
    world: int
    device: torch.device
    run_dir: Path
    train_f: Frames
    val_f: Frames | None
    model: nn.Module
    ema: nn.Module | None  # AveragedModel of ``model``, or None
    optimizer: torch.optim.Optimizer
    augment: nn.Module | None
    sampler: torch.Generator  # the crops; the same seed on every rank
    aug_gen: torch.Generator  # the augmentation's draws; one stream per rank
    net: nn.Module  # ``model``, or its DistributedDataParallel wrapper

    @property
    def evaluated(self) -> nn.Module:
        """The weights that are validated, kept and tested: the network's own, or their
        exponential moving average (beyond the paper: it damps a short run's step-to-step
        swings)."""
        return self.ema.module if self.ema is not None else self.model


@dataclass
class _Progress:
    """Where a run stands besides its weights, optimiser and random states: everything
    ``last.pt`` must carry so that a resumed run continues, and stops, exactly where the
    straight one would."""

    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per evaluation
    best_score: float = math.inf  # lower is better: val loss, or minus val SEG
    best_step: int = 0
    best_state: dict[str, torch.Tensor] | None = None  # the best evaluated weights, on the CPU
    # their validation probabilities, kept from that validation so that the final evaluation
    # does not predict the same frames again with the same weights (the same arrays, tested);
    # not in last.pt: a resumed run predicts them again
    best_probs: list[np.ndarray] | None = None
    stale: int = 0  # evaluations since the best one (early stopping's patience)
    stopped_early: bool = False
    stopped_by: str | None = None  # "patience" or "time_limit"
    train_seconds: float = 0.0
    # the shorter run this one continued ({"run": folder, "step": its steps}), or None
    extended_from: dict[str, Any] | None = None


def _reusable_result(config: TrainConfig, run_dir: Path) -> dict[str, Any] | None:
    """The saved result of a finished run with this configuration, marked ``reused``, or None
    where there is none. A result is reused only with its weights beside it (a notebook loads
    them); otherwise the run is recomputed."""
    result_path = run_dir / "result.json"
    if not result_path.is_file():
        return None
    try:
        cached = json.loads(result_path.read_text())
    except ValueError as err:
        raise ValueError(f"{result_path}: not valid JSON ({err}); delete it or pass "
                         "reuse=False") from None
    if _same_options(cached.get("config") or {}, config) and (run_dir / "best.pt").is_file():
        saved = cached.get("instances", {})
        if not all(scanned_current_grid(saved.get(m, {}), m) for m in METHODS):
            cached = _rescored(config, run_dir, cached)
        cached["reused"] = True
        # where the weights are for whoever reuses the run (a notebook in book/ or a study at
        # the project root), not where the trainer's working directory saw them
        cached["checkpoint"] = str(run_dir / "best.pt")
        return cached
    return None


def _same_options(saved: dict[str, Any], config: TrainConfig) -> bool:
    """Whether a saved run's options are ``config``'s. An option added to TrainConfig after the
    run was made is absent from its record and counts as its default (as :meth:`TrainConfig.key`
    leaves such options out of the hash while they are at their defaults); any other
    difference, or an option the config no longer knows, is another run."""
    now = _config_dict(config, comparable=True)
    defaults = _config_dict(TrainConfig(), comparable=True)
    if set(saved) - set(now):
        return False
    return all(saved[k] == v if k in saved else v == defaults[k] for k, v in now.items())


def _rescored(config: TrainConfig, run_dir: Path, cached: dict[str, Any]) -> dict[str, Any]:
    """A finished run scored before an instance method existed, or before its grid changed
    (:func:`unetlib.instances.scanned_current_grid`): every method scored again from
    its kept weights (``best.pt``, the weights it was scored with), exactly as at the end of
    training, and the result file rewritten; the training record is untouched."""
    from unetlib.model import load_checkpoint

    model, _ = load_checkpoint(run_dir / "best.pt", map_location="cpu")
    _, val_s, test_s = load_splits(config)
    instances = evaluate_model(model, config, [s.image for s in val_s],
                               [np.asarray(s.labels) for s in val_s], [s.image for s in test_s],
                               [np.asarray(s.labels) for s in test_s])
    cached.update(instances=instances, **paper_way_fields(instances),
                  rescored={"methods": list(METHODS), "hardware": hardware(torch.device("cpu")),
                            "command": command_line()})
    cached.pop("reused", None)
    write_json_atomic(run_dir / "result.json", cached)
    return cached


def _build_run(config: TrainConfig, rank: int, world: int, device: torch.device, run_dir: Path,
               train_f: Frames, val_f: Frames | None) -> _Run:
    """The model (input scale from ``train_f``), its optimiser, EMA and augmentation, and the
    seeded generators; returns them as a :class:`_Run` whose ``net`` is still the bare model."""
    model = build_model(config, train_f).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(config, model.parameters())
    ema = _ema(model, config.ema)
    augment = _augmenter(config)
    # the same sampler seed on every rank: each rank takes its slice of one global batch
    sampler = torch.Generator().manual_seed(config.seed)
    # augmentation draws come from a CPU generator (Augment samples its parameters there), so a
    # resumed run continues the same random sequence on any device
    aug_gen = torch.Generator().manual_seed(config.seed * 1000 + rank + 1)
    return _Run(config=config, rank=rank, world=world, device=device, run_dir=run_dir,
                train_f=train_f, val_f=val_f, model=model, ema=ema, optimizer=optimizer,
                augment=augment, sampler=sampler, aug_gen=aug_gen, net=model)


def _resume(run: _Run) -> _Progress:
    """The progress saved in ``last.pt`` by an interrupted run with the same key, after loading
    its weights, EMA, optimiser and random states into ``run``; a fresh :class:`_Progress`
    where there is none (or ``resume=False``). Early stopping's state comes back too, so a
    resumed run stops exactly where the straight one did. Without a ``last.pt`` of its own the
    run continues the last step of the shorter run :func:`extendable_run` finds, and says so
    (``extended_from``)."""
    if not run.config.resume:
        return _Progress()
    path, extended_from = run.run_dir / "last.pt", None
    if path.is_file():
        ckpt = _load(path)
        if ckpt.get("key") != run.config.key():
            return _Progress()
        extended_from = ckpt.get("extended_from")
    else:
        shorter = extendable_run(run.config)
        if shorter is None:
            return _Progress()
        ckpt = _load(shorter / "last.pt")
        # that run's own state (its key is the folder's; any of its steps is a straight run's
        # state, all below this run's), not marked stopped since
        if ckpt.get("stopped") or shorter.name != f"{run.config.dataset}-{ckpt.get('key')}":
            return _Progress()
        extended_from = {"run": shorter.name, "step": int(ckpt["step"])}
    run.model.load_state_dict(ckpt["model"])
    if run.ema is not None:
        run.ema.load_state_dict(ckpt["ema"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    torch.set_rng_state(ckpt["rng"]["torch"])
    run.sampler.set_state(ckpt["rng"]["sampler"])
    run.aug_gen.set_state(ckpt["rng"]["aug"])
    if "cuda" in ckpt["rng"] and run.device.type == "cuda":
        torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
    return _Progress(
        step=int(ckpt["step"]), history=list(ckpt["history"]),
        best_score=float(ckpt["best_val_loss"]), best_step=int(ckpt["best_step"]),
        best_state=ckpt["best_model"], stale=int(ckpt.get("stale", 0)),
        stopped_early=bool(ckpt.get("stopped", False)), stopped_by=ckpt.get("stopped_by"),
        train_seconds=float(ckpt.get("train_seconds", 0.0)), extended_from=extended_from)


def extendable_run(config: TrainConfig) -> Path | None:
    """The folder of the longest finished run in ``config.out_dir`` that ``config`` extends, or
    None: a run with the same options but fewer ``steps``, which ran all of them (not stopped
    early), validated at its last step as this one will (its steps a multiple of
    ``eval_every``) and whose learning rates this run repeats (a constant schedule; nnU-Net's
    "poly" depends on the total). Its ``last.pt`` is then this run's state at that step, bit for
    bit, so training continues from there instead of repeating it (tested against the straight
    run). Not with ``time_limit`` (where a straight run stops depends on the machine) nor
    ``keep_checkpoints`` (the budget curve needs every checkpoint in one folder)."""
    if config.lr_schedule != "constant" or config.time_limit or config.keep_checkpoints:
        return None
    best: tuple[int, Path] | None = None
    for result_path in Path(config.out_dir).glob(f"{config.dataset}-*/result.json"):
        run_dir = result_path.parent
        try:
            saved = json.loads(result_path.read_text())
        except ValueError:
            continue  # not this run's to judge; _reusable_result names a broken one
        options = saved.get("config") or {}
        steps = options.get("steps")
        if not (isinstance(steps, int) and 0 < steps < config.steps
                and steps % config.eval_every == 0 and saved.get("steps_done") == steps
                and not saved.get("stopped_early") and (run_dir / "last.pt").is_file()):
            continue
        if not _same_options({**options, "steps": config.steps}, config):
            continue
        if run_dir.name != dataclasses.replace(config, steps=steps).run_name():
            continue  # a folder renamed or copied by hand
        if best is None or steps > best[0]:
            best = (steps, run_dir)
    return best[1] if best else None


def _train_step(run: _Run, step: int, rows: slice,
                autocast: torch.autocast) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One optimiser step at learning rate ``learning_rate(config, step)`` on this rank's
    ``rows`` of a global batch; returns this rank's (loss, logits, target) for the logs."""
    config = run.config
    run.net.train()
    image, target, weight = sample_batch(run.train_f, config.batch_size, config.image_size,
                                         run.sampler)
    image, target = image[rows], target[rows]
    weight = weight[rows] if weight is not None else None
    if run.augment is not None:
        image, target, weight = _apply_augment(run.augment, image, target, weight, run.aug_gen)
    if config.channels_last:
        image = image.contiguous(memory_format=torch.channels_last)
    with autocast:
        logits = run.net(image)
    loss = compute_loss(config, logits.float(), target, weight)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite loss {loss.item()} at step {step}")
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for group in run.optimizer.param_groups:
        group["lr"] = learning_rate(config, step)
    run.optimizer.step()
    if run.ema is not None:
        run.ema.update_parameters(run.model)
    return loss, logits, target


def training_autocast(config: TrainConfig, device: torch.device) -> torch.autocast:
    """The training step's autocast: bf16 on CUDA with ``amp``, on the CPU with ``amp_cpu``,
    otherwise disabled (fp32). The loss is always computed in fp32."""
    kind = device.type if device.type in ("cuda", "cpu") else "cpu"
    return torch.autocast(kind, dtype=torch.bfloat16, enabled=bf16_training(config, device))


def bf16_training(config: TrainConfig, device: torch.device) -> bool:
    """Whether the training step runs under bf16 autocast on ``device``."""
    return bool((config.amp and device.type == "cuda")
                or (config.amp_cpu and device.type == "cpu"))


def _warn_if_bf16_is_emulated(config: TrainConfig, device: torch.device) -> None:
    """Say so, on stderr, when the training step runs under bf16 autocast on a CPU that has no
    native bf16: it does what was asked, ten times slower than in fp32."""
    from unetlib.provenance import cpu_bf16

    if device.type == "cpu" and bf16_training(config, device) and not cpu_bf16():
        print(f"warning: amp_cpu=True on a CPU without native bf16 "
              f"({torch.backends.cpu.get_cpu_capability()}): bf16 is emulated here, about ten "
              "times slower than the fp32 step; amp_cpu='auto' (the quick profile's) or False "
              "trains in fp32", file=sys.stderr)


def _logged_loss(loss: torch.Tensor, world: int) -> float:
    """Returns the global batch's loss, as a single process would log it (the mean over the
    ranks under DDP; every rank must call this at every step)."""
    logged = loss.detach()
    if world > 1:
        logged = logged.clone()
        dist.all_reduce(logged)
        logged /= world
    return logged.item()


def _batch_f1(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Returns the pixel F1 of the cell class on a training batch (1.0 when neither the
    prediction nor the target has a cell pixel): the running ``train_f1`` of the history."""
    with torch.no_grad():
        # two classes: the comparison is argmax (ties to class 0) without its slow strided
        # reduction over a dimension of size 2 (about 9 ms a step of 2 x 256 x 256 on 2 cores)
        pred = (logits[:, 1] > logits[:, 0]).long() if logits.shape[1] == 2 else logits.argmax(1)
        tgt = center_crop(target, pred.shape[-2:])
        tp = ((pred == 1) & (tgt == 1)).sum().item()
        denom = (pred == 1).sum().item() + (tgt == 1).sum().item()
    return 2 * tp / denom if denom else 1.0


def _out_of_time(config: TrainConfig, train_seconds: float, world: int) -> bool:
    """Returns whether ``time_limit`` is spent; under DDP on any rank, so that every rank stops
    at the same step (every rank must call this at every step)."""
    if not config.time_limit:  # the same on every rank: no tensor, no collective per step
        return False
    out = torch.tensor([float(train_seconds >= config.time_limit)])
    if world > 1:
        dist.all_reduce(out, op=dist.ReduceOp.MAX)
    return bool(out.item())


def _validate(run: _Run, progress: _Progress, row: dict[str, Any]) -> None:
    """Score the evaluated weights on the validation frames into ``row`` and keep them as the
    best when their score (validation loss, or minus validation SEG) is the lowest yet; counts
    the stale evaluations otherwise. Nothing to do without validation frames."""
    config, val_f = run.config, run.val_f
    if val_f is None:
        return
    probs = predict_frames(run.evaluated, val_f.images, config)
    row.update(validation_scores(
        probs, val_f.targets.cpu().numpy(),
        val_f.weights.cpu().numpy() if val_f.weights is not None else None, config.threshold))
    if config.select_by == "val_seg":
        row.update(validation_seg(probs, val_f.labels))
    score = row["val_loss"] if config.select_by == "val_loss" else -row["val_seg"]
    if score < progress.best_score:
        progress.best_score, progress.best_step = score, progress.step
        progress.best_state = {k: v.detach().cpu().clone()
                               for k, v in run.evaluated.state_dict().items()}
        progress.best_probs = probs
        progress.stale = 0
    else:
        progress.stale += 1


def _stop_reason(config: TrainConfig, progress: _Progress, out_of_time: bool) -> str | None:
    """Returns why the run stops at this evaluation ("time_limit" wins over "patience"), or
    None to go on. Out of time at the last step is no early stop."""
    if out_of_time and progress.step < config.steps:
        return "time_limit"
    if config.patience and progress.stale >= config.patience:
        return "patience"
    return None


def _checkpoint(run: _Run, progress: _Progress, stopped: bool) -> None:
    """Write ``last.pt`` atomically: everything :func:`_resume` needs to continue exactly (and
    ``stopped``, so that a stopped run is not resumed into more steps); with
    ``keep_checkpoints`` also the evaluated weights of this step, for the budget curve."""
    config = run.config
    rng = _rng_state(run.sampler)
    rng["aug"] = run.aug_gen.get_state()
    _save(run.run_dir / "last.pt", {
        "key": config.key(), "step": progress.step, "model": run.model.state_dict(),
        "ema": run.ema.state_dict() if run.ema is not None else None,
        "optimizer": run.optimizer.state_dict(), "history": progress.history,
        "best_val_loss": progress.best_score, "best_step": progress.best_step,
        "best_model": progress.best_state, "rng": rng, "stale": progress.stale,
        "stopped": stopped, "stopped_by": progress.stopped_by,
        "train_seconds": progress.train_seconds, "extended_from": progress.extended_from,
    })
    if config.keep_checkpoints:
        save_checkpoint(run.run_dir / "checkpoints" / f"step{progress.step:06d}.pt",
                        run.evaluated, step=progress.step, key=config.key())


def _train_steps(run: _Run, progress: _Progress) -> None:
    """Train from ``progress.step`` up to ``config.steps``; every ``eval_every`` steps (and at
    the last step, or when out of time) rank 0 validates, logs a history row and writes
    ``last.pt``, and every rank stops together when rank 0 says so. ``progress`` is updated in
    place: a kill leaves ``last.pt`` as the straight run had it at that evaluation."""
    from tqdm.auto import tqdm

    config, rank, world = run.config, run.rank, run.world
    local_batch = config.batch_size // world
    rows = slice(rank * local_batch, (rank + 1) * local_batch)
    autocast = training_autocast(config, run.device)
    if rank == 0:
        _warn_if_bf16_is_emulated(config, run.device)
    bar = tqdm(total=config.steps, initial=progress.step,
               disable=not config.progress or rank != 0, desc=f"train {config.run_name()}",
               unit="step")
    running, run_f1 = [], []
    while progress.step < config.steps and not progress.stopped_early:
        t0 = time.perf_counter()
        loss, logits, target = _train_step(run, progress.step, rows, autocast)
        progress.step += 1
        running.append(_logged_loss(loss, world))
        run_f1.append(_batch_f1(logits, target))
        progress.train_seconds += time.perf_counter() - t0
        bar.update(1)
        bar.set_postfix(loss=f"{running[-1]:.3f}")
        out_of_time = _out_of_time(config, progress.train_seconds, world)
        if not (progress.step % config.eval_every == 0 or progress.step == config.steps
                or out_of_time):
            continue
        stop = torch.zeros(1)
        if rank == 0:
            row = {"step": progress.step, "train_loss": float(np.mean(running)),
                   "train_f1": float(np.mean(run_f1)),
                   "seconds": round(progress.train_seconds, 2)}
            running, run_f1 = [], []
            _validate(run, progress, row)
            progress.history.append(row)
            bar.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in row.items()), file=sys.stderr)
            reason = _stop_reason(config, progress, out_of_time)
            if reason is not None:
                stop[0] = 1
                progress.stopped_by = reason
            _checkpoint(run, progress, stopped=bool(stop.item()))
        if world > 1:
            dist.broadcast(stop, src=0)
        if stop.item():
            progress.stopped_early = True
            break
    bar.close()


def _restore_best(run: _Run, progress: _Progress) -> nn.Module:
    """Load the best validated weights into the model (without validation: the EMA's weights
    of the last step, or the last weights), save them as ``best.pt`` and return the model in
    eval mode."""
    model = run.model
    if progress.best_state is not None:
        model.load_state_dict(progress.best_state)
    elif run.ema is not None:
        model.load_state_dict(run.ema.module.state_dict())
    model.eval()
    save_checkpoint(run.run_dir / "best.pt", model, step=progress.best_step or progress.step,
                    run=run.config.run_name())
    return model


def _result(run: _Run, progress: _Progress, splits: tuple[list, list, list],
            instances: dict[str, Any], checksum: float, wall_seconds: float) -> dict[str, Any]:
    """Returns the run's result: configuration, frames, history, the test metrics of the
    paper's instance method and of all (``instances``), times, hardware and command."""
    config = run.config
    train_s, val_s, test_s = splits
    return {
        "run": config.run_name(),
        "config": _config_dict(config, comparable=True),
        "dataset": config.dataset,
        "frames": {"train": [s.name for s in train_s], "val": [s.name for s in val_s],
                   "test": [s.name for s in test_s]},
        "history": progress.history,
        "best_step": progress.best_step or progress.step,
        "steps_done": progress.step,
        "stopped_early": progress.stopped_early,
        "stopped_by": progress.stopped_by,
        "extended_from": progress.extended_from,
        **paper_way_fields(instances),  # metrics, per_image, threshold
        "instances": instances,
        "train_seconds": round(progress.train_seconds, 1),
        "wall_seconds": round(wall_seconds, 1),
        "world_size": run.world,
        "param_checksum": checksum,
        "hardware": hardware(run.device),
        "command": command_line(),
        "checkpoint": str(run.run_dir / "best.pt"),
    }


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
    # reuse: a finished run with the same configuration is returned, not retrained
    if config.reuse and world == 1:
        cached = _reusable_result(config, run_dir)
        if cached is not None:
            return cached

    # device and processes: under torchrun one process per device, each a slice of the batch
    device = resolve_device(config.device, local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} is not divisible by {world} processes")

    # data: the splits; targets and weight maps computed once, on the training device
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    train_s, val_s, test_s = load_splits(config)
    train_f = prepare_frames(train_s, config, device)
    val_f = prepare_frames(val_s, config, device) if val_s else None

    # model, optimiser, EMA, augmentation and the seeded generators
    run = _build_run(config, rank, world, device, run_dir, train_f, val_f)
    # resume: an interrupted run with the same key continues from last.pt
    progress = _resume(run)
    if world > 1:  # wrapped after resuming, so every rank starts from the loaded weights
        run.net = nn.parallel.DistributedDataParallel(
            run.model, device_ids=[device.index] if device.type == "cuda" else None)

    # the loop: train, validate and checkpoint every eval_every steps, stop early
    _train_steps(run, progress)
    # identical on every rank under DDP (the gradients are all-reduced); tests compare them
    checksum = float(sum(p.detach().double().sum() for p in run.model.parameters()))
    if rank != 0:
        dist.barrier()
        return {"rank": rank, "param_checksum": checksum, "history": progress.history}

    # restore the best weights and save them as best.pt
    model = _restore_best(run, progress)
    # evaluate: instance parameters chosen on validation SEG, then the test frames
    instances = evaluate_model(
        model, config, val_f.images if val_f is not None else [],
        val_f.labels if val_f is not None else [], [s.image for s in test_s],
        [np.asarray(s.labels) for s in test_s], val_probs=progress.best_probs)

    # write the result beside best.pt
    result = _result(run, progress, (train_s, val_s, test_s), instances, checksum,
                     time.perf_counter() - start)
    write_json_atomic(run_dir / "result.json", result)
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
    """``python -m unetlib.train --option value ...``: train, print the test metrics.

    Returns the exit status: 0 on success, 1 on a bad option or missing data (printed, not
    raised), 130 when interrupted (the last checkpoint is kept for resuming)."""
    args = vars(parser().parse_args(argv))

    def body() -> int:
        result = train(TrainConfig(**args))
        if "metrics" in result:
            print(json.dumps({"run": result["run"], "metrics": result["metrics"],
                              "wall_seconds": result["wall_seconds"]}, indent=2))
        return 0

    status = run_command(body, "the last checkpoint is kept (rerun to resume)")
    if dist.is_initialized():
        dist.destroy_process_group()
    return status


if __name__ == "__main__":
    sys.exit(main())
