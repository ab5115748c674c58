"""`Sample` and `Dataset`: what every loader returns, and `centre_crops` of a few samples."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import overload

import numpy as np


@dataclass(frozen=True, eq=False)
class Sample:
    """One 2D training/testing example.

    image: float32 (H, W) in [0, 1].
    labels: int32 (H, W) instance labels, 0 = background, 1..N = cells; ``None`` only for sets
        without published labels (the ISBI 2012 "challenge" split).
    name: the source file, relative to the data root (or a generator tag for "synthetic").
    """

    image: np.ndarray
    labels: np.ndarray | None
    name: str

    def __post_init__(self) -> None:
        if self.image.dtype != np.float32 or self.image.ndim != 2:
            raise TypeError(
                f"{self.name}: image must be float32 (H, W), got {self.image.dtype} "
                f"{self.image.shape}"
            )
        if self.labels is not None:
            if self.labels.dtype != np.int32 or self.labels.shape != self.image.shape:
                raise TypeError(
                    f"{self.name}: labels must be int32 {self.image.shape}, got "
                    f"{self.labels.dtype} {self.labels.shape}"
                )

    @property
    def n_cells(self) -> int:
        """Number of distinct non-zero labels (0 when there are no labels)."""
        if self.labels is None:
            return 0
        return int(np.count_nonzero(np.unique(self.labels)))


@dataclass
class Dataset(Sequence[Sample]):
    """A named split of a data set: a sequence of `Sample`.

    Small sets are loaded eagerly (errors surface at ``load_dataset`` time); LIVECell is read
    lazily, one image per ``__getitem__``.
    """

    name: str
    split: str
    files: list[str]
    _load: Callable[[int], Sample] = field(repr=False)
    eager: bool = True
    root: str | None = None
    notes: list[str] = field(default_factory=list)
    options: dict = field(default_factory=dict)
    _samples: list[Sample] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.eager:
            self._samples = [self._load(i) for i in range(len(self.files))]

    def __getstate__(self) -> dict:
        # An eager dataset needs no loader once loaded (closures do not pickle, e.g. for
        # DataLoader workers started with "spawn").
        state = dict(self.__dict__)
        if state.get("_samples") is not None:
            state["_load"] = None
        return state

    def __len__(self) -> int:
        return len(self.files)

    @overload
    def __getitem__(self, index: int) -> Sample: ...

    @overload
    def __getitem__(self, index: slice) -> list[Sample]: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        n = len(self)
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an int or a slice, got {type(index).__name__}")
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} samples")
        index = int(index) % n
        if self._samples is not None:
            return self._samples[index]
        return self._load(index)

    def describe(self) -> str:
        """A few lines saying what this split holds and how it was chosen."""
        lines = [f"{self.name} [{self.split}]: {len(self)} images"]
        if self.root:
            from unetlib.paths import shown

            lines.append(f"  root: {shown(self.root)}")
        if self.options:
            opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
            lines.append(f"  options: {opts}")
        if self.files:
            shown = (
                self.files if len(self.files) <= 6 else self.files[:3] + ["..."] + self.files[-2:]
            )
            lines.append("  files: " + ", ".join(shown))
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Dataset(name={self.name!r}, split={self.split!r}, n={len(self)})"


def centre_crops(samples: Sequence[Sample], n: int, size: int) -> list[Sample]:
    """``n`` samples spread evenly over ``samples``, each centre-cropped to ``size`` x ``size``
    (image and labels alike), so that the explorers stay fast on large frames."""
    if n < 1 or size < 1:
        raise ValueError(f"n and size must be >= 1, got n={n!r}, size={size!r}")
    idx = np.unique(np.linspace(0, len(samples) - 1, min(n, len(samples))).round().astype(int))
    out = []
    for i in idx:
        s = samples[int(i)]
        h, w = s.image.shape
        y, x = max((h - size) // 2, 0), max((w - size) // 2, 0)
        win = (slice(y, y + size), slice(x, x + size))
        labels = None if s.labels is None else s.labels[win].copy()
        out.append(Sample(s.image[win].copy(), labels, s.name))
    return out
