"""LIVECell (Edlund et al., Nat. Methods 2021): phase-contrast images with COCO-JSON polygons.

Layout under ``<root>/livecell`` (the one the official files unpack to)::

    livecell_coco_{train,val,test}.json          or annotations/LIVECell/livecell_coco_*.json
    images/livecell_train_val_images/*.tif       train and val images
    images/livecell_test_images/*.tif            test images

Images are found by their COCO ``file_name``: directly in the split's image folder, else
anywhere below ``images/`` (some copies keep one subfolder per cell type). Polygons become
instance masks with pycocotools; where annotations overlap, smaller cells are painted last so
they stay visible. The set is large (5,000+ images), so samples are made lazily, one per
``__getitem__``.

The JSON is checked, and a fault is a ``ValueError`` naming the file and the image or annotation
id, before anything reaches pycocotools (whose C code trusts its input: a NaN or a coordinate of
1e18 can crash it or exhaust the memory):

- at load time: ``images`` entries need a unique int ``id``, int ``height``/``width`` in
  [1, `MAX_SIDE`] and a ``file_name`` that stays under the image folder (relative, no ``..``);
  annotations of the selected images need an int ``id``, a finite ``area`` >= 0 and a list or
  dict ``segmentation``;
- when an image is read (lazily, so that loading the large training file stays fast): polygon
  coordinates must be finite numbers within `MARGIN` image sides of the frame (what lies
  outside the frame is clipped exactly by pycocotools' rasteriser; farther out is refused), an
  outline may be at most `MAX_TRACE` x (height + width) pixels long, and an RLE must have the
  image's size and runs covering exactly its pixels. Polygons of fewer than 3 points are left
  out, as before.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

import numpy as np

from .dataset import Dataset, Sample
from .io import read_image

SPLITS = ("train", "val", "test")
IMAGE_FOLDERS = {
    "train": "livecell_train_val_images",
    "val": "livecell_train_val_images",
    "test": "livecell_test_images",
}
#: Largest image side accepted from the JSON (LIVECell's images are 704 x 520).
MAX_SIDE = 1 << 15
#: Polygon coordinates may lie up to this many image sides outside the frame (clipped exactly
#: by pycocotools); farther out is an error, as are NaN and infinite ones.
MARGIN = 1.0
#: A polygon's outline may be at most this many times ``height + width`` pixels long.
MAX_TRACE = 64


def _find_annotation(base: Path, split: str) -> Path:
    name = f"livecell_coco_{split}.json"
    for cand in (
        base / name,
        base / "annotations" / "LIVECell" / name,
        base / "annotations" / name,
    ):
        if cand.is_file():
            return cand
    raise FileNotFoundError(
        f"LIVECell annotation {name} not found under {base} (looked in ., annotations/LIVECell/, "
        "annotations/). Run `python -m unetlib.data fetch livecell --root DIR`"
    )


def instance_mask(
    anns: list[dict], height: int, width: int, source: str | os.PathLike = "<annotations>"
) -> np.ndarray:
    """COCO annotations of one image -> int32 instance labels 1..N (N = len(anns)).

    Labels follow the annotation order; overlaps go to the smaller cell. Every annotation's
    geometry is checked first (`_rle`): a fault is a ValueError naming ``source`` (the JSON
    file) and the annotation id, before anything reaches pycocotools.
    """
    from pycocotools import mask as mask_utils

    labels = np.zeros((height, width), dtype=np.int32)
    order = sorted(range(len(anns)), key=lambda i: -_area(anns[i], source))
    for i in order:
        rle = _rle(anns[i], height, width, source)
        if rle is None:
            continue
        with warnings.catch_warnings():  # pycocotools vs NumPy 2 copy= deprecation
            warnings.simplefilter("ignore", DeprecationWarning)
            m = mask_utils.decode(rle).astype(bool)
        labels[m] = i + 1
    return labels


def _where(ann: dict, source) -> str:
    return f"{source}: annotation {ann.get('id', '?')!r}"


def _area(ann: dict, source) -> float:
    area = ann.get("area", 0.0)
    if not _is_number(area) or not math.isfinite(area) or area < 0:
        raise ValueError(f"{_where(ann, source)}: area must be a finite number >= 0, got {area!r}")
    return float(area)


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _rle(ann: dict, height: int, width: int, source):
    """The annotation's segmentation as a pycocotools RLE (None: no polygon of 3+ points, left
    out as before). Polygons and RLEs are checked here (see the module docstring)."""
    from pycocotools import mask as mask_utils

    seg = ann.get("segmentation")
    if isinstance(seg, list):
        polys = _polygons(seg, height, width, _where(ann, source))
        if not polys:
            return None
        return mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
    if isinstance(seg, dict):
        counts = _rle_counts(seg, height, width, _where(ann, source))
        if isinstance(counts, list):
            return mask_utils.frPyObjects(
                {"size": [height, width], "counts": counts}, height, width
            )
        return {"size": [height, width], "counts": counts.encode("ascii")}
    raise ValueError(
        f"{_where(ann, source)}: segmentation must be a list of polygons or an RLE dict, got "
        f"{type(seg).__name__}"
    )


def _polygons(seg: list, height: int, width: int, where: str) -> list[list[float]]:
    """The polygons of 3+ points, checked: numbers, finite, within `MARGIN` image sides of the
    frame (pycocotools clips what lies outside the frame exactly), and an outline at most
    `MAX_TRACE` times ``height + width`` long, which bounds the rasteriser's work and memory."""
    polys = []
    trace = 0.0
    for k, poly in enumerate(seg):
        if not isinstance(poly, list) or not all(_is_number(v) for v in poly):
            raise ValueError(f"{where}: polygon {k} must be a list of numbers")
        if len(poly) % 2:
            raise ValueError(f"{where}: polygon {k} has an odd number of coordinates")
        if len(poly) < 6:
            continue  # fewer than 3 points: no area (left out, as always)
        xy = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        if not np.all(np.isfinite(xy)):
            raise ValueError(f"{where}: polygon {k} has NaN or infinite coordinates")
        lo = -MARGIN * np.array([width, height])
        hi = (1 + MARGIN) * np.array([width, height])
        if np.any(xy < lo) or np.any(xy > hi):
            raise ValueError(
                f"{where}: polygon {k} has coordinates far outside the {width} x {height} image "
                f"(x {xy[:, 0].min():g}..{xy[:, 0].max():g}, y {xy[:, 1].min():g}.."
                f"{xy[:, 1].max():g}; at most {MARGIN:g} image side(s) outside are clipped)"
            )
        trace += float(np.abs(np.diff(xy, axis=0, append=xy[:1])).max(axis=1).sum())
        polys.append([float(v) for v in poly])
    if trace > MAX_TRACE * (height + width):
        raise ValueError(
            f"{where}: polygon outline {trace:.0f} px long, more than {MAX_TRACE} x (height + "
            "width) of the image"
        )
    return polys


