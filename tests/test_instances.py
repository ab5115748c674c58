"""unetlib.instances: cells from a probability map, the paper's way, by seeded watershed and by
the distance-transform watershed, and the choice of their parameters by validation SEG."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from unetlib import metrics as M
from unetlib.instances import (
    GRIDS,
    METHODS,
    InstanceParams,
    choose_instances,
    grid_points,
    grow_cells,
    instances_from_probability,
    pooled_seg,
    scanned_current_grid,
    seg_jaccards_by_min_size,
)


def two_touching_cells(gap: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """Two 20x20 cells side by side; the probability is 0.99 in their cores, 0.8 near their
    edges and ``gap`` on the column where they touch (a faint gap, as a short-trained network
    draws it)."""
    lab = np.zeros((40, 60), np.int32)
    lab[10:30, 10:30], lab[10:30, 30:50] = 1, 2
    prob = np.where(lab > 0, 0.8, 0.02)
    prob[14:26, 14:26] = prob[14:26, 34:46] = 0.99
    prob[10:30, 29:31] = gap
    return prob, lab


def test_components_is_the_paper_way_and_merges_a_faint_gap():
    prob, lab = two_touching_cells(gap=0.6)
    paper = instances_from_probability(prob, method="components", threshold=0.5, min_size=0)
    assert paper.max() == 1  # the gap (0.6) is above the threshold: one blob
    assert np.array_equal(paper, M.instance_labels_from_probability(prob, 0.5, 0))
    assert M.split_merge_counts(paper, lab)["merges"] == 1
    # a threshold above the gap separates them (the paper's way, tuned)
    assert instances_from_probability(prob, threshold=0.7, min_size=0).max() == 2


def test_watershed_separates_touching_cells_from_their_cores():
    prob, lab = two_touching_cells(gap=0.6)
    ws = instances_from_probability(prob, method="watershed", threshold=0.5,
                                    seed_threshold=0.95, min_size=0)
    assert ws.max() == 2
    assert M.seg_measure(ws, lab) > 0.9
    # every foreground pixel is assigned: the foreground equals the thresholded map
    assert np.array_equal(ws > 0, prob > 0.5)


def test_watershed_keeps_foreground_without_a_seed():
    prob, _ = two_touching_cells()
    prob[2:6, 2:6] = 0.7  # a faint object with no confident core
    ws = instances_from_probability(prob, method="watershed", threshold=0.5,
                                    seed_threshold=0.95, min_size=0)
    assert ws.max() == 3 and (ws[2:6, 2:6] > 0).all()


def test_watershed_with_low_seeds_equals_components():
    prob, _ = two_touching_cells()
    rng = np.random.default_rng(0)
    prob = np.clip(prob + rng.normal(0, 0.1, prob.shape), 0, 1)
    ws = instances_from_probability(prob, method="watershed", threshold=0.5, seed_threshold=0.5,
                                    min_size=5)
    cc = instances_from_probability(prob, method="components", threshold=0.5, min_size=5)
    # the same partition (labels may be numbered differently)
    assert ws.max() == cc.max()
    assert M.seg_measure(ws, cc) == pytest.approx(1.0)


def two_touching_discs(radius: int = 12, apart: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Two discs whose centres are ``apart`` pixels apart (they overlap in a neck) and a
    probability with no gap at all where they touch: only their shape tells them apart."""
    yy, xx = np.mgrid[:48, :72]
    lab = np.zeros((48, 72), np.int32)
    for k, cx in enumerate((26, 26 + apart), start=1):
        inside = (yy - 24) ** 2 + (xx - cx) ** 2 <= radius**2
        lab[inside & (lab == 0)] = k
    # the second disc takes the half of the overlap nearer its centre
    lab[(lab > 0) & (xx >= 26 + apart / 2)] = 2
    prob = np.where(lab > 0, 0.9, 0.05)
    return prob, lab


def test_distance_splits_touching_cells_at_their_neck_without_a_gap():
    prob, lab = two_touching_discs()
    assert instances_from_probability(prob, method="components", min_size=0).max() == 1
    dist = instances_from_probability(prob, method="distance", threshold=0.5, h=1.0, min_size=0)
    assert dist.max() == 2
    assert M.seg_measure(dist, lab) > 0.9
    # every foreground pixel is assigned: the foreground is the paper's thresholded map
    assert np.array_equal(dist > 0, prob > 0.5)


