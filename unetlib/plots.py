"""Figures and tables for the book: training curves, predictions and their errors, results
beside the paper, the weight map (paper eq. 2) and its timing.

The ``plot_*`` functions return a ``matplotlib.figure.Figure``. Weight map:
``plot_weight_map_panels`` shows the panels of the Keras reproduction's Figure 8 (mask,
class-balance mask, border mask, combined) for one frame; ``plot_weight_map_timing`` plots the
output of ``benchmarks/bench_weights.py``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from unetlib.instances import METHOD_NAMES, beyond_method

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure

    from unetlib.weights import ClassWeights

# Published numbers the book compares against (sources in book/references.md).
PAPER = {
    "isbi2012": {"warping_error": 0.000353, "rand_error": 0.0382, "pixel_error": 0.0611},
    "PhC-C2DH-U373": {"seg": 0.9203},
    "DIC-C2DH-HeLa": {"seg": 0.7756},
}


def paper_metrics(dataset: str) -> dict[str, float]:
    """The paper's numbers for ``dataset`` under our metric names (the ISBI 2012 challenge's
    scores carry the ``isbi_`` prefix that :func:`unetlib.train.test_metrics` gives them);
    empty for a data set the paper did not report."""
    values = PAPER.get(dataset, {})
    return {("isbi_" + k if dataset == "isbi2012" else k): v for k, v in values.items()}


KERAS_REPRODUCTION = {  # Söderberg, Ivarsson, Stachowicz: DIC-C2DH-HeLa, pixel IoU and F1
    "without augmentation": {"iou": 0.332, "f1": 0.605},
    "with augmentation": {"iou": 0.770, "f1": 0.891},
}


def plot_history(runs: Mapping[str, Mapping[str, Any]],
                 keys: Sequence[str] = ("loss", "f1")) -> Figure:
    """Training and validation curves of one or more runs (like the Keras reproduction's
    Figures 5 and 6): one panel per run and quantity, training and validation overlaid."""
    import matplotlib.pyplot as plt

    names = list(runs)
    fig, axes = plt.subplots(len(keys), len(names), figsize=(4.2 * len(names), 3.0 * len(keys)),
                             squeeze=False, dpi=80)
    for j, name in enumerate(names):
        hist = runs[name]["history"]
        steps = [h["step"] for h in hist]
        for i, key in enumerate(keys):
            ax = axes[i, j]
            if f"train_{key}" in hist[0]:
                ax.plot(steps, [h[f"train_{key}"] for h in hist], "o-", ms=3, label="training")
            if f"val_{key}" in hist[0]:
                ax.plot(steps, [h[f"val_{key}"] for h in hist], "s-", ms=3, label="validation")
            best = runs[name].get("best_step")
            if best:
                ax.axvline(best, color="0.6", ls=":", lw=1, label="best (restored)")
            ax.set_title(f"{name}: {key}", fontsize=10)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            if i == 0 and j == 0:
                ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# The colour legend of every picture in the book (RGB uint8): the matplotlib figures here, the
# explorers of unetlib.widgets and the sample pictures of unetlib.data.show; captions and the
# explorers' legends name these colours.
CONTOUR = (255, 220, 0)  # true cell outlines: yellow
GRID = (0, 200, 255)  # the (deformed) lattice: cyan
ARROW = (255, 40, 40)  # control-point displacements: red
MERGE = (255, 140, 0)  # predicted cells that merge several true cells: orange
SPLIT = (230, 0, 230)  # true cells split into several predicted cells: magenta
TP = (40, 200, 60)  # true positive (correct cell) pixels: green
FP = (230, 40, 40)  # false positive (false cell) pixels: red
FN = (40, 110, 255)  # false negative (missed cell) pixels: blue

# colour and opacity of the pixel classes 0 TN, 1 FP, 2 FN, 3 TP (pred + 2 * truth), blended
# once into a table indexed by 256 * class + gray value
_CLASS_COLORS = np.array([(0, 0, 0), FP, FN, TP], dtype=np.float32)
_CLASS_ALPHA = np.array([0.0, 0.5, 0.5, 0.35], dtype=np.float32)
_CLASS_LUT = (np.arange(256, dtype=np.float32)[None, :, None] * (1 - _CLASS_ALPHA[:, None, None])
              + _CLASS_COLORS[:, None, :] * _CLASS_ALPHA[:, None, None] + 0.5
              ).astype(np.uint8).reshape(4 * 256, 3)


def mpl_color(color: tuple[int, int, int]) -> tuple[float, float, float]:
    """A legend colour as matplotlib takes it (floats in [0, 1])."""
    return tuple(c / 255 for c in color)


def overlay(image: np.ndarray, pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """uint8 RGB picture of a prediction against the truth over the gray image (values in
    [0, 1], clipped): true positives tinted :data:`TP` (green), false positives :data:`FP`
    (red), false negatives :data:`FN` (blue), true negatives left gray. One table look-up per
    pixel, fast enough for the explorers' redraws."""
    g = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.intp)
    code = np.asarray(pred, dtype=bool).view(np.uint8) + 2 * np.asarray(truth, bool).view(np.uint8)
    return np.take(_CLASS_LUT, code.astype(np.intp) * 256 + g, axis=0)


