"""Elastic deformation on a coarse control grid, as a batched torch operation.

The U-Net paper's key augmentation (Ronneberger et al. 2015, section 3.1): random displacement
vectors on a coarse 3x3 grid, drawn from a Gaussian with 10 px standard deviation, interpolated
to a displacement for every pixel, and the image resampled along them.

This module reproduces ``elasticdeform.deform_grid`` (version 0.5.1, by G. van Tulder) number
for number, on any torch device and for a whole batch at once:

* control point ``k`` of an axis of length ``n`` sits at pixel ``k * (n - 1) / (p - 1)``
  (corners included); ``displacement[0]`` moves axis 0 (rows), in pixels;
* the per-pixel displacement is the cubic B-spline through the control values (prefiltered with
  mirror extension, as ``scipy.ndimage.spline_filter1d(order=3)``);
* pull mapping: ``out(x) = in(x + d(x))``; the input is interpolated with a B-spline of
  ``order`` 0, 1 or 3 whose prefilter always uses mirror extension, whatever ``mode`` is;
  ``mode`` only maps coordinates that fall outside ``[0, len - 1]`` (exactly as elasticdeform's
  C code, including its quirks for ``reflect`` and ``wrap``), ``constant`` gives ``cval``;
* order 0 takes the sample at ``floor(c + 0.5)``; integer tensors keep their dtype.

The separable parts are matrix products: the displacement field is ``A_y @ C @ A_x^T`` with
``A = W @ P`` (B-spline basis weights times the inverse of the mirror spline interpolation matrix);
the image prefilter is ``P_y @ X @ P_x^T`` (exact dense inverses on CUDA and for float64; on CPU
for float32 the same filter as a 31-tap FIR in banded blocks, equal to float32 rounding).
Coordinates are kept in float64 so that ``floor`` decisions and weights match elasticdeform's
double-precision C code; the image arithmetic runs in the input's floating dtype (float32 for
integer or half inputs).

Two execution paths give the same numbers (to float32 rounding):

* eager (default): prefilter, then ~30 operations per block of output rows (one gather of all
  ``(order + 1)^2`` taps through a strided view, so without an index per tap; Horner-evaluated
  weights; two weighted sums), the blocks small enough (64k pixels) that the gathered taps stay in
  cache on CPUs;
* ``compiled=True``: prefilter (as a symmetric FIR of 31 taps, whose truncation error is below
  3e-9), coordinates and sampling in one ``torch.compile``-d function (one fused loop per pixel;
  needs a C++ compiler on CPU, Triton on GPU). The first call per configuration compiles (tens of
  seconds); dynamo's recompile limit applies if many dtype/order/mode combinations are used.

Beyond the paper, for comparison, :func:`deform_gaussian_field` samples the same way along the
field most libraries ship (Simard, Steinkraus & Platt 2003): per-pixel noise ``U(-1, 1)`` smoothed
by a Gaussian of ``sigma`` pixels (``scipy.ndimage.gaussian_filter``, ``mode="constant"``,
``truncate=4``) and scaled by ``alpha``. That smoothing is separable too, ``G_y @ U @ G_x^T``, so it
is the same matrix product as the B-spline field with ``A`` replaced by the Gaussian matrix ``G``
and the control grid by the noise.

Known difference from elasticdeform: for integer inputs with ``order > 1`` elasticdeform stores
its prefiltered coefficients in the integer dtype (truncated, and wrapped around for negative
coefficients of unsigned inputs), which garbles the result; here they stay floating point, and the
output is the floating point result rounded half away from zero and clipped to the dtype's range
(as elasticdeform does for ``order <= 1``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import torch
from torch import Tensor

from unetlib.tiling import mirror_pad

__all__ = ["deform_grid", "deform_random_grid", "displacement_field", "deform_gaussian_field",
           "gaussian_field", "MODES"]

MODES = ("constant", "nearest", "mirror", "reflect", "wrap")
ORDERS = (0, 1, 3)
_PAD = 2  # margin of mirrored coefficients: mapped coordinates lie in (-1, len), taps reach +-2


# ----------------------------------------------------------------------------------------------
# small cached matrices (built in float64 on the host, once per size, then cached per device)


def _mirror_index_np(idx: np.ndarray, n: int) -> np.ndarray:
    """Mirror extension without repeating the edge sample (scipy ``mirror``), period 2n - 2."""
    if n <= 1:
        return np.zeros_like(idx)
    s2 = 2 * n - 2
    m = np.mod(idx, s2)
    return np.where(m >= n, s2 - m, m)


@functools.lru_cache(maxsize=64)
def _prefilter_matrix_np(n: int) -> np.ndarray:
    """Cubic B-spline prefilter for a signal of length ``n`` with mirror extension.

    The inverse of the interpolation matrix ``B[i, mirror(i + k)] += (1/6, 4/6, 1/6)[k + 1]``;
    equals ``scipy.ndimage.spline_filter1d(order=3, mode='mirror')`` to float64 rounding.
    """
    b = np.zeros((n, n))
    rows = np.arange(n)
    for k, w in ((-1, 1.0 / 6.0), (0, 4.0 / 6.0), (1, 1.0 / 6.0)):
        np.add.at(b, (rows, _mirror_index_np(rows + k, n)), w)
    return np.linalg.inv(b)


@functools.lru_cache(maxsize=64)
def _control_matrix_np(n_out: int, offset: int, n_in: int, points: int) -> np.ndarray:
    """``(n_out, points)`` matrix taking raw control values to the displacement at each pixel.

    Pixel ``j`` (of the full image, ``j = offset + row``) sits at control coordinate
    ``cp = (points - 1) * j / (n_in - 1)``; the cubic B-spline weights of the four coefficients
    around it (mirror-extended at the grid ends) times the prefilter give the matrix.
    """
    j = np.arange(n_out, dtype=np.float64) + offset
    cp = (points - 1) * j / (n_in - 1)
    f = np.floor(cp)
    start = f.astype(np.int64) - 1
    w = np.zeros((n_out, points))
    rows = np.arange(n_out)
    for k, wk in enumerate(_spline_weights(cp - f, 3)):
        np.add.at(w, (rows, _mirror_index_np(start + k, points)), wk)
    return w @ _prefilter_matrix_np(points)


@functools.lru_cache(maxsize=64)
def _gaussian_matrix_np(n_out: int, offset: int, n_in: int, sigma: float) -> np.ndarray:
    """``(n_out, n_in)`` rows ``offset ... offset + n_out - 1`` of the Gaussian smoothing of a
    signal of length ``n_in``: ``scipy.ndimage.gaussian_filter1d(x, sigma, mode="constant",
    truncate=4.0)`` (the kernel's radius ``int(4 sigma + 0.5)``, weights normalised to sum 1
    over it, zeros outside the signal)."""
    radius = int(4.0 * sigma + 0.5)
    taps = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (taps / sigma) ** 2) if sigma > 0 else (taps == 0).astype(float)
    kernel /= kernel.sum()
    cols = np.arange(n_out)[:, None] + offset + taps[None, :]
    rows = np.broadcast_to(np.arange(n_out)[:, None], cols.shape)
    inside = (cols >= 0) & (cols < n_in)
    m = np.zeros((n_out, n_in))
    np.add.at(m, (rows[inside], cols[inside]), np.broadcast_to(kernel, cols.shape)[inside])
    return m


@functools.lru_cache(maxsize=64)
def _padded_prefilter_np(n: int) -> np.ndarray:
    """Image prefilter followed by mirror padding by ``_PAD``: ``(n + 2 * _PAD, n)``."""
    rows = _mirror_index_np(np.arange(-_PAD, n + _PAD), n)
    return _prefilter_matrix_np(n)[rows]


@functools.lru_cache(maxsize=256)
def _cached(kind: str, args: tuple, dtype: torch.dtype, device: torch.device) -> Tensor:
    builder = {
        "control": _control_matrix_np,
        "gaussian": _gaussian_matrix_np,
        "prefilter": _padded_prefilter_np,
        "band": _band_matrix_np,
    }[kind]
    return torch.as_tensor(builder(*args)).to(device=device, dtype=dtype)


@functools.lru_cache(maxsize=64)
def _pad_index(n: int, device: torch.device, margin: int = _PAD) -> Tensor:
    idx = _mirror_index_np(np.arange(-margin, n + margin), n)
    return torch.as_tensor(idx, dtype=torch.long).to(device)


# ----------------------------------------------------------------------------------------------
# the displacement field and the coordinate mapping


def displacement_field(
    displacement: Tensor,
    shape: tuple[int, int],
    crop: Sequence[slice] | None = None,
) -> Tensor:
    """Per-pixel displacement (float64, ``(N, 2, H_out, W_out)``) from control values.

    ``displacement``: ``(2, p0, p1)`` or ``(N, 2, p0, p1)``, in pixels. ``shape``: the full
    image ``(H, W)``. ``crop``: as in :func:`deform_grid`.
    """
    disp = _as_displacement(displacement, None)
    (oy, ho), (ox, wo) = _crop_window(crop, shape)
    return _field(disp, shape, oy, ho, ox, wo)


def _field(disp: Tensor, shape: tuple[int, int], oy: int, ho: int, ox: int, wo: int) -> Tensor:
    h, w = shape
    dev = disp.device
    ay = _cached("control", (ho, oy, h, disp.shape[-2]), torch.float64, dev)
    ax = _cached("control", (wo, ox, w, disp.shape[-1]), torch.float64, dev)
    # (N, 2, p0, p1) -> (N, 2, H_out, W_out); two small matmuls in float64
    return ay @ disp @ ax.T


def _map_coordinate(c: Tensor, n: int, mode: str) -> Tensor:
    """elasticdeform's ``map_coordinate`` (C code), elementwise in float64.

    Returns -1 for points that take the constant value. Other modes may leave a coordinate
    slightly outside ``[0, n - 1]`` (in ``(-1, n)``); the mirror-extended coefficients handle it.
    """
    if mode == "constant":
        return torch.where((c < 0) | (c > n - 1), torch.full_like(c, -1.0), c)
    if n <= 1:
        return torch.zeros_like(c)
    if mode == "nearest":
        return c.clamp(0, n - 1)
    if mode == "mirror":
        s2 = 2 * n - 2
        lo = s2 * torch.trunc(-c / s2) + c
        lo = torch.where(lo <= 1 - n, lo + s2, -lo)
        hi = c - s2 * torch.trunc(c / s2)
        hi = torch.where(hi >= n, s2 - hi, hi)
    elif mode == "reflect":
        s2 = 2 * n
        lo = torch.where(c < -s2, s2 * torch.trunc(-c / s2) + c, c)
        lo = torch.where(lo < -n, lo + s2, -lo - 1)
        hi = c - s2 * torch.trunc(c / s2)
        hi = torch.where(hi >= n, s2 - hi - 1, hi)
    elif mode == "wrap":
        sz = n - 1
        lo = c + sz * (torch.trunc(-c / sz) + 1)
        hi = c - sz * torch.trunc(c / sz)
    else:  # pragma: no cover - validated by the caller
        raise ValueError(f"mode: unknown {mode!r}")
    return torch.where(c < 0, lo, torch.where(c > n - 1, hi, c))


def _axis_taps(cc: Tensor, order: int, wdtype: torch.dtype) -> tuple[Tensor, list[Tensor]]:
    """Start index (into the padded coefficients) and spline weights along one axis."""
    if order == 0:
        return torch.floor(cc + 0.5).long() + _PAD, []
    f = torch.floor(cc)
    weights = list(_spline_weights((cc - f).to(wdtype), order))
    return f.long() + (_PAD if order == 1 else _PAD - 1), weights


def _map_coordinates(
    cy: Tensor, cx: Tensor, mode: str, h: int, w: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Mapped row and column coordinates (0 where constant) and the mask of non-constant ones."""
    my = _map_coordinate(cy, h, mode)
    mx = _map_coordinate(cx, w, mode)
    valid = (my > -1.0) & (mx > -1.0)
    my = torch.where(valid, my, torch.zeros_like(my))
    mx = torch.where(valid, mx, torch.zeros_like(mx))
    return my, mx, valid


