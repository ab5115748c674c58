"""Interactive explorers of the paper's choices, as ipywidgets (for Jupyter and the book).

Three explorers, each a function that returns an :class:`Explorer` (an ``ipywidgets.VBox``):

* :func:`augmentation_explorer` -- the augmentation of section 3.1: elastic deformation on a
  coarse grid (displacements ~ N(0, sigma^2) px on ``points`` x ``points`` control points, cubic
  B-spline, paper: sigma = 10, 3 x 3), rotation, shift and gray-value variation. Shows the image
  with its label contours before and after, the grid a regular lattice becomes, and the control
  displacements.
* :func:`weight_map_explorer` -- the weight map of eq. 2, w = w_c + w0 exp(-(d1 + d2)^2 /
  (2 sigma^2)) (paper: w0 = 10, sigma ~ 5 px): class-balance term, border term, their sum, and
  the three along a horizontal line across a gap between cells.
* :func:`prediction_explorer` -- a network's foreground probability against the ground truth at
  a chosen threshold: true/false positive/negative pixels, the merged and split cells, per-image
  IoU and the Cell Tracking Challenge SEG measure (section 4, Table 2).

Design: every view is drawn with NumPy and Pillow straight into an ``ipywidgets.Image`` (JPEG
bytes), not through matplotlib figures. This keeps one update well under 200 ms at 512 x 512 on
one CPU core (``benchmarks/bench_widgets.py``), and because the picture is the widget's value it
is saved with the widget state: an executed notebook shows the last picture without a kernel.
What does not depend on a control is computed once and cached: the "before" panel
(augmentation, which then runs :class:`unetlib.Augment` itself), the distances d1, d2 of every
frame (weight map; w0 and sigma are then arithmetic), the probabilities of every image
(prediction; a threshold change only re-thresholds and re-scores).

Each explorer exposes ``controls`` (name -> widget; set ``.value`` or call ``.click()`` on a
button to drive it from code), ``set(**values)`` (several controls, one redraw), ``state`` (the
numbers shown), ``arrays`` (the arrays drawn), ``rgb`` (the picture as a uint8 array) and
``image`` (the ``ipywidgets.Image``). For pages read without a kernel, :func:`static_explorer`
makes one control work in the browser from the saved page: the pictures of a grid of its values,
switched by a slider linked in JavaScript (``jslink``) to an ``ipywidgets.Stack``.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import Any

import ipywidgets as widgets
import numpy as np

from unetlib.plots import ARROW, CONTOUR, FN, FP, GRID, MERGE, SPLIT, TP, overlay

__all__ = [
    "Explorer",
    "augment_arrays",
    "augmentation_explorer",
    "colorize",
    "prediction_explorer",
    "encode_image",
    "static_explorer",
    "threshold_scores",
    "weight_map_explorer",
]

_GAP = 6  # pixels between panels


# ----------------------------------------------------------------------------------------------
# drawing helpers (NumPy + Pillow; no matplotlib figure per update)


def _lut(cmap: str) -> np.ndarray:
    import matplotlib

    table = matplotlib.colormaps[cmap](np.linspace(0.0, 1.0, 256))[:, :3]
    return (table * 255 + 0.5).astype(np.uint8)


_LUTS: dict[str, np.ndarray] = {}


def colorize(values: np.ndarray, vmin: float, vmax: float, cmap: str = "viridis") -> np.ndarray:
    """uint8 RGB (H, W, 3) of ``values`` through a matplotlib colormap, clipped to [vmin, vmax]."""
    if cmap not in _LUTS:
        _LUTS[cmap] = _lut(cmap)
    span = vmax - vmin if vmax > vmin else 1.0
    idx = np.clip((np.asarray(values, dtype=np.float32) - vmin) * (255.0 / span), 0, 255)
    return np.take(_LUTS[cmap], idx.astype(np.uint8), axis=0)


def _gray(image: np.ndarray) -> np.ndarray:
    """uint8 RGB of an image in [0, 1] (values outside are clipped)."""
    g = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.repeat(g[:, :, None], 3, axis=2)


def _edges(labels: np.ndarray) -> np.ndarray:
    """Pixels whose label differs from a 4-neighbour's (both sides of every contour)."""
    e = np.zeros(labels.shape, dtype=bool)
    dy = labels[1:] != labels[:-1]
    dx = labels[:, 1:] != labels[:, :-1]
    e[1:] |= dy
    e[:-1] |= dy
    e[:, 1:] |= dx
    e[:, :-1] |= dx
    return e


def _thick_edges(mask: np.ndarray) -> np.ndarray:
    """A 3-pixel outline of ``mask`` (its contour on both sides, grown by one pixel inwards)."""
    e = _edges(mask)
    inner = e & mask
    e[1:] |= inner[:-1]
    e[:-1] |= inner[1:]
    e[:, 1:] |= inner[:, :-1]
    e[:, :-1] |= inner[:, 1:]
    return e


def _stack(panels: Sequence[np.ndarray], axis: int, gap: int = _GAP) -> np.ndarray:
    """RGB panels side by side (``axis=1``) or one above the other (``axis=0``), ``gap`` white
    pixels between them, aligned to the top left."""
    across = 1 - axis
    size = [0, 0]
    size[axis] = sum(p.shape[axis] for p in panels) + gap * (len(panels) - 1)
    size[across] = max(p.shape[across] for p in panels)
    out = np.full((*size, 3), 255, dtype=np.uint8)
    at = 0
    for p in panels:
        if axis == 1:
            out[: p.shape[0], at : at + p.shape[1]] = p
        else:
            out[at : at + p.shape[0], : p.shape[1]] = p
        at += p.shape[axis] + gap
    return out


