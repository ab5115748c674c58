"""Segmentation metrics used to report U-Net results (Ronneberger et al. 2015, section 4).

The paper reports three kinds of numbers, and this module computes all of them in NumPy:

* **Pixel overlap** -- :func:`iou`, :func:`f1`, :func:`pixel_error` on binary foreground masks
  (the cell-tracking IoU of Table 2 and what most re-implementations print).
* **ISBI 2012 EM challenge** (Table 1) -- the challenge thresholds a map at several levels and
  keeps the best score: :func:`isbi_scores` gives the Rand error (1 - best foreground-restricted
  Rand F-score, :func:`rand_scores`), the information error (1 - best V_Info,
  :func:`info_scores`), the pixel error (:func:`isbi_pixel_error`) and the warping error
  (:func:`warping_error`, Jain et al. 2010).
* **Cell Tracking Challenge SEG** -- :func:`seg_measure` / :func:`seg_jaccards`, plus
  instance-level split and merge counts (:func:`split_merge_counts`).

Conventions (stated once, used everywhere):

* Label images: ``0`` is background (for ISBI: membrane); every other value is one object.
* ISBI maps are *interior* maps: high value = cell interior, as in the challenge's label images
  (255 = interior, 0 = membrane) and the Fiji evaluation scripts, which binarize with
  ``value > threshold`` -> interior. Pass ``prob_is_boundary=True`` for a membrane map.
* Connectivity: objects are 4-connected components (Fiji's ``connectedComponents(..., 4)``).

References: Arganda-Carreras et al., "Crowdsourcing the creation of image segmentation
algorithms for connectomics", Front. Neuroanat. 2015 (V_Rand, V_Info, section 2.3);
Jain et al., "Boundary learning by optimization with topological constraints", CVPR 2010
(warping error); Ulman et al., Nat. Methods 2017 and Maska et al., Bioinformatics 2014 (SEG).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "ISBI_THRESHOLDS",
    "WarpingResult",
    "drop_small",
    "f1",
    "info_scores",
    "instance_labels_from_probability",
    "iou",
    "isbi_pixel_error",
    "isbi_scores",
    "pixel_error",
    "rand_scores",
    "seg_jaccards",
    "seg_measure",
    "segmentation_report",
    "simple_point_lut",
    "split_merge_counts",
    "split_merge_ids",
    "warping_error",
]

#: Thresholds of the official ISBI 2012 Fiji scripts: 0.0, 0.1, ..., 1.0 (``value > t``).
ISBI_THRESHOLDS: np.ndarray = np.round(np.linspace(0.0, 1.0, 11), 10)

_CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)  # 4-connectivity
_SQUARE = np.ones((3, 3), dtype=bool)  # 8-connectivity


# --------------------------------------------------------------------------- input checks
def _array(x: object, name: str) -> np.ndarray:
    try:
        a = np.asarray(x)
    except Exception as e:  # pragma: no cover - exotic inputs
        raise TypeError(f"{name} must be array-like, got {type(x).__name__}") from e
    if a.dtype == object or not (
        np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.bool_)
    ):
        raise TypeError(f"{name} must be a numeric or boolean array, got dtype {a.dtype}")
    if a.ndim == 0:
        raise ValueError(f"{name} must be an image, got a scalar")
    if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def _same_shape(a: np.ndarray, b: np.ndarray, na: str, nb: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{na} and {nb} must have the same shape, got {a.shape} and {b.shape}")


def _binary(x: object, name: str) -> np.ndarray:
    """Nonzero -> True. Refuses float maps that are not 0/1 (threshold them first)."""
    a = _array(x, name)
    if np.issubdtype(a.dtype, np.floating) and not np.all((a == 0) | (a == 1)):
        raise ValueError(
            f"{name} is a non-binary float map; threshold it first (e.g. {name} > 0.5)"
        )
    return a != 0


def _labels(x: object, name: str) -> np.ndarray:
    a = _array(x, name)
    if np.issubdtype(a.dtype, np.bool_):
        return a.astype(np.int64)
    if not np.issubdtype(a.dtype, np.integer):
        if not np.all(a == np.round(a)):
            raise TypeError(f"{name} must be an integer label image, got dtype {a.dtype}")
        a = a.astype(np.int64)
    if a.min(initial=0) < 0:
        raise ValueError(f"{name} must not contain negative labels")
    return a


def _probability(x: object, name: str) -> np.ndarray:
    a = _array(x, name).astype(np.float64, copy=False)
    if a.size and (a.min() < 0.0 or a.max() > 1.0):
        raise ValueError(
            f"{name} must lie in [0, 1] (got range [{a.min():g}, {a.max():g}]); "
            "divide 8-bit maps by 255"
        )
    return a


def _thresholds(thresholds: Sequence[float] | np.ndarray | None) -> np.ndarray:
    t = ISBI_THRESHOLDS if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    if t.ndim != 1 or t.size == 0:
        raise ValueError("thresholds must be a non-empty 1-D sequence")
    return t


# --------------------------------------------------------------------------- pixel metrics
def iou(pred_mask: object, true_mask: object) -> float:
    """Pixel intersection over union |P & T| / |P | T| of two binary masks (nonzero = foreground).

    This is the IoU of the paper's Table 2 (PhC-U373 0.9203, DIC-HeLa 0.7756) computed on one
    image. Both masks empty -> 1.0 (nothing to find, nothing found).
    """
    p, t = _binary(pred_mask, "pred_mask"), _binary(true_mask, "true_mask")
    _same_shape(p, t, "pred_mask", "true_mask")
    union = np.count_nonzero(p | t)
    return 1.0 if union == 0 else np.count_nonzero(p & t) / union


def f1(pred_mask: object, true_mask: object) -> float:
    """Pixel F1 (= Dice) 2|P & T| / (|P| + |T|) of two binary masks; both empty -> 1.0."""
    p, t = _binary(pred_mask, "pred_mask"), _binary(true_mask, "true_mask")
    _same_shape(p, t, "pred_mask", "true_mask")
    denom = np.count_nonzero(p) + np.count_nonzero(t)
    return 1.0 if denom == 0 else 2.0 * np.count_nonzero(p & t) / denom


def pixel_error(pred_mask: object, true_mask: object) -> float:
    """Fraction of pixels where two binary masks disagree (1 - pixel accuracy).

    This is the plain per-pixel error. The ISBI 2012 leaderboard's "pixel error" is a different
    number, 1 - the best pixel F-score over thresholds: see :func:`isbi_pixel_error`.
    """
    p, t = _binary(pred_mask, "pred_mask"), _binary(true_mask, "true_mask")
    _same_shape(p, t, "pred_mask", "true_mask")
    return float(np.count_nonzero(p != t)) / max(p.size, 1)


def _pixel_fscores(prob: np.ndarray, true_fg: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    out = np.empty(thresholds.size)
    n_true = np.count_nonzero(true_fg)
    for k, t in enumerate(thresholds):
        pred = prob > t
        tp = np.count_nonzero(pred & true_fg)
        denom = np.count_nonzero(pred) + n_true
        out[k] = 1.0 if denom == 0 else 2.0 * tp / denom
    return out


def isbi_pixel_error(
    prob: object,
    true_mask: object,
    thresholds: Sequence[float] | np.ndarray | None = None,
    *,
    prob_is_boundary: bool = False,
) -> float:
    """ISBI 2012 pixel error: 1 - the best pixel F-score over ``thresholds``.

    Convention of the challenge's Fiji code (``PixelError.getPixelErrorMaximalFScore``): the
    positive class is the cell interior, ``true_mask > 0`` is the truth and ``prob > t`` the
    prediction; the F-score is 2TP / (2TP + FP + FN). ``prob`` is an interior probability in
    [0, 1] (``prob_is_boundary=True``: a membrane probability, used as ``1 - prob``).
    Default thresholds: :data:`ISBI_THRESHOLDS` (0, 0.1, ..., 1).
    """
    p = _probability(prob, "prob")
    t = _binary(true_mask, "true_mask")
    _same_shape(p, t, "prob", "true_mask")
    if prob_is_boundary:
        p = 1.0 - p
    return 1.0 - float(_pixel_fscores(p, t, _thresholds(thresholds)).max())


# --------------------------------------------------------------------------- Rand / info
def _contingency(seg: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Overlap counts restricted to the ground-truth foreground (gt != 0).

    Returns (sizes of the nonempty (gt, seg) overlaps with seg != 0, gt segment sizes, seg
    segment sizes inside the gt foreground (seg != 0), number of gt-foreground pixels with
    seg == 0), as float64 arrays and an int.
    """
    fg = gt != 0
    g, s = gt[fg].astype(np.int64), seg[fg].astype(np.int64)
    sizes_gt = np.unique(g, return_counts=True)[1]
    on = s != 0
    n_zero = int(np.count_nonzero(~on))
    g, s = g[on], s[on]
    if s.size == 0:
        empty = np.zeros(0)
        return empty, sizes_gt.astype(np.float64), empty, n_zero
    base = int(s.max()) + 1
    overlaps = np.unique(g * base + s, return_counts=True)[1]
    sizes_seg = np.unique(s, return_counts=True)[1]
    return (
        overlaps.astype(np.float64),
        sizes_gt.astype(np.float64),
        sizes_seg.astype(np.float64),
        n_zero,
    )


