"""The synthetic DIC-like generator (unetlib.data.synthetic)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from unetlib.data import load_dataset
from unetlib.data.stats import touching_pairs
from unetlib.data.synthetic import make_cells


@pytest.mark.parametrize("size", [64, 128, (96, 160)])
def test_deterministic_for_a_seed(size):
    a, la = make_cells(7, size)
    b, lb = make_cells(7, size)
    c, lc = make_cells(8, size)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert not np.array_equal(la, lc)


def test_splits_are_disjoint_and_reproducible():
    train = load_dataset("synthetic", "train", n=6, size=64)
    again = load_dataset("synthetic", "train", n=6, size=64)
    test = load_dataset("synthetic", "test", n=6, size=64)
    for s, t in zip(train, again, strict=True):
        np.testing.assert_array_equal(s.image, t.image)
    train_bytes = {s.image.tobytes() for s in train}
    assert not train_bytes & {s.image.tobytes() for s in test}
    assert len(train_bytes) == 6
    other = load_dataset("synthetic", "train", n=2, size=64, seed=1)
    assert other[0].image.tobytes() not in train_bytes


@pytest.mark.parametrize("seed", range(6))
def test_label_consistency(seed):
    image, labels = make_cells(seed, 128)
    assert image.dtype == np.float32 and image.shape == labels.shape == (128, 128)
    assert 0.0 <= image.min() and image.max() <= 1.0 and np.isfinite(image).all()
    assert labels.dtype == np.int32 and labels.min() == 0
    ids = np.unique(labels)
    np.testing.assert_array_equal(ids, np.arange(ids.size))  # 0, 1..N, no gaps
    for k, sl in enumerate(ndi.find_objects(labels), start=1):  # each cell one 4-connected piece
        assert ndi.label(labels[sl] == k)[1] == 1
    areas = np.bincount(labels.ravel())[1:]
    assert areas.min() >= 0.12 * np.pi * (128 / 14) ** 2 - 1


@pytest.mark.parametrize("seed", range(4))
def test_cells_touch_and_thresholding_fails(seed):
    """Hard enough that a network must learn borders: cells touch, so the foreground's
    connected components merge cells, and no global threshold recovers the foreground."""
    image, labels = make_cells(seed, 256)
    fg = labels > 0
    n_cells = labels.max()
    assert len(touching_pairs(labels)) >= 5
    assert len(touching_pairs(labels, 2) - touching_pairs(labels)) >= 1  # near-touching pairs
    assert ndi.label(fg)[1] < 0.8 * n_cells
    best_iou = 0.0
    for t in np.linspace(0.05, 0.95, 19):
        for pred in (image > t, image < t):
            best_iou = max(best_iou, (pred & fg).sum() / (pred | fg).sum())
    assert best_iou < 0.75


def test_bad_arguments():
    with pytest.raises(ValueError, match="size"):
        make_cells(0, 8)
    with pytest.raises(ValueError, match="density"):
        make_cells(0, 64, density=0)
    with pytest.raises(ValueError, match="split"):
        load_dataset("synthetic", "holdout")
    with pytest.raises(ValueError, match="n must"):
        load_dataset("synthetic", n=0)
