"""2D data sets of the Cell Tracking Challenge (the paper's section 4: PhC-C2DH-U373 and
DIC-C2DH-HeLa, IoU 0.9203 and 0.7756), in the challenge's own folder layout::

    <root>/<NAME>/01/t000.tif ...            raw frames (8- or 16-bit)
    <root>/<NAME>/01_GT/SEG/man_seg002.tif   gold truth: manual masks of a few frames
    <root>/<NAME>/01_ST/SEG/man_seg000.tif   silver truth: computed masks of (nearly) all frames

Masks are instance labels (0 = background, 1..N = cells) and keep their original ids.

Defaults: ``split="train"`` reads sequence 01, ``split="test"`` sequence 02, both with gold truth
(``truth="gold"``; DIC-C2DH-HeLa: 8 train frames after the exclusion below, 9 test frames).
``split="all"`` reads both sequences; ``sequences=("01", "02")`` overrides the split's choice.
With ``truth="silver"`` every frame of the sequence must have a mask unless
``frames_without_mask="skip"``.

Known defects (`KNOWN_DEFECTS`) are left out unless ``include_incomplete=True``, and the
`Dataset.describe` text says which files were left out and why.
"""

from __future__ import annotations

import re
from pathlib import Path

from .dataset import Dataset, Sample
from .io import check_same_shape, read_image, read_labels

TRUTH_FOLDERS = {"gold": "GT", "silver": "ST"}
SPLIT_SEQUENCES = {"train": ("01",), "test": ("02",), "all": ("01", "02")}
PAPER_SETS = ("PhC-C2DH-U373", "DIC-C2DH-HeLa")
#: The 2D training sets of the challenge (any folder in the same layout also loads).
CTC_2D = (
    "BF-C2DL-HSC",
    "BF-C2DL-MuSC",
    "DIC-C2DH-HeLa",
    "Fluo-C2DL-Huh7",
    "Fluo-C2DL-MSC",
    "Fluo-N2DH-GOWT1",
    "Fluo-N2DH-SIM+",
    "Fluo-N2DL-HeLa",
    "PhC-C2DH-U373",
    "PhC-C2DL-PSC",
)

#: (data set, sequence, truth, frame) -> why the mask is left out by default.
KNOWN_DEFECTS: dict[tuple[str, str, str, int], str] = {
    ("DIC-C2DH-HeLa", "01", "gold", 67): (
        "annotates only 3 of the cells in the frame; as a target it would teach that the "
        "other cells are background"
    ),
}

_FRAME = re.compile(r"^t(\d+)\.tiff?$")
_MASK = re.compile(r"^man_seg(\d+)\.tiff?$")


def _index(folder: Path, pattern: re.Pattern) -> dict[int, Path]:
    out: dict[int, Path] = {}
    for p in folder.iterdir():
        m = pattern.match(p.name)
        if m:
            out[int(m.group(1))] = p
    return out


def load_ctc(
    root: Path,
    name: str,
    split: str = "train",
    *,
    sequences: tuple[str, ...] | list[str] | str | None = None,
    truth: str = "gold",
    include_incomplete: bool = False,
    frames_without_mask: str | None = None,
    normalize: str = "dtype",
) -> Dataset:
    """A Cell Tracking Challenge 2D set as a `Dataset` (layout and defaults in the docstring)."""
    if truth not in TRUTH_FOLDERS:
        raise ValueError(f"truth must be 'gold' or 'silver', got {truth!r}")
    if sequences is None:
        if split not in SPLIT_SEQUENCES:
            raise ValueError(
                f"split must be one of {tuple(SPLIT_SEQUENCES)} for {name} (or pass "
                f"sequences=...), got {split!r}"
            )
        sequences = SPLIT_SEQUENCES[split]
    elif isinstance(sequences, str):
        sequences = (sequences,)
    if frames_without_mask is None:
        frames_without_mask = "skip" if truth == "gold" else "error"
    if frames_without_mask not in ("skip", "error"):
        raise ValueError(
            f"frames_without_mask must be 'skip' or 'error', got {frames_without_mask!r}"
        )

    base = root / name
    if not base.is_dir():
        raise FileNotFoundError(
            f"{name} folder not found: {base}. Run `python -m unetlib.data fetch {name} --root "
            "DIR` or pass root= pointing at the folder that holds it"
        )
    pairs: list[tuple[Path, Path]] = []
    notes: list[str] = []
    for seq in sequences:
        frame_dir = base / seq
        mask_dir = base / f"{seq}_{TRUTH_FOLDERS[truth]}" / "SEG"
        for d, what in ((frame_dir, "frame"), (mask_dir, f"{truth}-truth mask")):
            if not d.is_dir():
                raise FileNotFoundError(f"{d}: {what} folder not found")
        frames = _index(frame_dir, _FRAME)
        masks = _index(mask_dir, _MASK)
        if not masks:
            raise FileNotFoundError(f"{mask_dir}: no man_segNNN.tif masks")
        for t, mask in sorted(masks.items()):
            if t not in frames:
                raise FileNotFoundError(
                    f"{mask}: mask without its frame (no t{t:03d}.tif in {frame_dir})"
                )
            reason = KNOWN_DEFECTS.get((name, seq, truth, t))
            if reason and not include_incomplete:
                notes.append(
                    f"left out {mask.relative_to(base)}: {reason} "
                    "(include_incomplete=True keeps it)"
                )
                continue
            pairs.append((frames[t], mask))
        missing = sorted(set(frames) - set(masks))
        if missing and frames_without_mask == "error":
            first = frames[missing[0]]
            raise FileNotFoundError(
                f"{first}: frame without its {truth}-truth mask in {mask_dir} ({len(missing)} "
                "such frames); pass frames_without_mask='skip' to use only masked frames"
            )
        if missing and truth == "silver":
            notes.append(f"sequence {seq}: {len(missing)} frames without silver truth skipped")

    files = [str(f.relative_to(root)) for f, _ in pairs]

    def load(k: int) -> Sample:
        frame, mask = pairs[k]
        img = read_image(frame, normalize)
        lab = read_labels(mask)
        check_same_shape(img, lab, frame, mask)
        return Sample(img, lab, files[k])

    options = {"sequences": tuple(sequences), "truth": truth}
    if include_incomplete:
        options["include_incomplete"] = True
    return Dataset(name, split, files, load, root=str(root), notes=notes, options=options)


def time_point(name: str) -> tuple[str, int]:
    """(sequence folder, time point) of a Cell Tracking Challenge frame's name, as
    ``"DIC-C2DH-HeLa/01/t002.tif"`` gives ``("DIC-C2DH-HeLa/01", 2)``."""
    m = re.fullmatch(r"(.*)/t(\d+)\.tif", name.replace("\\", "/"))
    if m is None:
        raise ValueError(f"{name!r} is not a Cell Tracking Challenge frame (SEQ/tNNN.tif)")
    return m.group(1), int(m.group(2))
