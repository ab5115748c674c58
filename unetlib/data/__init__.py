"""Data sets of the U-Net paper and its reproductions, as `Sample` sequences.

``load_dataset(name, split="train", root=None, **options)`` returns a `Dataset` of `Sample`
(image float32 (H, W) in [0, 1], instance labels int32 (H, W) with 0 = background, source file
name). Names (`DATASETS`):

- ``"isbi2012"``: ISBI 2012 EM stacks or per-slice PNGs (`unetlib.data.isbi`);
- ``"DIC-C2DH-HeLa"``, ``"PhC-C2DH-U373"`` and any 2D Cell Tracking Challenge set, gold or
  silver truth (`unetlib.data.ctc`);
- ``"livecell"``: COCO-JSON polygons (`unetlib.data.livecell`);
- ``"synthetic"``: generated DIC-like images, no files needed (`unetlib.data.synthetic`).

``root`` defaults to `unetlib.paths.data_root`. Downloads: ``python -m unetlib.data fetch NAME``
(`unetlib.data.fetch`).
"""

from __future__ import annotations

import os
from typing import Any

from ..paths import data_root
from .ctc import CTC_2D, KNOWN_DEFECTS
from .dataset import Dataset, Sample, centre_crops
from .fetch import fetch

DATASETS: tuple[str, ...] = ("isbi2012", *CTC_2D, "livecell", "synthetic")

__all__ = ["DATASETS", "Dataset", "KNOWN_DEFECTS", "Sample", "centre_crops", "fetch",
           "load_dataset"]


def load_dataset(
    name: str, split: str = "train", root: str | os.PathLike | None = None, **options: Any
) -> Dataset:
    """Load a split of a data set (names and options in the package and loader docstrings).

    Any folder under the data root in the Cell Tracking Challenge layout (``NAME/01``,
    ``NAME/01_GT/SEG``) loads as a CTC set, so sets not listed in `DATASETS` work too.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if name == "synthetic":
        return _synthetic(split, root, options)
    base = data_root(root)
    if name == "isbi2012":
        from .isbi import load_isbi2012

        return load_isbi2012(base, split, **options)
    if name == "livecell":
        from .livecell import load_livecell

        return load_livecell(base, split, **options)
    from .ctc import load_ctc

    if name in CTC_2D or (base / name / "01").is_dir():
        return load_ctc(base, name, split, **options)
    raise ValueError(
        f"unknown data set {name!r} (no folder {base / name} in the CTC layout either); "
        f"known: {', '.join(DATASETS)}"
    )


def _synthetic(split: str, root, options: dict) -> Dataset:
    from .synthetic import load_synthetic

    return load_synthetic(split, **options)
