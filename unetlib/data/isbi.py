"""ISBI 2012 EM segmentation challenge (the paper's section 4, first data set).

30 labelled 512x512 sections of a serial-section TEM stack (Drosophila first-instar larva VNC)
and 30 unlabelled test sections. Labels mark membranes (0) and cell interior (255); the instance
labels here are the 4-connected regions of cell interior (``skimage.measure.label``), so
neighbouring cells are separated by their membrane, as in the paper's Fig. 2.

Layouts under ``<root>/isbi2012`` (the official stacks win when both exist):

- official stacks: ``train-volume.tif``, ``train-labels.tif``, ``test-volume.tif``;
- per-slice PNGs: ``train/image/N.png``, ``train/label/N.png``, ``test/image/N.png``.

Sample names: ``isbi2012/train/image/N.png`` or ``isbi2012/train-volume.tif#N`` (slice N).

Splits: ``"train"`` = labelled slices 0-19, ``"test"`` = labelled slices 20-29, ``"all"`` = 0-29,
``"challenge"`` = the 30 unlabelled test sections (``Sample.labels is None``). With
``folds=n, fold=k`` the labelled stack is cut into n contiguous blocks (adjacent sections are
correlated, so contiguous blocks keep near-duplicates out of the held-out block); ``"test"`` is
block k and ``"train"`` the rest.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from skimage.measure import label as connected_components

from .dataset import Dataset, Sample
from .io import check_same_shape, read_array, read_pages, to_unit_float

N_LABELLED = 30
DEFAULT_TRAIN = range(0, 20)
DEFAULT_TEST = range(20, 30)
SPLITS = ("train", "test", "all", "challenge")
STACKS = {"image": "train-volume.tif", "label": "train-labels.tif", "challenge": "test-volume.tif"}


def membranes_to_instances(membrane_labels: np.ndarray) -> np.ndarray:
    """Instance labels (int32) from an ISBI label image: 4-connected regions of cell interior.

    Interior is everything above half the 8-bit range (255 in the 0/255 files, also when a copy
    stores them as 16-bit), else above half the dtype's range (a rescaled 16-bit copy) or 0.5
    (floats), which also tolerates lossy copies. A label image without any membrane pixel is
    not an ISBI label (ValueError): it would become one cell covering the whole slice.
    """
    arr = np.asarray(membrane_labels)
    if np.issubdtype(arr.dtype, np.integer):
        thr = 127.5 if arr.max(initial=0) <= 255 else np.iinfo(arr.dtype).max / 2
    else:
        thr = 0.5
    interior = arr > thr
    if interior.all():
        raise ValueError("no membrane pixels (every pixel is cell interior): not an ISBI label")
    return connected_components(interior, connectivity=1).astype(np.int32)


def _instances_of(raw: np.ndarray, where: str) -> np.ndarray:
    try:
        return membranes_to_instances(raw)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def slice_indices(split: str, folds: int | None = None, fold: int | None = None) -> list[int]:
    """Labelled-slice indices of a split (see the module docstring)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS} for isbi2012, got {split!r}")
    if split == "challenge":
        if folds is not None:
            raise ValueError("folds/fold apply to the labelled stack, not split='challenge'")
        return list(range(N_LABELLED))
    if (folds is None) != (fold is None):
        raise ValueError("give both folds=n and fold=k (0 <= k < n), or neither")
    if split == "all":
        return list(range(N_LABELLED))
    if folds is None:
        return list(DEFAULT_TRAIN if split == "train" else DEFAULT_TEST)
    if not (isinstance(folds, int) and 2 <= folds <= N_LABELLED):
        raise ValueError(f"folds must be an int in [2, {N_LABELLED}], got {folds!r}")
    if not (isinstance(fold, int) and 0 <= fold < folds):
        raise ValueError(f"fold must be an int in [0, {folds}), got {fold!r}")
    blocks = np.array_split(np.arange(N_LABELLED), folds)
    held = set(blocks[fold].tolist())
    if split == "test":
        return sorted(held)
    return [i for i in range(N_LABELLED) if i not in held]