def plot_predictions(images: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                     probs: Mapping[str, Sequence[np.ndarray]],
                     threshold: float | Mapping[str, float] = 0.5,
                     titles: Sequence[str] | None = None) -> Figure:
    """Rows of test images: the image with its ground-truth outlines, then each model's
    probability map and its errors (like the Keras reproduction's Figure 7, with the errors made
    visible). Column headers on the first row, the frames' names on the left, one colour bar for
    every probability map. ``threshold``: one for all models, or one per model (keyed like
    ``probs``)."""
    import matplotlib.pyplot as plt
    from skimage.segmentation import find_boundaries

    cols = 1 + 2 * len(probs)
    fig, axes = plt.subplots(len(images), cols, figsize=(2.6 * cols + 0.8, 2.6 * len(images)),
                             squeeze=False, dpi=80)
    heads = ["image, ground truth"]
    for name in probs:
        t = threshold[name] if isinstance(threshold, Mapping) else threshold
        heads += [f"{name}:\nP(cell)", f"{name}:\nerrors at {t:.2f}"]
    shown = None
    for r, (img, lab) in enumerate(zip(images, labels, strict=True)):
        gt = np.stack([img] * 3, -1) * 0.7
        gt[find_boundaries(lab, mode="inner")] = mpl_color(CONTOUR)
        axes[r, 0].imshow(gt)
        for k, (name, maps) in enumerate(probs.items()):
            p = maps[r]
            shown = axes[r, 1 + 2 * k].imshow(p, cmap="viridis", vmin=0, vmax=1)
            t = threshold[name] if isinstance(threshold, Mapping) else threshold
            axes[r, 2 + 2 * k].imshow(overlay(img, p > t, lab > 0))
        name = titles[r].rsplit("/", 1)[-1] if titles else f"image {r + 1}"
        axes[r, 0].text(-0.04, 0.5, name, transform=axes[r, 0].transAxes, rotation=90,
                        ha="right", va="center", fontsize=12)
    for c, head in enumerate(heads):
        axes[0, c].set_title(head, fontsize=12)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.tight_layout(rect=(0.02, 0, 0.93, 1))
    if shown is not None:
        bar = fig.add_axes((0.945, 0.15, 0.015, 0.7))
        fig.colorbar(shown, cax=bar).set_label("P(cell)", fontsize=12)
    return fig