def test_distance_with_a_high_seed_bar_equals_components():
    prob, _ = two_touching_discs()
    prob[2:6, 2:6] = 0.7  # a third, small object
    dist = instances_from_probability(prob, method="distance", threshold=0.5, h=50.0, min_size=0)
    cc = instances_from_probability(prob, method="components", threshold=0.5, min_size=0)
    assert dist.max() == cc.max() == 2
    assert M.seg_measure(dist, cc) == pytest.approx(1.0)


def test_distance_keeps_one_seed_per_round_cell():
    # one disc, noisy probability: the smoothing and h keep its ripples from splitting it
    prob, _ = two_touching_discs(apart=0)
    rng = np.random.default_rng(0)
    noisy = np.clip(prob + rng.normal(0, 0.05, prob.shape), 0, 1)
    assert instances_from_probability(noisy, method="distance", h=2.0, min_size=0).max() == 1


@pytest.mark.parametrize("method", METHODS)
def test_min_size_drops_specks_and_numbers_cells_from_one(method):
    prob, _ = two_touching_cells(gap=0.1)
    prob[1, 1] = prob[38, 58] = 0.999  # two one-pixel specks
    lab = instances_from_probability(prob, method=method, threshold=0.5, seed_threshold=0.95,
                                     min_size=2)
    assert lab.dtype == np.int32 and lab[1, 1] == 0 and lab[38, 58] == 0
    assert sorted(np.unique(lab)) == [0, 1, 2]


@pytest.mark.parametrize("kwargs, named", [
    ({"method": "hysteresis"}, "method"), ({"threshold": 1.0}, "threshold"),
    ({"seed_threshold": 0.0}, "seed_threshold"), ({"min_size": -1}, "min_size"),
    ({"min_size": 2.5}, "min_size"), ({"h": 0.0}, "h"), ({"h": -1}, "h"),
])
def test_bad_parameters_are_named(kwargs, named):
    with pytest.raises(ValueError, match=named):
        InstanceParams(**kwargs)


def test_bad_probability_is_an_error():
    with pytest.raises(ValueError, match="2D float"):
        instances_from_probability(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="2D float"):
        instances_from_probability(np.zeros((4, 4), np.int32))


def test_params_are_callable_and_describe_themselves():
    prob, _ = two_touching_cells()
    params = InstanceParams("watershed", 0.5, 0.95, 0)
    assert np.array_equal(params(prob), instances_from_probability(prob, params))
    assert "seeded watershed" in params.describe() and "0.95" in params.describe()
    assert "seed_threshold" not in InstanceParams().as_dict()
    assert "h" not in InstanceParams().as_dict() and "h" not in params.as_dict()
    distance = InstanceParams("distance", 0.4, h=4.0)
    assert set(distance.as_dict()) == {"method", "threshold", "min_size", "h"}
    assert "distance-transform watershed" in distance.describe() and "4 px" in distance.describe()


def test_pooled_seg_weighs_cells_not_frames():
    a = np.zeros((10, 10), np.int32)
    a[:5, :5] = 1
    b = np.zeros((10, 10), np.int32)
    b[:2, :2], b[5:7, 5:7], b[8:10, 8:10] = 1, 2, 3
    # frame a found perfectly (1 cell), frame b not at all (3 cells): 1/4, not the frames' 1/2
    assert pooled_seg([a, np.zeros_like(b)], [a, b]) == pytest.approx(0.25)


@pytest.mark.parametrize("seed", range(6))
def test_one_overlap_table_scores_every_size_limit_exactly(seed):
    # random blobs of many sizes against a reference: the same per-cell Jaccards as dropping
    # the small objects first (sizes at 0, at an object's exact size, above every object)
    rng = np.random.default_rng(seed)
    gt = M.instance_labels_from_probability(
        ndi_smooth(rng.random((64, 64)), 2.0), 0.5, min_size=0)
    raw = M.instance_labels_from_probability(
        ndi_smooth(rng.random((64, 64)), 1.0), 0.5, min_size=0)
    sizes = sorted({0, 1, 5, 16, 64, 2000, *np.bincount(raw.ravel())[1:4].tolist()})
    fast = seg_jaccards_by_min_size(raw, gt, sizes)
    for size, jac in zip(sizes, fast, strict=True):
        ids, slow = M.seg_jaccards(M.drop_small(raw, size), gt)
        np.testing.assert_allclose(jac, slow, rtol=0, atol=1e-15)
    assert gt.max() >= 3 and raw.max() >= 3  # the case has cells to score


def ndi_smooth(a: np.ndarray, sigma: float) -> np.ndarray:
    from scipy import ndimage

    out = ndimage.gaussian_filter(a, sigma)
    return (out - out.min()) / (out.max() - out.min())


