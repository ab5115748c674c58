"""Statistics of instance-labelled data sets (unetlib.data.stats): touching pairs, per-frame
and per-data-set summaries."""

from __future__ import annotations

import numpy as np
import pytest

from unetlib.data import load_dataset
from unetlib.data.dataset import Sample
from unetlib.data.stats import (
    dataset_stats,
    format_stats,
    frame_stats,
    touching_pairs,
    truth_agreement,
)


def test_touching_pairs_small_cases():
    lab = np.zeros((10, 10), np.int32)
    lab[1:4, 1:4], lab[1:4, 4:7], lab[6:9, 1:4], lab[6:9, 6:9] = 1, 2, 3, 4
    assert touching_pairs(lab) == {(1, 2)}
    assert touching_pairs(lab, 1) == {(1, 2)}  # 3 is two rows below 1: a gap of 2
    assert touching_pairs(lab, 2) == {(1, 2), (1, 3), (2, 3), (2, 4), (3, 4), (1, 4)}
    diag = np.zeros((4, 4), np.int32)
    diag[0, 0], diag[1, 1] = 1, 2
    assert touching_pairs(diag) == set() and touching_pairs(diag, 1) == {(1, 2)}


@pytest.mark.parametrize("gap", [0, 1, 2])
def test_touching_pairs_matches_brute_force(gap):
    rng = np.random.default_rng(gap)
    lab = (rng.integers(1, 5, (9, 11)) * (rng.random((9, 11)) < 0.3)).astype(np.int32)
    ys, xs = np.nonzero(lab)
    expect = set()
    for i in range(len(ys)):
        for j in range(len(ys)):
            a, b = lab[ys[i], xs[i]], lab[ys[j], xs[j]]
            dy, dx = abs(ys[i] - ys[j]), abs(xs[i] - xs[j])
            near = dy + dx == 1 if gap == 0 else max(dy, dx) <= gap + 1
            if a < b and near:
                expect.add((int(a), int(b)))
    assert touching_pairs(lab, gap) == expect


def test_dataset_stats():
    lab = np.zeros((10, 10), np.int32)
    lab[0:2, 0:5], lab[2:4, 0:5] = 1, 2
    st = frame_stats(lab)
    assert st["cells"] == 2 and st["touching_pairs"] == 1 and st["foreground"] == 0.2
    np.testing.assert_array_equal(st["areas"], [10, 10])
    ds = load_dataset("synthetic", "test", n=3, size=96)
    summary = dataset_stats(ds)
    assert summary["frames"] == 3 and summary["shapes"] == [(96, 96)]
    assert summary["cells_total"] == sum(s.n_cells for s in ds)
    assert 0.2 < summary["foreground_fraction"] < 0.9
    assert "touching pairs/frame" in format_stats(summary)


def _frame(name: str, labels: np.ndarray) -> Sample:
    return Sample(np.zeros(labels.shape, np.float32), labels.astype(np.int32), name)


def test_truth_agreement_pools_the_reference_cells_of_the_frames_both_annotate():
    gold = np.zeros((12, 12), np.int32)
    gold[0:4, 0:4], gold[6:10, 6:10] = 1, 2  # two cells of 16 px
    other = gold.copy()
    other[0:4, 4] = 1  # cell 1 grown by 4 px: Jaccard 16/20
    other[other == 2] = 0
    other[6:10, 6:8] = 5  # cell 2 covered by half only: no match (needs > 0.5), scores 0
    ref = [_frame("a", gold), _frame("b", gold)]
    oth = [_frame("b", gold), _frame("c", gold), _frame("a", other)]  # order and extras free
    out = truth_agreement(ref, oth)
    assert out["frames"] == ["a", "b"] and out["cells"] == 4
    assert out["seg"] == pytest.approx((16 / 20 + 0 + 1 + 1) / 4)
    assert truth_agreement(ref, ref)["seg"] == 1.0


def test_truth_agreement_names_what_cannot_be_paired():
    gold = np.ones((4, 4), np.int32)
    with pytest.raises(ValueError, match="share no frame"):
        truth_agreement([_frame("a", gold)], [_frame("b", gold)])
    unlabelled = Sample(np.zeros((4, 4), np.float32), None, "a")
    with pytest.raises(ValueError, match="a: a frame without labels"):
        truth_agreement([unlabelled], [_frame("a", gold)])


def test_truth_agreement_with_an_offset_pairs_each_frame_with_its_neighbour_in_time():
    gold = np.zeros((12, 12), np.int32)
    gold[0:4, 0:4], gold[6:10, 6:10] = 1, 2
    moved = np.zeros_like(gold)
    moved[0:4, 0:4] = 3  # the next frame: cell 1 in place, cell 2 gone
    ref = [_frame("H/01/t002.tif", gold), _frame("H/02/t002.tif", gold)]
    oth = [_frame("H/01/t001.tif", gold), _frame("H/01/t003.tif", moved),
           _frame("H/02/t002.tif", moved)]  # sequence 02 has no t003: frame left unpaired
    out = truth_agreement(ref, oth, offset=1)
    assert out["frames"] == ["H/01/t002.tif"] and out["seg"] == pytest.approx(0.5)
    assert truth_agreement(ref, oth, offset=-1)["seg"] == 1.0
    with pytest.raises(ValueError, match="share no frame"):
        truth_agreement(ref, oth, offset=5)
    with pytest.raises(ValueError, match="'a' is not a Cell Tracking Challenge frame"):
        truth_agreement([_frame("a", gold)], oth, offset=1)