def _sample(
    coef: Tensor,
    cy: Tensor,
    cx: Tensor,
    order: int,
    mode: str,
    cval: float,
    h: int,
    w: int,
    mapped: tuple[Tensor, Tensor, Tensor] | None = None,
) -> Tensor:
    """Interpolate padded coefficients ``coef`` (N, C, h + 4, w + 4) at float64 coordinates
    ``cy``, ``cx`` ((N or 1), H_out, W_out) of the unpadded image. Returns (N, C, H_out, W_out)
    in ``coef``'s dtype, with ``cval`` where elasticdeform gives the constant value.
    ``mapped``: ``_map_coordinates(cy, cx, mode, h, w)`` if already computed."""
    n, c, hp, wp = coef.shape
    ho, wo = cy.shape[-2:]
    my, mx, valid = mapped if mapped is not None else _map_coordinates(cy, cx, mode, h, w)
    wdtype = coef.dtype if coef.is_floating_point() else torch.float32
    sy, wy = _axis_taps(my, order, wdtype)
    sx, wx = _axis_taps(mx, order, wdtype)
    base = (sy * wp + sx).reshape(cy.shape[0], 1, ho * wo).expand(n, c, ho * wo)
    flat = coef.reshape(n, c, hp * wp)
    if order == 0:
        out = flat.gather(2, base)
    else:
        taps = order + 1
        wy = [t.reshape(cy.shape[0], 1, ho * wo) for t in wy]
        wx = [t.reshape(cy.shape[0], 1, ho * wo) for t in wx]
        out = None
        for dy in range(taps):
            row = None
            for dx in range(taps):
                v = wx[dx] * flat.gather(2, base + (dy * wp + dx))
                row = v if row is None else row + v
            v = wy[dy] * row
            out = v if out is None else out + v
    fill = torch.full((), cval, dtype=torch.float64, device=coef.device)
    fill = _round_to(fill, coef.dtype)
    valid = valid.reshape(cy.shape[0], 1, ho * wo)
    return torch.where(valid, out, fill).reshape(n, c, ho, wo)