@pytest.mark.parametrize("method", METHODS)
def test_choose_instances_maximises_validation_seg(method):
    prob, lab = two_touching_cells(gap=0.6)
    params, scan = choose_instances([prob, prob], [lab, lab], method)
    best = max(row["seg"] for row in scan)
    assert best > 0.9
    assert pooled_seg([params(prob)] * 2, [lab, lab]) == pytest.approx(best)
    # every grid point was tried (the watershed skips seeds at or under the threshold)
    grid = GRIDS[method]
    n = len(grid["threshold"]) * len(grid["min_size"])
    if method == "watershed":
        n = len(grid["min_size"]) * sum(s > t for t in grid["threshold"]
                                        for s in grid["seed_threshold"])
    if method == "distance":
        n *= int(np.prod([len(grid[k]) for k in grid if k not in ("threshold", "min_size")]))
    assert len(scan) == n
    if method == "components":
        assert params.threshold >= 0.6  # p > threshold leaves the faint gap (0.6) out


@pytest.mark.parametrize("method", METHODS)
def test_a_record_knows_whether_it_was_chosen_on_todays_grid(method):
    prob, lab = two_touching_cells(gap=0.6)
    params, scan = choose_instances([prob], [lab], method)
    assert [{k: v for k, v in row.items() if k != "seg"} for row in scan] == grid_points(method)
    record = {"params": params.as_dict(), "chosen_on": "validation", "scan": scan}
    assert scanned_current_grid(record, method)
    # a record written before the grid grew (one setting fewer) is stale, and so is none at all
    assert not scanned_current_grid({**record, "scan": scan[:-1]}, method)
    assert not scanned_current_grid({}, method)
    # fixed parameters were never chosen on a grid
    assert scanned_current_grid({"params": params.as_dict(), "chosen_on": "fixed"}, method)


@pytest.mark.parametrize("method", METHODS)
def test_the_scan_is_the_same_on_any_number_of_threads(method):
    rng = np.random.default_rng(1)
    probs = [ndi_smooth(rng.random((96, 96)), 4) for _ in range(3)]
    labels = [ndimage.label(p > 0.55)[0] for p in probs]
    one = choose_instances(probs, labels, method, workers=1)
    for workers in (2, 3, None):
        assert choose_instances(probs, labels, method, workers=workers) == one
    with pytest.raises(ValueError, match="workers must be >= 1"):
        choose_instances(probs, labels, method, workers=0)


def test_choose_instances_tie_break_is_reproducible():
    prob, lab = two_touching_cells(gap=0.1)
    a, _ = choose_instances([prob], [lab], "components")
    b, _ = choose_instances([prob], [lab], "components")
    assert a == b and a.min_size == min(GRIDS["components"]["min_size"])


def test_choose_instances_rejects_bad_input():
    prob, lab = two_touching_cells()
    with pytest.raises(ValueError, match="2 probability maps but 1 label"):
        choose_instances([prob, prob], [lab])
    with pytest.raises(ValueError, match="at least one"):
        choose_instances([], [])
    with pytest.raises(ValueError, match="method"):
        choose_instances([prob], [lab], "magic")
    with pytest.raises(ValueError, match="unknown parameter"):
        choose_instances([prob], [lab], "components", {"threshold": (0.5,), "sigma": (1,)})


def test_grown_cells_reach_the_lower_level_keep_their_numbers_and_never_merge():
    prob, lab = two_touching_cells(gap=0.6)
    cells = instances_from_probability(prob, method="components", threshold=0.7, min_size=0)
    grown = grow_cells(cells, prob, 0.3)
    assert set(np.unique(grown)) == set(np.unique(cells))  # no cell added, none lost
    assert ((grown > 0) >= (cells > 0)).all()  # every cell keeps its pixels ...
    assert (grown[cells > 0] == cells[cells > 0]).all()
    assert (grown > 0).sum() > (cells > 0).sum()  # ... and gains the margin above 0.3
    assert not (grown[prob <= 0.3] > 0).any()  # nothing below the level joins
    # a threshold at or above the cells' own leaves them as they are
    assert np.array_equal(grow_cells(cells, prob, 0.95), cells)
    assert not grow_cells(np.zeros_like(cells), prob, 0.3).any()
    with pytest.raises(ValueError, match="threshold must be in"):
        grow_cells(cells, prob, 1.0)
    with pytest.raises(ValueError, match="differ in shape"):
        grow_cells(cells[:-1], prob, 0.3)