def plot_outlines(image: np.ndarray, truth: np.ndarray, found: Mapping[str, np.ndarray],
                  title: str | None = None) -> Figure:
    """Side by side for each entry of ``found`` (a name and its instance labels): the frame,
    the reference cells' outlines (:data:`CONTOUR`, yellow) and the found cells' (:data:`FP`,
    red), each reference cell labelled with its SEG Jaccard index (0 where no found cell holds
    more than half of it). Where the red outline runs inside the reference one, the cell's
    pixels were left out (:func:`unetlib.metrics.seg_breakdown`)."""
    import matplotlib.pyplot as plt
    from skimage.segmentation import find_boundaries

    from unetlib.metrics import seg_jaccards

    fig, axes = plt.subplots(1, len(found), figsize=(5.2 * len(found), 5.4), squeeze=False,
                             dpi=80)
    for ax, (name, labels) in zip(axes[0], found.items(), strict=True):
        rgb = np.stack([np.clip(image, 0.0, 1.0)] * 3, -1)
        rgb = (rgb - rgb.min()) / max(float(rgb.max() - rgb.min()), 1e-12)  # the frame stretched
        rgb[find_boundaries(truth, mode="inner")] = mpl_color(CONTOUR)
        rgb[find_boundaries(labels, mode="inner")] = mpl_color(FP)
        ax.imshow(rgb)
        ids, jac = seg_jaccards(labels, truth)
        for cell, j in zip(ids, jac, strict=True):
            y, x = np.argwhere(truth == cell).mean(0)
            ax.text(x, y, f"{j:.2f}", color="white", fontsize=10, ha="center", va="center",
                    bbox={"facecolor": "black", "alpha": 0.5, "pad": 1.0, "linewidth": 0})
        ax.set_title(name, fontsize=12)
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.94 if title else 1))  # the title above the panels' own
    return fig


# the book's names for the metric keys of the result files, and their precision (decimals; None:
# 4 significant digits, which the challenge's small errors need: 0.000353, 0.0382)
COLUMN_LABELS: dict[str, tuple[str, int | None]] = {
    "seg": ("SEG", 3), "iou": ("pixel IoU", 3), "f1": ("pixel F1", 3),
    "pixel_error": ("pixel error", 3), "merges": ("merges / frame", 2),
    "splits": ("splits / frame", 2), "n_gt": ("cells / frame", 1),
    "n_pred": ("objects / frame", 1), "matched": ("matched / frame", 1),
    "missed": ("missed / frame", 2), "spurious": ("spurious / frame", 2),
    "cells": ("cells", 0), "threshold": ("threshold", 2),
    "isbi_rand_error": ("Rand error", None), "isbi_info_error": ("information error", None),
    "isbi_warping_error": ("warping error", None),
    "isbi_pixel_error": ("pixel error (challenge)", None),
}


def format_metric(value: Any, column: str | None = None) -> str:
    """``value`` as a table shows it: with the decimals of its ``column`` (``COLUMN_LABELS``),
    else a float to 4 significant digits; "–" for a missing or NaN value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    digits = COLUMN_LABELS.get(column, ("", None))[1]
    if isinstance(value, (int, float)) and not isinstance(value, bool) and digits is not None:
        return f"{value:.{digits}f}"
    if isinstance(value, float):  # 4 significant digits: 0.000353, 0.7756, 48.75
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def metrics_table(rows: Mapping[str, Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A Markdown table: one row per run or source, the given metric columns. Known metric keys
    get the book's names and precision (:data:`COLUMN_LABELS`); others are shown as they are."""
    names = [COLUMN_LABELS.get(c, (c, None))[0] for c in columns]
    head = "| | " + " | ".join(names) + " |\n|---|" + "---|" * len(columns) + "\n"
    body = "".join(
        f"| {name} | " + " | ".join(format_metric(r.get(c), c) for c in columns) + " |\n"
        for name, r in rows.items()
    )
    return head + body


