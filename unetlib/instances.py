"""Cells from the network's cell probability: the paper's way and a seeded watershed.

The U-Net of the paper predicts two classes per pixel; the Cell Tracking Challenge's SEG measure
scores *instances*. Two ways to turn the cell probability ``p`` into instance labels:

- ``"components"`` (the paper's way, section 3): connected components of ``p > threshold``.
  Touching cells come out separate only where the network drew the background gap that the
  weight map of eq. 2 trains it to draw; a gap whose probability stays above the threshold
  merges the two cells into one object, which then matches at most one of them in SEG.
- ``"watershed"`` (beyond the paper, labelled as such in the book): seeds are the connected
  components of ``p > seed_threshold`` (the confident cell cores, which stay apart even where
  the gap between two cells is faint); each seed grows over ``-p`` by a marker watershed inside
  the foreground ``p > threshold``. Foreground components that hold no seed are kept as cells of
  their own, so with ``seed_threshold <= threshold`` the result equals ``"components"``.
- ``"distance"`` (beyond the paper, labelled as such): the classic split of touching round
  objects. The foreground is ``p > threshold`` as in the paper's way; the seeds are the regional
  maxima of its Euclidean distance to the background (smoothed by a Gaussian of
  ``DISTANCE_SMOOTHING`` pixels) that stand at least ``h`` pixels above their surroundings
  (h-maxima), one per cell, because two touching cells meet at a neck where the distance dips;
  each seed grows over the negated distance within the foreground. It needs no gap drawn by the
  network, only the cells' shape, and with ``h`` above every cell's largest distance (no seed
  at all) it equals ``"components"``.

Both drop objects smaller than ``min_size`` pixels and number the cells 1..N. Every parameter is
chosen on validation frames by :func:`choose_instances`, which maximises the measure being
reported (SEG, pooled over the cells of all frames as the challenge does) over a grid; the test
frames never take part.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from unetlib.metrics import (
    _overlaps,
    drop_small,
    instance_labels_from_probability,
    seg_jaccards,
)

METHODS: tuple[str, ...] = ("components", "watershed", "distance")

# what the book calls each method (report, plots, explorers); the paper's way first
METHOD_NAMES: dict[str, str] = {"components": "connected components",
                                "distance": "distance-transform watershed",
                                "watershed": "probability-seeded watershed"}

# the instance method the book reports beyond the paper (beside the paper's "components"); result
# files written before it existed report "watershed" (see :func:`beyond_method`)
BEYOND_PAPER = "distance"

# sigma (pixels) of the Gaussian that smooths the distance map of ``"distance"`` before its
# h-maxima are taken: pixel-scale ripples of the thresholded outline would each make a maximum
DISTANCE_SMOOTHING = 1.0

_FOUR = ndi.generate_binary_structure(2, 1)


@dataclass(frozen=True)
class InstanceParams:
    """How a probability map becomes cells; calling it on a map returns the labels."""

    method: str = "components"
    threshold: float = 0.5  # foreground: p > threshold
    seed_threshold: float = 0.9  # watershed only: seeds are components of p > seed_threshold
    min_size: int = 64  # objects smaller than this (pixels) are dropped
    h: float = 2.0  # distance only: how far (pixels) a seed's distance stands above its saddle

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        for name in ("threshold", "seed_threshold"):
            value = getattr(self, name)
            if not 0.0 < float(value) < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {value!r}")
        if int(self.min_size) < 0 or int(self.min_size) != self.min_size:
            raise ValueError(f"min_size must be an integer >= 0, got {self.min_size!r}")
        if not float(self.h) > 0.0:
            raise ValueError(f"h must be > 0 pixels, got {self.h!r}")

    def __call__(self, prob: np.ndarray) -> np.ndarray:
        return instances_from_probability(prob, self)

    def as_dict(self) -> dict[str, Any]:
        """The parameters as recorded in result files (only those the method uses)."""
        d = dataclasses.asdict(self)
        if self.method != "watershed":
            d.pop("seed_threshold")
        if self.method != "distance":
            d.pop("h")
        return d

    def describe(self) -> str:
        """The method and its parameters in words, for tables and legends."""
        if self.method == "components":
            return (f"connected components of p > {self.threshold:.2f} "
                    f"(objects under {self.min_size} px dropped)")
        if self.method == "distance":
            return (f"distance-transform watershed of p > {self.threshold:.2f}: seeds are "
                    f"distance maxima {self.h:g} px above their saddles (objects under "
                    f"{self.min_size} px dropped)")
        return (f"seeded watershed: seeds p > {self.seed_threshold:g}, grown over "
                f"p > {self.threshold:.2f} (objects under {self.min_size} px dropped)")


def _seeded_watershed(p: np.ndarray, threshold: float, seed_threshold: float) -> np.ndarray:
    """Labels before the size filter: seeds grown over -p within p > threshold, plus the
    foreground components without a seed."""
    from skimage.segmentation import watershed

    fg = p > threshold
    seeds, n_seeds = ndi.label(fg & (p > seed_threshold), structure=_FOUR)
    lab = watershed(-p, markers=seeds, mask=fg, connectivity=1) if n_seeds else seeds
    rest, n_rest = ndi.label(fg & (lab == 0), structure=_FOUR)
    if n_rest:
        lab = np.where(rest > 0, rest + n_seeds, lab)
    return lab.astype(np.int64)


def _distance_watershed(p: np.ndarray, threshold: float, h: float) -> np.ndarray:
    """Labels before the size filter: the h-maxima of the smoothed distance to the background
    of ``p > threshold`` grown over the negated distance within it, plus the foreground
    components without a seed."""
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    fg = p > threshold
    dist = ndi.gaussian_filter(ndi.distance_transform_edt(fg), DISTANCE_SMOOTHING)
    peaks = h_maxima(dist, h).astype(bool) & fg if dist.max() > h else np.zeros_like(fg)
    seeds, n_seeds = ndi.label(peaks, structure=np.ones((3, 3), bool))  # a plateau is one seed
    lab = watershed(-dist, markers=seeds, mask=fg, connectivity=1) if n_seeds else seeds
    rest, n_rest = ndi.label(fg & (lab == 0), structure=_FOUR)
    if n_rest:
        lab = np.where(rest > 0, rest + n_seeds, lab)
    return lab.astype(np.int64)


def grow_cells(labels: np.ndarray, prob: np.ndarray, threshold: float) -> np.ndarray:
    """``labels`` with every cell grown over ``-prob`` into the pixels with
    ``prob > threshold`` it reaches through them (a marker watershed, as the seeded watershed
    grows its seeds): outlines move out to a lower probability while cells keep their number
    and never merge; background the cells cannot reach stays background. Beyond the paper; a
    probe of where the test sequence's faint margins lie (``studies/outline_growth.py``)."""
    from skimage.segmentation import watershed

    lab, p = np.asarray(labels), np.asarray(prob)
    if lab.shape != p.shape:
        raise ValueError(f"labels {lab.shape} and prob {p.shape} differ in shape")
    if not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
    if not lab.any():
        return lab.copy()
    grown = watershed(-p, markers=lab, mask=(p > threshold) | (lab > 0), connectivity=1)
    return grown.astype(lab.dtype, copy=False)


