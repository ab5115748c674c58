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
"""

from __future__ import annotations

import json
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


def instance_mask(anns: list[dict], height: int, width: int) -> np.ndarray:
    """COCO annotations of one image -> int32 instance labels 1..N (N = len(anns)).

    Labels follow the annotation order; overlaps go to the smaller cell.
    """
    from pycocotools import mask as mask_utils

    labels = np.zeros((height, width), dtype=np.int32)
    order = sorted(range(len(anns)), key=lambda i: -float(anns[i].get("area", 0.0)))
    for i in order:
        seg = anns[i]["segmentation"]
        if isinstance(seg, list):
            polys = [p for p in seg if len(p) >= 6]
            if not polys:
                continue
            rle = mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
        elif isinstance(seg.get("counts"), list):
            rle = mask_utils.frPyObjects(seg, height, width)
        else:
            rle = seg
        with warnings.catch_warnings():  # pycocotools vs NumPy 2 copy= deprecation
            warnings.simplefilter("ignore", DeprecationWarning)
            m = mask_utils.decode(rle).astype(bool)
        labels[m] = i + 1
    return labels


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
        labels = instance_mask(self.anns[info["id"]], h, w)
        try:
            name = str(path.relative_to(self.root))
        except ValueError:
            name = str(path)
        return Sample(img, labels, name)


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
    infos = sorted(all_images, key=lambda d: d["id"])
    if cell_type is not None:
        infos = [d for d in infos if d["file_name"].split("_")[0].lower() == cell_type.lower()]
    if max_images is not None:
        infos = infos[:max_images]
    if not infos:
        raise ValueError(f"{ann_path}: no images (cell_type={cell_type!r})")
    # Keep only what the selected images need, then let the (large) parsed JSON go.
    wanted = {d["id"]: [] for d in infos}
    for a in all_anns:
        if a.get("image_id") in wanted and not a.get("iscrowd", 0):
            wanted[a["image_id"]].append(
                {"segmentation": a["segmentation"], "area": a.get("area", 0.0)}
            )
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
