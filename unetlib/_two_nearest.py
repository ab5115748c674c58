"""The squared distances from every pixel to its two nearest cells, as one compiled kernel.

This is the inner loop of :func:`unetlib.weights.two_nearest_distances` (the d1 and d2 of the
paper's eq. 2), compiled with numba; :mod:`unetlib.weights` imports it on first use, so that
importing the package does not import numba.

For each cell i, the exact squared Euclidean distance transform of cell i is computed in the
cell's bounding box grown by ``margin`` pixels (every pixel within ``margin`` of the cell lies in
that window, and every pixel of the cell too, so there the windowed transform equals the
full-image one), by the separable algorithm of Felzenszwalb & Huttenlocher (2012, "Distance
transforms of sampled functions"): the vertical distance to the cell in each column, then in each
row the lower envelope of the parabolas ``(x - q)^2 + g(q)^2``. Integer arithmetic throughout
(the envelope's intersections are compared by cross-multiplication), so the squared distances
are exact integers, equal to those of ``scipy.ndimage.distance_transform_edt``. The two smallest
squared distances per pixel over the cells (two *different* cells) are kept in ``s1 <= s2``;
distances above ``sqrt(limit2)`` are left at the caller's fill value.

Against one ``scipy.ndimage.distance_transform_edt`` per window (the previous implementation,
kept as the baseline of ``benchmarks/bench_weights.py``): the same integers, without the
feature transform's index arrays and the NumPy passes over each window.
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np


def _compiled(fn: Callable) -> Callable:
    """``fn`` compiled by numba, the machine code cached on disk (beside this file, or in the
    user's cache folder) so that later processes skip the seconds of compilation; where no
    folder is writable (a read-only install) it is compiled in memory in each process."""
    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return numba.njit(nogil=True)(fn)


@_compiled
def _boxes(lab: np.ndarray, n: int) -> np.ndarray:
    """Bounding boxes ``[y_min, y_max, x_min, x_max]`` (inclusive) of ids 0..n; y_max = -1 where
    an id is absent."""
    h, w = lab.shape
    box = np.empty((n + 1, 4), np.int64)
    box[:, 0] = h
    box[:, 1] = -1
    box[:, 2] = w
    box[:, 3] = -1
    for y in range(h):
        for x in range(w):
            i = lab[y, x]
            if i > 0:
                box[i, 0] = min(box[i, 0], y)
                box[i, 1] = max(box[i, 1], y)
                box[i, 2] = min(box[i, 2], x)
                box[i, 3] = max(box[i, 3], x)
    return box


@_compiled
def two_nearest_sq(lab: np.ndarray, n: int, margin: int, limit2: float,
                   s1: np.ndarray, s2: np.ndarray) -> None:
    """Fill ``s1 <= s2`` (H, W), pre-filled with a large value, with the two smallest squared
    distances to distinct cells of ``lab`` (ids 1..n, 0 = background) that are <= ``limit2``,
    each cell's transform computed in its box grown by ``margin`` (which must be >= sqrt(limit2)
    for exactness)."""
    h, w = lab.shape
    box = _boxes(lab, n)
    hmax = 0
    wmax = 0
    for i in range(1, n + 1):
        if box[i, 1] >= 0:
            hmax = max(hmax, min(box[i, 1] + 1 + margin, h) - max(box[i, 0] - margin, 0))
            wmax = max(wmax, min(box[i, 3] + 1 + margin, w) - max(box[i, 2] - margin, 0))
    far = np.int64(margin) + 1  # a vertical distance that cannot give a distance <= margin
    g = np.empty((hmax, wmax), np.int64)
    last = np.empty(wmax, np.int64)
    v = np.empty(wmax, np.int64)  # the envelope's parabolas: their columns ...
    f = np.empty(wmax, np.int64)  # ... and g(q)^2 + q^2
    for i in range(1, n + 1):
        if box[i, 1] < 0:
            continue
        y0 = max(box[i, 0] - margin, 0)
        y1 = min(box[i, 1] + 1 + margin, h)
        x0 = max(box[i, 2] - margin, 0)
        x1 = min(box[i, 3] + 1 + margin, w)
        ww = x1 - x0
        # only the columns of the cell's box hold cell pixels: the others have no parabola
        c0 = box[i, 2] - x0
        c1 = box[i, 3] + 1 - x0
        # columns: distance to the nearest pixel of cell i above, then below (capped at far)
        for x in range(c0, c1):
            last[x] = -far - h
        for y in range(y0, y1):
            for x in range(c0, c1):
                if lab[y, x0 + x] == i:
                    last[x] = y
                g[y - y0, x] = min(y - last[x], far)
        for x in range(c0, c1):
            last[x] = far + 2 * h
        for y in range(y1 - 1, y0 - 1, -1):
            for x in range(c0, c1):
                if lab[y, x0 + x] == i:
                    last[x] = y
                g[y - y0, x] = min(last[x] - y, g[y - y0, x])
        # rows: the lower envelope of the parabolas (x - q)^2 + g(q)^2
        for r in range(y1 - y0):
            k = -1
            for q in range(c0, c1):
                if g[r, q] >= far:
                    continue
                fq = g[r, q] * g[r, q] + q * q
                # drop the top parabola while the new one overtakes it no later than it
                # overtook the one below (intersections compared by cross-multiplication)
                while k >= 1 and ((fq - f[k]) * (v[k] - v[k - 1])
                                  <= (f[k] - f[k - 1]) * (q - v[k])):
                    k -= 1
                k += 1
                v[k] = q
                f[k] = fq
            if k < 0:
                continue
            m = 0
            y = y0 + r
            for q in range(ww):
                while m < k and f[m + 1] - 2 * q * v[m + 1] <= f[m] - 2 * q * v[m]:
                    m += 1
                d = f[m] - 2 * q * v[m] + q * q
                if d <= limit2:
                    x = x0 + q
                    if d < s1[y, x]:
                        s2[y, x] = s1[y, x]
                        s1[y, x] = d
                    elif d < s2[y, x]:
                        s2[y, x] = d