def _check_seg_gt(seg: object, gt: object) -> tuple[np.ndarray, np.ndarray]:
    s, g = _labels(seg, "seg"), _labels(gt, "gt")
    _same_shape(s, g, "seg", "gt")
    if not np.any(g):
        raise ValueError("gt has no foreground (nonzero) pixels; the scores are undefined")
    return s, g


def rand_scores(
    seg: object, gt: object, *, normalization: str = "n2"
) -> tuple[float, float, float]:
    """Foreground-restricted Rand scores (V_Rand, V_Rand_split, V_Rand_merge) of ISBI 2012.

    Arganda-Carreras et al. (2015), section 2.3: with p_ij the joint distribution of (segment i
    of ``seg``, segment j of ``gt``) over the pixels where ``gt != 0``, s_i and t_j its marginals,

        V_split = sum p_ij^2 / sum_j t_j^2,   V_merge = sum p_ij^2 / sum_i s_i^2,
        V_Rand  = 2 / (1/V_split + 1/V_merge)   (the Rand F-score; Rand error = 1 - V_Rand).

    As in the challenge's Fiji code (``RandError.foregroundRestrictedStatsN2``), ``seg == 0``
    pixels inside the ground-truth foreground (unassigned boundary) count as singletons: one
    segment each. ``normalization="n2"`` (default) uses the challenge's N^2 normalisation;
    ``"pairs"`` counts unordered pixel pairs, sum n(n-1), which is what
    ``skimage.metrics.adapted_rand_error`` (SNEMI3D) computes -- identical F-scores when ``seg``
    has no zeros inside the gt foreground (skimage treats seg label 0 as one segment).
    Both scores are in [0, 1]; 1 = no split (resp. merge) error.
    """
    if normalization not in ("n2", "pairs"):
        raise ValueError(f"normalization must be 'n2' or 'pairs', got {normalization!r}")
    counts, sizes_gt, seg_sizes, n_zero = _contingency(*_check_seg_gt(seg, gt))
    if normalization == "n2":
        sum_ab = float(counts @ counts) + n_zero
        sum_a = float(sizes_gt @ sizes_gt)
        sum_b = float(seg_sizes @ seg_sizes) + n_zero
    else:
        sum_ab = float(counts @ (counts - 1.0))
        sum_a = float(sizes_gt @ (sizes_gt - 1.0))
        sum_b = float(seg_sizes @ (seg_sizes - 1.0))
    split = sum_ab / sum_a if sum_a > 0 else 1.0
    merge = sum_ab / sum_b if sum_b > 0 else 1.0
    v_rand = 0.0 if split + merge == 0 else 2.0 * split * merge / (split + merge)
    return float(v_rand), float(split), float(merge)


