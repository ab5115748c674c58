"""Evaluation of a trained U-Net: predict whole frames, choose the instance parameters on the
validation frames, score the test frames.

- :func:`predict_frames`: the cell probability of each frame by overlap-tile prediction (Fig. 2).
- :func:`validation_scores`: the training energy (eq. 1) and pixel scores on whole validation
  frames, logged during training to pick the best checkpoint.
- :func:`choose_all`: for each instance method of :mod:`unetlib.instances` (the paper's
  connected components, and a seeded watershed beyond the paper) the parameters with the best
  validation SEG; the test frames never take part.
- :func:`score_split`: pixel IoU/F1/error, the Cell Tracking Challenge SEG (pooled over cells),
  split and merge counts and, for ISBI 2012, the challenge's Rand, information and warping errors.
- :func:`evaluate_model`: all of the above for one model; its dict is what a run's
  ``result.json`` holds under ``instances``.
- :func:`ensemble_probabilities`: several models' probabilities averaged frame by frame (beyond
  the paper), scored by :func:`evaluate_probabilities` as one model's are.
- :func:`at_training_contrast`: a frame brought to the training frames' mean and contrast, a
  probe of a test sequence's other contrast (beyond the paper).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from unetlib import metrics as M
from unetlib.instances import METHOD_NAMES, METHODS, InstanceParams, choose_instances

# the pixel and instance scores copied into a record of what the fixed threshold would have given
SUMMARY_KEYS: tuple[str, ...] = ("iou", "f1", "pixel_error", "seg", "splits", "merges")


@torch.no_grad()
def predict_frames(model: nn.Module, images: torch.Tensor | Sequence, config: Any,
                   batch_size: int = 4) -> list[np.ndarray]:
    """Cell probability (H, W) of each frame by overlap-tile prediction (``config.input_tile``:
    the input tile; ``config.tta``: the 8-fold test-time augmentation)."""
    from unetlib.tiling import predict_tiled

    out = []
    for image in images:
        probs = predict_tiled(model, image, tile=config.input_tile, batch_size=batch_size,
                              tta=config.tta)
        out.append(probs[1].float().cpu().numpy())
    return out


def at_training_contrast(image: torch.Tensor | np.ndarray, model: nn.Module) -> torch.Tensor:
    """``image`` with its own mean and standard deviation replaced by the training frames' (the
    ``input_mean`` and ``input_std`` the model keeps), so that the model's standardisation
    becomes a per-frame one: what the model sees no longer depends on the frame's brightness
    or contrast (any ``a * image + b`` with ``a > 0`` gives the same input). Beyond the paper; a
    probe of how much a test sequence's other contrast costs (``studies/seg_breakdown.py``)."""
    x = torch.as_tensor(np.asarray(image) if not torch.is_tensor(image) else image).double()
    std = float(x.std())
    if not std > 0:
        raise ValueError(f"a frame of constant gray value ({float(x.mean())!r}) has no contrast "
                         "to match")
    mean, target_std = float(getattr(model, "input_mean", 0.0)), float(getattr(model,
                                                                               "input_std", 1.0))
    return ((x - x.mean()) / std * target_std + mean).float()


def ensemble_probabilities(per_model: Sequence[Sequence[np.ndarray]]) -> list[np.ndarray]:
    """Frame by frame, the mean cell probability of several models' predictions of the same
    frames: an ensemble (beyond the paper; nnU-Net averages its five folds' probabilities the
    same way). ``per_model[m][k]`` is model ``m``'s probability of frame ``k``."""
    if not per_model:
        raise ValueError("ensemble_probabilities needs the predictions of at least one model")
    n = len(per_model[0])
    for m, probs in enumerate(per_model):
        if len(probs) != n:
            raise ValueError(f"model {m} predicted {len(probs)} frames, model 0 {n}")
    out = []
    for k in range(n):
        frames = [np.asarray(probs[k], dtype=np.float64) for probs in per_model]
        for m, f in enumerate(frames):
            if f.shape != frames[0].shape:
                raise ValueError(f"frame {k}: model {m}'s probability is {f.shape}, model 0's "
                                 f"{frames[0].shape}")
        out.append(np.mean(frames, axis=0).astype(np.float32))
    return out


def validation_scores(probs: list[np.ndarray], targets: Sequence[np.ndarray],
                      weights: Sequence[np.ndarray] | None, threshold: float) -> dict[str, float]:
    """Validation loss (the training energy of eq. 1 on whole frames), pixel F1 and IoU."""
    eps = 1e-7
    losses, f1s, ious = [], [], []
    for k, p in enumerate(probs):
        t = np.asarray(targets[k])
        ce = -np.log(np.clip(np.where(t == 1, p, 1.0 - p), eps, 1.0))
        w = np.asarray(weights[k]) if weights is not None else 1.0
        losses.append(float(np.mean(w * ce)))
        pred = p > threshold
        f1s.append(M.f1(pred, t == 1))
        ious.append(M.iou(pred, t == 1))
    return {"val_loss": float(np.mean(losses)), "val_f1": float(np.mean(f1s)),
            "val_iou": float(np.mean(ious))}


