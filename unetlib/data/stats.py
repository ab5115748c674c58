"""Statistics of instance-labelled data sets: frames, cells per frame, cell sizes, class balance
and touching-cell pairs (the pairs the paper's border weights of eq. 2 are for)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from .dataset import Sample


def touching_pairs(labels: np.ndarray, max_gap: int = 0) -> set[tuple[int, int]]:
    """Pairs (a, b), a < b, of cells that touch (4-neighbouring pixels, ``max_gap=0``) or are at
    most ``max_gap`` background pixels apart (Chebyshev distance ``max_gap + 1``)."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2D, got shape {labels.shape}")
    if max_gap < 0:
        raise ValueError(f"max_gap must be >= 0, got {max_gap}")
    reach = max_gap + 1
    if max_gap == 0:
        offsets = [(0, 1), (1, 0)]
    else:
        offsets = [
            (dy, dx)
            for dy in range(0, reach + 1)
            for dx in range(-reach, reach + 1)
            if (dy, dx) > (0, 0)
        ]
    h, w = labels.shape
    pairs: set[tuple[int, int]] = set()
    for dy, dx in offsets:
        a = labels[0 : h - dy, max(0, -dx) : w - max(0, dx)]
        b = labels[dy:h, max(0, dx) : w - max(0, -dx) if dx < 0 else w]
        b = b[:, : a.shape[1]]
        m = (a != b) & (a > 0) & (b > 0)
        if m.any():
            lo = np.minimum(a[m], b[m]).astype(np.int64)
            hi = np.maximum(a[m], b[m]).astype(np.int64)
            for key in np.unique(lo << 32 | hi):
                pairs.add((int(key >> 32), int(key & 0xFFFFFFFF)))
    return pairs


def frame_stats(labels: np.ndarray, near_gap: int = 2) -> dict:
    """Per-frame numbers: cells, cell areas (px), foreground fraction, touching and near pairs."""
    labels = np.asarray(labels)
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas > 0]
    touching = touching_pairs(labels, 0)
    near = touching_pairs(labels, near_gap) - touching
    return {
        "cells": int(areas.size),
        "areas": areas,
        "foreground": float(np.count_nonzero(labels) / labels.size),
        "touching_pairs": len(touching),
        "near_pairs": len(near),
    }


def dataset_stats(samples: Iterable[Sample], near_gap: int = 2) -> dict:
    """Summary over labelled samples: counts, medians and percentiles, plus one row per frame.

    Keys: frames, shapes, cells_per_frame (mean/min/max), cell_area (median, p5, p95, in px),
    foreground_fraction (mean; the class balance of a foreground/background model: background
    pixels per foreground pixel is (1 - f) / f), touching_pairs_per_frame, near_pairs_per_frame
    (cells at most ``near_gap`` px apart but not touching), areas (every cell's area, px),
    rows (per-frame dicts).
    """
    rows = []
    areas = []
    shapes = set()
    for s in samples:
        if s.labels is None:
            continue
        st = frame_stats(s.labels, near_gap)
        shapes.add(tuple(s.labels.shape))
        areas.append(st.pop("areas"))
        rows.append({"name": s.name, **st})
    if not rows:
        raise ValueError("no labelled samples to summarise")
    all_areas = np.concatenate(areas) if areas else np.zeros(0)
    cells = np.array([r["cells"] for r in rows])
    fg = np.array([r["foreground"] for r in rows])

    def pct(q):
        return float(np.percentile(all_areas, q)) if all_areas.size else float("nan")

    return {
        "frames": len(rows),
        "shapes": sorted(shapes),
        "cells_total": int(cells.sum()),
        "cells_per_frame": {
            "mean": float(cells.mean()),
            "min": int(cells.min()),
            "max": int(cells.max()),
        },
        "cell_area": {"median": pct(50), "p5": pct(5), "p95": pct(95)},
        "foreground_fraction": float(fg.mean()),
        "touching_pairs_per_frame": float(np.mean([r["touching_pairs"] for r in rows])),
        "near_pairs_per_frame": float(np.mean([r["near_pairs"] for r in rows])),
        "near_gap": near_gap,
        "areas": all_areas,
        "rows": rows,
    }


def format_stats(stats: dict, title: str = "") -> str:
    """The summary of `dataset_stats` as aligned text."""
    c, a = stats["cells_per_frame"], stats["cell_area"]
    f = stats["foreground_fraction"]
    lines = [title] if title else []
    lines += [
        f"frames                 {stats['frames']}  (shapes {stats['shapes']})",
        f"cells per frame        mean {c['mean']:.1f}, min {c['min']}, max {c['max']}"
        f"  (total {stats['cells_total']})",
        f"cell area (px)         median {a['median']:.0f}, 5-95% {a['p5']:.0f}-{a['p95']:.0f}",
        f"foreground fraction    {f:.3f}  (background:foreground = {(1 - f) / max(f, 1e-12):.2f})",
        f"touching pairs/frame   {stats['touching_pairs_per_frame']:.1f}",
        f"near pairs/frame       {stats['near_pairs_per_frame']:.1f}"
        f"  (gap 1-{stats['near_gap']} px)",
    ]
    return "\n".join(lines)


def split_table(datasets: Sequence) -> str:
    """One line per split: name, split, number of frames, first and last file."""
    lines = []
    for d in datasets:
        first = d.files[0] if d.files else "-"
        last = d.files[-1] if d.files else "-"
        split = d.split
        if "folds" in d.options:
            split += f" {d.options['fold']}/{d.options['folds']}"
        lines.append(f"{d.name:<16} {split:<10} {len(d):>4} frames   {first} .. {last}")
    return "\n".join(lines)


def truth_agreement(reference: Sequence[Sample], other: Sequence[Sample],
                    offset: int = 0) -> dict:
    """How well one annotation of a sequence scores against another, in the Cell Tracking
    Challenge's SEG measure (the mean Jaccard over every reference cell, pooled over frames):
    ``other`` (say the silver truth) taken as the prediction, ``reference`` (the gold truth) as
    the truth, on the frames both annotate, paired by file name. For the silver truth that
    says how good the labels are that a network trained on them imitates.

    With ``offset`` (Cell Tracking Challenge frames), each reference frame at time point t is
    paired with the other annotation's frame t + offset of the same sequence: how much a frame
    ``offset`` time points away already gives of the reference (where reference frames are held
    out for validation, and their neighbours trained on).

    Returns ``frames`` (the reference frame names paired), ``cells`` (reference cells) and
    ``seg``.
    """
    from ..metrics import seg_jaccards
    from .ctc import time_point

    if offset:
        by_time = {time_point(s.name): s for s in other}
        pairs = [(s, by_time[(seq, t + offset)]) for s in reference
                 for seq, t in [time_point(s.name)] if (seq, t + offset) in by_time]
    else:
        by_name = {s.name: s for s in other}
        pairs = [(s, by_name[s.name]) for s in reference if s.name in by_name]
    if not pairs:
        raise ValueError("the two annotations share no frame (samples are paired by name)")
    jaccards = []
    for ref, oth in pairs:
        if ref.labels is None or oth.labels is None:
            raise ValueError(f"{ref.name}: a frame without labels cannot be scored")
        jaccards.append(seg_jaccards(oth.labels, ref.labels)[1])
    pooled = np.concatenate(jaccards)
    return {"frames": [ref.name for ref, _ in pairs], "cells": int(pooled.size),
            "seg": float(pooled.mean()) if pooled.size else float("nan")}