def first_touching_window(labels: np.ndarray, size: int = 96) -> tuple[slice, slice]:
    """A ``size`` window centred on the first place two different cells touch (for close-ups
    of the separation gaps); the image centre if no cells touch."""
    lab = np.asarray(labels)
    right = (lab[:, :-1] > 0) & (lab[:, 1:] > 0) & (lab[:, :-1] != lab[:, 1:])
    down = (lab[:-1, :] > 0) & (lab[1:, :] > 0) & (lab[:-1, :] != lab[1:, :])
    ys, xs = np.nonzero(np.pad(right, ((0, 0), (0, 1))) | np.pad(down, ((0, 1), (0, 0))))
    h, w = lab.shape
    cy, cx = (int(np.median(ys)), int(np.median(xs))) if ys.size else (h // 2, w // 2)
    if ys.size:  # the touching pixel nearest to the median point, so the window shows a gap
        k = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
        cy, cx = int(ys[k]), int(xs[k])
    half = size // 2
    y0 = min(max(cy - half, 0), max(h - size, 0))
    x0 = min(max(cx - half, 0), max(w - size, 0))
    return slice(y0, y0 + size), slice(x0, x0 + size)


def few_images_points(data: Mapping[str, Any]) -> dict[str, dict[str, list]]:
    """From ``studies/few_images.py``'s result: for each arm kind ("augmented", "not
    augmented") and measure, the frame counts and the seeds' means and standard deviations
    (``{"augmented": {"frames": [...], "seg_watershed": [(mean, sd)], ...}}``)."""
    out: dict[str, dict[str, list]] = {}
    for arm, summary in data["summaries"].items():
        count, kind = arm.split(" frame", 1)
        kind = kind.split(", ", 1)[1]
        series = out.setdefault(kind, {"frames": []})
        series["frames"].append(int(count))
        # SEG of every instance method the study scored, and the paper's way's pixel IoU
        wanted = [(f"seg_{m}", m, "seg") for m in summary] + [("iou", "components", "iou")]
        for key, method, measure in wanted:
            entry = summary[method][measure]
            series.setdefault(key, []).append((entry["mean"], entry["sd"]))
    for series in out.values():  # in increasing frame count
        order = sorted(range(len(series["frames"])), key=series["frames"].__getitem__)
        for key in series:
            series[key] = [series[key][i] for i in order]
    return out


def plot_few_images(data: Mapping[str, Any]) -> Figure:
    """Test SEG (the beyond-the-paper instance method and the paper's way) against the number
    of training frames, with and without augmentation: mean and standard deviation over the
    seeds."""
    import matplotlib.pyplot as plt

    points = few_images_points(data)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.0), dpi=100, sharey=True)
    style = {"augmented": ("tab:green", "o-"), "not augmented": ("tab:orange", "s--")}
    beyond = beyond_method(next(iter(data["summaries"].values())))
    panels = ((f"seg_{beyond}", f"SEG, {METHOD_NAMES[beyond]} (beyond the paper)"),
              ("seg_components", "SEG, connected components (paper's way)"))
    for ax, (key, title) in zip(axes, panels, strict=True):
        for kind, series in points.items():
            color, fmt = style.get(kind, ("0.3", "o-"))
            mean = [m for m, _ in series[key]]
            sd = [s for _, s in series[key]]
            ax.errorbar(series["frames"], mean, yerr=sd, fmt=fmt, color=color, capsize=3,
                        label=kind)
        paper = PAPER.get(data.get("dataset", ""), {}).get("seg")
        if paper:
            ax.axhline(paper, color="tab:red", ls=":", lw=1.2, label=f"paper's SEG ({paper})")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({f for s in points.values() for f in s["frames"]}))
        ax.get_xaxis().set_major_formatter(plt.ScalarFormatter())
        ax.set_xlabel("training frames (gold truth, sequence 01)")
        ax.set_title(title, fontsize=10)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test SEG (mean ± sd over seeds)")
    axes[0].legend(fontsize=9, loc="lower right")
    fig.tight_layout()
    return fig


def architecture_levels(model: torch.nn.Module, input_size: int) -> list[dict[str, Any]]:
    """The feature maps of a :class:`unetlib.UNet` for a square input of ``input_size``, read
    from a forward pass on the meta device (no memory, no arithmetic): per level, the
    contracting path's input and output sides, the expanding path's (after its up-convolution
    and after its convolutions) and the channels. Paper Fig. 1 for ``UNet.paper()`` and 572."""
    import torch

    with torch.device("meta"):  # a twin of the model without weights: nothing is allocated
        probe = type(model)(**model.config)
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = []

    def keep(name: str):
        def hook(_module, inputs, output):
            shapes[name + ".in"] = tuple(inputs[0].shape)
            shapes[name + ".out"] = tuple(output.shape)
        return hook

    for i, block in enumerate(probe.down):
        hooks.append(block.register_forward_hook(keep(f"down{i}")))
    for i, (up, conv) in enumerate(zip(probe.ups, probe.up_convs, strict=True)):
        hooks.append(up.register_forward_hook(keep(f"up{i}")))
        hooks.append(conv.register_forward_hook(keep(f"upconv{i}")))
    try:
        with torch.no_grad():
            out = probe(torch.empty(1, model.in_channels, input_size, input_size, device="meta"))
    finally:
        for h in hooks:
            h.remove()
    levels = []
    depth = len(probe.down)
    for i in range(depth):
        row: dict[str, Any] = {"level": i, "channels": shapes[f"down{i}.out"][1],
                               "down_in": shapes[f"down{i}.in"][-1],
                               "down_out": shapes[f"down{i}.out"][-1]}
        j = depth - 2 - i  # the expanding path runs from the deepest level up
        if j >= 0:
            row["up_in"] = shapes[f"up{j}.out"][-1]
            row["up_out"] = shapes[f"upconv{j}.out"][-1]
        levels.append(row)
    levels[0]["output"] = tuple(out.shape[-2:])
    return levels