def _label_panels(rgb: np.ndarray, texts: Sequence[tuple[int, str]]) -> np.ndarray:
    """Write ``(x, text)`` captions on a dark box at the top left of each panel."""
    from PIL import Image, ImageDraw

    im = Image.fromarray(rgb)
    draw = ImageDraw.Draw(im)
    for x, text in texts:
        box = draw.textbbox((x + 4, 3), text)
        draw.rectangle((box[0] - 3, box[1] - 2, box[2] + 3, box[3] + 2), fill=(0, 0, 0))
        draw.text((x + 4, 3), text, fill=(255, 255, 255))
    return np.asarray(im)


def _swatch(color: tuple[int, int, int]) -> str:
    """An HTML square of ``color`` for the legends under the pictures."""
    return f"<span style='color:rgb{color}'>&#9632;</span>"


def _panel_offsets(panels: Sequence[np.ndarray], gap: int = _GAP) -> list[int]:
    xs, x = [], 0
    for p in panels:
        xs.append(x)
        x += p.shape[1] + gap
    return xs


def encode_image(rgb: np.ndarray, fmt: str = "jpeg", quality: int = 90,
                 subsampling: int = 0, restart_blocks: int = 2) -> bytes:
    """JPEG (default) or PNG bytes of a uint8 RGB array.

    JPEG is the default because it is fast: about 3 ms for a 1030 x 512 picture against 45 ms
    (PNG, no compression, 1.5 MB) to 90 ms (PNG level 1, 0.5 MB) with Pillow here; quality 90
    without chroma subsampling keeps the one-pixel coloured contours readable (``subsampling``:
    Pillow's 0 = 4:4:4, 2 = 4:2:0, about 40% fewer bytes for pictures stored in a page).
    A JPEG carries a restart marker after every ``restart_blocks`` blocks (16 x 16 pixels at
    4:2:0; the same pixels, about 5% more bytes at quality 75 for 2), so that a page's copy can be
    cleared of base64 text that reads like a machine path
    (:func:`unetlib.paths.jpeg_without_path_lookalikes`; 0: no markers).
    """
    from PIL import Image

    if fmt not in ("jpeg", "png"):
        raise ValueError(f"fmt must be 'jpeg' or 'png', got {fmt!r}")
    buf = io.BytesIO()
    im = Image.fromarray(np.ascontiguousarray(rgb))
    if fmt == "jpeg":
        im.save(buf, format="JPEG", quality=quality, subsampling=subsampling,
                **({"restart_marker_blocks": restart_blocks} if restart_blocks else {}))
    else:
        im.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _profile_plot(
    curves: Sequence[tuple[np.ndarray, tuple[int, int, int], str]],
    width: int,
    height: int = 150,
    title: str = "",
) -> np.ndarray:
    """A small line plot (uint8 RGB) of 1-D curves sharing the x axis (pixel index)."""
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    left, right, top, bottom = 44, 8, 18, 16
    pw, ph = max(width - left - right, 2), max(height - top - bottom, 2)
    top_value = max(float(np.nanmax(c)) if c.size else 0.0 for c, _, _ in curves)
    top_value = top_value if top_value > 0 else 1.0
    draw.rectangle((left, top, left + pw, top + ph), outline=(120, 120, 120))
    for frac in (0.0, 0.5, 1.0):
        y = top + ph - frac * ph
        draw.line((left - 3, y, left, y), fill=(80, 80, 80))
        draw.text((2, y - 6), f"{frac * top_value:.3g}", fill=(0, 0, 0))
    for values, color, _ in curves:
        n = values.size
        if n < 2:
            continue
        xs = left + np.arange(n) * (pw / (n - 1))
        ys = top + ph - np.clip(values / top_value, 0, 1) * ph
        draw.line(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=color, width=2)
    x = left + 4
    if title:
        draw.text((left, 2), title, fill=(0, 0, 0))
        x = left + draw.textlength(title) + 16
    for _, color, name in curves:
        draw.rectangle((x, 6, x + 12, 12), fill=color)
        draw.text((x + 16, 2), name, fill=(0, 0, 0))
        x += 16 + draw.textlength(name) + 12
    return np.asarray(im)


# ----------------------------------------------------------------------------------------------
# inputs