def _raw_instances(p: np.ndarray, params: InstanceParams) -> np.ndarray:
    """Labels of ``params.method`` before the size filter."""
    if params.method == "components":
        return instance_labels_from_probability(p, params.threshold)
    if params.method == "watershed":
        return _seeded_watershed(p, params.threshold, params.seed_threshold)
    return _distance_watershed(p, params.threshold, params.h)


def instances_from_probability(prob: np.ndarray, params: InstanceParams | None = None,
                               **kwargs: Any) -> np.ndarray:
    """Instance labels (int32, 0 = background, cells 1..N) from a cell probability map (H, W).

    ``params`` (or its fields as keyword arguments) says how; see the module docstring.
    """
    if params is None:
        params = InstanceParams(**kwargs)
    elif kwargs:
        params = dataclasses.replace(params, **kwargs)
    p = np.asarray(prob)
    if p.ndim != 2 or not np.issubdtype(p.dtype, np.floating):
        raise ValueError(f"prob must be a 2D float array, got shape {p.shape} dtype {p.dtype}")
    if params.method == "components":
        return instance_labels_from_probability(p, params.threshold, params.min_size)
    return drop_small(_raw_instances(p, params), params.min_size)


# the validation grids; every value of a grid is tried (the watershed's seed levels reach 0.999
# because a well-trained network's cores saturate: the test-frame look-up found 0.99)
GRIDS: dict[str, dict[str, tuple]] = {
    "components": {
        "threshold": tuple(round(0.1 + 0.05 * i, 2) for i in range(17)),
        "min_size": (16, 64, 256, 1024),
    },
    "watershed": {
        "threshold": (0.3, 0.4, 0.5, 0.6, 0.7),
        "seed_threshold": (0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999),
        "min_size": (16, 64, 256, 1024),
    },
    "distance": {
        "threshold": (0.3, 0.4, 0.5, 0.6, 0.7),
        "h": (1.0, 2.0, 4.0),
        "min_size": (16, 64, 256, 1024),
    },
}