def _map_stacked(cy: Tensor, cx: Tensor, mode: str, h: int, w: int) -> tuple[Tensor, Tensor | None]:
    """Mapped coordinates stacked as ``(N, 2, H_out, W_out)`` (rows, columns; 0 where constant)
    and the mask of non-constant points (``None`` unless ``mode == "constant"``).

    ``mirror`` (the training mode) maps both axes at once through one remainder: equal to
    :func:`_map_coordinate` for coordinates in ``[0, len - 1]`` (returned unchanged) and within
    the first periods outside, to float64 rounding (~1e-14 px) further out.
    """
    if mode == "mirror":
        # r = c mod (2n - 2) (exact: fmod); elasticdeform mirrors r > n - 1 for c < 0 but only
        # r >= n for c > n - 1 (leaving r in (n - 1, n) to the mirrored coefficients)
        c = torch.stack((cy, cx), 1)
        lens = torch.tensor([float(h), float(w)], dtype=c.dtype, device=c.device).view(2, 1, 1)
        s2 = 2.0 * lens - 2.0
        r = torch.remainder(c, s2)
        over = r - (lens - 1.0)
        flip = (over > 0) & ((over >= 1.0) | (c < 0))
        return torch.where(flip, s2 - r, r), None
    my, mx, valid = _map_coordinates(cy, cx, mode, h, w)
    return torch.stack((my, mx), 1), (valid if mode == "constant" else None)


def _sample_eager(
    coef: Tensor, mc: Tensor, valid: Tensor | None, order: int, cval: float
) -> Tensor:
    """:func:`_sample` with few, large operations (for eager CPU use, where each operation is a
    parallel region and a pass over memory): one gather of all ``(order + 1)^2`` taps, the spline
    weights of both axes by one Horner scheme, two weighted sums.

    ``coef``: padded coefficients (N, C, h + 4, w + 4); ``mc``: mapped float64 coordinates
    ((N or 1), 2, H_out, W_out); ``valid``: mask of non-constant points or ``None``.
    """
    n, c, hp, wp = coef.shape
    nb, _, ho, wo = mc.shape
    p = ho * wo
    flat = coef.reshape(n, c, hp * wp)
    stride = torch.tensor([wp, 1], dtype=torch.float64, device=mc.device).view(2, 1, 1)
    if order == 0:
        # floor(c + 0.5) of both axes, then row * wp + col, as exact float64 integers
        f = torch.floor(mc + 0.5).mul_(stride).sum(1)
        base = f.long().add_(_PAD * wp + _PAD).reshape(nb, 1, p)
        out = flat.gather(2, base.expand(n, c, p))
    else:
        taps = order + 1
        wdtype = coef.dtype if coef.is_floating_point() else torch.float32
        f = torch.floor(mc)
        frac = (mc - f).to(wdtype).reshape(nb, 2, 1, p)
        # flat position of the first tap (the floor may be -1: coordinates lie in (-1, len))
        first = (_PAD - 1 if order == 3 else _PAD) * (wp + 1)
        start = f.mul_(stride).sum(1).add_(first).long().reshape(nb, 1, 1, 1, p)
        # All taps in one gather without an index per tap: a view whose element
        # [dy, dx, i] is flat[i + dy * wp + dx], indexed by the first tap's position.
        span = flat.shape[2] - (taps - 1) * (wp + 1)
        sn, sc, _ = flat.stride()
        view = flat.as_strided((n, c, taps, taps, span), (sn, sc, wp, 1, 1), flat.storage_offset())
        vals = view.gather(4, start.expand(n, c, taps, taps, p))
        a = _weight_matrix(order, wdtype, mc.device)  # (order + 1, taps, 1): a[k] for x^k
        wts = a[order] * frac  # Horner: (nb, 2, taps, p)
        for k in range(order - 1, 0, -1):
            wts.add_(a[k]).mul_(frac)
        wts.add_(a[0])
        wy = wts[:, None, 0, :, None, :]  # (nb, 1, taps, 1, p)
        wx = wts[:, None, 1, None, :, :]  # (nb, 1, 1, taps, p)
        out = vals.mul_(wx).sum(3).mul_(wy[:, :, :, 0]).sum(2)  # vals is ours: in place
    if valid is not None:
        fill = _round_to(torch.full((), cval, dtype=torch.float64, device=coef.device), coef.dtype)
        out = torch.where(valid.reshape(nb, 1, p), out, fill)
    return out.reshape(n, c, ho, wo)