def plot_architecture(model: torch.nn.Module, input_size: int, title: str | None = None) -> Figure:
    """The U of paper Fig. 1 drawn from the network's own feature-map sizes
    (:func:`architecture_levels`): one box per level of each path with its channels and sides,
    max-pools down, up-convolutions up, and the skip connections (cropped for the valid
    network)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, Rectangle

    levels = architecture_levels(model, input_size)
    depth = len(levels)
    fig, ax = plt.subplots(figsize=(9.0, 1.0 + 1.1 * depth), dpi=100)
    width, height = 2.3, 0.75

    def box(x: float, y: float, text: str, color: str) -> None:
        ax.add_patch(Rectangle((x, y), width, height, facecolor=color, edgecolor="0.3"))
        ax.text(x + width / 2, y + height / 2, text, ha="center", va="center", fontsize=10)

    def arrow(a: tuple[float, float], b: tuple[float, float], color: str) -> None:
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=12, color=color,
                                     lw=1.4))

    left, right = 0.0, 6.0
    for lv in levels:
        y = (depth - 1 - lv["level"]) * 1.1
        x = left + lv["level"] * 0.55
        box(x, y, f"{lv['channels']} ch\n{lv['down_in']}² → {lv['down_out']}²", "#dbe9f6")
        if lv["level"] < depth - 1:
            arrow((x + 0.4, y), (x + 0.95, y - 1.1 + height), "tab:red")  # 2x2 max-pool
            xr = right - lv["level"] * 0.55
            box(xr, y, f"{lv['channels']} ch\n{lv['up_in']}² → {lv['up_out']}²", "#fde7c8")
            arrow((x + width, y + height / 2), (xr, y + height / 2), "0.55")  # copy (and crop)
            if lv["level"] == depth - 2:  # from the bottom of the U
                start = (left + (depth - 1) * 0.55 + width, y - 1.1 + height / 2)
            else:
                start = (xr - 0.55 + width - 0.4, y - 1.1 + height)
            arrow(start, (xr + width - 0.4, y), "tab:green")  # 2x2 up-convolution
    out = levels[0]["output"]
    ax.text(right + width + 0.1, (depth - 1) * 1.1 + height / 2,
            f"1x1 conv\n→ {model.num_classes} classes\n{out[0]}²", fontsize=10, va="center")
    ax.plot([], [], color="tab:red", label="2x2 max-pool")
    ax.plot([], [], color="tab:green", label="2x2 up-convolution")
    ax.plot([], [], color="0.55",
            label="copy" + (" and crop" if model.padding == "valid" else ""))
    ax.legend(loc="lower right", fontsize=9, frameon=False)
    ax.set_xlim(-0.2, right + width + 1.6)
    ax.set_ylim(-0.3, depth * 1.1)
    ax.set_axis_off()
    n = sum(p.numel() for p in model.parameters())
    ax.set_title(title or f"{n:,} parameters, {input_size}² input", fontsize=11)
    fig.tight_layout()
    return fig


def plot_budget_curve(curve: Mapping[str, Any]) -> Figure:
    """Test SEG of every instance method scored and pixel IoU against training steps, from one
    run's checkpoints (``studies/budget_curve.py``); parameters chosen on validation at each
    step."""
    import matplotlib.pyplot as plt

    rows = curve["rows"]
    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(7.5, 4.0), dpi=100)
    beyond = (("distance", "D-", "tab:purple"), ("watershed", "o-", "tab:green"))
    for method, style, color in beyond:
        if method in rows[0]:
            ax.plot(steps, [r[method]["seg"] for r in rows], style, color=color,
                    label=f"SEG, {METHOD_NAMES[method]} (beyond the paper)")
    ax.plot(steps, [r["components"]["seg"] for r in rows], "s-", color="tab:blue",
            label="SEG, connected components (paper's way)")
    ax.plot(steps, [r["components"]["iou"] for r in rows], "^--", color="0.5",
            label="pixel IoU (paper's way)")
    paper = PAPER.get(curve.get("dataset", ""), {}).get("seg")
    if paper:
        ax.axhline(paper, color="tab:red", ls=":", lw=1.2, label=f"paper's SEG ({paper})")
    ax.set_xlabel("training steps")
    ax.set_ylabel("score on the test frames")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="lower right")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------
# the weight map (paper eq. 2)


def _new_figure(figsize: tuple[float, float]) -> Figure:
    """A pyplot-managed figure, so that Jupyter's inline backend shows it at the end of a cell
    (a bare ``Figure()`` only shows its text form there)."""
    import matplotlib.pyplot as plt

    return plt.figure(figsize=figsize, layout="constrained")


def plot_weight_map_panels(
    labels: np.ndarray,
    image: np.ndarray | None = None,
    *,
    w0: float = 10.0,
    sigma: float = 5.0,
    class_weights: ClassWeights = "balanced",
    crop: tuple[int, int, int, int] | None = None,
    title: str | None = None,
    panel_size: float = 3.2,
) -> Figure:
    """The weight map of eq. 2 in panels, two rows so that each is large enough to read at the
    book's column width: (frame,) mask, class-balance mask, border mask, combined, and with the
    frame a sixth panel, the combined weight along the row through the strongest border (dashed
    on the combined panel).

    Args:
        labels: instance labels (H, W), 0 = background.
        image: the raw frame (H, W), shown first with the cell outlines if given.
        w0, sigma, class_weights: as in ``unetlib.weights.weight_map``.
        crop: (y0, y1, x0, x1) region to show (the maps are computed on the whole frame first,
            so a crop shows exactly the values of the full map).
        title: figure title.
        panel_size: inches per panel.
    Returns:
        The figure; panels: "mask" = binary target after ``separate_touching`` with the removed
        separation border in red, "class-balance mask" = w_c, "border mask" = the border term,
        "combined" = w = w_c + border term.
    """
    from unetlib.weights import border_weight, class_weight_map, separate_touching

    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be one (H, W) frame, got shape {labels.shape}")
    if image is not None and np.shape(image)[:2] != labels.shape:
        raise ValueError(f"image shape {np.shape(image)} does not match labels {labels.shape}")
    separated = separate_touching(labels)
    target = separated > 0
    wc = class_weight_map(target, class_weights)
    border = border_weight(separated, w0=w0, sigma=sigma)
    combined = wc + border
    removed = (labels > 0) & ~target

    sl = (slice(None), slice(None)) if crop is None else (slice(crop[0], crop[1]),
                                                         slice(crop[2], crop[3]))
    cols = 3 if image is not None else 2
    fig = _new_figure(figsize=(panel_size * cols * 1.1, panel_size * 2.1))
    axes = list(fig.subplots(2, cols).ravel())
    k = 0
    if image is not None:
        ax = axes[k]
        ax.imshow(np.asarray(image)[sl], cmap="gray")
        ax.contour(separated[sl] > 0, levels=[0.5], colors=[mpl_color(CONTOUR)], linewidths=0.6)
        ax.set_title("frame + cells")
        k += 1
    rgb = np.zeros(labels.shape + (3,), np.float32)
    rgb[target] = 1.0
    rgb[removed] = (1.0, 0.15, 0.15)
    axes[k].imshow(rgb[sl], interpolation="nearest")
    axes[k].set_title("mask (separation in red)")
    panels = [
        (wc, "class balance $w_c$", "viridis", None),
        (border, r"border term $w_0 e^{-(d_1+d_2)^2/2\sigma^2}$", "magma", (0, w0)),
        (combined, "combined $w$", "magma", None),
    ]
    images = axes[k + 1 : k + 4]
    for ax, (arr, name, cmap, lim) in zip(images, panels, strict=True):
        vmin, vmax = lim if lim is not None else (float(arr.min()), float(arr.max()))
        if vmax <= vmin:
            vmax = vmin + 1.0
        im = ax.imshow(arr[sl], cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(name)
        fig.colorbar(im, ax=ax, shrink=0.8, pad=0.02, label="weight (per pixel)")
    for ax in axes[: k + 4]:
        ax.set_xticks([])
        ax.set_yticks([])
    if image is not None:  # the combined weight along the row through the strongest border
        row = int(np.unravel_index(np.argmax(border[sl]), border[sl].shape)[0])
        images[-1].axhline(row, color="white", linestyle="--", linewidth=0.8)
        profile = axes[k + 4]
        profile.plot(combined[sl][row], color=mpl_color(CONTOUR), linewidth=1.2)
        profile.set_xlabel("column (pixels)")
        profile.set_ylabel("w")
        profile.set_title(f"combined $w$ along row {row} (dashed)")
        profile.set_xlim(0, combined[sl].shape[1] - 1)
    if title:
        fig.suptitle(title)
    return fig


def _load_rows(result: Mapping | str | os.PathLike | Sequence[Mapping]) -> list[Mapping]:
    if isinstance(result, str | os.PathLike):
        with open(result) as f:
            result = json.load(f)
    if isinstance(result, Mapping):
        if "rows" not in result:
            raise ValueError("result must be the JSON of benchmarks/bench_weights.py (no 'rows')")
        return list(result["rows"])
    return list(result)


def _plot_rows(ax, synth: list, real: list, key: str, color: str, label: str,
               real_label: str) -> None:
    """One benchmark quantity against the cell count: random frames as a line, real HeLa
    frames as open markers."""
    if synth:
        ax.plot([r["cells"] for r in synth], [r[key] for r in synth], "o-", color=color,
                label=label)
    if real:
        ax.plot([r["cells"] for r in real], [r[key] for r in real], "^", color=color,
                mfc="none", label=real_label)


def plot_weight_map_timing(
    result: Mapping | str | os.PathLike | Sequence[Mapping], title: str | None = None
) -> Figure:
    """Time of the weight map against the number of cells, ours vs the naive computation.

    Args:
        result: the JSON written by ``benchmarks/bench_weights.py`` (a dict, a path to it, or
            its ``rows``). Random-cell rows are drawn as lines, real HeLa frames as markers.
        title: figure title.
    Returns:
        The figure: left, seconds per 512x512 frame (log-log); right, the speed-up.
    """
    rows = _load_rows(result)
    if not rows:
        raise ValueError("result has no rows to plot")
    synth = sorted((r for r in rows if r["case"] == "random"), key=lambda r: r["cells"])
    real = [r for r in rows if r["case"] != "random"]
    fig = _new_figure(figsize=(10, 4))
    ax_t, ax_s = fig.subplots(1, 2)
    series = [
        ("ours_s", "ours (windowed, exact, compiled)", "ours", "C0"),
        ("windowed_scipy_s", "before: windowed, one scipy EDT per window", "before", "C2"),
        ("naive_min_s", "naive: one EDT per cell, running top-2", "naive top-2", "C3"),
        ("naive_sort_s", "naive: one EDT per cell, stack + sort", "naive sort", "C1"),
    ]
    for key, name, short, color in series:
        if all(key in r for r in rows):  # files written before the compiled kernel lack 'before'
            _plot_rows(ax_t, synth, real, key, color, name, f"{short}, real HeLa frames")
    ax_t.set_xscale("log")
    ax_t.set_yscale("log")
    ax_t.set_xlabel("cells per 512x512 frame")
    ax_t.set_ylabel("seconds per frame (best of repeats)")
    ax_t.grid(True, which="both", alpha=0.3)
    ax_t.legend(fontsize=7)
    for key, name, color in [("speedup_vs_naive_min", "vs running top-2", "C3"),
                             ("speedup_vs_naive_sort", "vs stack + sort", "C1")]:
        _plot_rows(ax_s, synth, real, key, color, name, f"{name}, real HeLa")
    ax_s.axhline(50, color="gray", ls="--", lw=0.8, label="50x target at 100 cells")
    ax_s.set_xscale("log")
    ax_s.set_xlabel("cells per 512x512 frame")
    ax_s.set_ylabel("speed-up of ours")
    ax_s.grid(True, which="both", alpha=0.3)
    ax_s.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return fig