def beyond_method(instances: dict[str, Any]) -> str:
    """The beyond-the-paper method a result reports: ``BEYOND_PAPER`` where the result has it,
    else ``"watershed"`` (results scored before the distance-transform watershed existed)."""
    return BEYOND_PAPER if BEYOND_PAPER in instances else "watershed"


def pooled_seg(pred_labels: Sequence[np.ndarray], gt_labels: Sequence[np.ndarray]) -> float:
    """SEG over several frames: the mean Jaccard over every reference cell of all frames (the
    challenge pools the cells of a sequence; a frame with many cells weighs more)."""
    jac = [seg_jaccards(p, g)[1] for p, g in zip(pred_labels, gt_labels, strict=True)]
    pooled = np.concatenate(jac) if jac else np.zeros(0)
    return float(pooled.mean()) if pooled.size else float("nan")


def seg_jaccards_by_min_size(raw: np.ndarray, gt: np.ndarray,
                             sizes: Sequence[int]) -> list[np.ndarray]:
    """``[seg_jaccards(drop_small(raw, m), gt)[1] for m in sizes]`` from one overlap table:
    dropping an object removes its rows and changes no other object's overlap or size, so one
    table serves every size limit (the validation scan's inner loop)."""
    gt_ids, _, gt_sizes, pr_sizes, gi, si, inter = _overlaps(np.asarray(raw), np.asarray(gt))
    matched = 2 * inter > gt_sizes[gi]  # |R & S| > 0.5 |R|, as in seg_jaccards
    out = []
    for size in sizes:
        m = matched & (pr_sizes[si] >= max(int(size), 1))
        jac = np.zeros(gt_ids.size)
        jac[gi[m]] = inter[m] / (gt_sizes[gi[m]] + pr_sizes[si[m]] - inter[m])
        out.append(jac)
    return out


def _grid(method: str, grid: dict[str, Sequence] | None = None
          ) -> tuple[tuple[int, ...], list[InstanceParams]]:
    """The size limits of ``method``'s grid (``GRIDS[method]`` unless ``grid`` is given) and its
    other points, each as parameters with ``min_size=0`` (what :func:`choose_instances` scans)."""
    grid = dict(GRIDS[method] if grid is None else grid)
    unknown = set(grid) - {f.name for f in dataclasses.fields(InstanceParams)}
    if unknown:
        raise ValueError(f"grid has unknown parameter(s) {sorted(unknown)}")
    sizes = tuple(grid.pop("min_size", (InstanceParams.min_size,)))
    names = sorted(grid)
    bases = []
    for values in itertools.product(*(grid[n] for n in names)):
        point = dict(zip(names, values, strict=True))
        if method == "watershed" and point.get("seed_threshold", 1.0) <= point.get("threshold",
                                                                                   0.5):
            continue  # equals the components method: not a watershed
        bases.append(InstanceParams(method=method, min_size=0, **point))
    return sizes, bases


