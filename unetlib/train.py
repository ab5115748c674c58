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

import argparse
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from unetlib.interrupt import sigterm_as_interrupt
from unetlib.provenance import command_line, hardware, write_json_atomic

AUGMENT_PARTS = ("shift", "rotation", "elastic", "gray", "flip")


@dataclass
class TrainConfig:
    """Every option of a training run. Field names are the papermill parameters and CLI flags."""

    # data
    dataset: str = "synthetic"
    data_root: str | None = None
    n_train: int = 0  # frames of the train split to use; 0 = all
    n_test: int = 0  # frames of the test split to evaluate; 0 = all
    val_fraction: float = 0.2  # of the train frames, held out for validation
    image_size: int = 256  # side of the training crops (the network's input)
    # model (unetlib.UNet)
    depth: int = 5
    base_channels: int = 64
    padding: str = "valid"
    batch_norm: bool = False
    dropout: float = 0.5
    up_mode: str = "transpose"
    # loss
    loss: str = "weighted_ce"  # "weighted_ce" (paper eq. 1 with eq. 2) or "bce_dice"
    w0: float = 10.0  # border weight of eq. 2; 0 = class balance only
    sigma: float = 5.0
    class_weights: str | None = "balanced"
    # augmentation: "all", "none", or a comma-separated subset of AUGMENT_PARTS
    augment: str = "all"
    elastic_sigma: float = 10.0
    elastic_points: int = 3
    # optimisation
    optimizer: str = "sgd"  # "sgd" (paper), "nesterov" (Keras reproduction), "adam" (AMSGrad)
    lr: float = 0.01
    momentum: float = 0.99
    weight_decay: float = 0.0
    lr_schedule: str = "constant"  # "constant" (paper) or "poly": lr (1 - step/steps)^0.9 (nnU-Net)
    steps: int = 1000
    batch_size: int = 1
    eval_every: int = 100
    patience: int = 0  # evaluations without improvement before stopping; 0 = never stop early
    # evaluation
    tile: int | None = None  # output tile of overlap-tile prediction; None = predict_tiled's
    tta: bool = False
    threshold: float = 0.5
    # pick the threshold with the best validation IoU (THRESHOLD_GRID) instead of ``threshold``;
    # the test split never takes part in the choice
    tune_threshold: bool = False
    min_size: int = 64  # predicted components smaller than this (pixels) are dropped (specks)
    # run
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    out_dir: str = "runs"
    resume: bool = True
    reuse: bool = True
    progress: bool = True
    extra: dict = field(default_factory=dict)  # free-form notes stored with the run

    def __post_init__(self) -> None:
        choices = {
            "padding": ("valid", "same"),
            "loss": ("weighted_ce", "bce_dice"),
            "optimizer": ("sgd", "nesterov", "adam"),
            "lr_schedule": ("constant", "poly"),
            "up_mode": ("transpose", "bilinear"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("steps", "batch_size", "eval_every", "image_size", "depth", "base_channels"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        augment_parts(self.augment)  # validates

    def key(self) -> str:
        """A short hash of everything that changes the result (not where or how it is shown)."""
        skip = {"out_dir", "resume", "reuse", "progress", "device", "extra"}
        spec = {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]

    def run_name(self) -> str:
        return f"{self.dataset}-{self.key()}"


def augment_parts(spec: str) -> tuple[str, ...]:
    """``"all"``, ``"none"`` or ``"elastic,flip"`` -> the tuple of enabled parts."""
    spec = (spec or "none").strip().lower()
    if spec == "all":
        return AUGMENT_PARTS
    if spec in ("none", ""):
        return ()
    parts = tuple(p.strip() for p in spec.split(",") if p.strip())
    bad = [p for p in parts if p not in AUGMENT_PARTS]
    if bad:
        raise ValueError(f"augment: unknown part(s) {bad}; choose from {AUGMENT_PARTS}, all, none")
    return parts


def config_from(params: dict[str, Any], **overrides: Any) -> TrainConfig:
    """A :class:`TrainConfig` from a mapping that may hold other names too (a notebook's
    ``globals()`` after its papermill ``parameters`` cell): known fields are taken, the rest
    ignored."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in params.items() if k in names}
    values.update(overrides)
    return TrainConfig(**values)


def with_available_data(config: TrainConfig) -> TrainConfig:
    """``config`` itself if its data set can be loaded; otherwise the same run on the synthetic
    data set, with a loud message (so that a fresh clone without the real data still runs)."""
    from unetlib.data import load_dataset

    if config.dataset == "synthetic":
        return config
    try:
        load_dataset(config.dataset, "test", config.data_root)
        return config
    except (FileNotFoundError, ValueError) as err:
        print(f"*** {config.dataset} is not available ({err}).\n"
              f"*** Falling back to the synthetic data set: the numbers below are NOT about "
              f"{config.dataset}. Get the data with `python -m unetlib.data fetch "
              f"{config.dataset}` or set UNETLIB_DATA.", flush=True)
        return dataclasses.replace(config, dataset="synthetic")


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


def load_splits(config: TrainConfig) -> tuple[list, list, list]:
    """(train, validation, test) sample lists for ``config``."""
    from unetlib.data import load_dataset

    train_all = list(load_dataset(config.dataset, "train", config.data_root))
    test = list(load_dataset(config.dataset, "test", config.data_root))
    if config.n_train:
        train_all = train_all[: config.n_train]
    if config.n_test:
        test = test[: config.n_test]
    if not train_all:
        raise ValueError(f"data set {config.dataset!r} has no training frames")
    n_val = int(round(config.val_fraction * len(train_all)))
    if config.val_fraction > 0 and len(train_all) >= 2:
        n_val = max(1, min(n_val, len(train_all) - 1))
    else:
        n_val = 0
    # validation frames are spread over the sequence, not its end (neighbouring frames are alike)
    idx = np.arange(len(train_all))
    val_idx = set(np.linspace(0, len(train_all) - 1, n_val).round().astype(int)) if n_val else set()
    train = [train_all[i] for i in idx if i not in val_idx]
    val = [train_all[i] for i in sorted(val_idx)]
    return train, val, test


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


@torch.no_grad()
def predict_frames(model: nn.Module, images: torch.Tensor | list, config: TrainConfig,
                   batch_size: int = 4) -> list[np.ndarray]:
    """Foreground probability (H, W) of each frame by overlap-tile prediction."""
    from unetlib.tiling import predict_tiled

    out = []
    for image in images:
        probs = predict_tiled(model, image, tile=config.tile, batch_size=batch_size,
                              tta=config.tta)
        out.append(probs[1].float().cpu().numpy())
    return out


def validation_scores(probs: list[np.ndarray], frames: Frames, config: TrainConfig) -> dict:
    """Validation loss (the training energy on whole frames), pixel F1 and IoU."""
    from unetlib.metrics import f1, iou

    eps = 1e-7
    losses, f1s, ious = [], [], []
    for k, p in enumerate(probs):
        t = frames.targets[k].cpu().numpy()
        ce = -np.log(np.clip(np.where(t == 1, p, 1.0 - p), eps, 1.0))
        w = frames.weights[k].cpu().numpy() if frames.weights is not None else 1.0
        losses.append(float(np.mean(w * ce)))
        pred = p > config.threshold
        f1s.append(f1(pred, t == 1))
        ious.append(iou(pred, t == 1))
    return {"val_loss": float(np.mean(losses)), "val_f1": float(np.mean(f1s)),
            "val_iou": float(np.mean(ious))}


THRESHOLD_GRID: tuple[float, ...] = tuple(round(0.1 + 0.05 * i, 2) for i in range(17))


def choose_threshold(probs: list[np.ndarray], labels: list[np.ndarray],
                     grid: tuple[float, ...] = THRESHOLD_GRID) -> tuple[float, dict[str, float]]:
    """The threshold on the cell probability with the best mean pixel IoU against the cells
    (``labels > 0``, as the test metrics compare) over ``grid``, and the IoU at each threshold.

    The paper takes the argmax of the softmax, i.e. 0.5. A network trained with the border
    weights of eq. 2 and class balancing can be calibrated away from 0.5 (it under-segments
    when the test cells look unlike the training ones), so the threshold is a free parameter
    of the prediction; choosing it on the validation frames keeps the test split unseen. Ties
    go to the threshold nearest 0.5.
    """
    from unetlib.metrics import iou

    if not probs:
        raise ValueError("choose_threshold needs at least one validation frame")
    if len(probs) != len(labels):
        raise ValueError(f"{len(probs)} probability maps but {len(labels)} label images")
    cells = [np.asarray(lab) > 0 for lab in labels]
    scan = {f"{t:.2f}": float(np.mean([iou(p > t, c) for p, c in zip(probs, cells, strict=True)]))
            for t in grid}
    best = max(grid, key=lambda t: (round(scan[f"{t:.2f}"], 12), -abs(t - 0.5)))
    return float(best), scan


def _threshold_record(result: dict) -> dict:
    # runs saved before tune_threshold existed have no record: they used the fixed threshold
    return result.get("threshold") or {"value": result["config"]["threshold"],
                                       "chosen_on": "fixed"}


def result_threshold(result: dict) -> float:
    """The threshold a run's test metrics used (the validation-chosen one, if it tuned)."""
    return float(_threshold_record(result)["value"])


def describe_threshold(result: dict) -> str:
    """One sentence on a run's threshold, for the book: which, how chosen, and what the fixed
    threshold would have scored."""
    th = _threshold_record(result)
    if th["chosen_on"] != "validation":
        return f"Threshold {th['value']:.2f} (fixed)."
    val_iou = th["val_iou"][f"{th['value']:.2f}"]
    text = (f"Threshold {th['value']:.2f}, the best validation IoU ({val_iou:.3f}) over "
            f"{len(th['val_iou'])} thresholds")
    fixed = th.get("test_at_fixed")
    if fixed:
        text += (f"; at the fixed {result['config']['threshold']:.2f} the test IoU would be "
                 f"{fixed['iou']:.3f} and SEG {fixed['seg']:.3f}")
    return text + "."


def test_metrics(probs: list[np.ndarray], labels: list[np.ndarray], config: TrainConfig,
                 challenge_scores: bool = True) -> dict:
    """Metrics on the test split, averaged over frames (per-frame values kept too).

    Pixel IoU/F1/error compare the thresholded foreground with the ground truth's cells; SEG
    (the Cell Tracking Challenge's measure, the paper's "IoU" for the cell data sets) and the
    split/merge counts compare instances: connected components of the thresholded foreground.
    For ISBI 2012 the challenge's Rand, information and pixel errors (best over thresholds) and
    the warping error are added (unless ``challenge_scores`` is false).
    """
    from unetlib import metrics as M

    per_image, jaccards = [], []
    for p, lab in zip(probs, labels, strict=True):
        gt_fg = lab > 0
        pred_fg = p > config.threshold
        inst = M.instance_labels_from_probability(p, threshold=config.threshold,
                                                  min_size=config.min_size)
        jac = M.seg_jaccards(inst, lab)[1]
        jaccards.append(jac)
        row = {
            "iou": M.iou(pred_fg, gt_fg),
            "f1": M.f1(pred_fg, gt_fg),
            "pixel_error": M.pixel_error(pred_fg, gt_fg),
            "seg": float(jac.mean()) if jac.size else float("nan"),
        }
        row.update({k: v for k, v in M.split_merge_counts(inst, lab).items()
                    if isinstance(v, (int, float))})
        if challenge_scores and config.dataset == "isbi2012":
            row.update({f"isbi_{k}": v for k, v in M.isbi_scores(p, lab).items()
                        if isinstance(v, (int, float))})
        per_image.append(row)
    summary = {k: float(np.nanmean([r[k] for r in per_image])) for k in per_image[0]}
    # the challenge's SEG averages over every reference cell of the sequence, not over frames
    pooled = np.concatenate(jaccards) if jaccards else np.zeros(0)
    summary["seg"] = float(pooled.mean()) if pooled.size else float("nan")
    summary["cells"] = int(pooled.size)
    return {"mean": summary, "per_image": per_image}


# ------------------------------------------------------------------------------------------------
# checkpoints


def _save(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _rng_state(generator: torch.Generator) -> dict:
    return {"torch": torch.get_rng_state(), "sampler": generator.get_state()}


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
        cached = json.loads(result_path.read_text())
        if cached.get("config") == _config_dict(config, comparable=True):
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
    augment = _augmenter(config)
    # the same sampler seed on every rank: each rank takes its slice of one global batch
    sampler = torch.Generator().manual_seed(config.seed)
    # augmentation draws come from a CPU generator (Augment samples its parameters there), so a
    # resumed run continues the same random sequence on any device
    aug_gen = torch.Generator().manual_seed(config.seed * 1000 + rank + 1)
    step, history, best = 0, [], {"val_loss": math.inf, "step": 0, "state": None}
    last_path = run_dir / "last.pt"
    if config.resume and last_path.is_file():
        ckpt = _load(last_path)
        if ckpt.get("key") == config.key():
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            step, history = int(ckpt["step"]), list(ckpt["history"])
            best = {"val_loss": float(ckpt["best_val_loss"]), "step": int(ckpt["best_step"]),
                    "state": ckpt["best_model"]}
            torch.set_rng_state(ckpt["rng"]["torch"])
            sampler.set_state(ckpt["rng"]["sampler"])
            aug_gen.set_state(ckpt["rng"]["aug"])
    net = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    autocast = torch.autocast("cuda", dtype=torch.bfloat16,
                              enabled=config.amp and device.type == "cuda")
    from tqdm.auto import tqdm

    bar = tqdm(total=config.steps, initial=step, disable=not config.progress or rank != 0,
               desc=f"train {config.run_name()}", unit="step")
    running, run_f1, stale, stopped_early = [], [], 0, False
    train_seconds = 0.0
    while step < config.steps:
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
        step += 1
        logged = loss.detach()
        if world > 1:  # the global batch's loss, as a single process would log it
            logged = logged.clone()
            dist.all_reduce(logged)
            logged /= world
        running.append(logged.item())
        with torch.no_grad():
            from unetlib.losses import center_crop

            pred = logits.argmax(1)
            tgt = center_crop(target, pred.shape[-2:])
            tp = ((pred == 1) & (tgt == 1)).sum().item()
            denom = (pred == 1).sum().item() + (tgt == 1).sum().item()
            run_f1.append(2 * tp / denom if denom else 1.0)
        train_seconds += time.perf_counter() - t0
        bar.update(1)
        bar.set_postfix(loss=f"{running[-1]:.3f}")

        if step % config.eval_every == 0 or step == config.steps:
            stop = torch.zeros(1)
            if rank == 0:
                row = {"step": step, "train_loss": float(np.mean(running)),
                       "train_f1": float(np.mean(run_f1)), "seconds": round(train_seconds, 2)}
                running, run_f1 = [], []
                if val_f is not None:
                    row.update(validation_scores(
                        predict_frames(model, val_f.images, config), val_f, config))
                    if row["val_loss"] < best["val_loss"]:
                        best = {"val_loss": row["val_loss"], "step": step,
                                "state": {k: v.detach().cpu().clone()
                                          for k, v in model.state_dict().items()}}
                        stale = 0
                    else:
                        stale += 1
                history.append(row)
                bar.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in row.items()), file=sys.stderr)
                rng = _rng_state(sampler)
                rng["aug"] = aug_gen.get_state()
                _save(last_path, {
                    "key": config.key(), "step": step, "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "history": history,
                    "best_val_loss": best["val_loss"], "best_step": best["step"],
                    "best_model": best["state"], "rng": rng,
                })
                if config.patience and stale >= config.patience:
                    stop[0] = 1
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
    model.eval()
    from unetlib.model import save_checkpoint

    save_checkpoint(run_dir / "best.pt", model, step=best["step"] or step, run=config.run_name())
    threshold = {"value": config.threshold, "chosen_on": "fixed"}
    eval_config = config
    if config.tune_threshold and val_f is not None:
        value, scan = choose_threshold(predict_frames(model, val_f.images, config), val_f.labels)
        threshold = {"value": value, "chosen_on": "validation", "val_iou": scan}
        eval_config = dataclasses.replace(config, threshold=value)
    test_probs = predict_frames(model, [s.image for s in test_s], config)
    test_labels = [np.asarray(s.labels) for s in test_s]
    metrics = test_metrics(test_probs, test_labels, eval_config)
    if eval_config.threshold != config.threshold:
        # the fixed threshold's pixel and SEG scores too, so the choice's effect is on record
        at_fixed = test_metrics(test_probs, test_labels, config, challenge_scores=False)["mean"]
        threshold["test_at_fixed"] = {k: at_fixed[k] for k in
                                      ("iou", "f1", "pixel_error", "seg", "splits", "merges")}
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
        "metrics": metrics["mean"],
        "threshold": threshold,
        "per_image": metrics["per_image"],
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


def _apply_augment(augment: nn.Module, image: torch.Tensor, target: torch.Tensor,
                   weight: torch.Tensor | None, generator: torch.Generator):
    """Image (order 3), target classes (order 0) and weight map (order 1), jointly deformed."""
    out = augment(image, target, weight, generator=generator)
    return out[0], out[1], out[2]


def _config_dict(config: TrainConfig, comparable: bool = False) -> dict:
    d = dataclasses.asdict(config)
    if comparable:
        for k in ("out_dir", "resume", "reuse", "progress"):
            d.pop(k, None)
    return d


def record_experiment(path: str | os.PathLike, experiment: str, profile: str,
                      runs: dict[str, dict], command: str | None = None, **extra: Any) -> Path:
    """Write ``book/results/<experiment>.json``: data set, profile, metrics of each run,
    hardware, wall time and the command that reproduces it, as the book's results table reads
    them. Inside a notebook the command is the pipeline's (``python -m unetlib.book run
    --profile P --only EXPERIMENT``), not the kernel's."""
    first = next(iter(runs.values()))
    if command is None:
        command = first["command"]
        if "ipykernel" in command or "kernel" in command:
            from unetlib.book import pipeline_command

            command = pipeline_command(profile, [experiment])
    data = {
        "experiment": experiment,
        "dataset": first["dataset"],
        "profile": profile,
        "metrics": {name: r["metrics"] for name, r in runs.items()},
        "runs": {name: {k: r[k] for k in ("run", "config", "best_step", "steps_done",
                                           "stopped_early", "train_seconds", "wall_seconds",
                                           "history", "per_image", "frames")}
                 for name, r in runs.items()},
        "thresholds": {name: r.get("threshold") for name, r in runs.items()},
        "hardware": first["hardware"],
        "wall_seconds": round(sum(r["wall_seconds"] for r in runs.values()), 1),
        "command": command,
        **extra,
    }
    return write_json_atomic(path, data)


# ------------------------------------------------------------------------------------------------
# command line


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m unetlib.train",
                                description="Train and evaluate a U-Net (see unetlib.train).")
    for f in dataclasses.fields(TrainConfig):
        if f.name == "extra":
            continue
        default = f.default
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, bool):
            p.add_argument(flag, type=_bool, default=default, metavar="true|false")
        elif f.name in ("data_root", "class_weights"):
            p.add_argument(flag, default=default, type=_none_or(str))
        elif f.name == "tile":
            p.add_argument(flag, default=default, type=_none_or(int))
        else:
            p.add_argument(flag, default=default, type=type(default))
    return p


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _none_or(kind):
    def convert(text: str):
        return None if text.lower() == "none" else kind(text)

    return convert


def main(argv: list[str] | None = None) -> int:
    args = vars(_parser().parse_args(argv))
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