def _xlogx(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(np.sum(p * np.log(p)))


def info_scores(seg: object, gt: object) -> tuple[float, float, float]:
    """Foreground-restricted information-theoretic scores (V_Info, V_Info_split, V_Info_merge).

    Arganda-Carreras et al. (2015), section 2.3, over the pixels where ``gt != 0`` (S = ``seg``,
    T = ``gt``, natural logarithms):

        V_split = I(S; T) / H(S),   V_merge = I(S; T) / H(T),   V_Info = their harmonic mean.

    ``seg == 0`` pixels inside the gt foreground are singletons, as in the Fiji code
    (``VariationOfInformation.foregroundRestrictedFscore``). Degenerate cases: if ``gt`` is one
    segment (H(T) = 0) no merge is possible and V_merge = 1; if ``seg`` is one segment
    V_split = 1; both -> all scores 1. (Fiji returns V_Info = 0 in the both-degenerate case.)
    """
    counts, sizes_gt, seg_sizes, n_zero = _contingency(*_check_seg_gt(seg, gt))
    n = float(sizes_gt.sum())
    singleton = (n_zero / n) * np.log(n) if n_zero else 0.0  # n_zero * (1/n) log n
    h_t = -_xlogx(sizes_gt / n)
    h_s = -_xlogx(seg_sizes / n) + singleton
    h_st = -_xlogx(counts / n) + singleton
    mi = max(h_s + h_t - h_st, 0.0)
    split = mi / h_s if h_s > 1e-12 else 1.0
    merge = mi / h_t if h_t > 1e-12 else 1.0
    v_info = 0.0 if split + merge == 0 else 2.0 * split * merge / (split + merge)
    return float(v_info), float(split), float(merge)


def _components(mask: np.ndarray, connectivity: int = 4) -> np.ndarray:
    return ndi.label(mask, structure=_CROSS if connectivity == 4 else _SQUARE)[0]


def _thin_boundaries(interior: np.ndarray) -> np.ndarray:
    """Label the 4-connected interior components and grow them over the boundary pixels until
    they meet on 1-pixel watershed lines (label 0): the "border thinning" of the final ISBI
    scoring (Fiji ``WatershedTransform2D(binary, 4)``; on a flat binary image the flooding is a
    geodesic Voronoi partition, here computed with scikit-image's watershed)."""
    from skimage.segmentation import watershed

    markers = _components(interior, 4)
    if markers.max() == 0:
        return markers
    return watershed(
        (~interior).astype(np.uint8), markers, connectivity=1, watershed_line=True
    ).astype(markers.dtype)


def isbi_scores(
    prob: object,
    gt: object,
    thresholds: Sequence[float] | np.ndarray | None = None,
    *,
    prob_is_boundary: bool = False,
    thin: bool = True,
    warping_thresholds: Sequence[float] | None = (0.5,),
) -> dict[str, float]:
    """All ISBI 2012 EM-challenge scores of one section, each the best over thresholds.

    ``prob``: interior probability in [0, 1] (``prob_is_boundary=True`` for membrane maps).
    ``gt``: the challenge label image, nonzero = interior, 0 = membrane; its segments are the
    4-connected components of ``gt > 0``. For each threshold t the segmentation is the
    4-connected components of ``prob > t`` (with ``thin=True``, the challenge's final
    protocol, the boundary between them is first thinned to 1-pixel watershed lines).

    Returns ``rand_error`` = 1 - max V_Rand, ``info_error`` = 1 - max V_Info, ``pixel_error``
    (:func:`isbi_pixel_error`), the best values ``v_rand``/``v_info`` and the thresholds that
    gave them, and ``warping_error``: the smallest :func:`warping_error` over
    ``warping_thresholds`` (``None`` skips it; it is the slowest score).
    The paper's Table 1 (U-Net: warping 0.000353, Rand 0.0382, pixel 0.0611) used the
    challenge's original protocol, averaged over the 30 test sections.
    """
    p = _probability(prob, "prob")
    g = _binary(_array(gt, "gt") > 0, "gt")
    _same_shape(p, g, "prob", "gt")
    if p.ndim != 2:
        raise ValueError(f"prob must be a 2-D image, got shape {p.shape}")
    if prob_is_boundary:
        p = 1.0 - p
    ts = _thresholds(thresholds)
    gt_labels = _components(g, 4)
    if gt_labels.max() == 0:
        raise ValueError("gt has no interior (nonzero) pixels")
    v_rand = np.empty(ts.size)
    v_info = np.empty(ts.size)
    for k, t in enumerate(ts):
        interior = p > t
        seg = _thin_boundaries(interior) if thin else _components(interior, 4)
        v_rand[k] = rand_scores(seg, gt_labels)[0]
        v_info[k] = info_scores(seg, gt_labels)[0]
    pix_f = _pixel_fscores(p, g, ts)
    out: dict[str, float] = {
        "rand_error": 1.0 - float(v_rand.max()),
        "v_rand": float(v_rand.max()),
        "rand_threshold": float(ts[int(np.argmax(v_rand))]),
        "info_error": 1.0 - float(v_info.max()),
        "v_info": float(v_info.max()),
        "info_threshold": float(ts[int(np.argmax(v_info))]),
        "pixel_error": 1.0 - float(pix_f.max()),
        "pixel_threshold": float(ts[int(np.argmax(pix_f))]),
    }
    if warping_thresholds is not None:
        wts = _thresholds(warping_thresholds)
        errs = [warping_error(p, g, threshold=float(t)) for t in wts]
        out["warping_error"] = float(min(errs))
        out["warping_threshold"] = float(wts[int(np.argmin(errs))])
    return out


# --------------------------------------------------------------------------- warping error
# Bit k of a 3x3 neighbourhood code is the neighbour at offset _OFFSETS[k] (row, col).
_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))
_LUT_CACHE: dict[int, np.ndarray] = {}


