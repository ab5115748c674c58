"""Reading images and label masks from disk, with errors that name the file.

Normalisation (every loader goes through :func:`to_unit_float`):

- unsigned integers are divided by the largest value of their dtype (uint8 / 255,
  uint16 / 65535): a linear map that keeps relative intensities across frames and never clips;
- signed integers are shifted by the dtype minimum first, then divided by the dtype range;
- floats must already lie in [0, 1] (else a ``ValueError`` naming the file);
- ``normalize="minmax"`` instead maps each image's own [min, max] to [0, 1] (useful for 12-bit
  data stored in 16-bit containers, which the dtype rule leaves dark but intact).

TIFF files are read with tifffile; LZW/deflate-compressed TIFFs (the Cell Tracking Challenge
frames) need the optional ``imagecodecs`` package, so without it they are read with Pillow.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

NORMALIZATIONS = ("dtype", "minmax")
#: Most values one TIFF file may declare (2**28: a 16384 x 16384 image; the data sets here
#: hold at most a few million).
MAX_PIXELS = 1 << 28
_TIFF_SUFFIXES = (".tif", ".tiff")


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: file is empty (0 bytes)")


def _check_size(path: Path, shape: tuple[int, ...]) -> None:
    """Refuse a TIFF whose header declares more than `MAX_PIXELS` values before they are
    allocated: a corrupt or hostile width/height tag would otherwise exhaust the memory (PNG and
    Pillow's TIFF reader have their own limit, ``PIL.Image.MAX_IMAGE_PIXELS``)."""
    n = math.prod(int(d) for d in shape)
    if n > MAX_PIXELS:
        raise ValueError(
            f"{path}: declares {n:,} values (shape {tuple(shape)}), more than the "
            f"{MAX_PIXELS:,} read here (a corrupt header?)"
        )


def _pillow_pages(path: Path) -> Iterator[np.ndarray]:
    from PIL import Image, ImageSequence

    with Image.open(path) as im:
        for page in ImageSequence.Iterator(im):
            yield np.array(page)


def read_pages(path: str | os.PathLike) -> list[np.ndarray]:
    """All pages of an image file as arrays (one page for PNG; N for a multi-page TIFF)."""
    path = Path(path)
    _check_file(path)
    try:
        if path.suffix.lower() in _TIFF_SUFFIXES:
            import tifffile

            try:
                with tifffile.TiffFile(path) as tif:
                    _check_size(path, tif.series[0].shape if tif.series else ())
                    arr = tif.asarray()
                    n_pages = len(tif.pages)
            except ValueError as exc:
                if "imagecodecs" not in str(exc):
                    raise
                return list(_pillow_pages(path))
            return list(arr) if n_pages > 1 and arr.ndim >= 3 else [arr]
        import imageio.v3 as iio

        return [np.asarray(iio.imread(path))]
    except (FileNotFoundError, ValueError) as exc:
        if str(path) in str(exc):
            raise
        raise ValueError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from exc
    except Exception as exc:  # corrupt files surface as many exception types
        raise ValueError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from exc


def read_array(path: str | os.PathLike) -> np.ndarray:
    """A single-page 2D image (grayscale; RGB(A) is converted to luminance)."""
    pages = read_pages(path)
    if len(pages) != 1:
        raise ValueError(f"{path}: expected a single 2D image, found {len(pages)} pages")
    return _to_2d(pages[0], path)


def _to_2d(arr: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    arr = np.squeeze(np.asarray(arr))
    if arr.size == 0:
        raise ValueError(f"{path}: no image data (a truncated or corrupt file?)")
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        if np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool:
            rgb = arr[..., :3].astype(np.float64)
            if np.all(rgb == rgb[..., :1]):  # gray stored as RGB: keep it exact
                return arr[..., 0]
            gray = rgb @ np.array([0.299, 0.587, 0.114])
            return np.rint(gray).astype(arr.dtype)
        return arr[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=arr.dtype)
    if arr.ndim != 2:
        raise ValueError(f"{path}: expected a 2D image, got shape {arr.shape}")
    return arr


def to_unit_float(
    arr: np.ndarray, path: str | os.PathLike = "<array>", normalize: str = "dtype"
) -> np.ndarray:
    """An image as float32 in [0, 1] (rules in the module docstring)."""
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    if arr.dtype == bool:
        return arr.astype(np.float32)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"{path}: unsupported image dtype {arr.dtype}")
    if normalize == "minmax":
        x = arr.astype(np.float64)
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{path}: image contains NaN or infinite values")
        lo, hi = float(x.min()), float(x.max())
        out = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
        return out.astype(np.float32)
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(arr.dtype)
        x = (arr.astype(np.float64) - info.min) / (float(info.max) - info.min)
        return x.astype(np.float32)
    x = arr.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{path}: image contains NaN or infinite values")
    if x.size and (x.min() < 0.0 or x.max() > 1.0):
        raise ValueError(
            f"{path}: float image outside [0, 1] (range {x.min():g}..{x.max():g}); "
            "pass normalize='minmax' to rescale it"
        )
    return x


def read_image(path: str | os.PathLike, normalize: str = "dtype") -> np.ndarray:
    """A 2D image file as float32 (H, W) in [0, 1]."""
    return to_unit_float(read_array(path), path, normalize)


def check_labels(arr: np.ndarray, path: str | os.PathLike = "<array>") -> np.ndarray:
    """An instance-label array as int32 (H, W), 0 = background; rejects floats and negatives."""
    arr = np.asarray(arr)
    if arr.dtype == bool:
        return arr.astype(np.int32)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise TypeError(f"{path}: label image has non-integer float values ({arr.dtype})")
    elif not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{path}: unsupported label dtype {arr.dtype}")
    if arr.size and arr.min() < 0:
        raise ValueError(f"{path}: label image has negative values")
    if arr.size and arr.max() > np.iinfo(np.int32).max:
        raise ValueError(f"{path}: label values exceed the int32 range")
    return arr.astype(np.int32)


def read_labels(path: str | os.PathLike, *, allow_empty: bool = False) -> np.ndarray:
    """An instance-label file as int32 (H, W); an all-background mask is an error by default."""
    labels = check_labels(read_array(path), path)
    if not allow_empty and not labels.any():
        raise ValueError(f"{path}: label file has no labelled pixels (all background)")
    return labels


def check_same_shape(image: np.ndarray, labels: np.ndarray, image_path: str | os.PathLike,
                     label_path: str | os.PathLike) -> None:
    """Returns None when the image and its label mask have the same shape; raises ValueError
    naming both files otherwise."""
    if image.shape != labels.shape:
        raise ValueError(
            f"size mismatch: image {image_path} is {image.shape} but labels {label_path} "
            f"are {labels.shape}"
        )
