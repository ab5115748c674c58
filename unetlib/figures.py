"""Figures for the book. Each function returns a ``matplotlib.figure.Figure`` (no pyplot state).

Weight map (paper eq. 2): ``plot_weight_map_panels`` shows the panels of the Keras
reproduction's Figure 8 (mask, class-balance mask, border mask, combined) for one frame;
``plot_weight_map_timing`` plots the output of ``benchmarks/bench_weights.py``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from unetlib.weights import (
    ClassWeights,
    border_weight,
    class_weight_map,
    separate_touching,
)

__all__ = ["plot_weight_map_panels", "plot_weight_map_timing"]


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
    """The weight map of eq. 2 in panels: (frame,) mask, class-balance mask, border mask, combined.

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
    n = 4 + (image is not None)
    fig = _new_figure(figsize=(panel_size * n, panel_size * 1.08))
    axes = fig.subplots(1, n)
    k = 0
    if image is not None:
        ax = axes[k]
        ax.imshow(np.asarray(image)[sl], cmap="gray")
        ax.contour(separated[sl] > 0, levels=[0.5], colors="yellow", linewidths=0.6)
        ax.set_title("frame + cells")
        k += 1
    rgb = np.zeros(labels.shape + (3,), np.float32)
    rgb[target] = 1.0
    rgb[removed] = (1.0, 0.15, 0.15)
    axes[k].imshow(rgb[sl], interpolation="nearest")
    axes[k].set_title("mask (separation in red)")
    panels = [
        (wc, "class-balance mask $w_c$", "viridis", None),
        (border, r"border mask $w_0 e^{-(d_1+d_2)^2/2\sigma^2}$", "magma", (0, w0)),
        (combined, "combined $w$", "magma", None),
    ]
    for ax, (arr, name, cmap, lim) in zip(axes[k + 1 :], panels, strict=True):
        vmin, vmax = lim if lim is not None else (float(arr.min()), float(arr.max()))
        if vmax <= vmin:
            vmax = vmin + 1.0
        im = ax.imshow(arr[sl], cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(name)
        fig.colorbar(im, ax=ax, shrink=0.8, pad=0.02)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
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
        ("ours_s", "ours (windowed, exact)", "ours", "C0"),
        ("naive_min_s", "naive: one EDT per cell, running top-2", "naive top-2", "C3"),
        ("naive_sort_s", "naive: one EDT per cell, stack + sort", "naive sort", "C1"),
    ]
    for key, name, short, color in series:
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
    ax_s.axhline(20, color="gray", ls="--", lw=0.8, label="20x target")
    ax_s.set_xscale("log")
    ax_s.set_xlabel("cells per 512x512 frame")
    ax_s.set_ylabel("speed-up of ours")
    ax_s.grid(True, which="both", alpha=0.3)
    ax_s.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return fig