def validation_seg(probs: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> dict[str, float]:
    """The best validation SEG of each instance method over its grid (what
    :func:`choose_instances` would pick), and their maximum as ``val_seg``: the score that
    ``select_by="val_seg"`` keeps the best checkpoint by."""
    out = {}
    for method in METHODS:
        _, scan = choose_instances(probs, labels, method)
        out[f"val_seg_{method}"] = max(row["seg"] for row in scan)
    out["val_seg"] = max(out.values())
    return out


def score_split(probs: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                params: InstanceParams, challenge_scores: bool = False) -> dict[str, Any]:
    """Scores of one split, averaged over frames (per-frame rows kept), for one way of making
    instances. Pixel scores compare the instances' foreground (after the size filter) with the
    ground truth's cells; SEG pools the Jaccard of every reference cell over all frames, as the
    Cell Tracking Challenge does; ``cells`` is how many reference cells it pooled. With
    ``challenge_scores`` the ISBI 2012 challenge's scores of the probability map are added."""
    if len(probs) != len(labels):
        raise ValueError(f"{len(probs)} probability maps but {len(labels)} label images")
    if not probs:
        raise ValueError("score_split needs at least one frame")
    per_image, jaccards = [], []
    for p, lab in zip(probs, labels, strict=True):
        lab = np.asarray(lab)
        inst = params(p)
        jac = M.seg_jaccards(inst, lab)[1]
        jaccards.append(jac)
        fg_p, fg_g = inst > 0, lab > 0
        row = {"iou": M.iou(fg_p, fg_g), "f1": M.f1(fg_p, fg_g),
               "pixel_error": M.pixel_error(fg_p, fg_g),
               "seg": float(jac.mean()) if jac.size else float("nan")}
        row.update({k: v for k, v in M.split_merge_counts(inst, lab).items()
                    if isinstance(v, (int, float))})
        if challenge_scores:
            row.update({f"isbi_{k}": v for k, v in M.isbi_scores(p, lab).items()
                        if isinstance(v, (int, float))})
        per_image.append(row)
    summary = {k: float(np.nanmean([r[k] for r in per_image])) for k in per_image[0]}
    pooled = np.concatenate(jaccards)
    summary["seg"] = float(pooled.mean()) if pooled.size else float("nan")
    summary["cells"] = int(pooled.size)
    return {"mean": summary, "per_image": per_image}


def fixed_params(config: Any, method: str) -> InstanceParams:
    """The instance parameters a config states (used when nothing is chosen on validation)."""
    return InstanceParams(method=method, threshold=config.threshold,
                          seed_threshold=config.seed_threshold, min_size=config.min_size)


def choose_all(val_probs: Sequence[np.ndarray] | None, val_labels: Sequence[np.ndarray] | None,
               config: Any) -> dict[str, dict[str, Any]]:
    """For each method: the parameters (chosen by validation SEG when ``config.tune_threshold``
    and validation frames exist, else the config's fixed ones) and the validation scan."""
    out = {}
    for method in METHODS:
        if config.tune_threshold and val_probs:
            params, scan = choose_instances(val_probs, val_labels, method)
            best = max(row["seg"] for row in scan)
            out[method] = {"params": params, "chosen_on": "validation", "val_seg": best,
                           "scan": scan}
        else:
            out[method] = {"params": fixed_params(config, method), "chosen_on": "fixed"}
    return out


def evaluate_model(model: nn.Module, config: Any, val_images: Sequence[np.ndarray],
                   val_labels: Sequence[np.ndarray], test_images: Sequence[np.ndarray],
                   test_labels: Sequence[np.ndarray],
                   val_probs: Sequence[np.ndarray] | None = None) -> dict[str, Any]:
    """Choose each instance method's parameters on the validation frames, then score the test
    frames with them. Returns ``{method: {"params", "chosen_on", "val_seg", "scan", "metrics",
    "per_image"}}`` plus ``"fixed"``: the paper's way at the config's fixed threshold (so the
    choice's effect is on record). ``val_probs``: ``model``'s probabilities of ``val_images``
    where they are already at hand (the training loop keeps its best validation's), else they
    are predicted."""
    if val_probs is not None and len(val_probs) != len(val_images):
        raise ValueError(f"val_probs has {len(val_probs)} maps for {len(val_images)} "
                         "validation frames")
    if val_probs is None and len(val_images):
        val_probs = predict_frames(model, val_images, config)
    val_probs = list(val_probs) if val_probs is not None and len(val_probs) else None
    test_probs = predict_frames(model, test_images, config)
    return evaluate_probabilities(val_probs, val_labels, test_probs, test_labels, config)


def evaluate_probabilities(val_probs: Sequence[np.ndarray] | None,
                           val_labels: Sequence[np.ndarray],
                           test_probs: Sequence[np.ndarray], test_labels: Sequence[np.ndarray],
                           config: Any) -> dict[str, Any]:
    """:func:`evaluate_model` from probabilities already predicted (a GPU session's, brought
    back): the same choice on the validation frames and the same test scores."""
    challenge = config.dataset == "isbi2012"
    chosen = choose_all(val_probs, val_labels, config)
    out: dict[str, Any] = {}
    for method, rec in chosen.items():
        scores = score_split(test_probs, test_labels, rec["params"],
                             challenge_scores=challenge and method == "components")
        out[method] = {**rec, "params": rec["params"].as_dict(), "metrics": scores["mean"],
                       "per_image": scores["per_image"]}
    paper = fixed_params(config, "components")
    fixed = (out["components"]["metrics"] if chosen["components"]["params"] == paper
             else score_split(test_probs, test_labels, paper)["mean"])
    out["fixed"] = {"params": paper.as_dict(), "metrics": {k: fixed[k] for k in SUMMARY_KEYS}}
    return out


def paper_way_fields(instances: dict[str, Any]) -> dict[str, Any]:
    """The fields a run's result gives the paper's way (connected components) at its top level:
    ``metrics``, ``per_image`` and the ``threshold`` it used with how it was chosen."""
    paper_way = instances["components"]
    return {"metrics": paper_way["metrics"], "per_image": paper_way["per_image"],
            "threshold": {"value": paper_way["params"]["threshold"],
                          "chosen_on": paper_way["chosen_on"]}}


# ------------------------------------------------------------------------------------------------
# reading a run's record


def result_threshold(result: dict) -> float:
    """The threshold of the paper's way (connected components) that a run's test metrics used."""
    return float(result["instances"]["components"]["params"]["threshold"])


def describe_instances(result: dict) -> str:
    """Markdown: how each method turned probabilities into cells, how its parameters were
    chosen, and the test SEG it gave."""
    inst = result["instances"]
    lines = []
    labels = {m: "Paper's way" if m == "components" else f"Beyond the paper, {name}"
              for m, name in METHOD_NAMES.items()}
    for method, label in labels.items():
        if method not in inst:  # results scored before the method existed
            continue
        rec = inst[method]
        params = InstanceParams(**rec["params"])
        how = (f"chosen by the best validation SEG ({rec['val_seg']:.3f}) over "
               f"{len(rec['scan'])} settings" if rec["chosen_on"] == "validation" else "fixed")
        m = rec["metrics"]
        lines.append(f"- **{label}**: {params.describe()}; {how}. Test SEG **{m['seg']:.3f}**, "
                     f"pixel IoU {m['iou']:.3f}, {m['merges']:.2f} merges and {m['splits']:.2f} "
                     "splits per frame.")
    fixed = inst.get("fixed")
    if fixed:
        m = fixed["metrics"]
        lines.append(f"- For comparison, the paper's way at the fixed threshold "
                     f"{fixed['params']['threshold']:.2f}: test SEG {m['seg']:.3f}, "
                     f"pixel IoU {m['iou']:.3f}.")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# the training budget


def checkpoint_curve(result: dict, out_dir: str | os.PathLike | None = None,
                     steps: Sequence[int] | None = None,
                     progress: bool = False) -> list[dict[str, Any]]:
    """Test scores against training steps from one run's kept checkpoints
    (``keep_checkpoints=True``): for each checkpoint, each instance method's parameters are chosen
    on the validation frames by SEG and the test frames scored with them, exactly as at the end
    of training. One row per checkpoint: ``step``, the validation loss logged then, and for each
    method its test SEG, pixel IoU, merges, splits and the chosen parameters."""
    from pathlib import Path

    from unetlib.config import config_from
    from unetlib.model import load_checkpoint
    from unetlib.train import load_splits

    config = config_from(result["config"])
    run_dir = (Path(out_dir) / config.run_name() if out_dir is not None
               else Path(result["checkpoint"]).parent)
    folder = run_dir / "checkpoints"
    files = sorted(folder.glob("step*.pt"))
    if not files:
        raise FileNotFoundError(f"{folder}: no checkpoints (train with keep_checkpoints=True)")
    _, val_s, test_s = load_splits(config)
    val_images = [s.image for s in val_s]
    val_labels = [np.asarray(s.labels) for s in val_s]
    test_images = [s.image for s in test_s]
    test_labels = [np.asarray(s.labels) for s in test_s]
    logged = {row["step"]: row for row in result.get("history", [])}
    rows = []
    for path in files:
        model, extra = load_checkpoint(path)
        if extra.get("key") != config.key():
            raise ValueError(f"{path}: checkpoint of another configuration")
        step = int(extra["step"])
        if steps is not None and step not in steps:
            continue
        model.eval()
        ev = evaluate_model(model, config, val_images, val_labels, test_images, test_labels)
        row: dict[str, Any] = {"step": step, "val_loss": logged.get(step, {}).get("val_loss")}
        for method in (*METHODS, "fixed"):
            m = ev[method]["metrics"]
            row[method] = {"seg": m["seg"], "iou": m["iou"], "merges": m["merges"],
                           "splits": m["splits"], "params": ev[method]["params"],
                           "val_seg": ev[method].get("val_seg")}
        rows.append(row)
        if progress:
            print(f"step {step}: SEG paper's way {row['components']['seg']:.3f}, watershed "
                  f"{row['watershed']['seg']:.3f}, pixel IoU {row['components']['iou']:.3f}",
                  flush=True)
    return rows