def _as_sample(item: Any, where: str) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(image float32, labels int32 or None, name) from a Sample or an (image, labels) pair."""
    if hasattr(item, "image"):
        image, labels, name = item.image, getattr(item, "labels", None), getattr(item, "name", "")
    elif isinstance(item, (tuple, list)) and len(item) in (2, 3):
        image, labels = item[0], item[1]
        name = str(item[2]) if len(item) == 3 else ""
    else:
        raise TypeError(f"{where}: expected a Sample or an (image, labels) pair, got "
                        f"{type(item).__name__}")
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"{where}: image must be 2-D (H, W), got shape {image.shape}")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != image.shape:
            raise ValueError(f"{where}: labels shape {labels.shape} != image shape {image.shape}")
        labels = labels.astype(np.int32, copy=False)
    return image, labels, name


class _Samples:
    """Random access to a data set's samples, converted on first use."""

    def __init__(self, samples: Any, name: str = "samples", need_labels: bool = False) -> None:
        if hasattr(samples, "image"):  # a single Sample
            samples = [samples]
        try:
            n = len(samples)
        except TypeError:
            raise TypeError(f"{name}: expected a Dataset or a sequence of samples, got "
                            f"{type(samples).__name__}") from None
        if n == 0:
            raise ValueError(f"{name}: no samples")
        self._src, self._name, self._need = samples, name, need_labels
        self._cache: dict[int, tuple[np.ndarray, np.ndarray | None, str]] = {}

    def __len__(self) -> int:
        return len(self._src)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray | None, str]:
        if i not in self._cache:
            image, labels, nm = _as_sample(self._src[i], f"{self._name}[{i}]")
            if self._need and labels is None:
                raise ValueError(f"{self._name}[{i}] ({nm or 'unnamed'}) has no labels")
            self._cache[i] = (image, labels, nm or f"#{i}")
        return self._cache[i]

    def options(self) -> list[tuple[str, int]]:
        """(label, index) pairs for a dropdown; names from ``Dataset.files`` when there is one,
        so that a lazily loaded data set is not read just to list it."""
        files = getattr(self._src, "files", None)
        out = []
        for i in range(len(self)):
            if files is not None and len(files) == len(self):
                name = files[i]
            elif i in self._cache:
                name = self._cache[i][2]
            else:
                item = self._src[i]
                name = getattr(item, "name", "") or (item[2] if isinstance(item, (tuple, list))
                                                     and len(item) == 3 else "")
            out.append((f"{i}: {str(name).rsplit('/', 1)[-1] or '#' + str(i)}", i))
        return out


def _check_index(index: int, n: int) -> int:
    if not isinstance(index, (int, np.integer)) or not 0 <= index < n:
        raise ValueError(f"index must be an int in [0, {n - 1}], got {index!r}")
    return int(index)


# ----------------------------------------------------------------------------------------------
# the widget


class Explorer(widgets.VBox):
    """Controls, a picture and a line of numbers; redraws on every control change.

    Attributes:
        controls: name -> control widget.
        image: the ``ipywidgets.Image`` holding the current picture (JPEG bytes by default).
        info: ``ipywidgets.HTML`` with the numbers and the colour legend.
        state: the current numbers (and control values) as a dict.
        arrays: the arrays drawn in the current picture (name -> ndarray).
        rgb: the current picture, uint8 (H, W, 3).
        timings: seconds taken by each redraw (render + encoding), most recent last.
    """

    def __init__(
        self,
        controls: Mapping[str, widgets.Widget],
        render: Callable[[], tuple[np.ndarray, dict, dict, str]],
        title: str,
        before_change: Callable[[str], None] | None = None,
        image_format: str = "jpeg",
    ) -> None:
        self.controls = dict(controls)
        self.image = widgets.Image(format=image_format, layout=widgets.Layout(max_width="100%"))
        self.image_format = image_format
        self.info = widgets.HTML()
        self.state: dict[str, Any] = {}
        self.arrays: dict[str, np.ndarray] = {}
        self.rgb = np.zeros((1, 1, 3), np.uint8)
        self.timings: list[float] = []
        self._render = render
        self._before_change = before_change
        self._hold = False
        boxes = [c for c in self.controls.values()]
        rows = [widgets.HBox(boxes[i : i + 4]) for i in range(0, len(boxes), 4)]
        super().__init__([widgets.HTML(f"<b>{title}</b>"), *rows, self.image, self.info])
        for name, c in self.controls.items():
            if isinstance(c, widgets.Button):
                c.on_click(lambda _b, name=name: self._changed(name))
            else:
                c.observe(lambda _ch, name=name: self._changed(name), names="value")
        self.update()

    def _changed(self, name: str) -> None:
        if self._hold:
            return
        if self._before_change is not None:
            self._hold = True
            try:
                self._before_change(name)
            finally:
                self._hold = False
        self.update()

    def update(self) -> None:
        """Redraw the picture and the numbers from the controls' current values."""
        t0 = time.perf_counter()
        rgb, state, arrays, html = self._render()
        self.image.value = encode_image(rgb, self.image_format)
        self.rgb, self.state, self.arrays = rgb, state, arrays
        self.info.value = html
        self.timings.append(time.perf_counter() - t0)

    def set(self, **values: Any) -> None:
        """Set several controls at once and redraw once."""
        unknown = sorted(set(values) - set(self.controls))
        if unknown:
            raise ValueError(f"unknown control(s) {unknown}; controls: {sorted(self.controls)}")
        self._hold = True
        try:
            for name, v in values.items():
                self.controls[name].value = v
            if self._before_change is not None and "index" in values:
                self._before_change("index")  # may move other controls ...
                for name, v in values.items():  # ... but values given here win
                    self.controls[name].value = v
        finally:
            self._hold = False
        self.update()

    def values(self) -> dict[str, Any]:
        """The current value of every control that has one."""
        return {k: c.value for k, c in self.controls.items() if hasattr(c, "value")
                and not isinstance(c, widgets.Button)}


def _slider(kind: type, value: float, lo: float, hi: float, step: float, text: str,
            continuous: bool, fmt: str | None = None) -> widgets.Widget:
    kw = dict(value=value, min=lo, max=hi, step=step, description=text,
              continuous_update=continuous, style={"description_width": "initial"},
              layout=widgets.Layout(width="230px"))
    if fmt is not None:
        kw["readout_format"] = fmt
    return kind(**kw)


def _dropdown(options: list[tuple[str, int]], index: int, text: str = "image") -> widgets.Dropdown:
    return widgets.Dropdown(options=options, value=index, description=text,
                            layout=widgets.Layout(width="230px"))


# ----------------------------------------------------------------------------------------------
# augmentation (section 3.1)