def _rle_counts(seg: dict, height: int, width: int, where: str) -> list[int] | str:
    """The counts of an RLE dict, checked: its size is the image's and its runs cover exactly
    ``height * width`` pixels (pycocotools would read or write past its buffer otherwise)."""
    size = seg.get("size")
    if size != [height, width]:
        raise ValueError(f"{where}: RLE size {size!r} is not the image's [{height}, {width}]")
    counts = seg.get("counts")
    if isinstance(counts, str):
        runs = _decode_counts(counts, where)
    elif isinstance(counts, list) and all(type(c) is int for c in counts):
        runs = counts
    else:
        raise ValueError(f"{where}: RLE counts must be a string or a list of ints")
    if any(r < 0 for r in runs):
        raise ValueError(f"{where}: RLE has a negative run length")
    if sum(runs) != height * width:
        raise ValueError(
            f"{where}: RLE runs cover {sum(runs)} pixels, the {width} x {height} image has "
            f"{height * width}"
        )
    return counts


def _decode_counts(counts: str, where: str) -> list[int]:
    """COCO's compressed RLE string -> run lengths (pycocotools' ``rleFrString``, in Python)."""
    runs: list[int] = []
    p = 0
    while p < len(counts):
        x, k, more = 0, 0, True
        while more:
            if p >= len(counts) or not 48 <= ord(counts[p]) < 48 + 64:
                raise ValueError(f"{where}: RLE counts string is malformed at character {p}")
            c = ord(counts[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if k > 13:  # more than 64 bits: no run is that long (and Python ints never overflow)
                raise ValueError(f"{where}: RLE counts string is malformed at character {p}")
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x)
    return runs


class _LivecellLoader:
    """Makes sample k on demand (a class, not a closure, so that datasets can be pickled)."""

    def __init__(self, root, img_root, split, ann_path, infos, anns, normalize):
        self.root, self.img_root, self.ann_path = Path(root), Path(img_root), Path(ann_path)
        self.infos, self.anns, self.normalize = infos, anns, normalize
        first = self.img_root / IMAGE_FOLDERS[split]
        self.search_dirs = ([first] if first.is_dir() else []) + [self.img_root]
        self._index: dict[str, Path] = {}

    def locate(self, file_name: str) -> Path:
        for d in self.search_dirs:
            if (d / file_name).is_file():
                return d / file_name
        if not self._index:  # some copies keep one subfolder per cell type
            self._index = {p.name: p for p in self.img_root.rglob("*") if p.is_file()}
        if file_name in self._index:
            return self._index[file_name]
        raise FileNotFoundError(
            f"{file_name} (listed in {self.ann_path}) not found under {self.img_root}"
        )

    def __call__(self, k: int) -> Sample:
        info = self.infos[k]
        path = self.locate(info["file_name"])
        img = read_image(path, self.normalize)
        h, w = int(info["height"]), int(info["width"])
        if img.shape != (h, w):
            raise ValueError(
                f"size mismatch: image {path} is {img.shape} but {self.ann_path} says {(h, w)}"
            )
        labels = instance_mask(self.anns[info["id"]], h, w, self.ann_path)
        try:
            name = str(path.relative_to(self.root))
        except ValueError:
            name = str(path)
        return Sample(img, labels, name)


def _int_field(entry: dict, key: str, where: str, lo: int, hi: int) -> int:
    """``entry[key]`` as an int in [lo, hi]; integral floats (``520.0``) pass, ``True``, strings
    and fractions do not (``int()`` would silently accept ``"30"`` or cut ``30.7``)."""
    value = entry.get(key)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if type(value) is not int or not lo <= value <= hi:
        raise ValueError(f"{where}: {key} must be an int in [{lo}, {hi}], got {value!r}")
    return value


def _safe_file_name(name, where: str) -> str:
    """A ``file_name`` that stays under the image root: relative, no ``..``, no NUL."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ValueError(f"{where}: file_name must be a non-empty string, got {name!r}")
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
        raise ValueError(
            f"{where}: file_name {name!r} leaves the image folder (absolute, a drive or '..')"
        )
    return name


def _check_images(images, ann_path: Path) -> list[dict]:
    """The ``images`` entries, checked: a unique int ``id``, a safe ``file_name`` and int
    ``height``/``width`` in [1, `MAX_SIDE`] (the mask is allocated at that size)."""
    if not isinstance(images, list):
        raise ValueError(f"{ann_path}: 'images' must be a list, got {type(images).__name__}")
    out, seen = [], set()
    for k, d in enumerate(images):
        if not isinstance(d, dict):
            raise ValueError(f"{ann_path}: images[{k}] is not an object")
        if type(d.get("id")) is not int:
            raise ValueError(f"{ann_path}: images[{k}]: id must be an int, got {d.get('id')!r}")
        where = f"{ann_path}: image {d['id']}"
        if d["id"] in seen:
            raise ValueError(f"{where}: id listed twice (the annotations would go to both)")
        seen.add(d["id"])
        out.append(
            {
                "id": d["id"],
                "file_name": _safe_file_name(d.get("file_name"), where),
                "height": _int_field(d, "height", where, 1, MAX_SIDE),
                "width": _int_field(d, "width", where, 1, MAX_SIDE),
            }
        )
    return out


def _select_annotations(anns, image_ids: set[int], ann_path: Path) -> dict[int, list[dict]]:
    """image id -> its (non-crowd) annotations, each checked for an int ``id``, a finite
    ``area`` and a segmentation of the right kind; the geometry is checked per image when it
    is rasterised (`instance_mask`), which keeps loading the 1.5 GB training file fast."""
    if not isinstance(anns, list):
        raise ValueError(f"{ann_path}: 'annotations' must be a list, got {type(anns).__name__}")
    wanted: dict[int, list[dict]] = {i: [] for i in image_ids}
    for k, a in enumerate(anns):
        if not isinstance(a, dict):
            raise ValueError(f"{ann_path}: annotations[{k}] is not an object")
        image_id = a.get("image_id")
        if type(image_id) is not int or image_id not in wanted or a.get("iscrowd", 0):
            continue
        if type(a.get("id")) is not int:
            raise ValueError(
                f"{ann_path}: annotations[{k}] (image {image_id}): id must be an int, got "
                f"{a.get('id')!r}"
            )
        if not isinstance(a.get("segmentation"), (list, dict)):
            raise ValueError(
                f"{ann_path}: annotation {a['id']}: segmentation must be a list of polygons or "
                f"an RLE dict, got {type(a.get('segmentation')).__name__}"
            )
        entry = {"id": a["id"], "segmentation": a["segmentation"], "area": a.get("area", 0.0)}
        _area(entry, ann_path)
        wanted[image_id].append(entry)
    return wanted


def load_livecell(
    root: Path,
    split: str = "train",
    *,
    annotation: str | os.PathLike | None = None,
    images: str | os.PathLike | None = None,
    cell_type: str | None = None,
    max_images: int | None = None,
    normalize: str = "dtype",
) -> Dataset:
    """LIVECell as a lazy `Dataset`; ``cell_type`` (e.g. "A172") keeps one cell line."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS} for livecell, got {split!r}")
    base = root / "livecell"
    ann_path = Path(annotation) if annotation is not None else _find_annotation(base, split)
    if not ann_path.is_file():
        raise FileNotFoundError(f"{ann_path}: annotation file not found")
    img_root = Path(images) if images is not None else base / "images"
    if not img_root.is_dir():
        raise FileNotFoundError(f"{img_root}: LIVECell image folder not found")
    try:
        with open(ann_path, encoding="utf-8") as f:
            coco = json.load(f)
        all_images = coco["images"]
        all_anns = coco["annotations"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{ann_path}: not a readable COCO annotation file ({exc!r})") from exc
    infos = sorted(_check_images(all_images, ann_path), key=lambda d: d["id"])
    if cell_type is not None:
        infos = [d for d in infos if d["file_name"].split("_")[0].lower() == cell_type.lower()]
    if max_images is not None:
        infos = infos[:max_images]
    if not infos:
        raise ValueError(f"{ann_path}: no images (cell_type={cell_type!r})")
    # Keep only what the selected images need, then let the (large) parsed JSON go.
    wanted = _select_annotations(all_anns, {d["id"] for d in infos}, ann_path)
    del coco, all_images, all_anns
    loader = _LivecellLoader(root, img_root, split, ann_path, infos, wanted, normalize)
    files = [d["file_name"] for d in infos]

    options = {"annotation": str(ann_path)}
    if cell_type:
        options["cell_type"] = cell_type
    notes = [
        "polygons rasterised with pycocotools; overlaps go to the smaller cell",
        "loaded lazily (one image per access)",
    ]
    return Dataset(
        "livecell", split, files, loader, eager=False, root=str(root), notes=notes, options=options
    )