@functools.lru_cache(maxsize=16)
def _weight_matrix(order: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``A[k, j, 0]``: coefficient of ``x^k`` in the spline weight of tap ``j`` at fraction ``x``
    (:func:`_spline_weights` expanded exactly, in fractions; for Horner's scheme).

    Order 3: ``w0 = (1-x)^3/6``, ``w1 = (3x^3 - 6x^2 + 4)/6``, ``w2 = (-3x^3 + 3x^2 + 3x + 1)/6``,
    ``w3 = x^3/6``; order 1: ``(1 - x, x)``.
    """
    x = np.polynomial.Polynomial(np.array([Fraction(0), Fraction(1)], dtype=object))
    m = np.zeros((order + 1, order + 1))
    for j, wj in enumerate(_spline_weights(x, order)):
        m[: len(wj.coef), j] = [float(c) for c in wj.coef]
    return torch.from_numpy(m)[:, :, None].to(device=device, dtype=dtype)


def _spline_weights(x: Any, order: int) -> tuple[Any, ...]:
    """The B-spline interpolation weights of the ``order + 1`` taps from ``floor(c)`` (order 1)
    or ``floor(c) - 1`` (order 3) at the fraction ``x = c - floor(c)``: the one definition, for
    NumPy or torch arrays and NumPy polynomials alike. Order 3 is written as elasticdeform's C
    code computes it, so float64 weights match it to the last bit; the integer literals keep it
    exact on polynomials of fractions (with floats they give the same numbers)."""
    if order == 1:
        return 1 - x, x
    z = 1 - x
    w1 = (x * x * (x - 2) * 3 + 4) / 6
    w2 = (z * z * (z - 2) * 3 + 4) / 6
    w0 = z * z * z / 6
    return w0, w1, w2, 1 - w0 - w1 - w2


def pull_coordinates(
    displacement: Tensor, shape: tuple[int, int], affine: Tensor | None = None
) -> Tensor:
    """The pull coordinates ``(N, 2, H, W)`` (float64, row then column) at which
    :func:`deform_grid` samples its inputs for control ``displacement`` ``(N, 2, p0, p1)`` on an
    image of ``shape``, after the optional ``(N, 2, 3)`` ``affine`` of :class:`unetlib.Augment`:
    the same computation as the warp's own (for drawing a deformed lattice, say)."""
    disp = _as_displacement(displacement, None)
    h, w = shape
    ay = _cached("control", (h, 0, h, disp.shape[-2]), torch.float64, disp.device)
    ax = _cached("control", (w, 0, w, disp.shape[-1]), torch.float64, disp.device)
    return torch.stack(_coordinates(disp, ay, ax, 0, 0, affine), 1)


def _coordinates(
    disp: Tensor,
    ay: Tensor,
    ax: Tensor,
    oy: int,
    ox: int,
    affine: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Pull coordinates (float64, ``(N, H_out, W_out)`` each) of the output pixels.

    ``u = x + d(x)`` with ``d = A_y C A_x^T`` (written as a sum over the few control rows, which
    is cheaper than a matmul with an inner size of 3; a matmul for a dense field); then, if
    given, ``affine`` ``(N, 2, 3)`` maps ``u`` to ``affine[:, :, :2] @ u + affine[:, :, 2]``
    (used by :class:`unetlib.Augment`).
    """
    t = disp @ ax.T  # (N, 2, p0, W_out)
    if ay.shape[1] > 8:  # a dense (Gaussian) field
        d = ay @ t
    else:
        d = (ay.T[None, None, :, :, None] * t[:, :, :, None, :]).sum(2)  # (N, 2, H_out, W_out)
    gy = torch.arange(ay.shape[0], device=d.device, dtype=torch.float64) + oy
    gx = torch.arange(ax.shape[0], device=d.device, dtype=torch.float64) + ox
    uy = gy[:, None] + d[:, 0]
    ux = gx[None, :] + d[:, 1]
    if affine is None:
        return uy, ux
    a = affine[:, :, :, None, None]
    return a[:, 0, 0] * uy + a[:, 0, 1] * ux + a[:, 0, 2], a[:, 1, 0] * uy + a[:, 1, 1] * ux + a[
        :, 1, 2
    ]


def _fir_prefilter(x: Tensor, pad_y: Tensor, pad_x: Tensor) -> Tensor:
    """Cubic spline prefilter as a truncated symmetric FIR (for the compiled path).

    The mirror prefilter's impulse response is ``sqrt(3) z^|k|``, ``z = sqrt(3) - 2``; cut at
    ``|k| <= _FIR_HALF`` (|z|^15 < 3e-9) it matches the exact inverse to float32 rounding.
    ``pad_y``/``pad_x`` mirror-index the input by ``_FIR_HALF + _PAD`` on each side; the
    result is the coefficient image padded by ``_PAD``.
    """
    xp = x.index_select(-2, pad_y).index_select(-1, pad_x)
    hp = pad_y.shape[0] - 2 * _FIR_HALF
    wp = pad_x.shape[0] - 2 * _FIR_HALF
    r = _FIR_TAPS[0] * xp[..., _FIR_HALF : _FIR_HALF + hp, :]
    for k in range(1, _FIR_HALF + 1):
        lo = xp[..., _FIR_HALF - k : _FIR_HALF - k + hp, :]
        hi = xp[..., _FIR_HALF + k : _FIR_HALF + k + hp, :]
        r = r + _FIR_TAPS[k] * (lo + hi)
    c = _FIR_TAPS[0] * r[..., _FIR_HALF : _FIR_HALF + wp]
    for k in range(1, _FIR_HALF + 1):
        c = c + _FIR_TAPS[k] * (
            r[..., _FIR_HALF - k : _FIR_HALF - k + wp] + r[..., _FIR_HALF + k : _FIR_HALF + k + wp]
        )
    return c


_FIR_HALF = 15
_FIR_TAPS = [math.sqrt(3.0) * (math.sqrt(3.0) - 2.0) ** k for k in range(_FIR_HALF + 1)]


def _prefilter_and_sample(
    xs: list[Tensor],
    pads: list[tuple[Tensor, Tensor]],
    disp: Tensor,
    ay: Tensor,
    ax: Tensor,
    oy: int,
    ox: int,
    affine: Tensor | None,
    orders: tuple[int, ...],
    modes: tuple[str, ...],
    cvals: tuple[float, ...],
    h: int,
    w: int,
) -> list[Tensor]:
    """Prefilter, coordinates and sampling of all inputs in one function, for ``torch.compile``
    to fuse (coordinates and their mapping are shared by the inputs)."""
    cy, cx = _coordinates(disp, ay, ax, oy, ox, affine)
    mapped: dict[str, tuple[Tensor, Tensor, Tensor]] = {}
    outs = []
    for x, (py, px), o, m, cv in zip(xs, pads, orders, modes, cvals, strict=True):
        if o > 1:
            coef = _fir_prefilter(x, py, px)
        else:
            coef = x.index_select(-2, py).index_select(-1, px)
        if m not in mapped:
            mapped[m] = _map_coordinates(cy, cx, m, h, w)
        outs.append(_sample(coef, cy, cx, o, m, cv, h, w, mapped[m]))
    return outs


@functools.lru_cache(maxsize=1)
def _compiled_prefilter_and_sample() -> Any:
    return torch.compile(_prefilter_and_sample, dynamic=True)


# ----------------------------------------------------------------------------------------------
# input handling


def _round_to(t: Tensor, dtype: torch.dtype) -> Tensor:
    """elasticdeform's output conversion: round half away from zero, clamp, for integers."""
    if dtype.is_floating_point or dtype.is_complex:
        return t.to(dtype)
    if dtype == torch.bool:
        return t != 0
    info = torch.iinfo(dtype)
    r = torch.where(t > 0, torch.floor(t + 0.5), torch.ceil(t - 0.5))
    return r.clamp(info.min, info.max).to(dtype)


def _crop_window(crop: Sequence[slice] | None, shape: tuple[int, int]) -> list[tuple[int, int]]:
    if crop is None:
        return [(0, shape[0]), (0, shape[1])]
    if not isinstance(crop, (tuple, list)) or len(crop) != 2:
        raise ValueError(f"crop: expected a pair of slices, got {crop!r}")
    out = []
    for s, n in zip(crop, shape, strict=True):
        if not isinstance(s, slice) or s.step not in (None, 1):
            raise ValueError(f"crop: each entry must be a slice without step, got {s!r}")
        start = s.start or 0
        stop = n if s.stop is None else s.stop
        if not (0 <= start < stop <= n):
            raise ValueError(f"crop: slice {s!r} does not fit an axis of length {n}")
        out.append((start, stop - start))
    return out


def _as_displacement(displacement: Any, device: torch.device | None) -> Tensor:
    if isinstance(displacement, np.ndarray):
        displacement = torch.from_numpy(displacement)
    if not isinstance(displacement, Tensor):
        raise TypeError(f"displacement: expected a tensor, got {type(displacement).__name__}")
    if displacement.ndim == 3:
        displacement = displacement[None]
    if displacement.ndim != 4 or displacement.shape[1] != 2:
        raise ValueError(
            f"displacement: expected shape (2, p0, p1) or (N, 2, p0, p1), got "
            f"{tuple(displacement.shape)}"
        )
    if min(displacement.shape[-2:]) < 1:
        raise ValueError(f"displacement: empty control grid {tuple(displacement.shape)}")
    if device is not None:
        displacement = displacement.to(device)
    return displacement.to(torch.float64)


def _as_inputs(X: Any) -> tuple[list[Tensor], bool, bool]:
    """Inputs as a list of (N, C, H, W) tensors; whether X was a list; whether it was 2-D."""
    is_list = isinstance(X, (list, tuple))
    xs = list(X) if is_list else [X]
    if not xs:
        raise ValueError("X: expected at least one tensor")
    out = []
    for i, x in enumerate(xs):
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        if not isinstance(x, Tensor):
            raise TypeError(f"X[{i}]: expected a tensor, got {type(x).__name__}")
        if x.ndim not in (2, 4):
            raise ValueError(f"X[{i}]: expected shape (H, W) or (N, C, H, W), got {tuple(x.shape)}")
        out.append(x)
    ndims = {x.ndim for x in out}
    if len(ndims) != 1:
        raise ValueError("X: mix of (H, W) and (N, C, H, W) tensors")
    two_d = ndims == {2}
    out = [x[None, None] if two_d else x for x in out]
    if len({tuple(x.shape[-2:]) for x in out}) != 1:
        raise ValueError(f"X: all tensors must share (H, W), got {[tuple(x.shape) for x in out]}")
    if len({x.shape[0] for x in out}) != 1:
        raise ValueError(
            f"X: all tensors must share the batch size, got {[x.shape[0] for x in out]}"
        )
    if len({x.device for x in out}) != 1:
        raise ValueError("X: all tensors must be on the same device")
    h, w = out[0].shape[-2:]
    if h < 2 or w < 2:
        raise ValueError(f"X: each spatial axis needs at least 2 pixels, got {(h, w)}")
    return out, is_list, two_d


def _per_input(value: Any, n: int, name: str) -> list:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{name}: {len(value)} values for {n} inputs")
        return list(value)
    return [value] * n


def _sampling(order: Any, mode: Any, cval: Any, k: int) -> tuple[list, list, list]:
    """``order``, ``mode`` and ``cval`` as one value per input of ``k``, checked."""
    orders, modes = _per_input(order, k, "order"), _per_input(mode, k, "mode")
    for o in orders:
        if o not in ORDERS:
            raise ValueError(f"order: expected one of {ORDERS}, got {o!r}")
    for m in modes:
        if m not in MODES:
            raise ValueError(f"mode: expected one of {MODES}, got {m!r}")
    return orders, modes, _per_input(cval, k, "cval")


def _compute_dtype(x: Tensor) -> torch.dtype:
    if x.dtype in (torch.float32, torch.float64):
        return x.dtype
    return torch.float32


def _prefilter(x: Tensor, order: int, dtype: torch.dtype) -> Tensor:
    """Spline coefficients of ``x`` (N, C, H, W), mirror-padded by ``_PAD``: (N, C, H+4, W+4),
    contiguous."""
    h, w = x.shape[-2:]
    if order <= 1:  # no prefilter: the samples are the coefficients
        return _mirror_pad(x if order == 0 else x.to(dtype), _PAD, _PAD, _PAD, _PAD)
    if x.device.type == "cuda" or dtype == torch.float64:
        # Exact dense inverse (the banded FIR's truncation, 3e-9, shows in float64); on CUDA in
        # float64 so that TF32 settings cannot change the numbers.
        py = _cached("prefilter", (h,), torch.float64, x.device)
        px = _cached("prefilter", (w,), torch.float64, x.device)
        return (py @ x.to(torch.float64) @ px.T).to(dtype)
    # The filtered mirror-extended signal is the mirror extension of the filtered signal, so one
    # padding (by the FIR's reach plus _PAD) serves both axes.
    (by, ry), (bx, rx) = _band_blocks(h), _band_blocks(w)
    m = _PAD + _FIR_HALF
    xp = _mirror_pad(x.to(dtype), m, m + ry, m, m + rx)
    return _banded_filter(_banded_filter(xp, -2, h, by), -1, w, bx)


def _band_blocks(n: int) -> tuple[int, int]:
    """Block length ``b`` for an axis of length ``n`` (output ``n + 2 * _PAD``) and the extra
    samples past the end that whole blocks need."""
    out_len = n + 2 * _PAD
    blocks = -(-out_len // _BAND_BLOCK)
    b = -(-out_len // blocks)
    return b, blocks * b - out_len


def _banded_filter(xp: Tensor, dim: int, n: int, b: int) -> Tensor:
    """Cubic-spline prefilter along ``dim`` (-2 or -1) of a mirror-padded signal (``xp``: padded
    by ``_PAD + _FIR_HALF`` before and at least as much after an axis of length ``n``); returns
    the coefficients padded by ``_PAD`` (length ``n + 4`` along ``dim``), contiguous.

    The mirror prefilter is the symmetric FIR ``sqrt(3) z^|k|`` (``z = sqrt(3) - 2``) applied to
    the mirror-extended signal; cut at ``|k| <= _FIR_HALF`` (|z|^15 < 3e-9) and written as one
    small banded Toeplitz matrix per block of ``b`` outputs, it costs ``b + 30`` multiply-adds per
    pixel and axis (a matrix product) instead of the dense inverse's ``n + 4``: 2x faster at 512
    on CPU, equal to float32 rounding.
    """
    out_len = n + 2 * _PAD
    t = _cached("band", (b,), xp.dtype, xp.device)  # (b, b + 2 * _FIR_HALF)
    span = b + 2 * _FIR_HALF
    parts = []
    for j0 in range(0, out_len, b):
        tj = t[: min(b, out_len - j0)]  # the last block keeps only the outputs it needs
        if dim == -2:
            parts.append(tj @ xp[..., j0 : j0 + span, :])
        else:
            parts.append(xp[..., j0 : j0 + span] @ tj.T)
    return torch.cat(parts, dim)


def _mirror_pad(x: Tensor, top: int, bottom: int, left: int, right: int) -> Tensor:
    """:func:`unetlib.tiling.mirror_pad` (scipy ``mirror`` = torch and numpy ``reflect``: no
    edge repeat, any amount), through ``torch.nn.functional.pad`` where that can do it: the
    same numbers, 2.5-20x faster on CPU than its two ``index_select`` (one thread, 8 x 1 x 512
    x 512: 1 ms against 16 ms padded by 2, 5 ms against 13 ms by 17 to 37)."""
    h, w = x.shape[-2:]
    if max(top, bottom) < h and max(left, right) < w and x.dtype != torch.bool:
        return torch.nn.functional.pad(x, (left, right, top, bottom), mode="reflect")
    return mirror_pad(x, top, bottom, left, right)


@functools.lru_cache(maxsize=64)
def _band_matrix_np(b: int) -> np.ndarray:
    """``(b, b + 2 * _FIR_HALF)`` Toeplitz block of the truncated prefilter FIR."""
    taps = np.sqrt(3.0) * (np.sqrt(3.0) - 2.0) ** np.abs(np.arange(-_FIR_HALF, _FIR_HALF + 1))
    t = np.zeros((b, b + 2 * _FIR_HALF))
    for i in range(b):
        t[i, i : i + 2 * _FIR_HALF + 1] = taps
    return t


# outputs per banded block: the matrix multiply does (block + 30) / block times the FIR's work;
# 32 to 128 were equally fast at 512 on 2 cores
_BAND_BLOCK = 64


def _warp(
    xs: list[Tensor],
    disp: Tensor,
    orders: list[int],
    modes: list[str],
    cvals: list[float],
    crop: Sequence[slice] | None,
    affine: Tensor | None,
    compiled: bool,
    smooth: float | None = None,
) -> list[Tensor]:
    """Deform (N, C, H, W) tensors by one field; see :func:`deform_grid`. ``smooth``: ``disp`` is
    per-pixel ``(N, 2, H, W)`` noise smoothed by a Gaussian of ``smooth`` pixels (see
    :func:`deform_gaussian_field`) instead of a control grid."""
    n, _, h, w = xs[0].shape
    dev = xs[0].device
    (oy, ho), (ox, wo) = _crop_window(crop, (h, w))
    if smooth is None:
        ay = _cached("control", (ho, oy, h, disp.shape[-2]), torch.float64, dev)
        ax = _cached("control", (wo, ox, w, disp.shape[-1]), torch.float64, dev)
    else:
        ay = _cached("gaussian", (ho, oy, h, float(smooth)), torch.float64, dev)
        ax = _cached("gaussian", (wo, ox, w, float(smooth)), torch.float64, dev)
    coefs: list[Tensor] = []
    pads: list[tuple[Tensor, Tensor]] = []
    for x, o in zip(xs, orders, strict=True):
        keep_int = o == 0 and not x.is_floating_point()
        cdtype = _compute_dtype(x)
        xc = x if keep_int else x.to(cdtype)
        if not compiled:
            coefs.append(_prefilter(xc, o, cdtype))
        else:
            margin = _PAD + (_FIR_HALF if o > 1 else 0)
            coefs.append(xc)
            pads.append((_pad_index(h, dev, margin), _pad_index(w, dev, margin)))
    if compiled:
        ys = _compiled_prefilter_and_sample()(
            coefs,
            pads,
            disp,
            ay,
            ax,
            oy,
            ox,
            affine,
            tuple(orders),
            tuple(modes),
            tuple(float(v) for v in cvals),
            h,
            w,
        )
        return [
            y if y.dtype == x.dtype else _round_to(y, x.dtype) for y, x in zip(ys, xs, strict=True)
        ]

    # Eager: walk over blocks of output rows so that the ~30 passes per block stay in cache
    # (CPU); one block on GPUs, where launches, not bandwidth, dominate.
    nd = max(disp.shape[0], 1 if affine is None else affine.shape[0])
    rows = ho if dev.type == "cuda" else max(1, _EAGER_BLOCK // (nd * wo))
    outs = [
        torch.empty((n, c.shape[1], ho, wo), dtype=x.dtype, device=dev)
        for c, x in zip(coefs, xs, strict=True)
    ]
    for r0 in range(0, ho, rows):
        r1 = min(ho, r0 + rows)
        cy, cx = _coordinates(disp, ay[r0:r1], ax, oy + r0, ox, affine)
        mapped: dict[str, tuple[Tensor, Tensor | None]] = {}
        for out, coef, o, m, cv in zip(outs, coefs, orders, modes, cvals, strict=True):
            if m not in mapped:
                mapped[m] = _map_stacked(cy, cx, m, h, w)
            y = _sample_eager(coef, *mapped[m], o, float(cv))
            out[:, :, r0:r1] = y if y.dtype == out.dtype else _round_to(y, out.dtype)
    return outs


# output pixels (over the batch) per eager block: the gathered taps (16 x 12 bytes a pixel at
# order 3) must stay in cache; 4x larger blocks were ~2x slower on one core (also with 2 threads
# on a loaded 2-core machine), smaller ones no faster (and each operation is a parallel region)
_EAGER_BLOCK = 1 << 16


# ----------------------------------------------------------------------------------------------
# public API


def deform_grid(
    X: Tensor | Sequence[Tensor],
    displacement: Tensor,
    order: int | Sequence[int] = 3,
    mode: str | Sequence[str] = "constant",
    cval: float | Sequence[float] = 0.0,
    crop: Sequence[slice] | None = None,
    *,
    compiled: bool = False,
) -> Tensor | list[Tensor]:
    """Elastic deformation with a given control-point grid (paper section 3.1).

    Same numbers as ``elasticdeform.deform_grid`` (0.5.1) for 2-D images, batched.

    Args:
        X: a tensor ``(H, W)`` or ``(N, C, H, W)``, or a list of them (same ``H, W`` and ``N``),
            all deformed by the same field (e.g. image, labels, weight map).
        displacement: control-point displacements in pixels, ``(2, p0, p1)`` shared by all
            samples or ``(N, 2, p0, p1)`` one per sample; component 0 moves rows.
        order: spline order 0, 1 or 3, or one per input. Order 0 keeps integer values exactly.
        mode: ``constant``, ``nearest``, ``mirror``, ``reflect`` or ``wrap`` (one or per input),
            how coordinates outside the image are mapped.
        cval: value outside the image for ``mode="constant"`` (one or per input).
        crop: ``None`` or a pair of slices; the output is that window of the full deformation.
        compiled: run the sampling through ``torch.compile`` (faster; first call compiles).

    Returns:
        The deformed tensor(s), same dtype and device as the input(s) (NumPy arrays are accepted
        and come back as CPU tensors).
    """
    xs, is_list, two_d = _as_inputs(X)
    orders, modes, cvals = _sampling(order, mode, cval, len(xs))
    n = xs[0].shape[0]
    disp = _as_displacement(displacement, xs[0].device)
    if disp.shape[0] not in (1, n):
        raise ValueError(f"displacement: {disp.shape[0]} fields for a batch of {n}; give 1 or {n}")
    outs = _warp(xs, disp, orders, modes, cvals, crop, None, compiled)
    outs = [y[0, 0] for y in outs] if two_d else outs
    return outs if is_list else outs[0]


def deform_random_grid(
    X: Tensor | Sequence[Tensor],
    sigma: float = 25.0,
    points: int | Sequence[int] = 3,
    order: int | Sequence[int] = 3,
    mode: str | Sequence[str] = "constant",
    cval: float | Sequence[float] = 0.0,
    crop: Sequence[slice] | None = None,
    generator: torch.Generator | None = None,
    *,
    compiled: bool = False,
) -> Tensor | list[Tensor]:
    """Elastic deformation with a random grid: displacements ~ N(0, sigma^2) pixels.

    As ``elasticdeform.deform_random_grid`` (whose default ``sigma=25``; the paper uses 10 px on
    a 3x3 grid), but a batch ``(N, C, H, W)`` gets one independent field per sample. The draw
    is made on ``generator``'s device (CPU if none), in float64, then moved to the inputs'
    device, so a seeded generator gives the same field on every device.
    """
    xs, _, two_d = _as_inputs(X)
    if isinstance(points, int):
        points = (points, points)
    if len(points) != 2 or min(points) < 1:
        raise ValueError(f"points: expected an int or a pair of positive ints, got {points!r}")
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma: expected a finite number >= 0, got {sigma!r}")
    n = 1 if two_d else xs[0].shape[0]
    gdev = generator.device if generator is not None else torch.device("cpu")
    disp = torch.randn(
        (n, 2, int(points[0]), int(points[1])),
        generator=generator,
        dtype=torch.float64,
        device=gdev,
    ) * float(sigma)
    if two_d:
        disp = disp[0]
    return deform_grid(X, disp, order, mode, cval, crop, compiled=compiled)


def _check_gaussian(alpha: float, sigma: float) -> None:
    for name, v in (("alpha", alpha), ("sigma", sigma)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ValueError(f"{name}: expected a finite number >= 0, got {v!r}")


def gaussian_field(
    noise: Tensor,
    alpha: float,
    sigma: float,
    crop: Sequence[slice] | None = None,
) -> Tensor:
    """Simard et al.'s (2003) per-pixel displacement (float64, ``(N, 2, H_out, W_out)``):
    ``alpha * gaussian_filter(noise, sigma, mode="constant", truncate=4)`` per component, as
    ``scipy.ndimage`` computes it, from ``noise`` ``(2, H, W)`` or ``(N, 2, H, W)`` (usually
    ``U(-1, 1)``). Beyond the paper; the paper's field is :func:`displacement_field`."""
    _check_gaussian(alpha, sigma)
    u = _as_displacement(noise, None)
    h, w = u.shape[-2:]
    (oy, ho), (ox, wo) = _crop_window(crop, (h, w))
    gy = _cached("gaussian", (ho, oy, h, float(sigma)), torch.float64, u.device)
    gx = _cached("gaussian", (wo, ox, w, float(sigma)), torch.float64, u.device)
    return float(alpha) * (gy @ u @ gx.T)


def deform_gaussian_field(
    X: Tensor | Sequence[Tensor],
    alpha: float = 1000.0,
    sigma: float = 20.0,
    order: int | Sequence[int] = 3,
    mode: str | Sequence[str] = "constant",
    cval: float | Sequence[float] = 0.0,
    crop: Sequence[slice] | None = None,
    generator: torch.Generator | None = None,
    *,
    noise: Tensor | None = None,
    compiled: bool = False,
) -> Tensor | list[Tensor]:
    """Elastic deformation along a Simard-style field (beyond the paper, for comparison): every
    pixel pulls from ``x + alpha * G_sigma * U(x)`` with ``U ~ U(-1, 1)`` drawn per pixel and
    component (one field per sample of a batch), sampled exactly as :func:`deform_grid` samples
    (B-spline ``order``, ``mode``, ``cval``). The defaults (``alpha=1000``, ``sigma=20``) give the
    paper's 3 x 3 grid's root-mean-square displacement (about 8 px on a 256-pixel crop) with a
    20-pixel correlation length instead of the grid's one bend per half image.

    ``noise``: the ``(2, H, W)`` or ``(N, 2, H, W)`` noise to smooth instead of a draw (the draw
    is made on ``generator``'s device, CPU by default, in float64)."""
    _check_gaussian(alpha, sigma)
    xs, is_list, two_d = _as_inputs(X)
    orders, modes, cvals = _sampling(order, mode, cval, len(xs))
    n, _, h, w = xs[0].shape
    if noise is None:
        gdev = generator.device if generator is not None else torch.device("cpu")
        noise = torch.rand((n, 2, h, w), generator=generator, dtype=torch.float64,
                           device=gdev) * 2 - 1
    u = _as_displacement(noise, xs[0].device)
    if u.shape[0] not in (1, n) or tuple(u.shape[-2:]) != (h, w):
        raise ValueError(f"noise: expected (2, {h}, {w}) or ({n}, 2, {h}, {w}), got "
                         f"{tuple(u.shape)}")
    outs = _warp(xs, u * float(alpha), orders, modes, cvals, crop, None, compiled,
                 smooth=float(sigma))
    outs = [y[0, 0] for y in outs] if two_d else outs
    return outs if is_list else outs[0]