def augment_arrays(
    image: np.ndarray,
    labels: np.ndarray | None,
    noise: np.ndarray,
    *,
    sigma: float = 10.0,
    rotation: float = 0.0,
    shift: tuple[float, float] = (0.0, 0.0),
    gamma: float = 1.0,
    contrast: float = 1.0,
    brightness: float = 0.0,
) -> dict[str, np.ndarray]:
    """One explicit augmentation of a NumPy frame by :class:`unetlib.Augment` itself
    (:meth:`~unetlib.Augment.apply` with :func:`unetlib.augment.parameters`): elastic control
    displacements ``sigma * noise`` (``noise``: (2, p, p) standard normal draws), ``rotation`` in
    degrees, ``shift`` in pixels, no flip, then the gray values (left alone at gamma 1,
    contrast 1, brightness 0).

    Returns a dict with ``image`` (float32), ``labels`` (the input's dtype, or absent),
    ``coords`` (2, H, W) float64 pull coordinates and ``field`` (2, H, W) the elastic
    displacement in pixels.
    """
    import torch

    from unetlib.augment import Augment, parameters
    from unetlib.elastic import displacement_field

    noise = np.asarray(noise, dtype=np.float64)
    if noise.ndim != 3 or noise.shape[0] != 2:
        raise ValueError(f"noise must have shape (2, p0, p1), got {noise.shape}")
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma must be finite and >= 0, got {sigma}")
    draws = parameters(shift=shift, rotation=rotation, elastic=torch.from_numpy(noise * sigma),
                       gamma=gamma, contrast=contrast, brightness=brightness)
    augment = Augment(gray=(gamma, contrast, brightness) != (1.0, 1.0, 0.0))
    lab = torch.from_numpy(np.ascontiguousarray(labels))[None] if labels is not None else None
    out, lab_out, _ = augment.apply(torch.from_numpy(image.astype(np.float32))[None, None],
                                    lab, None, draws)
    result = {"image": out[0, 0].numpy(),
              "coords": augment.coordinates(draws, image.shape)[0].numpy(),
              "field": displacement_field(draws["elastic"], image.shape)[0].numpy()}
    if lab_out is not None:
        result["labels"] = lab_out[0].numpy()
    return result


def _grid_lines(cy: np.ndarray, cx: np.ndarray, spacing: float) -> np.ndarray:
    """Output pixels on the image of the source lattice (lines every ``spacing`` px)."""
    m = np.zeros(cy.shape, dtype=bool)
    for c in (cy, cx):
        k = np.floor(c / spacing)
        m[:, 1:] |= k[:, 1:] != k[:, :-1]
        m[1:] |= k[1:] != k[:-1]
    return m