def _detect_layout(base: Path, layout: str, split: str) -> str:
    if layout not in ("auto", "stack", "png"):
        raise ValueError(f"layout must be 'auto', 'stack' or 'png', got {layout!r}")
    if not base.is_dir():
        raise FileNotFoundError(
            f"ISBI 2012 folder not found: {base}. Run `python -m unetlib.data fetch isbi2012 "
            "--root DIR` or pass root= pointing at the folder that holds isbi2012/"
        )
    if layout != "auto":
        return layout
    need = ["challenge"] if split == "challenge" else ["image", "label"]
    if all((base / STACKS[k]).is_file() for k in need):
        return "stack"
    sub = "test" if split == "challenge" else "train"
    if (base / sub / "image").is_dir():
        return "png"
    raise FileNotFoundError(
        f"{base}: neither the official stacks ({', '.join(STACKS[k] for k in need)}) nor the "
        f"per-slice layout ({sub}/image/N.png) was found"
    )


def load_isbi2012(
    root: Path,
    split: str = "train",
    *,
    folds: int | None = None,
    fold: int | None = None,
    layout: str = "auto",
    normalize: str = "dtype",
) -> Dataset:
    """The ISBI 2012 data set as a `Dataset` (splits and layouts in the module docstring)."""
    indices = slice_indices(split, folds, fold)
    base = root / "isbi2012"
    layout = _detect_layout(base, layout, split)
    labelled = split != "challenge"
    notes = [
        "instances = 4-connected regions of cell interior (label 255); membranes are background"
    ]
    if not labelled:
        notes.append("challenge split: the test volume's labels were never published (labels None)")

    if layout == "stack":
        img_file = base / (STACKS["image"] if labelled else STACKS["challenge"])
        images = read_pages(img_file)
        lab_file = base / STACKS["label"] if labelled else None
        labels = read_pages(lab_file) if labelled else None
        for what, stack, f in (("image", images, img_file), ("label", labels, lab_file)):
            if stack is not None and len(stack) < N_LABELLED:
                raise ValueError(f"{f}: expected {N_LABELLED} {what} slices, found {len(stack)}")
        files = [f"isbi2012/{img_file.name}#{i}" for i in indices]

        def load(k: int) -> Sample:
            i = indices[k]
            img = to_unit_float(np.squeeze(images[i]), f"{img_file}[{i}]", normalize)
            if img.ndim != 2:
                raise ValueError(f"{img_file}: slice {i} is not 2D (shape {img.shape})")
            lab = None
            if labels is not None:
                lab = _instances_of(np.squeeze(labels[i]), f"{lab_file}: slice {i}")
                check_same_shape(img, lab, f"{img_file}[{i}]", f"{lab_file}[{i}]")
                if not lab.any():
                    raise ValueError(f"{lab_file}: slice {i} has no cell interior pixels")
            return Sample(img, lab, files[k])
    else:
        sub = "train" if labelled else "test"
        img_paths = [base / sub / "image" / f"{i}.png" for i in indices]
        lab_paths = [base / sub / "label" / f"{i}.png" for i in indices] if labelled else None
        if labelled and not (base / sub / "label").is_dir():
            raise FileNotFoundError(f"{base / sub / 'label'}: label folder not found")
        files = [str(p.relative_to(root)) for p in img_paths]

        def load(k: int) -> Sample:
            img = to_unit_float(read_array(img_paths[k]), img_paths[k], normalize)
            lab = None
            if lab_paths is not None:
                if not lab_paths[k].is_file():
                    raise FileNotFoundError(
                        f"{img_paths[k]}: no label file (expected {lab_paths[k]})"
                    )
                raw = read_array(lab_paths[k])
                check_same_shape(img, raw, img_paths[k], lab_paths[k])
                lab = _instances_of(raw, str(lab_paths[k]))
                if not lab.any():
                    raise ValueError(f"{lab_paths[k]}: label file has no cell interior pixels")
            return Sample(img, lab, files[k])

    options = {"layout": layout}
    if folds is not None:
        options.update(folds=folds, fold=fold)
    contiguous = indices == list(range(indices[0], indices[-1] + 1))
    which = "test-volume sections" if not labelled else "labelled sections"
    notes.append(f"{which}: {indices[0]}-{indices[-1]}" if contiguous else f"{which}: {indices}")
    return Dataset("isbi2012", split, files, load, root=str(root), notes=notes, options=options)