def grid_points(method: str, grid: dict[str, Sequence] | None = None) -> list[dict[str, Any]]:
    """Every parameter setting :func:`choose_instances` tries for ``method``, as the scan rows
    record them (without ``seg``), in the scan's order."""
    sizes, bases = _grid(method, grid)
    return [dataclasses.replace(b, min_size=int(m)).as_dict() for b in bases for m in sizes]


def scanned_current_grid(record: dict[str, Any], method: str) -> bool:
    """Whether a result's record of ``method`` (``result["instances"][method]``) was chosen over
    today's grid: a record chosen on another grid (one written before a grid grew) is stale, as
    is a missing one; a record of fixed parameters has no grid and counts as current."""
    if not record:
        return False
    if record.get("chosen_on") != "validation":
        return True
    scanned = [{k: v for k, v in row.items() if k != "seg"} for row in record.get("scan", [])]
    return scanned == grid_points(method)


def choose_instances(
    probs: Sequence[np.ndarray], labels: Sequence[np.ndarray], method: str = "components",
    grid: dict[str, Sequence] | None = None, workers: int | None = None,
) -> tuple[InstanceParams, list[dict[str, Any]]]:
    """The parameters of ``method`` with the best pooled SEG on ``(probs, labels)`` (validation
    frames: never pass test frames here), and the scan: one row per grid point with its SEG.

    Ties go to the smallest ``min_size``, then the threshold nearest 0.5, then the lowest seed
    level or ``h``, so that the choice is reproducible. Each method's labels for a grid point
    (without the size filter) are computed once per frame, and one overlap table with the
    reference scores every ``min_size`` (:func:`seg_jaccards_by_min_size`). The grid points run
    on ``workers`` threads (default: one per core; SciPy's and scikit-image's labelling,
    distance transform and watershed release the GIL), each point's arithmetic unchanged: the
    scan is the same with any number of workers (tested).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not probs:
        raise ValueError("choose_instances needs at least one validation frame")
    if len(probs) != len(labels):
        raise ValueError(f"{len(probs)} probability maps but {len(labels)} label images")
    sizes, bases = _grid(method, grid)
    probs = [np.asarray(p) for p in probs]

    def jaccards(base: InstanceParams) -> list[list[np.ndarray]]:
        return [seg_jaccards_by_min_size(_raw_instances(p, base), g, sizes)
                for p, g in zip(probs, labels, strict=True)]

    n_workers = min(len(bases), os.cpu_count() or 1) if workers is None else int(workers)
    if n_workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers!r}")
    if n_workers == 1:
        by_point = [jaccards(base) for base in bases]
    else:
        with ThreadPoolExecutor(n_workers) as pool:
            by_point = list(pool.map(jaccards, bases))
    scan: list[dict[str, Any]] = []
    for base, per_frame in zip(bases, by_point, strict=True):
        for k, size in enumerate(sizes):
            pooled = np.concatenate([frame[k] for frame in per_frame])
            seg = float(pooled.mean()) if pooled.size else float("nan")
            scan.append({**dataclasses.replace(base, min_size=int(size)).as_dict(), "seg": seg})
    if not scan:
        raise ValueError(f"the grid for {method!r} has no valid point")

    def rank(row: dict) -> tuple:
        seg = row["seg"] if np.isfinite(row["seg"]) else -1.0
        return (round(seg, 12), -row["min_size"], -abs(row["threshold"] - 0.5),
                -row.get("seed_threshold", 0.0), -row.get("h", 0.0))

    best = max(scan, key=rank)
    params = InstanceParams(**{k: v for k, v in best.items() if k != "seg"})
    return params, scan

