"""Every option of a training run, in one dataclass, and its command line.

``TrainConfig`` fields are the CLI flags of ``python -m unetlib.train`` (``--n-train 4``) and the
names a profile (:mod:`unetlib.profiles`) and a notebook's ``overrides`` use. Values are checked
when the config is built, each error naming its field.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

AUGMENT_PARTS = ("shift", "rotation", "elastic", "gray", "flip")


@dataclass
class TrainConfig:
    """Every option of a training run. Field names are the papermill parameters and CLI flags."""

    # data
    dataset: str = "synthetic"  # a data set's name (unetlib.data.DATASETS or a CTC folder)
    data_root: str | None = None  # folder of the data sets; None: $UNETLIB_DATA or ./data
    n_train: int = 0  # frames of the train split to use; 0 = all
    n_test: int = 0  # frames of the test split to evaluate; 0 = all
    val_fraction: float = 0.2  # of the train frames, held out for validation
    truth: str = "gold"  # Cell Tracking Challenge sets: "silver" trains on the silver truth
    # Cell Tracking Challenge sets, gold training: this many silver-truth frames of the training
    # sequences (time points without gold truth, spread evenly) join the validation frames, which
    # choose the checkpoint and the instance parameters (beyond the paper); 0 = gold frames only
    silver_val: int = 0
    # silver training (truth="silver"): time points within this many frames of a validation frame
    # are not trained on either, so that validation does not score near-copies of training frames
    # (beyond the paper); 0 = only the validation time points themselves are left out
    silver_gap: int = 0
    image_size: int = 256  # side of the training crops (the network's input)
    # model (unetlib.UNet)
    depth: int = 5  # resolution levels (the paper: 5, four poolings)
    base_channels: int = 64  # feature channels of the first level (the paper: 64)
    padding: str = "valid"  # "valid" (the paper: unpadded 3x3 convolutions) or "same"
    batch_norm: bool = False  # BatchNorm after each convolution (beyond the paper)
    dropout: float = 0.5  # dropout at the end of the contracting path (paper sec. 3.1)
    up_mode: str = "transpose"  # "transpose" (the paper's 2x2 up-convolution) or "bilinear"
    # loss
    loss: str = "weighted_ce"  # "weighted_ce" (paper eq. 1 with eq. 2) or "bce_dice"
    w0: float = 10.0  # border weight of eq. 2; 0 = class balance only
    sigma: float = 5.0  # width (pixels) of the border term of eq. 2
    class_weights: str | None = "balanced"  # w_c of eq. 2: "balanced" class frequencies or None
    # augmentation: "all", "none", or a comma-separated subset of AUGMENT_PARTS
    augment: str = "all"
    elastic_sigma: float = 10.0  # std (pixels) of the random grid displacements (paper: 10)
    elastic_points: int = 3  # control points per axis of the coarse grid (paper: 3 x 3)
    # "bspline" (the paper's coarse grid) or "gaussian": Simard et al.'s (2003) per-pixel noise
    # smoothed by a Gaussian of elastic_smooth px, scaled by elastic_alpha (beyond the paper)
    elastic_field: str = "bspline"
    # scale of the Gaussian field (with elastic_smooth 20: the paper's field's root-mean-square
    # displacement on 256-px crops, about 8 px)
    elastic_alpha: float = 1000.0
    elastic_smooth: float = 20.0  # std (pixels) of the Gaussian that smooths the Gaussian field
    # random zoom by a factor z with log z ~ U(-log(1 + max_scale), log(1 + max_scale)), drawn
    # with the other geometry and applied in the same single interpolation (beyond the paper,
    # which names no scaling; 0.4: about nnU-Net's range 0.7 to 1.4); 0 = no zoom (the paper)
    max_scale: float = 0.0
    # optimisation
    optimizer: str = "sgd"  # "sgd" (paper), "nesterov" (Keras reproduction), "adam" (AMSGrad)
    lr: float = 0.01  # learning rate (the paper gives none)
    momentum: float = 0.99  # SGD momentum (paper: 0.99)
    weight_decay: float = 0.0  # L2 weight decay
    lr_schedule: str = "constant"  # "constant" (paper) or "poly": lr (1 - step/steps)^0.9 (nnU-Net)
    ema: float = 0.0  # decay of an exponential moving average of the weights; 0 = none (paper)
    steps: int = 1000  # optimisation steps
    batch_size: int = 1  # crops per step (the paper: 1 large tile)
    eval_every: int = 100  # steps between validations (and checkpoints)
    patience: int = 0  # evaluations without improvement before stopping; 0 = never stop early
    # seconds of training after which the run evaluates once more and stops (a time-boxed GPU
    # session); 0 = no limit. Where it stops depends on the machine's speed: the result says so
    time_limit: float = 0.0
    # which evaluation's weights are kept: the lowest validation loss (the Keras reproduction),
    # or the best validation SEG of any instance method ("val_seg"; scores instances, so it
    # needs instance labels; beyond the paper)
    select_by: str = "val_loss"
    # evaluation (unetlib.evaluate, unetlib.instances)
    # side of the *input* tile of overlap-tile prediction (paper: 572, whose output is 388);
    # None = predict_tiled's default
    input_tile: int | None = None
    tta: bool = False  # average the 8 flips and rotations at test time
    threshold: float = 0.5  # cell probability above which a pixel is a cell (paper: argmax)
    seed_threshold: float = 0.9  # probability above which the watershed seeds lie (beyond paper)
    min_size: int = 64  # predicted objects smaller than this (pixels) are dropped (specks)
    # choose threshold, seed level and min_size by the best validation SEG (instances.GRIDS)
    # instead of the three fixed values above; the test split never takes part in the choice
    tune_threshold: bool = False
    # run
    seed: int = 0  # initial weights, crops and augmentation draws
    device: str = "auto"  # "auto" (CUDA if present), "cpu", "mps", "cuda" or "cuda:N"
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    # bf16 autocast of the training steps on the CPU too (fast where the CPU has bf16
    # instructions, e.g. AVX512-BF16 or AMX; a tenfold slower emulation elsewhere: training warns);
    # validation and test in fp32. A profile or override may say "auto": True exactly where the
    # CPU has them (unetlib.provenance.cpu_bf16), resolved by unetlib.profiles.train_config
    amp_cpu: bool = False
    # keep the network's weights and batches in channels-last (NHWC) memory: faster convolutions
    # on CPU (benchmarks/bench_train_step.py) and GPU; the same arithmetic up to rounding
    channels_last: bool = False
    out_dir: str = "runs"  # runs are kept in OUT_DIR/<dataset>-<hash of the options>
    resume: bool = True  # continue an interrupted run, or a shorter finished one, from last.pt
    reuse: bool = True  # return a finished run with these options instead of retraining
    keep_checkpoints: bool = False  # keep the weights of every evaluation (budget curves)
    progress: bool = True  # show a progress bar
    extra: dict = field(default_factory=dict)  # free-form notes stored with the run

    def __post_init__(self) -> None:
        _check_types(self)
        choices = {
            "padding": ("valid", "same"),
            "loss": ("weighted_ce", "bce_dice"),
            "optimizer": ("sgd", "nesterov", "adam"),
            "lr_schedule": ("constant", "poly"),
            "up_mode": ("transpose", "bilinear"),
            "truth": ("gold", "silver"),
            "select_by": ("val_loss", "val_seg"),
            "elastic_field": ("bspline", "gaussian"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("steps", "batch_size", "eval_every", "image_size", "depth", "base_channels"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("threshold", "seed_threshold"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {getattr(self, name)!r}")
        for name in ("n_train", "n_test", "patience", "min_size", "silver_val", "silver_gap"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            raise ValueError(f"device must be auto, cpu, mps, cuda or cuda:N, got {self.device!r}")
        if Path(self.out_dir).exists() and not Path(self.out_dir).is_dir():
            raise ValueError(f"out_dir {self.out_dir!r} is a file, not a folder")
        if self.silver_val and self.truth != "gold":
            raise ValueError("silver_val adds silver frames to a gold protocol's validation; with "
                             f"truth={self.truth!r} the silver frames are the training frames")
        if self.silver_gap and self.truth != "silver":
            raise ValueError("silver_gap leaves time points near the validation frames out of "
                             f"silver training; with truth={self.truth!r} it has nothing to do")
        for name in ("elastic_sigma", "elastic_alpha", "elastic_smooth", "max_scale"):
            value = getattr(self, name)
            if not 0.0 <= value < float("inf"):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.time_limit < 0:
            raise ValueError(f"time_limit must be >= 0 seconds, got {self.time_limit!r}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema must be in [0, 1), got {self.ema!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction!r}")
        parts = augment_parts(self.augment)  # validates
        if self.max_scale and not parts:
            raise ValueError("max_scale zooms within the augmentation; with augment='none' it has "
                             "nothing to do")
        # the data set's name becomes part of paths (data_root/NAME, runs/NAME-KEY)
        name = self.dataset
        if (not name or "/" in name or "\\" in name or name in (".", "..") or ":" in name
                or name.startswith(".")):
            raise ValueError(f"dataset must be a data set's name, not a path, got {name!r}")
        if self.input_tile is not None:  # fail now, not at the first validation of a long run
            from unetlib.tiling import check_tile

            check_tile(self.depth, self.padding, self.input_tile, name="input_tile")

    def key(self) -> str:
        """A short hash of everything that changes the result (not where or how it is shown)."""
        skip = {"out_dir", "resume", "reuse", "progress", "device", "extra", "keep_checkpoints"}
        # runs made before these options keep their keys
        for name in ("time_limit", "silver_val", "silver_gap", "channels_last", "amp_cpu",
                     "max_scale"):
            if not getattr(self, name):
                skip.add(name)
        if self.elastic_field == "bspline":  # so do runs with the paper's field
            skip.update({"elastic_field", "elastic_alpha", "elastic_smooth"})
        spec = {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]

    def run_name(self) -> str:
        """The run's folder name under ``runs/``: the data set and the hash of the options."""
        return f"{self.dataset}-{self.key()}"