def _draw_arrows(rgb: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    from PIL import Image, ImageDraw

    im = Image.fromarray(rgb)
    draw = ImageDraw.Draw(im)
    for (y0, x0), (y1, x1) in zip(starts.tolist(), ends.tolist(), strict=True):
        draw.line((x0, y0, x1, y1), fill=ARROW, width=2)
        draw.ellipse((x0 - 3, y0 - 3, x0 + 3, y0 + 3), fill=ARROW)
    return np.asarray(im)


def augmentation_explorer(
    samples: Any,
    index: int = 0,
    seed: int = 0,
    *,
    sigma: float = 10.0,
    points: int = 3,
    grid_spacing: int | None = None,
    continuous_update: bool = False,
) -> Explorer:
    """Explore the augmentation of section 3.1 on one image and its labels.

    Controls: ``index`` (the image), ``sigma`` (std of the control displacements, px; paper 10),
    ``points`` (control points per axis; paper 3), ``rotation`` (degrees), ``shift_y``,
    ``shift_x`` (px), ``gamma``, ``contrast``, ``brightness`` (gray values) and ``reseed`` (a
    button: new random control displacements). The draws are standard normal (2, p, p) from
    ``numpy.random.default_rng(seed)``, scaled by ``sigma``, so moving the sigma slider scales one
    deformation and ``sigma = 0`` with no rotation or shift returns the input.

    Picture: before (the image, its label contours in yellow, a regular lattice in cyan) and
    after (the augmented image, the contours of the augmented labels, the lattice as the
    deformation maps it, and in red each control point with its pull displacement).

    ``state``: the control values, ``seed``, ``max_displacement`` (px, largest per-pixel
    elastic displacement), ``changed_fraction`` (labels that differ from the input).
    ``arrays``: ``before``, ``after``, ``labels_before``, ``labels_after``, ``field``.
    """
    data = _Samples(samples, "samples")
    index = _check_index(index, len(data))
    if not isinstance(points, (int, np.integer)) or points < 1:
        raise ValueError(f"points must be an int >= 1, got {points!r}")
    c = continuous_update
    controls = {
        "index": _dropdown(data.options(), index),
        "sigma": _slider(widgets.FloatSlider, sigma, 0.0, 40.0, 0.5, "elastic sigma (px)", c),
        "points": _slider(widgets.IntSlider, int(points), 2, 9, 1, "grid points", c),
        "rotation": _slider(widgets.FloatSlider, 0.0, -180.0, 180.0, 1.0, "rotation (deg)", c),
        "shift_y": _slider(widgets.FloatSlider, 0.0, -64.0, 64.0, 1.0, "shift y (px)", c),
        "shift_x": _slider(widgets.FloatSlider, 0.0, -64.0, 64.0, 1.0, "shift x (px)", c),
        "gamma": _slider(widgets.FloatSlider, 1.0, 0.5, 2.0, 0.05, "gamma", c),
        "contrast": _slider(widgets.FloatSlider, 1.0, 0.5, 1.5, 0.05, "contrast", c),
        "brightness": _slider(widgets.FloatSlider, 0.0, -0.3, 0.3, 0.01, "brightness", c),
        "reseed": widgets.Button(description="reseed", icon="random",
                                 layout=widgets.Layout(width="120px")),
    }
    rng_state = {"seed": int(seed)}
    cache: dict[int, tuple[np.ndarray, int]] = {}  # the "before" panel and its lattice

    def before_change(name: str) -> None:
        if name == "reseed":
            rng_state["seed"] += 1

    def render() -> tuple[np.ndarray, dict, dict, str]:
        v = {k: w.value for k, w in controls.items() if k != "reseed"}
        i = int(v["index"])
        image, labels, name = data[i]
        h, w = image.shape
        spacing = grid_spacing or max(8, int(round(max(h, w) / 12)))
        if i not in cache:
            cache.clear()  # one image at a time
            before = _gray(image)
            before[:, ::spacing] = GRID
            before[::spacing, :] = GRID
            if labels is not None:
                before[_edges(labels)] = CONTOUR
            cache[i] = (before, spacing)
        before, spacing = cache[i]
        p = int(v["points"])
        noise = np.random.default_rng(rng_state["seed"]).standard_normal((2, p, p))
        out = augment_arrays(
            image, labels, noise, sigma=float(v["sigma"]), rotation=float(v["rotation"]),
            shift=(float(v["shift_y"]), float(v["shift_x"])), gamma=float(v["gamma"]),
            contrast=float(v["contrast"]), brightness=float(v["brightness"]),
        )
        after = _gray(out["image"])
        after[_grid_lines(out["coords"][0], out["coords"][1], spacing)] = GRID
        if labels is not None:
            after[_edges(out["labels"])] = CONTOUR
        # control points (corners included) and where each pulls from (before the rotation)
        gy = np.linspace(0, h - 1, p)
        gx = np.linspace(0, w - 1, p)
        starts = np.stack(np.meshgrid(gy, gx, indexing="ij"), -1).reshape(-1, 2)
        disp = (noise * float(v["sigma"])).reshape(2, -1).T
        after = _draw_arrows(after, starts, starts + disp)
        panels = [before, after]
        xs = _panel_offsets(panels)
        rgb = _label_panels(_stack(panels, axis=1), [(xs[0], f"before: {name.rsplit('/', 1)[-1]}"),
                                               (xs[1], "after")])
        mag = np.hypot(out["field"][0], out["field"][1])
        state = {**v, "seed": rng_state["seed"], "max_displacement": float(mag.max())}
        arrays = {"before": image, "after": out["image"], "field": out["field"]}
        if labels is not None:
            arrays["labels_before"], arrays["labels_after"] = labels, out["labels"]
            state["changed_fraction"] = float(np.mean(out["labels"] != labels))
        html = (f"seed {rng_state['seed']} &middot; largest elastic displacement "
                f"{state['max_displacement']:.1f} px &middot; "
                f"{_swatch(CONTOUR)} label contours {_swatch(GRID)} lattice every {spacing} "
                f"px {_swatch(ARROW)} control displacements")
        return rgb, state, arrays, html

    return Explorer(controls, render, "Augmentation (paper section 3.1)", before_change)


# ----------------------------------------------------------------------------------------------
# weight map (eq. 2)

_W0_MAX, _SIGMA_MAX = 30.0, 12.0


class _WeightFrame:
    """Everything of eq. 2 that does not depend on w0 or sigma, for one frame."""

    def __init__(self, labels: np.ndarray, max_distance: float) -> None:
        from unetlib.weights import class_weight_map, separate_touching, two_nearest_distances

        self.separated = separate_touching(labels)
        target = self.separated > 0
        self.class_weights = class_weight_map(target)
        d1, d2 = two_nearest_distances(self.separated, max_distance=max_distance)
        self.background = ~target
        self.sum_d = (d1 + d2)[self.background]  # inf where fewer than two cells are in reach

    def border(self, w0: float, sigma: float) -> np.ndarray:
        out = np.zeros(self.background.shape, dtype=np.float32)
        if w0 > 0:
            out[self.background] = w0 * np.exp(-(self.sum_d**2) / (2.0 * sigma**2))
        return out


def weight_map_explorer(
    samples: Any,
    index: int = 0,
    *,
    w0: float = 10.0,
    sigma: float = 5.0,
    continuous_update: bool = False,
) -> Explorer:
    """Explore the weight map of eq. 2 on labelled frames.

    Controls: ``index`` (the frame), ``w0`` (0 to 30; paper 10), ``sigma`` (0.5 to 12 px; paper
    ~5), ``row`` (the horizontal line plotted; on a frame change it moves to the row of the
    largest border weight at the paper's setting, i.e. across the narrowest gap).

    Picture: the class-balance term w_c (``unetlib.weights.class_weight_map``, "balanced", on
    the target after ``separate_touching``), the border term and their sum w, each with its own
    colour scale (given in the caption), the line in white, and below the three along the line.
    The distances d1, d2 are computed once per frame (``unetlib.weights.two_nearest_distances``
    up to the cutoff of the largest w0 and sigma of the sliders), so w0 and sigma changes are
    arithmetic; the map equals ``unetlib.weights.weight_map`` to within its ``tol`` (1e-7).

    ``state``: control values, ``class_weight_bg``, ``class_weight_fg``, ``border_max``,
    ``weight_max``, ``border_fraction`` (pixels with border term > 1).
    ``arrays``: ``class_weights``, ``border``, ``weight``, ``line`` (w along the row).
    """
    from unetlib.weights import cutoff_distance

    data = _Samples(samples, "samples", need_labels=True)
    index = _check_index(index, len(data))
    if not 0 <= w0 <= _W0_MAX or not 0.5 <= sigma <= _SIGMA_MAX:
        raise ValueError(f"w0 must be in [0, {_W0_MAX}] and sigma in [0.5, {_SIGMA_MAX}], got "
                         f"w0={w0}, sigma={sigma}")
    max_distance = cutoff_distance(_W0_MAX, _SIGMA_MAX) - 1.0
    frames: dict[int, _WeightFrame] = {}
    h0 = data[index][0].shape[0]
    c = continuous_update
    controls = {
        "index": _dropdown(data.options(), index, "frame"),
        "w0": _slider(widgets.FloatSlider, w0, 0.0, _W0_MAX, 0.5, "w0", c),
        "sigma": _slider(widgets.FloatSlider, sigma, 0.5, _SIGMA_MAX, 0.25, "sigma (px)", c),
        "row": _slider(widgets.IntSlider, 0, 0, h0 - 1, 1, "line row", c),
    }

    def frame(i: int) -> _WeightFrame:
        if i not in frames:
            frames[i] = _WeightFrame(data[i][1], max_distance)
        return frames[i]

    def best_row(i: int) -> int:
        b = frame(i).border(10.0, 5.0)
        return int(np.unravel_index(np.argmax(b), b.shape)[0]) if b.max() > 0 else b.shape[0] // 2

    def before_change(name: str) -> None:
        if name == "index":
            i = int(controls["index"].value)
            controls["row"].max = data[i][0].shape[0] - 1
            controls["row"].value = best_row(i)

    controls["row"].value = best_row(index)

    def render() -> tuple[np.ndarray, dict, dict, str]:
        v = {k: w.value for k, w in controls.items()}
        i = int(v["index"])
        image, _, name = data[i]
        f = frame(i)
        wc = f.class_weights
        border = f.border(float(v["w0"]), float(v["sigma"]))
        weight = wc + border
        row = int(np.clip(v["row"], 0, weight.shape[0] - 1))
        top = float(weight.max())
        pc = colorize(wc, 0.0, float(wc.max()))
        pb = colorize(border, 0.0, max(float(border.max()), 1e-6))
        pw = colorize(weight, 0.0, top)
        for p in (pc, pb, pw):
            p[_edges(f.separated > 0) & f.background] = (255, 255, 255)
            p[row] = (255, 255, 255)
        panels = [pc, pb, pw]
        xs = _panel_offsets(panels)
        top_row = _label_panels(_stack(panels, axis=1), [
            (xs[0], f"w_c, 0-{float(wc.max()):.2f}"),
            (xs[1], f"border, 0-{float(border.max()):.2f}"),
            (xs[2], f"w, 0-{top:.2f}"),
        ])
        line = _profile_plot(
            [(wc[row], (60, 60, 200), "w_c"), (border[row], (220, 120, 0), "border"),
             (weight[row], (0, 0, 0), "w")],
            width=top_row.shape[1], title=f"along row {row}:")
        rgb = _stack([top_row, line], axis=0)
        bg = wc[f.background]
        fg = wc[~f.background]
        state = {
            **v, "row": row,
            "class_weight_bg": float(bg[0]) if bg.size else float("nan"),
            "class_weight_fg": float(fg[0]) if fg.size else float("nan"),
            "border_max": float(border.max()), "weight_max": top,
            "border_fraction": float(np.mean(border > 1.0)),
        }
        arrays = {"class_weights": wc, "border": border, "weight": weight, "line": weight[row]}
        html = (f"{name} &middot; w_c: background {state['class_weight_bg']:.3f}, cells "
                f"{state['class_weight_fg']:.3f} &middot; border term max "
                f"{state['border_max']:.2f} &middot; pixels with border term &gt; 1: "
                f"{100 * state['border_fraction']:.2f} % &middot; white: cell outlines after "
                f"separation, and the plotted row")
        return rgb, state, arrays, html

    return Explorer(controls, render, "Weight map (paper eq. 2)", before_change)


# ----------------------------------------------------------------------------------------------
# prediction (section 4)


def _foreground_probability(p: Any, where: str) -> np.ndarray:
    if hasattr(p, "detach"):
        p = p.detach().float().cpu().numpy()
    p = np.asarray(p, dtype=np.float32)
    if p.ndim == 3:
        if p.shape[0] not in (1, 2):
            raise ValueError(f"{where}: expected (H, W), (1, H, W) or (2, H, W) probabilities, "
                             f"got shape {p.shape}")
        p = p[-1]  # the foreground: channel 1 of a softmax pair, or the single sigmoid channel
    if p.ndim != 2:
        raise ValueError(f"{where}: expected a 2-D foreground probability map, got {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{where}: probabilities contain NaN or inf")
    return p


def _explored_methods() -> dict[str, str]:
    from unetlib.instances import METHOD_NAMES

    return {"components": f"paper's way: {METHOD_NAMES['components']}",
            "distance": f"beyond the paper: {METHOD_NAMES['distance']}"}


def _probabilities(source: Any, data: _Samples, *, tile: int | None, batch_size: int,
                   tta: bool) -> Callable[[int], np.ndarray]:
    """``probability(i)``: the foreground probability of ``data[i]``, from ``source`` (a model,
    run with :func:`unetlib.predict_tiled` when an image is first asked for, or one map per
    sample, checked against its image), each computed once."""
    import torch

    if isinstance(source, torch.nn.Module):
        def compute(i: int) -> np.ndarray:
            from unetlib.tiling import predict_tiled

            p = predict_tiled(source, data[i][0], tile=tile, batch_size=batch_size, tta=tta)
            return _foreground_probability(p, f"model output for samples[{i}]")
    else:
        try:
            n_src = len(source)
        except TypeError:
            raise TypeError("source must be a torch.nn.Module or a sequence of probability "
                            f"maps, got {type(source).__name__}") from None
        if n_src != len(data):
            raise ValueError(f"source has {n_src} probability maps for {len(data)} samples")

        def compute(i: int) -> np.ndarray:
            p = _foreground_probability(source[i], f"source[{i}]")
            if p.shape != data[i][0].shape:
                raise ValueError(f"source[{i}]: shape {p.shape} != image shape "
                                 f"{data[i][0].shape}")
            return p

    return cache(compute)


def _render_prediction(image: np.ndarray, gt: np.ndarray, name: str, p: np.ndarray,
                       v: dict[str, Any]) -> tuple[np.ndarray, dict, dict, str]:
    """The prediction explorer's picture, state, arrays and legend for one image, its
    probability ``p`` and the control values ``v`` (see :func:`prediction_explorer`)."""
    from unetlib.instances import InstanceParams, instances_from_probability
    from unetlib.metrics import (
        instance_labels_from_probability,
        iou,
        seg_measure,
        split_merge_counts,
        split_merge_ids,
    )

    t = float(v["threshold"])
    if v["method"] == "components" or not 0.0 < t < 1.0:  # nothing to split at 0 or 1
        pred = instance_labels_from_probability(p, t, int(v["min_size"]))
    else:
        pred = instances_from_probability(p, InstanceParams(
            v["method"], t, h=float(v["h"]), min_size=int(v["min_size"])))
    fg_p, fg_g = pred > 0, gt > 0
    merged_ids, split_ids = split_merge_ids(pred, gt)
    merged = np.isin(pred, merged_ids) if merged_ids.size else np.zeros(p.shape, bool)
    split = np.isin(gt, split_ids) if split_ids.size else np.zeros(p.shape, bool)
    left = colorize(p, 0.0, 1.0, "magma")
    left[_edges(gt)] = CONTOUR
    right = overlay(image, fg_p, fg_g)
    if merged.any():
        right[_thick_edges(merged)] = MERGE
    if split.any():
        right[_thick_edges(split)] = SPLIT
    panels = [left, right]
    xs = _panel_offsets(panels)
    rgb = _label_panels(_stack(panels, axis=1), [
        (xs[0], f"probability: {name.rsplit('/', 1)[-1]}"),
        (xs[1], f"p > {t:.2f}{', split' if v['method'] == 'distance' else ''} vs truth"),
    ])
    counts = split_merge_counts(pred, gt)
    state = {**v, "iou": float(iou(fg_p, fg_g)), "seg": float(seg_measure(pred, gt)), **counts}
    arrays = {"probability": p, "pred_labels": pred, "gt_labels": gt, "merged": merged,
              "split": split}
    html = (f"<b>IoU {state['iou']:.3f} &middot; SEG {state['seg']:.3f}</b> &middot; "
            f"cells: {counts['n_gt']} true, {counts['n_pred']} predicted, "
            f"{counts['matched']} matched, {_swatch(MERGE)} {counts['merges']} merges, "
            f"{_swatch(SPLIT)} {counts['splits']} splits, {counts['missed']} missed, "
            f"{counts['spurious']} spurious<br>{_swatch(TP)} true positive {_swatch(FP)} false "
            f"positive {_swatch(FN)} false negative {_swatch(CONTOUR)} true contours")
    return rgb, state, arrays, html


def prediction_explorer(
    source: Any,
    samples: Any,
    index: int = 0,
    *,
    threshold: float = 0.5,
    min_size: int = 0,
    method: str = "components",
    h: float = 2.0,
    tile: int | None = None,
    batch_size: int = 4,
    tta: bool = False,
    precompute: bool = False,
    continuous_update: bool = False,
) -> Explorer:
    """Explore a segmentation against the ground truth: threshold, IoU, SEG, splits and merges.

    Args:
        source: a model (``torch.nn.Module``, e.g. :class:`unetlib.UNet`; each image is
            predicted once, when first shown, with :func:`unetlib.predict_tiled` and ``tile``,
            ``batch_size``, ``tta``) or precomputed probabilities, one per sample: (H, W)
            foreground, or (2, H, W) / (1, H, W) class probabilities (numpy or torch).
        samples: the labelled test images (a Dataset, Samples or (image, labels) pairs).
        index, threshold: initial image and threshold.
        min_size: initial value of the ``min_size`` control.
        method, h: initial instance method (``"components"``, the paper's way, or
            ``"distance"``, the distance-transform watershed beyond the paper; see
            :mod:`unetlib.instances`) and the distance watershed's seed height in pixels.
        precompute: get every image's probabilities now (for a model: run it on all images),
            so that changing the image later is as fast as changing the threshold.

    Controls: ``index``, ``threshold`` (a pixel is foreground when p > threshold, as in
    :func:`unetlib.metrics.instance_labels_from_probability`), ``method`` (cells are its
    4-connected components, or the foreground split by the distance-transform watershed, both
    by :func:`unetlib.instances.instances_from_probability`, the function training evaluates
    with), ``h`` (the watershed's seed height) and ``min_size`` (cells smaller than this many
    pixels are dropped, a common post-processing; 0 = none). Picture: the probability with the
    true contours (yellow), and the image with true-positive (green), false-positive (red) and
    false-negative (blue) pixels, merged predicted cells outlined in orange and split true cells
    in magenta.

    ``state``: control values, ``iou``, ``seg``, and the counts of
    :func:`unetlib.metrics.split_merge_counts` (``n_gt``, ``n_pred``, ``matched``, ``splits``,
    ``merges``, ``missed``, ``spurious``). ``arrays``: ``probability``, ``pred_labels``,
    ``gt_labels``, ``merged`` and ``split`` (masks of the highlighted cells).
    """
    data = _Samples(samples, "samples", need_labels=True)
    index = _check_index(index, len(data))
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    if not isinstance(min_size, (int, np.integer)) or min_size < 0:
        raise ValueError(f"min_size must be an int >= 0, got {min_size!r}")
    explored = _explored_methods()
    if method not in explored:
        raise ValueError(f"method must be one of {list(explored)}, got {method!r}")
    if not 0.5 <= h <= 10.0:
        raise ValueError(f"h must be in [0.5, 10] pixels, got {h!r}")
    probability = _probabilities(source, data, tile=tile, batch_size=batch_size, tta=tta)
    if precompute:
        for i in range(len(data)):
            probability(i)
    c = continuous_update
    controls = {
        "index": _dropdown(data.options(), index),
        "threshold": _slider(widgets.FloatSlider, threshold, 0.0, 1.0, 0.01, "threshold", c,
                             ".2f"),
        "method": widgets.Dropdown(options=[(v, k) for k, v in explored.items()],
                                   value=method, description="cells",
                                   layout=widgets.Layout(width="330px")),
        "h": _slider(widgets.FloatSlider, float(h), 0.5, 10.0, 0.5, "seed height h (px)", c,
                     ".1f"),
        "min_size": _slider(widgets.IntSlider, int(min_size), 0, max(int(min_size), 500), 5,
                            "min cell size (px)", c),
    }

    def render() -> tuple[np.ndarray, dict, dict, str]:
        v = {k: w.value for k, w in controls.items()}
        image, gt, name = data[int(v["index"])]
        return _render_prediction(image, gt, name, probability(int(v["index"])), v)

    return Explorer(controls, render, "Prediction against ground truth (paper section 4)")


SCORES = ("iou", "seg", "n_gt", "n_pred", "merges", "splits")


def threshold_scores(explorer: Explorer, thresholds: Sequence[float]) -> list[dict[str, Any]]:
    """Drive a :func:`prediction_explorer` over every image and each of ``thresholds`` (its
    other controls as they are) and return one dict per image and threshold: ``image`` (the
    dropdown's label), ``threshold`` and the scores ``SCORES`` of its ``state``. The controls are
    set back to their values before the call."""
    saved = explorer.values()
    rows = []
    try:
        for label, i in explorer.controls["index"].options:
            for t in thresholds:
                explorer.set(index=i, threshold=float(t))
                rows.append({"image": label, "threshold": float(t),
                             **{k: explorer.state[k] for k in SCORES}})
    finally:
        explorer.set(**saved)
    return rows


# ----------------------------------------------------------------------------------------------
# static pictures for pages read without a kernel


def static_explorer(
    explorer: Explorer,
    control: str,
    values: Sequence[Any],
    *,
    start: Any = None,
    label: str | None = None,
    quality: int = 70,
) -> widgets.VBox:
    """One control of ``explorer`` that works without a kernel: the explorer's picture and
    numbers at each of ``values`` of ``control`` (computed now, the other controls as they are),
    in an ``ipywidgets.Stack`` whose shown child follows a slider through ``jslink``. The link
    and the pictures are part of the saved widget state, so a static page (the book) switches
    pictures in the browser; a live kernel is not needed and not used.

    ``start``: the value shown first (default: the control's current value if it is one of
    ``values``, else the first). ``label``: the slider's description (default ``control``).
    ``quality``: of the JPEG pictures, with 4:2:0 chroma subsampling (every picture is stored in
    the page: about 60 kB each at 774 x 384 against 140 kB for the live explorer's encoding;
    70 rather than 75 makes room for the restart markers of :func:`encode_image`).
    Returns a ``VBox`` (slider, stack) with ``.slider``, ``.stack``, ``.link`` and ``.values``.
    The explorer's controls are put back afterwards."""
    if control not in explorer.controls:
        raise ValueError(f"control: {control!r} is not one of {sorted(explorer.controls)}")
    values = list(values)
    if len(values) < 2:
        raise ValueError(f"values: give at least two values of {control!r}, got {values!r}")
    saved = explorer.values()
    if start is None:
        start = saved.get(control) if saved.get(control) in values else values[0]
    if start not in values:
        raise ValueError(f"start: {start!r} is not one of the values {values!r}")
    pages = []
    try:
        for v in values:
            explorer.set(**{control: v})
            picture = widgets.Image(value=encode_image(explorer.rgb, "jpeg", quality, 2),
                                    format="jpeg", layout=widgets.Layout(max_width="100%"))
            pages.append(widgets.VBox([picture, widgets.HTML(explorer.info.value)]))
    finally:
        explorer.set(**saved)
    index = values.index(start)
    stack = widgets.Stack(pages, selected_index=index)
    slider = widgets.SelectionSlider(
        options=[(format(v, "g") if isinstance(v, float) else str(v), i)
                 for i, v in enumerate(values)],
        value=index, description=label or control, continuous_update=True,
        style={"description_width": "initial"}, layout=widgets.Layout(width="60%"))
    link = widgets.jslink((slider, "index"), (stack, "selected_index"))
    box = widgets.VBox([slider, stack])
    box.slider, box.stack, box.link, box.values = slider, stack, link, values
    return box
