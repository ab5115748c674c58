"""The paper's data augmentation as one torch module (Ronneberger et al. 2015, section 3.1).

"We primarily need shift and rotation invariance as well as robustness to deformations and
gray value variations. [...] random elastic deformations [...] random displacement vectors on a
coarse 3 by 3 grid [...] sampled from a Gaussian distribution with 10 pixels standard
deviation. Per-pixel displacements are then computed using bicubic interpolation."

:class:`Augment` draws, per sample, a flip, a shift, a rotation and an elastic field, composes
them into a single pull map and resamples image (cubic B-spline), instance labels (nearest, order
0, values and dtype kept) and weight map (linear) once, on the batch's device, with
:mod:`unetlib.elastic` (same field conventions as ``elasticdeform``). Then it varies the gray
values of the image. The paper gives no ranges for shift, rotation or gray values; the defaults
here are choices, documented on the class.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from unetlib.elastic import MODES, _warp, pull_coordinates

FIELDS = ("bspline", "gaussian")

__all__ = ["Augment", "parameters"]


class Augment(nn.Module):
    """Shift, rotation, flips, elastic deformation and gray-value variation, applied jointly.

    Geometry (one interpolation for all of it): output pixel ``x`` (row, col) pulls from

        ``c = R F (x + d(x) - m) + m + s``

    (``c = R F (x + d(x) - m) / z + m + s`` with a zoom ``z``, below) where ``d`` is the
    elastic field (``elastic_points`` x ``elastic_points`` control grid,
    displacements ~ N(0, ``elastic_sigma``^2) px, cubic B-spline, corners included; or, with
    ``elastic_field="gaussian"``, beyond the paper, Simard et al.'s per-pixel noise U(-1, 1)
    smoothed by a Gaussian of ``elastic_smooth`` px and scaled by ``elastic_alpha``, see
    :func:`unetlib.elastic.deform_gaussian_field`), ``m`` the
    image centre, ``F`` a random flip of each axis (p = 0.5), ``R`` a rotation by an angle
    ~ U(-``max_rotation``, ``max_rotation``) degrees and ``s`` a shift ~ U(-``max_shift``,
    ``max_shift``) px per axis. With ``max_scale`` > 0 (beyond the paper, which names no
    scaling) each sample is also zoomed by ``z`` with ``log z ~ U(-log(1 + max_scale),
    log(1 + max_scale))`` about the centre (z > 1 magnifies); drawn after every other number,
    and only then, so that the other draws stay those of a module without it. Borders are
    mirrored (``mode="mirror"``), as the paper mirrors
    the input at the image border; the same mode is used for labels and weights so that they
    stay aligned with the image.

    Gray values (image only, after the warp), per sample: ``v = (x - lo) / (hi - lo)`` with the
    sample's min and max, ``v <- v ** g`` with ``log g ~ U(-gamma, gamma)``, back to the original
    range, then ``(v - mean) * c + mean + b`` with ``c ~ U(1 - contrast, 1 + contrast)`` and
    ``b ~ U(-brightness, brightness)`` (in image units).

    Every call draws the same random numbers in the same order whatever parts are switched off,
    so an ablation that disables one part leaves the draws of the others unchanged (the Gaussian
    field's noise, one number per pixel, is drawn last, so the other draws are those of the
    B-spline field's calls). Draws use
    ``generator`` (forward argument) or the module's own generator seeded with ``seed``, on that
    generator's device (CPU by default), in float64; results are then deterministic per seed.

    Args:
        flip, shift, rotation, elastic, gray: switch each part on or off.
        max_shift: shift range in pixels.
        max_rotation: rotation range in degrees (180 = any angle).
        elastic_sigma: standard deviation of the control displacements in pixels (paper: 10).
        elastic_points: control points per axis (paper: 3).
        elastic_field: ``"bspline"`` (the paper's coarse grid) or ``"gaussian"`` (Simard's
            smoothed per-pixel field, beyond the paper).
        elastic_alpha, elastic_smooth: the Gaussian field's scale and smoothing in pixels (the
            defaults give the paper's field's root-mean-square displacement on 256-px crops).
        max_scale: zoom range (0: none, the paper; 0.4: about nnU-Net's 0.7 to 1.4).
        gamma, contrast, brightness: gray-value ranges (see above).
        mode: border handling for all three tensors (see :data:`unetlib.elastic.MODES`).
        seed: seed of the module's generator (``None``: ``torch.initial_seed()``-based default).
        compiled: sample through ``torch.compile`` (faster on CPU and GPU; first call compiles).
    """

    def __init__(
        self,
        *,
        flip: bool = True,
        shift: bool = True,
        rotation: bool = True,
        elastic: bool = True,
        gray: bool = True,
        max_shift: float = 16.0,
        max_rotation: float = 180.0,
        elastic_sigma: float = 10.0,
        elastic_points: int = 3,
        elastic_field: str = "bspline",
        elastic_alpha: float = 1000.0,
        elastic_smooth: float = 20.0,
        max_scale: float = 0.0,
        gamma: float = 0.2,
        contrast: float = 0.1,
        brightness: float = 0.1,
        mode: str = "mirror",
        seed: int | None = None,
        compiled: bool = False,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
        for name, v in (
            ("max_shift", max_shift),
            ("max_rotation", max_rotation),
            ("elastic_sigma", elastic_sigma),
            ("elastic_alpha", elastic_alpha),
            ("elastic_smooth", elastic_smooth),
            ("max_scale", max_scale),
            ("gamma", gamma),
            ("contrast", contrast),
            ("brightness", brightness),
        ):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name}: expected a finite number >= 0, got {v!r}")
        if elastic_field not in FIELDS:
            raise ValueError(f"elastic_field: expected one of {FIELDS}, got {elastic_field!r}")
        if not isinstance(elastic_points, int) or elastic_points < 1:
            raise ValueError(f"elastic_points: expected an int >= 1, got {elastic_points!r}")
        self.flip, self.shift, self.rotation = flip, shift, rotation
        self.elastic, self.gray = elastic, gray
        self.max_shift, self.max_rotation = float(max_shift), float(max_rotation)
        self.elastic_sigma, self.elastic_points = float(elastic_sigma), elastic_points
        self.elastic_field = elastic_field
        self.elastic_alpha, self.elastic_smooth = float(elastic_alpha), float(elastic_smooth)
        self.max_scale = float(max_scale)
        self.gamma, self.contrast, self.brightness = (
            float(gamma),
            float(contrast),
            float(brightness),
        )
        self.mode, self.compiled = mode, compiled
        self.generator = torch.Generator()
        if seed is not None:
            self.generator.manual_seed(seed)

    def extra_repr(self) -> str:
        """The active transformations and their parameters, for ``repr(augment)``."""
        parts = [n for n in ("flip", "shift", "rotation", "elastic", "gray") if getattr(self, n)]
        field = (f"elastic_sigma={self.elastic_sigma}" if self.elastic_field == "bspline" else
                 f"gaussian field alpha={self.elastic_alpha}, smooth={self.elastic_smooth}")
        zoom = f", max_scale={self.max_scale}" if self.max_scale else ""
        return f"parts={parts}, {field}{zoom}, mode={self.mode!r}"

    def _draw(self, n: int, g: torch.Generator, h: int, w: int) -> dict[str, Tensor]:
        """All random numbers of one call, in a fixed order (see the class docstring)."""
        kw = {"generator": g, "dtype": torch.float64, "device": g.device}
        p = self.elastic_points
        r = {
            "flip": torch.rand((n, 2), **kw) < 0.5,
            "shift": (torch.rand((n, 2), **kw) * 2 - 1) * self.max_shift,
            "angle": (torch.rand((n,), **kw) * 2 - 1) * math.radians(self.max_rotation),
            "elastic": torch.randn((n, 2, p, p), **kw) * self.elastic_sigma,
            "gamma": torch.exp((torch.rand((n,), **kw) * 2 - 1) * self.gamma),
            "contrast": 1 + (torch.rand((n,), **kw) * 2 - 1) * self.contrast,
            "brightness": (torch.rand((n,), **kw) * 2 - 1) * self.brightness,
        }
        if self.elastic_field == "gaussian":
            r["noise"] = (torch.rand((n, 2, h, w), **kw) * 2 - 1) * self.elastic_alpha
        if self.max_scale:
            r["scale"] = torch.exp((torch.rand((n,), **kw) * 2 - 1) * math.log1p(self.max_scale))
        return r

    def forward(
        self,
        image: Tensor,
        labels: Tensor | None = None,
        weights: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Augment a batch.

        Args:
            image: ``(N, C, H, W)`` floating point.
            labels: ``(N, H, W)`` integer instance/class labels, or ``None``.
            weights: ``(N, H, W)`` floating point weight map, or ``None``.
            generator: random source for this call (default: the module's generator).

        Returns:
            ``(image, labels, weights)`` with the same shapes, dtypes and device
            (``None`` stays ``None``).
        """
        _check_batch(image, labels, weights)
        n, _, h, w = image.shape
        r = self._draw(n, generator or self.generator, h, w)
        return self.apply(image, labels, weights, r)

    def apply(
        self,
        image: Tensor,
        labels: Tensor | None,
        weights: Tensor | None,
        draws: dict[str, Tensor],
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Augment a batch with given parameters instead of random ones: ``draws`` as made by
        :func:`parameters` (or drawn by :meth:`forward`), one row per sample. The parts switched
        off on this module are left out, whatever ``draws`` holds."""
        _check_batch(image, labels, weights)
        h, w = image.shape[-2:]
        dev = image.device
        r = {k: v.to(dev) for k, v in draws.items()}
        xs, orders = [image], [3]
        if labels is not None:
            xs.append(labels[:, None])
            orders.append(0)
        if weights is not None:
            xs.append(weights[:, None])
            orders.append(1)
        if self.flip or self.shift or self.rotation or self.elastic or self.max_scale:
            smooth = None
            if not self.elastic:
                disp = torch.zeros_like(r["elastic"][:, :, :1, :1])
            elif self.elastic_field == "gaussian":
                disp, smooth = r["noise"], self.elastic_smooth
            else:
                disp = r["elastic"]
            affine = self._affine(r, h, w)
            k = len(xs)
            xs = _warp(xs, disp, orders, [self.mode] * k, [0.0] * k, None, affine, self.compiled,
                       smooth=smooth)

        out = xs[0]
        if self.gray:
            out = self._gray(out, r)
        it = iter(xs[1:])
        lab = next(it)[:, 0] if labels is not None else None
        wmap = next(it)[:, 0] if weights is not None else None
        return out, lab, wmap

    def coordinates(self, draws: dict[str, Tensor], shape: tuple[int, int]) -> Tensor:
        """The pull coordinates ``(N, 2, H, W)`` of :meth:`apply` with the paper's B-spline
        field (see the class docstring): where each output pixel samples the input."""
        h, w = shape
        disp = draws["elastic"] if self.elastic else torch.zeros_like(draws["elastic"])
        return pull_coordinates(disp, (h, w), self._affine(draws, h, w))

    def _affine(self, r: dict[str, Tensor], h: int, w: int) -> Tensor:
        """(N, 2, 3) map ``u -> R F (u - m) / z + m + s`` in (row, col) pixel coordinates
        (``z`` = 1 without ``max_scale``)."""
        n = r["angle"].shape[0]
        dev = r["angle"].device
        f = torch.ones((n, 2), dtype=torch.float64, device=dev)
        if self.flip:
            f = torch.where(r["flip"], -f, f)
        ang = r["angle"] if self.rotation else torch.zeros_like(r["angle"])
        cos, sin = torch.cos(ang), torch.sin(ang)
        rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
        lin = rot * f[:, None, :]  # R @ diag(f)
        if self.max_scale:  # z > 1 pulls from nearer the centre: the content looks larger
            lin = lin / r["scale"].to(lin)[:, None, None]
        m = torch.tensor([(h - 1) / 2, (w - 1) / 2], dtype=torch.float64, device=dev)
        s = r["shift"] if self.shift else torch.zeros_like(r["shift"])
        t = m - lin @ m + s
        return torch.cat([lin, t[:, :, None]], -1)

    def _gray(self, x: Tensor, r: dict[str, Tensor]) -> Tensor:
        n = x.shape[0]
        view = (n,) + (1,) * (x.ndim - 1)
        flat = x.reshape(n, -1)
        lo = flat.amin(1).view(view)
        hi = flat.amax(1).view(view)
        span = (hi - lo).clamp_min(torch.finfo(x.dtype).tiny)
        g = r["gamma"].to(x.dtype).view(view)
        v = ((x - lo) / span).clamp(0, 1) ** g * span + lo
        mean = v.reshape(n, -1).mean(1).view(view)
        c = r["contrast"].to(x.dtype).view(view)
        b = r["brightness"].to(x.dtype).view(view)
        return (v - mean) * c + mean + b


def _check_batch(image: Tensor, labels: Tensor | None, weights: Tensor | None) -> None:
    """Shapes, dtypes and devices of an :class:`Augment` batch (errors name the argument)."""
    if not isinstance(image, Tensor) or image.ndim != 4 or not image.is_floating_point():
        raise ValueError("image: expected a floating point tensor (N, C, H, W)")
    n, _, h, w = image.shape
    for name, t in (("labels", labels), ("weights", weights)):
        if t is not None and (not isinstance(t, Tensor) or tuple(t.shape) != (n, h, w)):
            raise ValueError(
                f"{name}: expected shape {(n, h, w)}, got {getattr(t, 'shape', t)}"
            )
        if t is not None and t.device != image.device:
            raise ValueError(f"{name}: on {t.device}, image on {image.device}")
    if labels is not None and labels.is_floating_point():
        raise TypeError(f"labels: expected an integer tensor, got {labels.dtype}")
    if weights is not None and not weights.is_floating_point():
        raise TypeError(f"weights: expected a floating point tensor, got {weights.dtype}")


def parameters(
    *,
    flip: tuple[bool, bool] = (False, False),
    shift: tuple[float, float] = (0.0, 0.0),
    rotation: float = 0.0,
    elastic: Tensor | None = None,
    gamma: float = 1.0,
    contrast: float = 1.0,
    brightness: float = 0.0,
    scale: float = 1.0,
) -> dict[str, Tensor]:
    """The parameters of one augmentation, given instead of drawn, for :meth:`Augment.apply`
    (one sample): ``flip`` of (rows, columns), ``shift`` in pixels, ``rotation`` in degrees,
    ``elastic`` the ``(2, p, p)`` control displacements in pixels (none: no elastic
    deformation), ``gamma``, ``contrast`` and ``brightness`` as in the class docstring, ``scale``
    the zoom ``z`` (used by a module with ``max_scale`` > 0)."""
    f64 = {"dtype": torch.float64}
    disp = torch.zeros((2, 3, 3), **f64) if elastic is None else torch.as_tensor(elastic, **f64)
    if disp.ndim != 3 or disp.shape[0] != 2:
        raise ValueError(f"elastic: expected shape (2, p0, p1), got {tuple(disp.shape)}")
    for name, v in (("rotation", rotation), ("gamma", gamma), ("contrast", contrast),
                    ("brightness", brightness), ("scale", scale),
                    *zip(("shift y", "shift x"), shift, strict=True)):
        if not math.isfinite(float(v)):
            raise ValueError(f"{name}: expected a finite number, got {v!r}")
    if not float(scale) > 0:
        raise ValueError(f"scale: expected a zoom factor > 0, got {scale!r}")
    return {
        "flip": torch.tensor([list(flip)]),
        "shift": torch.tensor([list(shift)], **f64),
        "angle": torch.tensor([math.radians(float(rotation))], **f64),
        "elastic": disp[None],
        "gamma": torch.tensor([float(gamma)], **f64),
        "contrast": torch.tensor([float(contrast)], **f64),
        "brightness": torch.tensor([float(brightness)], **f64),
        "scale": torch.tensor([float(scale)], **f64),
    }