def _count_components(cells: set, adjacency: int, must_touch: set | None) -> int:
    """Components of ``cells`` (3x3 coordinates) under 4/8 adjacency; only those containing a
    cell of ``must_touch`` are counted when it is given."""
    seen: set = set()
    n = 0
    for c in cells:
        if c in seen:
            continue
        stack, comp = [c], {c}
        seen.add(c)
        while stack:
            y, x = stack.pop()
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    if (dy, dx) == (0, 0) or (adjacency == 4 and dy and dx):
                        continue
                    q = (y + dy, x + dx)
                    if q in cells and q not in seen:
                        seen.add(q)
                        comp.add(q)
                        stack.append(q)
        if must_touch is None or comp & must_touch:
            n += 1
    return n


def simple_point_lut(fg_connectivity: int = 4) -> np.ndarray:
    """Boolean table of the 256 configurations of a pixel's 8 neighbours: is the pixel simple?

    A pixel is simple when flipping it changes neither the number of foreground nor of
    background components nor their adjacency (2-D digital topology, Bertrand 1994): its
    topological numbers are both 1, T_fg(p) = T_bg(p) = 1, where T_c(p) counts the
    c-components of that class in the 8-neighbourhood minus p that are c-adjacent to p.
    ``fg_connectivity`` 4 pairs with background 8 and vice versa (a well-composed pair).
    Index bit k = neighbour ``_OFFSETS[k]`` (clockwise from the top-left). Simpleness does not
    depend on the pixel's own value, so the same table serves adding and removing.
    """
    if fg_connectivity not in (4, 8):
        raise ValueError(f"fg_connectivity must be 4 or 8, got {fg_connectivity}")
    if fg_connectivity in _LUT_CACHE:
        return _LUT_CACHE[fg_connectivity]
    bg_connectivity = 12 - fg_connectivity
    four = {(-1, 0), (0, 1), (1, 0), (0, -1)}
    lut = np.zeros(256, dtype=bool)
    for code in range(256):
        fg = {o for k, o in enumerate(_OFFSETS) if code >> k & 1}
        bg = set(_OFFSETS) - fg
        t_fg = _count_components(fg, fg_connectivity, four if fg_connectivity == 4 else None)
        t_bg = _count_components(bg, bg_connectivity, four if bg_connectivity == 4 else None)
        lut[code] = t_fg == 1 and t_bg == 1
    lut.setflags(write=False)
    _LUT_CACHE[fg_connectivity] = lut
    return lut