_OPTIONAL: dict[str, type] = {"data_root": str, "class_weights": str, "input_tile": int}


def _check_types(config: TrainConfig) -> None:
    """Each field holds its type (ints may stand for floats; ``-p steps=2.7`` is an error naming
    ``steps``, not a silent truncation)."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name == "extra":
            if not isinstance(value, dict):
                raise ValueError(f"extra must be a dict, got {value!r}")
            continue
        if f.name in _OPTIONAL:
            kind, allow_none = _OPTIONAL[f.name], True
        else:
            kind, allow_none = type(f.default), False
        if value is None and allow_none:
            continue
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            setattr(config, f.name, float(value))
            continue
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
        if not ok:
            expected = kind.__name__ + (" or None" if allow_none else "")
            raise ValueError(f"{f.name} must be {expected}, got {value!r} "
                             f"({type(value).__name__})")


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


def with_available_data(config: TrainConfig, allow_synthetic: bool = False) -> TrainConfig:
    """``config`` itself if its data set is there; the same run on the synthetic data set only
    when the data set's folder is absent *and* ``allow_synthetic`` (said loudly, and the config's
    ``extra`` records the data set asked for). A name that is neither known nor a folder is an
    error listing the known names; a data set that is there but broken (a corrupt frame, a
    missing mask) is an error naming the file, never a synthetic run."""
    from unetlib.data import DATASETS, load_dataset
    from unetlib.paths import data_root

    if config.dataset == "synthetic":
        return config
    folder = data_root(config.data_root) / config.dataset
    if not folder.exists():
        if config.dataset not in DATASETS:
            raise ValueError(f"dataset: unknown data set {config.dataset!r} (no folder {folder}); "
                             f"known: {', '.join(DATASETS)}")
        if not allow_synthetic:
            raise FileNotFoundError(
                f"dataset {config.dataset!r}: {folder} not found. Get it with `python -m "
                f"unetlib.data fetch {config.dataset}` or set UNETLIB_DATA / data_root")
        print(f"*** {config.dataset} is not available ({folder} not found).\n"
              f"*** This run uses the SYNTHETIC data set: its numbers are NOT about "
              f"{config.dataset}. Get the data with `python -m unetlib.data fetch "
              f"{config.dataset}` or set UNETLIB_DATA.", flush=True)
        # the synthetic set has no silver truth: its stand-in run validates on its own frames
        return dataclasses.replace(config, dataset="synthetic", silver_val=0,
                                   extra={**config.extra, "requested_dataset": config.dataset})
    load_dataset(config.dataset, "test", config.data_root)  # errors name the broken file
    return config


# ------------------------------------------------------------------------------------------------
# command line


_SECTIONS = ("data", "model", "loss", "optimisation", "evaluation", "run")


def field_help() -> dict[str, str]:
    """Each TrainConfig field's meaning, read from the comments of its definition (the one
    place it is written): the comment on the field's line, else the comment lines just above
    it, section titles (``# data``, ``# model ...``) left out."""
    import inspect

    lines = inspect.getsource(TrainConfig).splitlines()
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    out: dict[str, str] = {}
    block: list[str] = []
    for line in lines:
        text = line.strip()
        if text.startswith("#"):
            comment = text.lstrip("# ").strip()
            if comment.split(" ", 1)[0].rstrip(":") not in _SECTIONS:
                block.append(comment)
            continue
        name = text.split(":", 1)[0]
        if name in names:
            inline = line.split("  # ", 1)[1].strip() if "  # " in line else ""
            out[name] = inline or " ".join(block)
        block = []
    return out


def parser() -> argparse.ArgumentParser:
    """Returns the ``python -m unetlib.train`` argument parser: one ``--option`` per field of
    :class:`TrainConfig` with its default, its help read from the field's comment."""
    p = argparse.ArgumentParser(prog="python -m unetlib.train",
                                description="Train and evaluate a U-Net (see unetlib.train).")
    helps = field_help()
    for f in dataclasses.fields(TrainConfig):
        if f.name == "extra":
            continue
        default = f.default
        flag = "--" + f.name.replace("_", "-")
        text = f"{helps.get(f.name, '')} (default: {default})".replace("%", "%%")
        if isinstance(default, bool):
            p.add_argument(flag, type=_bool, default=default, metavar="true|false", help=text)
        elif f.name in ("data_root", "class_weights"):
            p.add_argument(flag, default=default, type=_none_or(str), help=text)
        elif f.name == "input_tile":
            p.add_argument(flag, default=default, type=_none_or(int), help=text)
        else:
            p.add_argument(flag, default=default, type=type(default), help=text)
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
