"""Overlap-tile prediction of arbitrarily large images (Ronneberger et al. 2015, sec. 2, Fig. 2).

The valid-padding U-Net predicts the centre of its input tile; the context that is missing at the
image border is extrapolated by mirroring the image. :func:`predict_tiled` cuts the mirror-padded
image into tiles, runs them through the network ``batch_size`` at a time on the model's device
and stitches the outputs.

Valid padding: tiles are placed at a stride that is a multiple of ``2 ** (depth - 1)``, so that
every tile's 2x2 max-pools are aligned with those of a single pass over the whole padded image.
The stitched result therefore equals that single pass (up to float rounding): with input tile
``t`` and output tile ``o = output_size(t)``, the stride is ``o`` rounded down to a multiple of
``2 ** (depth - 1)`` (384 for the paper's 572 -> 388 tile), and each tile contributes the first
``stride`` rows/columns of its output. The padded image is ``margin = (t - o) / 2`` (92 for the
paper) pixels larger on the top/left and as much as the tile grid needs on the bottom/right; see
:func:`padded_extent`.

Same padding: zero padding at the tile borders makes tile outputs depend on where the tile sits.
Each tile is ``tile`` pixels wide, the outer ``margin`` pixels of its output are discarded
(default: the valid network's margin of that depth rounded up to a multiple of
``2 ** (depth - 2)``, so that the stride stays pool-aligned) and the centres are stitched.
Interior pixels thus see at least ``margin`` pixels of real (or mirrored) context. For five
levels the default margin, 96 pixels, exceeds the valid network's 92, and the kept centres see
no zero padding at all: every tile with that margin gives the same probabilities (bitwise on the
CPU, tested), so the tile sets only the speed (:func:`one_pass_tile`: one pass a frame). With
fewer levels the default margin equals the valid network's, which some positions of the
same-padded network's receptive field exceed: tiles differ by up to about 2e-3 (three levels)
and 2e-4 (four) in probability.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from unetlib.model import output_size, valid_input_size

__all__ = ["predict_tiled", "mirror_pad", "padded_extent", "default_tile", "one_pass_tile",
           "tiles_agree", "tile_memory"]


def _reflect_index(n: int, before: int, after: int, device: torch.device) -> torch.Tensor:
    """Indices into range(n) that mirror it (edge not repeated, like numpy's "reflect") by
    ``before``/``after`` positions; pads longer than the image are reflected repeatedly."""
    idx = torch.arange(-before, n + after, device=device)
    if n == 1:
        return torch.zeros_like(idx)
    period = 2 * (n - 1)
    idx = torch.remainder(idx, period)
    return torch.where(idx >= n, period - idx, idx)


def mirror_pad(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Mirror-extend the last two dimensions of ``x`` (paper Fig. 2), any pad width.

    Equals ``numpy.pad(x, ..., mode="reflect")``; unlike ``torch.nn.functional.pad`` it accepts
    pads wider than the image.
    """
    if min(top, bottom, left, right) < 0:
        raise ValueError(f"pads must be >= 0, got {(top, bottom, left, right)}")
    H, W = x.shape[-2], x.shape[-1]
    rows = _reflect_index(H, top, bottom, x.device)
    cols = _reflect_index(W, left, right, x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


#: bytes of working memory per input pixel and first-level channel in one forward pass, an
#: upper bound measured on CPU (benchmarks/results/bench_model_tiling_cpu.json: the paper's
#: network grew the process by 678 MiB for a 700 x 700 tile, 23 bytes a pixel and channel, and
#: by 11.5 GiB for a 1436 x 1436 tile, 93; the convolutions' workspace grows faster than the
#: tile). CUDA needs less (bench_model_cuda.json).
BYTES_PER_PIXEL_CHANNEL = 96

def _full_margin(depth: int, padding: str) -> int:
    """The default margin of a tile large enough not to narrow it (:func:`_plan`)."""
    return _plan(depth, padding, valid_input_size(16 * 2**depth + 400, depth, padding), None)[1]


def one_pass_tile(size: int, depth: int, padding: str) -> int:
    """The smallest valid square input tile whose stride, with the default margin kept whole
    (not narrowed to fit a small tile), covers an image side of ``size`` pixels: one forward
    pass a frame. The five-level network's 512 x 512 frames need 704 with same padding (96-pixel
    margins) and 700 with valid padding."""
    if int(size) < 1:
        raise ValueError(f"size must be >= 1, got {size!r}")
    tile = valid_input_size(int(size), depth, padding, mode="up")
    full = _full_margin(depth, padding)
    while True:
        stride, margin = _plan(depth, padding, tile, None)
        if stride >= size and margin >= full:
            return tile
        tile = valid_input_size(tile + 1, depth, padding, mode="up")


def tiles_agree(depth: int, padding: str, tile_a: int, tile_b: int) -> bool:
    """Whether two input tiles give the same stitched probabilities (up to rounding): always
    with valid padding; with same padding when both keep a default margin wider than the valid
    network's (five levels: 96 against 92 pixels; see the module docstring)."""
    if padding == "valid":
        return True
    full = _full_margin(depth, padding)
    valid_margin = (valid_input_size(1, depth) - output_size(valid_input_size(1, depth),
                                                             depth)) // 2
    return full > valid_margin and all(_plan(depth, padding, t, None)[1] == full
                                       for t in (tile_a, tile_b))


def tile_memory(model: nn.Module, tile: int, batch_size: int = 1) -> int:
    """Estimated peak activation memory (bytes) of one forward pass over ``batch_size`` square
    input tiles of side ``tile`` (an upper bound; ``benchmarks/bench_model.py`` measures it)."""
    width = int(getattr(getattr(model, "head", None), "in_channels", 64))
    return BYTES_PER_PIXEL_CHANNEL * width * tile * tile * batch_size


def default_tile(model: nn.Module, image_shape: tuple[int, int] | None = None,
                 memory_budget: int = 4 * 2**30) -> int:
    """The input tile :func:`predict_tiled` uses when none is given.

    Valid padding: stitched tiles equal one pass over the mirror-padded image, so the tile only
    trades speed for memory. With ``image_shape``, the smallest valid tile whose stride covers
    the whole image (one forward pass; 700 for the paper's network on 512 x 512) if its
    :func:`tile_memory` fits ``memory_budget``, else the largest valid tile that fits, but never
    smaller than the paper's 572 x 572. Without ``image_shape``: 572 (nearest valid size for
    other depths).

    Same padding: 512 (rounded to a multiple of ``2 ** (depth - 1)``); its tiles see zero padding
    at their borders, so with fewer than five levels the result depends on the tile and the
    default does not follow the image. Where every full-margin tile gives the same probabilities
    (:func:`tiles_agree`: five levels or more), with ``image_shape`` the default is the
    :func:`one_pass_tile` of the image when its :func:`tile_memory` fits ``memory_budget``
    (704 for a 512 x 512 frame: one pass instead of four).
    """
    depth, padding = _model_geometry(model)
    if padding != "valid":
        tile = valid_input_size(512, depth, padding, mode="nearest")
        if image_shape is None:
            return tile
        side = max(int(image_shape[0]), int(image_shape[1]))
        one = one_pass_tile(side, depth, padding)
        if tiles_agree(depth, padding, tile, one) and tile_memory(model, one) <= memory_budget:
            return one
        return tile
    floor = valid_input_size(572, depth, padding, mode="nearest")
    if image_shape is None:
        return floor
    side = max(int(image_shape[0]), int(image_shape[1]))
    tile = floor
    while _plan(depth, padding, tile, None)[0] < side:  # grow until one tile covers the image
        bigger = valid_input_size(tile + 1, depth, padding, mode="up")
        if tile_memory(model, bigger) > memory_budget:
            break
        tile = bigger
    return tile


def _model_geometry(model: nn.Module) -> tuple[int, str]:
    try:
        return int(model.depth), str(model.padding)
    except AttributeError:
        raise TypeError(
            "model must expose `depth` and `padding` (e.g. unetlib.UNet), "
            f"got {type(model).__name__}"
        ) from None


def _plan(depth: int, padding: str, tile: int, margin: int | None) -> tuple[int, int]:
    """(stride, margin) in output pixels for square input tiles of side ``tile``."""
    align = 2 ** (depth - 1)
    if padding == "valid":
        out = output_size(tile, depth, padding)  # raises for invalid tiles
        if margin is not None:
            raise ValueError("margin is fixed by the valid network; leave it None")
        stride = (out // align) * align
        if stride < 1:
            raise ValueError(
                f"the tile gives a {out}-pixel output, smaller than the pool alignment {align}; "
                f"use tile >= {valid_input_size(align + tile - out, depth, padding)}"
            )
        return stride, (tile - out) // 2
    output_size(tile, depth, padding)  # divisibility check
    if margin is None:
        valid_margin = (valid_input_size(1, depth) - output_size(valid_input_size(1, depth), depth))
        half_align = max(1, align // 2)
        margin = half_align * math.ceil(valid_margin / 2 / half_align)
        margin = min(margin, max(0, (tile - align) // 2 // half_align * half_align))
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    stride = tile - 2 * margin
    if stride < 1:
        raise ValueError(f"the tile leaves no output after discarding margin={margin} twice")
    return stride, margin


def check_tile(depth: int, padding: str, tile: int, name: str = "tile") -> None:
    """Raise ValueError (naming ``name``) unless ``tile`` is a valid square *input* tile for a
    U-Net of ``depth`` and ``padding`` (for the paper's network: 572 is, its 388 output is not)."""
    if not isinstance(tile, int) or isinstance(tile, bool):
        raise ValueError(f"{name} must be an int, got {tile!r}")
    try:
        _plan(depth, padding, tile, None)
    except ValueError as e:
        raise ValueError(f"{name}={tile} is not a valid input tile for depth={depth}, "
                         f"padding={padding!r}: {e}") from None


def padded_extent(size: int, tile: int, stride: int, margin: int) -> tuple[int, int, int]:
    """(number of tiles, pad before, pad after) along one axis of length ``size``."""
    n = max(1, math.ceil(size / stride))
    total = (n - 1) * stride + tile
    return n, margin, total - margin - size


def _tile_origins(ny: int, nx: int, stride: int) -> Iterator[tuple[int, int]]:
    for i in range(ny):
        for j in range(nx):
            yield i * stride, j * stride


def _as_chw(image: np.ndarray | torch.Tensor, device: torch.device, dtype: torch.dtype):
    if isinstance(image, np.ndarray):
        if not (np.issubdtype(image.dtype, np.number) or image.dtype == bool):
            raise TypeError(f"image has unsupported dtype {image.dtype}")
        image = torch.from_numpy(np.ascontiguousarray(image))
    elif not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a numpy array or torch tensor, got {type(image).__name__}")
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3:
        raise ValueError(f"image must have shape (H, W) or (C, H, W), got {tuple(image.shape)}")
    return image.to(device=device, dtype=dtype)


def _dihedral(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    if flip:
        x = x.flip(-1)
    return torch.rot90(x, k, dims=(-2, -1))


def _dihedral_inverse(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    x = torch.rot90(x, -k, dims=(-2, -1))
    if flip:
        x = x.flip(-1)
    return x


def _predict_once(
    model: nn.Module,
    image: torch.Tensor,
    tile: int,
    stride: int,
    margin: int,
    batch_size: int,
    num_classes: int,
    crop: int,
) -> torch.Tensor:
    """One stitched prediction; ``crop`` output pixels are dropped at each tile side."""
    C, H, W = image.shape
    ny, top, bottom = padded_extent(H, tile, stride, margin)
    nx, left, right = padded_extent(W, tile, stride, margin)
    padded = mirror_pad(image, top, bottom, left, right)
    out = torch.empty((num_classes, ny * stride, nx * stride), device=image.device)
    origins = list(_tile_origins(ny, nx, stride))
    for start in range(0, len(origins), batch_size):
        chunk = origins[start : start + batch_size]
        batch = torch.stack([padded[:, y : y + tile, x : x + tile] for y, x in chunk])
        logits = model(batch).float()
        if num_classes == 1:
            probs = torch.sigmoid(logits)
        else:
            probs = torch.softmax(logits, dim=1)
        for (y, x), p in zip(chunk, probs, strict=True):
            keep = p[:, crop : crop + stride, crop : crop + stride]
            out[:, y : y + stride, x : x + stride] = keep
    return out[:, :H, :W]


def predict_tiled(
    model: nn.Module,
    image: np.ndarray | torch.Tensor,
    tile: int | None = None,
    batch_size: int = 4,
    tta: bool = False,
    *,
    margin: int | None = None,
    memory_budget: int = 4 * 2**30,
) -> torch.Tensor:
    """Class probabilities (num_classes, H, W) for an image of any size (paper Fig. 2).

    Args:
        model: a :class:`unetlib.UNet` (anything with ``depth``, ``padding``, ``num_classes``,
            ``in_channels`` and parameters). It is run in eval mode under ``torch.no_grad()``;
            its training flag is restored afterwards.
        image: (H, W) or (C, H, W), numpy or torch. Converted to the model's dtype and device
            without rescaling: normalize it as in training.
        tile: side of the square *input* tile; default :func:`default_tile` of the image's size:
            for the valid network the smallest tile that covers the image in one pass within
            ``memory_budget`` (700 for the paper's network on 512 x 512; at least the paper's
            572, whose 388 x 388 output gives a 384 x 384 stride). Must be a valid input size
            (ValueError otherwise, naming the nearest valid sizes).
        batch_size: tiles per forward pass; bounds the memory.
        tta: average the probabilities over the 8 flips/rotations of the image (the paper
            averaged 7 rotated versions for the EM challenge). The result is exactly equivariant:
            ``predict_tiled(g(x), tta=True) == g(predict_tiled(x, tta=True))`` up to rounding.
        margin: same padding only: output pixels discarded at each tile side (see module doc).
        memory_budget: bytes of activations (:func:`tile_memory`) one forward pass may take when
            the tile is chosen by default (the tile, then how many tiles go into one batch, at
            most ``batch_size``, at least one); ignored when ``tile`` is given.

    Returns:
        float32 tensor (num_classes, H, W) on the model's device: softmax over the classes, or a
        sigmoid for a single-logit model.
    """
    depth, padding = _model_geometry(model)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if tile is None:
        shape = image.shape[-2:]
        tile = default_tile(model, (int(shape[0]), int(shape[1])), memory_budget)
        # the budget bounds one forward pass: as many of these tiles as fit in it
        batch_size = max(1, min(batch_size, memory_budget // tile_memory(model, tile)))
    if not isinstance(tile, int) or isinstance(tile, bool):
        raise TypeError(f"tile must be an int (side of the square input tile), got {tile!r}")
    try:
        stride, margin = _plan(depth, padding, tile, margin)
    except ValueError as e:
        raise ValueError(f"tile={tile}: {e}") from None
    try:
        param = next(model.parameters())
        device, dtype = param.device, param.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    x = _as_chw(image, device, dtype)
    in_channels = getattr(model, "in_channels", x.shape[0])
    if x.shape[0] != in_channels:
        raise ValueError(f"image has {x.shape[0]} channels, the model expects {in_channels}")
    num_classes = int(model.num_classes)

    # the valid network's output already lacks the margin; same padding drops it here
    crop = margin if padding == "same" else 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            transforms = [(k, f) for f in (False, True) for k in range(4)] if tta else [(0, False)]
            acc = None
            for k, flip in transforms:
                xt = _dihedral(x, k, flip)
                p = _predict_once(model, xt, tile, stride, margin, batch_size, num_classes, crop)
                p = _dihedral_inverse(p, k, flip)
                acc = p if acc is None else acc + p
            assert acc is not None
            return acc / len(transforms)
    finally:
        model.train(was_training)
