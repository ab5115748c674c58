"""Tests of unetlib.metrics: hand-computed cases, scikit-image and py-ctcmetrics cross-checks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from unetlib import metrics as M
from unetlib.paths import data_root

CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)


def _n_components(mask: np.ndarray, conn: int) -> int:
    return ndi.label(mask, structure=CROSS if conn == 4 else np.ones((3, 3), bool))[1]


def _topology(mask: np.ndarray, fg_conn: int = 4) -> tuple[int, int]:
    """(foreground components, background components) with the background padded by one pixel
    so that everything touching the border is one outside component."""
    padded = np.pad(mask, 1)
    return _n_components(padded, fg_conn), _n_components(~padded, 12 - fg_conn)


def _random_labels(rng: np.random.Generator, shape=(48, 48), n=12) -> np.ndarray:
    """Voronoi-like label image with labels 1..n (no zeros)."""
    seeds = rng.integers(0, shape[0], size=(n, 2))
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    d = (yy[None] - seeds[:, 0, None, None]) ** 2 + (xx[None] - seeds[:, 1, None, None]) ** 2
    return d.argmin(axis=0) + 1


def _two_cells(gap: int = 1) -> np.ndarray:
    """Binary 30x40 image: two 20x12 rectangles separated by a ``gap``-pixel background column."""
    t = np.zeros((30, 40), dtype=bool)
    t[5:25, 5:17] = True
    t[5:25, 17 + gap : 29 + gap] = True
    return t


# --------------------------------------------------------------------------- pixel metrics
@pytest.mark.parametrize(
    "pred, true, exp_iou, exp_f1, exp_err",
    [
        ([1, 1, 0, 0], [1, 0, 1, 0], 1 / 3, 0.5, 0.5),
        ([1, 1, 1, 1], [1, 1, 0, 0], 0.5, 2 / 3, 0.5),
        ([0, 0, 0, 0], [0, 0, 0, 0], 1.0, 1.0, 0.0),
        ([0, 0, 0, 0], [0, 1, 0, 0], 0.0, 0.0, 0.25),
        ([[1, 0], [0, 1]], [[1, 0], [0, 1]], 1.0, 1.0, 0.0),
    ],
)
def test_pixel_metrics_by_hand(pred, true, exp_iou, exp_f1, exp_err):
    assert M.iou(pred, true) == pytest.approx(exp_iou)
    assert M.f1(pred, true) == pytest.approx(exp_f1)
    assert M.pixel_error(pred, true) == pytest.approx(exp_err)


@pytest.mark.parametrize("dtype", [bool, np.uint8, np.int32, np.float32])
def test_pixel_metrics_accept_binary_dtypes(dtype):
    rng = np.random.default_rng(0)
    p, t = rng.random((16, 16)) > 0.5, rng.random((16, 16)) > 0.5
    ref = np.count_nonzero(p & t) / np.count_nonzero(p | t)
    assert M.iou(p.astype(dtype), t.astype(dtype)) == pytest.approx(ref)


def test_pixel_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        M.iou(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="threshold it first"):
        M.f1(np.full((4, 4), 0.7), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="NaN"):
        M.pixel_error(np.full((2, 2), np.nan), np.zeros((2, 2)))


def test_isbi_pixel_error_is_one_minus_best_fscore():
    true = np.array([[1, 1, 0, 0]])
    prob = np.array([[0.875, 0.375, 0.25, 0.0]])  # dyadic: 1 - (1 - p) == p exactly
    # t=0.0: pred 1110 -> F = 0.8; t=0.3: pred 1100 -> F = 1; so the error is 0.
    assert M.isbi_pixel_error(prob, true) == pytest.approx(0.0)
    assert M.isbi_pixel_error(prob, true, thresholds=[0.5]) == pytest.approx(1 - 2 / 3)
    assert M.isbi_pixel_error(1 - prob, true, prob_is_boundary=True) == pytest.approx(0.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        M.isbi_pixel_error(prob * 255, true)


# --------------------------------------------------------------------------- Rand and info
def test_rand_scores_hand_example_with_unassigned_pixels():
    # One gt segment of 4 pixels; the segmentation keeps 2 in a segment, 2 unassigned (0) which
    # count as singletons: sum p^2 = 4 + 2, sum t^2 = 16, sum s^2 = 4 + 2 (N^2 normalisation).
    gt = np.array([[1, 1, 1, 1]])
    seg = np.array([[5, 5, 0, 0]])
    v, split, merge = M.rand_scores(seg, gt)
    assert split == pytest.approx(6 / 16)
    assert merge == pytest.approx(1.0)
    assert v == pytest.approx(2 * 0.375 / 1.375)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rand_scores_match_skimage_adapted_rand(seed):
    from skimage.metrics import adapted_rand_error

    rng = np.random.default_rng(seed)
    gt = _random_labels(rng, n=10)
    gt[rng.random(gt.shape) < 0.1] = 0  # gt background is ignored by both
    seg = _random_labels(rng, n=14)  # no zeros: both treat every seg label as a segment
    are, prec, rec = adapted_rand_error(gt, seg, ignore_labels=(0,))
    v, split, merge = M.rand_scores(seg, gt, normalization="pairs")
    assert v == pytest.approx(1 - are, rel=1e-12)
    # scikit-image's "precision" is normalised by the gt marginal, i.e. the split score
    assert split == pytest.approx(prec, rel=1e-12)
    assert merge == pytest.approx(rec, rel=1e-12)
    # the challenge's N^2 normalisation differs from pair counting only by O(1/segment size)
    assert M.rand_scores(seg, gt)[0] == pytest.approx(v, abs=0.02)


def test_rand_and_info_identical_split_merge():
    rng = np.random.default_rng(3)
    gt = _random_labels(rng)
    assert M.rand_scores(gt * 7, gt) == pytest.approx((1.0, 1.0, 1.0))
    assert M.info_scores(gt * 7, gt) == pytest.approx((1.0, 1.0, 1.0))
    # merge everything into one segment: no split error, merge error only
    one = np.ones_like(gt)
    for scores in (M.rand_scores(one, gt), M.info_scores(one, gt)):
        assert scores[1] == pytest.approx(1.0) and scores[2] < 0.5
    # split every gt segment into single pixels: no merge error, split error only
    pixels = np.arange(1, gt.size + 1).reshape(gt.shape)
    for scores in (M.rand_scores(pixels, gt), M.info_scores(pixels, gt)):
        assert scores[2] == pytest.approx(1.0) and scores[1] < 0.5


@pytest.mark.parametrize("seed", [0, 1])
def test_info_scores_match_skimage_conditional_entropies(seed):
    from skimage.metrics import variation_of_information

    rng = np.random.default_rng(seed)
    gt = _random_labels(rng, n=9)
    gt[rng.random(gt.shape) < 0.1] = 0
    seg = _random_labels(rng, n=13)
    h_s_given_t, h_t_given_s = variation_of_information(gt, seg, ignore_labels=(0,))

    def entropy_bits(x):
        p = np.unique(x, return_counts=True)[1] / x.size
        return -np.sum(p * np.log2(p))

    fg = gt != 0
    h_s, h_t = entropy_bits(seg[fg]), entropy_bits(gt[fg])
    v, split, merge = M.info_scores(seg, gt)
    assert split == pytest.approx(1 - h_s_given_t / h_s, rel=1e-9)
    assert merge == pytest.approx(1 - h_t_given_s / h_t, rel=1e-9)
    assert v == pytest.approx(2 * split * merge / (split + merge))


def test_rand_info_reject_bad_input():
    with pytest.raises(ValueError, match="no foreground"):
        M.rand_scores(np.ones((3, 3), int), np.zeros((3, 3), int))
    with pytest.raises(ValueError, match="normalization"):
        M.rand_scores(np.ones((3, 3), int), np.ones((3, 3), int), normalization="x")
    with pytest.raises(ValueError, match="negative"):
        M.info_scores(-np.ones((3, 3), int), np.ones((3, 3), int))


# --------------------------------------------------------------------------- ISBI protocol
@pytest.mark.parametrize("thin", [True, False])
def test_isbi_scores_perfect_and_merged(thin):
    gt = _two_cells(gap=2).astype(np.uint8) * 255
    perfect = gt / 255.0
    s = M.isbi_scores(perfect, gt, thin=thin)
    for key in ("rand_error", "info_error", "pixel_error", "warping_error"):
        assert s[key] == pytest.approx(0.0, abs=1e-12), key
    merged = perfect.copy()
    merged[10:12, 17:19] = 1.0  # a 2-pixel-high bridge joins the two cells
    s = M.isbi_scores(merged, gt, thin=thin)
    assert s["rand_error"] > 0.3 and s["info_error"] > 0.3
    assert s["warping_error"] == pytest.approx(2 / gt.size)  # the two bridge pixels
    assert s["pixel_error"] > 0.0
    boundary = M.isbi_scores(1.0 - merged, gt, thin=thin, prob_is_boundary=True)
    assert boundary["rand_error"] == pytest.approx(s["rand_error"])


def test_isbi_scores_on_real_label_with_noise():
    path = data_root() / "isbi2012" / "train" / "label" / "0.png"
    if not path.is_file():
        pytest.skip(f"ISBI 2012 data not found at {path}")
    import imageio.v3 as iio

    gt = iio.imread(path)[:192, :192]
    rng = np.random.default_rng(0)
    prob = np.clip(
        ndi.gaussian_filter((gt > 0).astype(float), 1.5) + rng.normal(0, 0.15, gt.shape), 0, 1
    )
    s = M.isbi_scores(prob, gt, warping_thresholds=(0.4, 0.5))
    assert 0.0 < s["rand_error"] < 0.2 and 0.0 < s["info_error"] < 0.2
    assert 0.0 < s["pixel_error"] < 0.2 and 0.0 < s["warping_error"] < 0.1
    # thresholds are from the grid, and the best V_Rand is at least that of threshold 0.5
    assert s["rand_threshold"] in M.ISBI_THRESHOLDS
    one = M.isbi_scores(prob, gt, thresholds=[0.5], warping_thresholds=None)
    assert "warping_error" not in one and one["rand_error"] >= s["rand_error"]


# --------------------------------------------------------------------------- simple points
def _code(nbhd: str) -> int:
    """3x3 pattern (row-major string, centre ignored) -> neighbourhood code."""
    grid = np.array([c == "#" for c in nbhd.replace(" ", "")]).reshape(3, 3)
    return sum(int(grid[1 + dy, 1 + dx]) << k for k, (dy, dx) in enumerate(M._OFFSETS))


@pytest.mark.parametrize(
    "pattern, simple4, simple8",
    [
        ("... .x. ...", False, False),  # isolated pixel: flipping deletes/creates an object
        ("### #x# ###", False, False),  # interior pixel: flipping creates/fills a hole
        ("... .x# ...", True, True),  # end of a line
        ("#.. .x. ...", False, True),  # diagonal neighbour only: connected only under 8
        (".#. .x. .#.", False, False),  # on a vertical line: removal splits it
        ("### #x# ...", True, True),  # straight boundary
        ("#.# .x. ...", False, False),  # two diagonal arms: 2 objects (4) / split (8)
        ("##. #x. ...", True, True),  # convex corner
        ("#.. .x. ..#", False, False),  # diagonal line: split under 8, two objects under 4
    ],
)
def test_simple_point_lut_canonical_configurations(pattern, simple4, simple8):
    code = _code(pattern)
    assert bool(M.simple_point_lut(4)[code]) is simple4
    assert bool(M.simple_point_lut(8)[code]) is simple8


def test_simple_point_lut_is_dual_and_matches_brute_force():
    lut4, lut8 = M.simple_point_lut(4), M.simple_point_lut(8)
    codes = np.arange(256)
    # complementing a configuration swaps the roles of foreground and background
    assert np.array_equal(lut4, lut8[255 - codes])
    # brute force: embed the 3x3 neighbourhood in empty space and compare the global counts of
    # foreground and background components with the centre off and on, for all 256 codes
    for fg_conn, lut in ((4, lut4), (8, lut8)):
        for code in range(256):
            win = np.zeros((7, 7), dtype=bool)
            for k, (dy, dx) in enumerate(M._OFFSETS):
                win[3 + dy, 3 + dx] = bool(code >> k & 1)
            on = win.copy()
            on[3, 3] = True
            assert lut[code] == (_topology(win, fg_conn) == _topology(on, fg_conn)), code


# --------------------------------------------------------------------------- warping error
def test_warping_error_zero_for_identical_and_boundary_shifts():
    t = _two_cells(gap=3)
    assert M.warping_error(t, t) == 0.0
    for axis, shift in [(0, 1), (1, -1), (0, 2)]:
        p = np.roll(t, shift, axis=axis)
        assert np.count_nonzero(p != t) > 0
        assert M.warping_error(p, t) == 0.0, (axis, shift)
    grown = ndi.binary_dilation(t, CROSS)  # boundary moved out by one pixel, gap stays open
    assert M.warping_error(grown, t) == 0.0


def test_warping_error_counts_merges_and_splits():
    t = _two_cells(gap=1)
    merged = t.copy()
    merged[14, 17] = True  # one-pixel bridge over the one-pixel gap
    r = M.warping_error(merged, t, return_details=True)
    assert r.error == pytest.approx(1 / t.size)
    assert (r.merges, r.splits, r.other) == (1, 0, 0)
    cut = t.copy()
    cut[15, 5:17] = False  # one-pixel cut across the left cell
    r = M.warping_error(cut, t, return_details=True)
    assert r.error == pytest.approx(1 / t.size)  # the rest of the cut warps away
    assert (r.merges, r.splits, r.other) == (0, 1, 0)
    # deleting a whole cell leaves one pixel that cannot be removed without a topology change
    gone = t.copy()
    gone[:, 17:] = False
    r = M.warping_error(gone, t, return_details=True)
    assert r.error == pytest.approx(1 / t.size) and r.other == 1


@pytest.mark.parametrize("fg_conn", [4, 8])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_warped_ground_truth_keeps_topology_and_lowers_disagreement(fg_conn, seed):
    rng = np.random.default_rng(seed)
    t = ndi.gaussian_filter(rng.random((64, 64)), 3) > 0.5
    prob = np.clip(ndi.gaussian_filter(t.astype(float), 1) + rng.normal(0, 0.25, t.shape), 0, 1)
    r = M.warping_error(prob, t, fg_connectivity=fg_conn, return_details=True)
    assert _topology(r.warped, fg_conn) == _topology(t, fg_conn)
    p = prob > 0.5
    assert np.array_equal(r.mismatches, r.warped != p)
    assert 0 < r.error <= np.mean(p != t)
    assert r.flips > 0
    # a binary prediction gives the same result as the map it came from, up to flip order
    assert M.warping_error(p, t, fg_connectivity=fg_conn) == pytest.approx(r.error, abs=0.01)


def test_warping_error_fg_connectivity_matters_for_diagonal_contacts():
    t = np.zeros((12, 12), dtype=bool)
    t[2:6, 2:6] = True
    t[6:10, 6:10] = True  # two squares touching at a corner: 2 objects (4) or 1 object (8)
    p = t.copy()
    p[5, 6] = True  # fill the notch: joins them edge-wise
    assert M.warping_error(p, t, fg_connectivity=4) > 0
    assert M.warping_error(p, t, fg_connectivity=8) == 0.0


def test_warping_error_rejects_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        M.warping_error(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="fg_connectivity"):
        M.warping_error(np.zeros((4, 4)), np.zeros((4, 4)), fg_connectivity=6)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        M.warping_error(np.full((4, 4), 2.0), np.zeros((4, 4)))


# --------------------------------------------------------------------------- SEG
def test_seg_measure_by_hand():
    gt = np.zeros((10, 10), dtype=np.int32)
    gt[0:4, 0:4] = 1  # 16 px
    gt[6:10, 6:10] = 2  # 16 px
    assert M.seg_measure(gt, gt) == 1.0
    assert M.seg_measure(np.zeros_like(gt), gt) == 0.0
    half = np.zeros_like(gt)
    half[0:2, 0:4] = 5  # exactly half of cell 1: not a match
    half[6:10, 6:10] = 9
    ids, jac = M.seg_jaccards(half, gt)
    assert ids.tolist() == [1, 2] and jac.tolist() == [0.0, 1.0]
    more = half.copy()
    more[2, 0] = 5  # 9 of 16 > half: matched, Jaccard 9/16
    more[4, 0] = 5  # one pixel outside the cell enlarges the union: 9 / 17
    assert M.seg_jaccards(more, gt)[1].tolist() == pytest.approx([9 / 17, 1.0])
    assert M.seg_measure(more, gt) == pytest.approx((9 / 17 + 1) / 2)
    assert np.isnan(M.seg_measure(gt, np.zeros_like(gt)))


def _ctc_seg(tmp_path, pred: np.ndarray, gt: np.ndarray) -> float:
    tifffile = pytest.importorskip("tifffile")
    from ctc_metrics.metrics import seg
    from ctc_metrics.utils.representations import match

    ref, comp = tmp_path / "ref.tif", tmp_path / "comp.tif"
    tifffile.imwrite(ref, gt.astype(np.uint16))
    tifffile.imwrite(comp, pred.astype(np.uint16))
    labels_ref, _, _, _, ious = match(str(ref), str(comp))
    return seg([labels_ref], [ious])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_seg_measure_matches_py_ctcmetrics_synthetic(tmp_path, seed):
    pytest.importorskip("ctc_metrics")
    rng = np.random.default_rng(seed)
    gt = _random_labels(rng, n=15)
    gt[rng.random(gt.shape) < 0.05] = 0
    pred = np.roll(_random_labels(np.random.default_rng(seed), n=15), 2, axis=1)
    pred[rng.random(pred.shape) < 0.3] = 0
    assert M.seg_measure(pred, gt) == pytest.approx(_ctc_seg(tmp_path, pred, gt), abs=1e-12)


def test_seg_measure_matches_py_ctcmetrics_on_hela(tmp_path):
    pytest.importorskip("ctc_metrics")
    root = data_root() / "DIC-C2DH-HeLa"
    gt_files = sorted((root / "01_GT" / "SEG").glob("man_seg*.tif"))[:3]
    if not gt_files:
        pytest.skip(f"DIC-C2DH-HeLa gold truth not found under {root}")
    import imageio.v3 as iio  # the CTC files are LZW TIFFs: Pillow decodes them

    for f in gt_files:
        gt = iio.imread(f, plugin="pillow")
        st = iio.imread(root / "01_ST" / "SEG" / f.name, plugin="pillow")
        assert M.seg_measure(st, gt) == pytest.approx(_ctc_seg(tmp_path, st, gt), abs=1e-12)


# --------------------------------------------------------------------------- instance counts
def test_split_merge_counts_by_hand():
    gt = np.zeros((20, 30), dtype=np.int32)
    gt[2:8, 2:8] = 1
    gt[2:8, 9:15] = 2  # cells 1 and 2 will be merged
    gt[10:18, 2:14] = 3  # cell 3 will be split
    gt[10:18, 20:28] = 4  # cell 4 will be missed
    pred = np.zeros_like(gt)
    pred[2:8, 2:15] = 1  # covers cells 1 and 2
    pred[10:18, 2:8] = 2
    pred[10:18, 8:14] = 3  # two halves of cell 3
    pred[0:2, 25:30] = 4  # in the background
    c = M.split_merge_counts(pred, gt)
    assert c == {
        "n_gt": 4,
        "n_pred": 4,
        "matched": 0,
        "splits": 1,
        "merges": 1,
        "missed": 1,
        "spurious": 1,
    }
    assert M.split_merge_counts(gt, gt)["matched"] == 4
    with pytest.raises(ValueError, match="min_overlap"):
        M.split_merge_counts(pred, gt, min_overlap=0.3)


def test_instance_labels_from_probability():
    prob = np.zeros((10, 10))
    prob[1:4, 1:4] = 0.9  # 9 px
    prob[6, 6] = 0.8  # 1 px
    prob[7, 7] = 0.8  # diagonal to the previous one
    lab = M.instance_labels_from_probability(prob)
    assert lab.dtype == np.int32 and lab.max() == 3
    assert M.instance_labels_from_probability(prob, connectivity=8).max() == 2
    big = M.instance_labels_from_probability(prob, min_size=2)
    assert big.max() == 1 and np.count_nonzero(big) == 9
    assert M.instance_labels_from_probability(prob, threshold=0.85).max() == 1


@pytest.mark.parametrize("kind", ["labels", "bool", "prob"])
def test_segmentation_report(kind):
    gt = np.zeros((12, 12), dtype=np.int32)
    gt[1:5, 1:5] = 1
    gt[7:11, 7:11] = 2
    pred = {"labels": gt * 3, "bool": gt > 0, "prob": (gt > 0) * 0.9}[kind]
    r = M.segmentation_report(pred, gt)
    assert r["iou"] == 1.0 and r["f1"] == 1.0 and r["pixel_error"] == 0.0
    assert r["seg"] == 1.0 and r["splits"] == 0 and r["merges"] == 0 and r["matched"] == 2


def test_split_merge_ids_name_the_cells_the_counts_count():
    gt = np.zeros((12, 20), np.int32)
    gt[2:10, 1:6], gt[2:10, 6:11], gt[2:10, 13:19] = 1, 2, 3
    pred = np.zeros_like(gt)
    pred[2:10, 1:11] = 7  # one blob over cells 1 and 2: a merge
    pred[2:10, 13:16], pred[2:10, 16:19] = 4, 5  # cell 3 cut in halves: a split
    merged, split = M.split_merge_ids(pred, gt)
    assert merged.tolist() == [7] and split.tolist() == [3]
    counts = M.split_merge_counts(pred, gt)
    assert (counts["merges"], counts["splits"]) == (1, 1)
    with pytest.raises(ValueError, match="min_overlap"):
        M.split_merge_ids(pred, gt, min_overlap=0.4)


# --------------------------------------------------------------------------- SEG's shortfall
def test_seg_breakdown_by_hand():
    gt = np.zeros((20, 40), dtype=np.int32)
    gt[2:8, 2:8] = 1
    gt[2:8, 9:15] = 2  # cells 1 and 2 will be merged
    gt[10:18, 2:14] = 3  # cell 3 will be split in two halves (neither holds more than half)
    gt[10:18, 20:28] = 4  # cell 4 will be missed
    gt[2:12, 30:40] = 5  # cell 5 found alone, 2 of its 10 rows left out
    gt[14:18, 30:34] = 6  # cell 6 found alone, 4 pixels added
    pred = np.zeros_like(gt)
    pred[2:8, 2:15] = 1
    pred[10:18, 2:8] = 2
    pred[10:18, 8:14] = 3
    pred[4:12, 30:40] = 4
    pred[14:18, 30:35] = 5
    b = M.seg_breakdown(pred, gt)
    cat = b["categories"]
    assert b["cells"] == 6
    assert cat["merged"]["cells"] == 2 and cat["merged"]["mean_jaccard"] == pytest.approx(36 / 78)
    assert cat["split"] == {"cells": 1, "mean_jaccard": 0.0, "loss": pytest.approx(1 / 6)}
    assert cat["missed"] == {"cells": 1, "mean_jaccard": 0.0, "loss": pytest.approx(1 / 6)}
    assert cat["one-to-one"]["cells"] == 2
    assert cat["one-to-one"]["mean_jaccard"] == pytest.approx((0.8 + 16 / 20) / 2)
    assert b["one_to_one_loss"] == {"left_out": pytest.approx(0.2 / 6),
                                    "added": pytest.approx(4 / 20 / 6)}
    assert b["seg"] == pytest.approx(M.seg_measure(pred, gt))
    perfect = M.seg_breakdown(gt, gt)
    assert perfect["seg"] == 1.0 and perfect["categories"]["one-to-one"]["cells"] == 6
    assert all(c["loss"] == 0.0 for c in perfect["categories"].values())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_seg_breakdown_losses_add_up_to_one_minus_pooled_seg(seed):
    rng = np.random.default_rng(seed)
    preds, gts = [], []
    for _ in range(3):  # blobs with random overlaps: every category occurs somewhere
        gt = ndi.label(ndi.gaussian_filter(rng.random((64, 64)), 3) > 0.5)[0]
        pred = ndi.label(ndi.gaussian_filter(rng.random((64, 64)), 3) > 0.5)[0]
        pred[gt > 0] = np.where(rng.random() < 0.5, pred[gt > 0], gt[gt > 0] + pred.max())
        preds.append(pred)
        gts.append(gt)
    b = M.seg_breakdown(preds, gts)
    jac = np.concatenate([M.seg_jaccards(p, g)[1] for p, g in zip(preds, gts, strict=True)])
    assert b["cells"] == jac.size
    assert b["seg"] == pytest.approx(jac.mean(), abs=1e-12)
    assert sum(c["loss"] for c in b["categories"].values()) == pytest.approx(1 - b["seg"])
    one = b["categories"]["one-to-one"]
    assert sum(b["one_to_one_loss"].values()) == pytest.approx(
        one["cells"] * (1 - one["mean_jaccard"]) / b["cells"] if one["cells"] else 0.0)


def test_seg_breakdown_rejects_bad_input():
    gt = np.zeros((8, 8), np.int32)
    gt[2:5, 2:5] = 1
    with pytest.raises(ValueError, match="2 predicted label images for 1"):
        M.seg_breakdown([gt, gt], [gt])
    with pytest.raises(ValueError, match=r"gt_labels \(frame 1\)"):
        M.seg_breakdown([gt, gt], [gt, gt[:4]])
    with pytest.raises(ValueError, match="no cell"):
        M.seg_breakdown(gt, np.zeros_like(gt))