def _codes_on_sublattice(padded: np.ndarray, a: int, b: int, h: int, w: int) -> np.ndarray:
    """Neighbourhood codes of the pixels (a::2, b::2) of an image padded by one pixel."""
    code = np.zeros(((h - a + 1) // 2, (w - b + 1) // 2), dtype=np.uint8)
    for k, (dy, dx) in enumerate(_OFFSETS):
        nb = padded[1 + a + dy : 1 + h + dy : 2, 1 + b + dx : 1 + w + dx : 2]
        code |= nb.view(np.uint8) << np.uint8(k)
    return code


@dataclass(frozen=True)
class WarpingResult:
    """Outcome of :func:`warping_error` with ``return_details=True``.

    ``error``: |T* xor P| / number of pixels. ``warped``: T*, the topology-preserving warp of the
    ground truth closest to the prediction. ``mismatches``: T* xor P (the topological errors).
    ``splits``/``merges``: 8-connected groups of mismatches that cut one object of T* into
    several (prediction removes pixels) / join several objects of T* (prediction adds pixels);
    ``other``: the remaining groups (object or hole additions and deletions). ``flips``: number
    of simple points flipped.
    """

    error: float
    warped: np.ndarray
    mismatches: np.ndarray
    splits: int
    merges: int
    other: int
    flips: int


def _distinct_neighbour_labels(labels: np.ndarray, where: np.ndarray, conn: int) -> np.ndarray:
    """Number of distinct nonzero labels among the ``conn``-neighbours of each pixel in where."""
    ys, xs = np.nonzero(where)
    if ys.size == 0:
        return np.zeros(0, dtype=np.int64)
    pad = np.pad(labels, 1)
    offs = [o for o in _OFFSETS if conn == 8 or 0 in o]
    nb = np.stack([pad[ys + 1 + dy, xs + 1 + dx] for dy, dx in offs], axis=0)
    nb = np.sort(nb, axis=0)
    new = np.concatenate([nb[:1] != 0, (nb[1:] != nb[:-1]) & (nb[1:] != 0)], axis=0)
    return new.sum(axis=0)


def warping_error(
    pred: object,
    true_mask: object,
    *,
    threshold: float = 0.5,
    fg_connectivity: int = 4,
    return_details: bool = False,
) -> float | WarpingResult:
    """Warping error of Jain et al. (2010): pixel disagreement that no topology-preserving
    deformation of the ground truth can remove.

    ``pred`` is a map in [0, 1] binarized as ``pred > threshold`` (a binary mask works too) and
    ``true_mask`` the ground truth (nonzero = foreground / cell interior). Starting from T =
    ground truth, simple points of T where T != P are flipped until none is left; the result
    T* is the warped ground truth and the error is |T* xor P| / number of pixels. Boundary shifts
    warp away (error 0); splits, merges, added or deleted objects and holes remain.

    Implementation: simpleness is read from the 256-entry table :func:`simple_point_lut`;
    flips are made in parallel on the four sub-lattices (y % 2, x % 2), whose pixels are never
    8-neighbours, so each flip keeps the others simple (simpleness is a 3x3 property). As in
    Jain et al.'s greedy descent, confident disagreements go first: pixels are admitted in
    bands of decreasing |pred - threshold|. Pixels outside the image count as background.
    ``fg_connectivity=4`` (background 8) matches the 4-connected objects of the ISBI Fiji
    scripts. Cost: O(pixels) per sweep; a 512 x 512 section takes well under a second.
    """
    p = _array(pred, "pred")
    t = _binary(true_mask, "true_mask")
    _same_shape(p, t, "pred", "true_mask")
    if p.ndim != 2:
        raise ValueError(f"pred must be a 2-D image, got shape {p.shape}")
    lut = simple_point_lut(fg_connectivity)
    if np.issubdtype(p.dtype, np.bool_):
        pf = p.astype(np.float64)
    else:
        pf = _probability(p, "pred")
    target = pf > threshold
    priority = np.abs(pf - threshold)
    h, w = target.shape
    warped = np.zeros((h + 2, w + 2), dtype=bool)  # padded: border = background
    warped[1:-1, 1:-1] = t
    inner = warped[1:-1, 1:-1]
    mism = inner != target
    # admission bands of decreasing confidence (quartiles of the mismatched pixels' |p - t|)
    if mism.any():
        quartiles = np.quantile(priority[mism], [0.75, 0.5, 0.25])
        levels = np.unique(np.concatenate([quartiles, [0.0]]))[::-1]
    else:
        levels = np.array([0.0])
    flips = 0
    for level in levels:
        eligible = priority >= level
        while True:
            changed = 0
            for a in (0, 1):
                for b in (0, 1):
                    cand = mism[a::2, b::2] & eligible[a::2, b::2]
                    if not cand.any():
                        continue
                    cand &= lut[_codes_on_sublattice(warped, a, b, h, w)]
                    if not cand.any():
                        continue
                    sub = inner[a::2, b::2]
                    sub[cand] = ~sub[cand]  # view into ``warped``
                    mism[a::2, b::2][cand] = False
                    changed += int(np.count_nonzero(cand))
            flips += changed
            if changed == 0:
                break
    tstar = inner.copy()
    error = float(np.count_nonzero(mism)) / max(mism.size, 1)
    if not return_details:
        return error
    # Classify the remaining (non-simple) mismatches.
    added = mism & ~tstar  # prediction foreground where T* is background
    removed = mism & tstar  # prediction background where T* is foreground
    lab = _components(tstar, fg_connectivity)
    merge_px = np.zeros_like(mism)
    merge_px[added] = _distinct_neighbour_labels(lab, added, fg_connectivity) >= 2
    lab_cut = _components(tstar & ~removed, fg_connectivity)
    split_px = np.zeros_like(mism)
    split_px[removed] = _distinct_neighbour_labels(lab_cut, removed, fg_connectivity) >= 2
    n_merges = int(ndi.label(merge_px, structure=_SQUARE)[1])
    n_splits = int(ndi.label(split_px, structure=_SQUARE)[1])
    n_other = int(ndi.label(mism & ~merge_px & ~split_px, structure=_SQUARE)[1])
    return WarpingResult(error, tstar, mism, n_splits, n_merges, n_other, flips)


# --------------------------------------------------------------------------- instances
def instance_labels_from_probability(
    prob_fg: object, threshold: float = 0.5, min_size: int = 0, connectivity: int = 4
) -> np.ndarray:
    """Instances from a foreground probability map: connected components of ``prob_fg >
    threshold`` (4-connected by default), components smaller than ``min_size`` pixels removed,
    labels renumbered 1..N (int32). This is how a U-Net's two-class output becomes cells for
    the Cell Tracking Challenge SEG measure (touching cells stay merged unless the network drew
    the separating background the paper's weight map asks for, section 3)."""
    p = _array(prob_fg, "prob_fg").astype(np.float64, copy=False)
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    if min_size < 0:
        raise ValueError(f"min_size must be >= 0, got {min_size}")
    return drop_small(_components(p > threshold, connectivity), min_size)


def drop_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    """``labels`` without the objects smaller than ``min_size`` pixels, renumbered 1..N
    (int32; 0 stays background)."""
    lab = np.asarray(labels)
    if lab.max(initial=0) == 0:
        return lab.astype(np.int32)
    sizes = np.bincount(lab.ravel())
    keep = sizes >= max(int(min_size), 1)
    keep[0] = False
    remap = np.zeros(sizes.size, dtype=np.int32)
    remap[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return remap[lab]


def _overlaps(pred: np.ndarray, gt: np.ndarray):
    """Sparse overlap table between nonzero labels: (gt ids, pred ids, |R|, |S|, pair rows)."""
    gt_ids, gt_sizes = np.unique(gt[gt != 0], return_counts=True)
    pr_ids, pr_sizes = np.unique(pred[pred != 0], return_counts=True)
    both = (gt != 0) & (pred != 0)
    g, s = gt[both].astype(np.int64), pred[both].astype(np.int64)
    if g.size:
        base = int(s.max()) + 1
        pairs, inter = np.unique(g * base + s, return_counts=True)
        pg, ps = pairs // base, pairs % base
    else:
        pg = ps = inter = np.zeros(0, dtype=np.int64)
    gi = np.searchsorted(gt_ids, pg)  # row of each pair in gt_ids
    si = np.searchsorted(pr_ids, ps)
    return gt_ids, pr_ids, gt_sizes, pr_sizes, gi, si, inter


def seg_jaccards(pred_labels: object, gt_labels: object) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell scores of the Cell Tracking Challenge SEG measure.

    Each ground-truth cell R is matched to the predicted cell S with |R & S| > 0.5 |R| (at most
    one can qualify; exactly half is *not* a match) and scores the Jaccard index
    |R & S| / |R | S|; unmatched cells score 0 (Maska et al. 2014; Ulman et al. 2017).
    Returns (gt label ids, Jaccard per id), both in increasing label order.
    """
    pr, gt = _labels(pred_labels, "pred_labels"), _labels(gt_labels, "gt_labels")
    _same_shape(pr, gt, "pred_labels", "gt_labels")
    gt_ids, _, gt_sizes, pr_sizes, gi, si, inter = _overlaps(pr, gt)
    jac = np.zeros(gt_ids.size)
    match = 2 * inter > gt_sizes[gi]  # integer test of |R & S| > 0.5 |R|
    gi, si, inter = gi[match], si[match], inter[match]
    jac[gi] = inter / (gt_sizes[gi] + pr_sizes[si] - inter)
    return gt_ids, jac


def seg_measure(pred_labels: object, gt_labels: object) -> float:
    """Cell Tracking Challenge SEG: mean over ground-truth cells of :func:`seg_jaccards`.

    1.0 for a perfect instance segmentation, 0.0 for an empty one; NaN when ``gt_labels`` has no
    cells. For several frames, pool the per-cell scores of :func:`seg_jaccards` (the challenge
    averages over all reference cells of a sequence, not over frames).
    """
    _, jac = seg_jaccards(pred_labels, gt_labels)
    return float(jac.mean()) if jac.size else float("nan")


class _Cover(NamedTuple):
    """The overlap table of :func:`_overlaps` with the two relations of
    :func:`split_merge_counts` (S covers R, S lies in R), how many R each S covers and how many
    S lie in each R. Arrays indexed by pair row: ``gi``, ``si``, ``inter``, ``covers``,
    ``lies_in``; by cell: ``gt_ids``, ``gt_sizes``, ``n_in_r``; by predicted cell: ``pr_ids``,
    ``pr_sizes``, ``n_covered_by_s``."""

    gt_ids: np.ndarray
    pr_ids: np.ndarray
    gt_sizes: np.ndarray
    pr_sizes: np.ndarray
    gi: np.ndarray
    si: np.ndarray
    inter: np.ndarray
    covers: np.ndarray
    lies_in: np.ndarray
    n_covered_by_s: np.ndarray
    n_in_r: np.ndarray


def _cover_tables(pr: np.ndarray, gt: np.ndarray, min_overlap: float) -> _Cover:
    """The relations of :func:`split_merge_counts` at ``min_overlap`` (0.5: the SEG match)."""
    if not 0.5 <= min_overlap < 1.0:
        raise ValueError(f"min_overlap must be in [0.5, 1), got {min_overlap}")
    gt_ids, pr_ids, gt_sizes, pr_sizes, gi, si, inter = _overlaps(pr, gt)
    covers = inter > min_overlap * gt_sizes[gi]
    lies_in = inter > min_overlap * pr_sizes[si]
    return _Cover(gt_ids, pr_ids, gt_sizes, pr_sizes, gi, si, inter, covers, lies_in,
                  np.bincount(si[covers], minlength=pr_ids.size),
                  np.bincount(gi[lies_in], minlength=gt_ids.size))


def split_merge_ids(
    pred_labels: object, gt_labels: object, min_overlap: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """The cells that :func:`split_merge_counts` counts: (ids of the predicted cells that merge
    two or more true cells, ids of the true cells split into two or more predicted ones),
    sorted. The prediction explorer colours them."""
    pr, gt = _labels(pred_labels, "pred_labels"), _labels(gt_labels, "gt_labels")
    _same_shape(pr, gt, "pred_labels", "gt_labels")
    c = _cover_tables(pr, gt, min_overlap)
    return c.pr_ids[c.n_covered_by_s >= 2], c.gt_ids[c.n_in_r >= 2]


def split_merge_counts(
    pred_labels: object, gt_labels: object, min_overlap: float = 0.5
) -> dict[str, int]:
    """Instance-level error counts between a predicted and a ground-truth label image.

    Definitions (R a ground-truth cell, S a predicted cell, f = ``min_overlap`` in [0.5, 1)):

    * S *covers* R when |R & S| > f |R| (the SEG match rule for f = 0.5; at most one S per R).
    * S *lies in* R when |R & S| > f |S| (at most one R per S).
    * ``merges``: predicted cells that cover two or more ground-truth cells.
    * ``splits``: ground-truth cells in which two or more predicted cells lie.
    * ``matched``: ground-truth cells covered by a predicted cell that covers no other cell.
    * ``missed``: ground-truth cells neither covered nor split.
    * ``spurious``: predicted cells that neither cover a cell nor lie in one.

    Example: two touching cells predicted as one blob -> merges = 1; one cell cut in two halves
    -> splits = 1 (and that cell is not covered, as neither half holds more than half of it).
    """
    pr, gt = _labels(pred_labels, "pred_labels"), _labels(gt_labels, "gt_labels")
    _same_shape(pr, gt, "pred_labels", "gt_labels")
    c = _cover_tables(pr, gt, min_overlap)
    gt_ids, pr_ids, gi, si = c.gt_ids, c.pr_ids, c.gi, c.si
    covers, lies_in, n_covered_by_s, n_in_r = c.covers, c.lies_in, c.n_covered_by_s, c.n_in_r
    r_covered = np.zeros(gt_ids.size, dtype=bool)
    r_covered[gi[covers]] = True
    r_matched = np.zeros(gt_ids.size, dtype=bool)
    one_to_one = covers & (n_covered_by_s[si] == 1)
    r_matched[gi[one_to_one]] = True
    s_used = np.zeros(pr_ids.size, dtype=bool)
    s_used[si[covers | lies_in]] = True
    split = n_in_r >= 2
    return {
        "n_gt": int(gt_ids.size),
        "n_pred": int(pr_ids.size),
        "matched": int(r_matched.sum()),
        "splits": int(split.sum()),
        "merges": int(np.count_nonzero(n_covered_by_s >= 2)),
        "missed": int(np.count_nonzero(~r_covered & ~split)),
        "spurious": int(np.count_nonzero(~s_used)),
    }


SEG_CATEGORIES: tuple[str, ...] = ("one-to-one", "merged", "split", "missed")


def seg_breakdown(pred_labels: object | Sequence[object],
                  gt_labels: object | Sequence[object]) -> dict[str, Any]:
    """Where SEG's shortfall comes from: ``1 - SEG`` split exactly over the reference cells.

    ``pred_labels`` and ``gt_labels`` are one label image each, or equal-length sequences of
    them (the cells of all frames pooled, as :func:`seg_measure`'s challenge does). Each
    ground-truth cell R falls in one category (the first that applies):

    * ``"merged"``: its SEG match S also covers another cell (> half of each lies in S);
    * ``"split"``: two or more predicted cells lie in it (> half of each lies in R);
    * ``"missed"``: no match (Jaccard 0) and not split;
    * ``"one-to-one"``: matched by a cell that covers no other one.

    Each category reports its cells, their mean Jaccard and its ``loss``, the sum of ``1 - J``
    over its cells divided by all cells: the losses add up to ``1 - SEG``. The one-to-one loss
    is split once more, exactly, by ``1 - J = |R \\ S| / |R u S| + |S \\ R| / |R u S|``, into the
    cell's pixels the prediction leaves out (``"left_out"``) and those it adds (``"added"``):
    cells found whole and alone whose outlines are too tight, or too loose.
    """
    single = isinstance(pred_labels, np.ndarray) and np.asarray(pred_labels).ndim == 2
    preds = [pred_labels] if single else list(pred_labels)
    gts = [gt_labels] if single else list(gt_labels)
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predicted label images for {len(gts)} ground truths")
    jac_by: dict[str, list[float]] = {c: [] for c in SEG_CATEGORIES}
    left_out = added = 0.0
    for k, (pr_k, gt_k) in enumerate(zip(preds, gts, strict=True)):
        where = "" if single else f" (frame {k})"
        pr, gt = _labels(pr_k, "pred_labels" + where), _labels(gt_k, "gt_labels" + where)
        _same_shape(pr, gt, "pred_labels" + where, "gt_labels" + where)
        c = _cover_tables(pr, gt, 0.5)  # at 0.5, "covers" is the SEG match
        gt_sizes, pr_sizes, si, inter = c.gt_sizes, c.pr_sizes, c.si, c.inter
        covers, n_covered_by_s, n_in_r = c.covers, c.n_covered_by_s, c.n_in_r
        match = np.full(c.gt_ids.size, -1)
        match[c.gi[covers]] = np.flatnonzero(covers)  # the pair row of each cell's match
        for r in range(c.gt_ids.size):
            row = match[r]
            if row < 0:
                jac_by["split" if n_in_r[r] >= 2 else "missed"].append(0.0)
                continue
            union = gt_sizes[r] + pr_sizes[si[row]] - inter[row]
            jac = inter[row] / union
            if n_covered_by_s[si[row]] >= 2:
                jac_by["merged"].append(jac)
            elif n_in_r[r] >= 2:
                jac_by["split"].append(jac)
            else:
                jac_by["one-to-one"].append(jac)
                left_out += (gt_sizes[r] - inter[row]) / union
                added += (pr_sizes[si[row]] - inter[row]) / union
    n = sum(len(v) for v in jac_by.values())
    if n == 0:
        raise ValueError("gt_labels hold no cell: SEG and its breakdown are undefined")
    seg = sum(sum(v) for v in jac_by.values()) / n
    return {
        "seg": float(seg),
        "cells": n,
        "categories": {c: {"cells": len(v),
                           "mean_jaccard": float(np.mean(v)) if v else None,
                           "loss": float(sum(1.0 - j for j in v) / n)}
                       for c, v in jac_by.items()},
        "one_to_one_loss": {"left_out": float(left_out / n), "added": float(added / n)},
    }


def segmentation_report(
    pred: object, gt_labels: object, *, threshold: float = 0.5, min_size: int = 0
) -> dict[str, float]:
    """IoU, F1, pixel error, SEG and split/merge counts of one image in one dict.

    ``pred``: an integer label image (used as is), a boolean mask (its 4-connected components
    become the cells) or a float foreground probability map (turned into cells by
    :func:`instance_labels_from_probability` with ``threshold`` and ``min_size``).
    ``gt_labels``: ground-truth instance labels (0 = background).
    """
    p = _array(pred, "pred")
    g = _labels(gt_labels, "gt_labels")
    _same_shape(p, g, "pred", "gt_labels")
    if np.issubdtype(p.dtype, np.floating):
        lab = instance_labels_from_probability(p, threshold=threshold, min_size=min_size)
    elif np.issubdtype(p.dtype, np.bool_):
        lab = instance_labels_from_probability(p.astype(np.float64), 0.5, min_size)
    else:
        lab = _labels(p, "pred")
    fg_p, fg_g = lab != 0, g != 0
    counts = split_merge_counts(lab, g)
    return {
        "iou": iou(fg_p, fg_g),
        "f1": f1(fg_p, fg_g),
        "pixel_error": pixel_error(fg_p, fg_g),
        "seg": seg_measure(lab, g),
        **counts,
    }
