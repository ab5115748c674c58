"""Tests for unetlib.weights: the weight map of the paper's eq. 2 against a naive reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.measure import label as cc_label

from unetlib.paths import data_root
from unetlib.weights import (
    binary_target,
    border_weight,
    class_weight_map,
    cutoff_distance,
    separate_touching,
    two_nearest_distances,
    weight_map,
)

# --------------------------------------------------------------------------------------------
# naive references (deliberately simple, independent of the implementation)


def naive_separate(labels: np.ndarray, connectivity: int = 2) -> np.ndarray:
    """Pixel loop: a cell pixel with a neighbour in another cell becomes background."""
    h, w = labels.shape
    out = labels.copy()
    for y in range(h):
        for x in range(w):
            i = labels[y, x]
            if i == 0:
                continue
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    if connectivity == 1 and abs(dy) + abs(dx) != 1:
                        continue
                    yy, xx = y + dy, x + dx
                    if 0 <= yy < h and 0 <= xx < w and labels[yy, xx] not in (0, i):
                        out[y, x] = 0
    return out


def naive_two_nearest(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One full-image Euclidean distance transform per cell, the two smallest per pixel."""
    ids = [i for i in np.unique(labels) if i != 0]
    stack = [ndimage.distance_transform_edt(labels != i) for i in ids]
    stack += [np.full(labels.shape, np.inf)] * 2
    d = np.sort(np.stack(stack), axis=0)
    return d[0], d[1]


def naive_weight_map(labels, w0=10.0, sigma=5.0, class_weights="balanced", separate=True):
    lab = naive_separate(labels) if separate else labels
    d1, d2 = naive_two_nearest(lab)
    fg = lab > 0
    if class_weights is None:
        wc = np.ones(lab.shape)
    elif class_weights == "balanced":
        n, n_fg = fg.size, fg.sum()
        n_bg = n - n_fg
        k = int(n_fg > 0) + int(n_bg > 0)
        wc = np.where(fg, n / (k * max(n_fg, 1)), n / (k * max(n_bg, 1)))
    else:
        wc = np.where(fg, class_weights[1], class_weights[0])
    term = np.where(fg, 0.0, w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2)))
    return (wc + term).astype(np.float32)


# --------------------------------------------------------------------------------------------
# random instance images


def voronoi_cells(shape, n, seed, gap_prob=0.5, radius=None) -> np.ndarray:
    """Touching cells (Voronoi tessellation), some shrunk away from their neighbours."""
    rng = np.random.default_rng(seed)
    h, w = shape
    pts = np.stack([rng.integers(0, h, n), rng.integers(0, w, n)], axis=1)
    not_seed = np.ones(shape, bool)
    not_seed[pts[:, 0], pts[:, 1]] = False
    dist, (iy, ix) = ndimage.distance_transform_edt(not_seed, return_indices=True)
    seed_id = np.zeros(shape, np.int64)
    seed_id[pts[:, 0], pts[:, 1]] = np.arange(1, n + 1)
    lab = seed_id[iy, ix]
    if radius is not None:
        lab[dist > radius] = 0
    # shrink a random subset of cells by 1-3 px so that some pairs touch and others do not
    inner = ndimage.distance_transform_edt(separate_touching(lab, 1) == lab)
    shrink = np.where(rng.random(n + 1) < gap_prob, rng.integers(1, 4, n + 1), 0)
    lab[inner < shrink[lab]] = 0
    return lab


def gapped_disks(shape, n, seed) -> np.ndarray:
    """Non-touching disks (gaps of at least one pixel)."""
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, np.int64)
    yy, xx = np.indices(shape)
    for i in range(1, n + 1):
        cy, cx, r = rng.integers(0, shape[0]), rng.integers(0, shape[1]), rng.integers(2, 7)
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        grown = ndimage.binary_dilation(disk, structure=np.ones((3, 3), bool))
        if not (lab[grown] > 0).any():
            lab[disk] = i
    return lab


def one_cell(shape) -> np.ndarray:
    lab = np.zeros(shape, np.int64)
    lab[5:15, 8:20] = 7
    return lab


CASES = {
    "touching": lambda: voronoi_cells((48, 64), 12, seed=0, gap_prob=0.0),
    "mixed": lambda: voronoi_cells((48, 64), 15, seed=1),
    "sparse": lambda: voronoi_cells((40, 56), 6, seed=2, radius=9),
    "gapped": lambda: gapped_disks((48, 64), 10, seed=3),
    "one_cell": lambda: one_cell((32, 40)),
    "none": lambda: np.zeros((24, 30), np.int64),
    "full": lambda: np.full((16, 20), 3, np.int64),
}


# --------------------------------------------------------------------------------------------
# agreement with the naive reference


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize(
    "w0, sigma, class_weights",
    [(10.0, 5.0, "balanced"), (10.0, 5.0, None), (5.0, 2.0, {0: 1.0, 1: 3.0})],
)
def test_weight_map_matches_naive(case, w0, sigma, class_weights):
    labels = CASES[case]()
    got = weight_map(labels, w0=w0, sigma=sigma, class_weights=class_weights)
    want = naive_weight_map(labels, w0, sigma, class_weights)
    assert got.dtype == np.float32 and got.shape == labels.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("case", ["touching", "mixed", "gapped"])
def test_weight_map_without_separation_matches_naive(case):
    labels = CASES[case]()
    got = weight_map(labels, separate=False)
    np.testing.assert_allclose(got, naive_weight_map(labels, separate=False), rtol=0, atol=1e-5)


@pytest.mark.parametrize("case", sorted(CASES))
def test_two_nearest_distances_exact(case):
    labels = CASES[case]()
    d1, d2 = two_nearest_distances(labels)
    n1, n2 = naive_two_nearest(labels)
    np.testing.assert_array_equal(d1, n1)
    np.testing.assert_array_equal(d2, n2)


def test_two_nearest_distances_on_a_stack():
    images = [CASES[c]()[:24, :30] for c in ("mixed", "gapped", "none")]
    d1, d2 = two_nearest_distances(np.stack(images), max_distance=6.0)
    for n, im in enumerate(images):
        n1, n2 = naive_two_nearest(im)
        np.testing.assert_array_equal(d1[n], np.where(n1 <= 6.0, n1, np.inf))
        np.testing.assert_array_equal(d2[n], np.where(n2 <= 6.0, n2, np.inf))
    with pytest.raises(ValueError, match="max_distance"):
        two_nearest_distances(images[0], max_distance=-1.0)


@pytest.mark.parametrize("max_distance", [0.0, 1.0, 3.5, 10.0])
def test_two_nearest_distances_cutoff_is_exact_below_it(max_distance):
    labels = voronoi_cells((48, 64), 15, seed=4)
    d1, d2 = two_nearest_distances(labels, max_distance=max_distance)
    n1, n2 = naive_two_nearest(labels)
    np.testing.assert_array_equal(d1, np.where(n1 <= max_distance, n1, np.inf))
    np.testing.assert_array_equal(d2, np.where(n2 <= max_distance, n2, np.inf))


def _random_pieces(rng: np.random.Generator) -> np.ndarray:
    """Sparse random ids on a random shape: cells of one id in several pieces, not convex,
    touching the image border, and ids with gaps (the cases a per-cell window can get wrong)."""
    h, w = (int(v) for v in rng.integers(1, 40, 2))
    ids = rng.integers(1, 7, (h, w)) * 3
    return np.where(rng.random((h, w)) < rng.uniform(0.02, 0.3), ids, 0)


@pytest.mark.parametrize("max_distance", [math.inf, 2.5, 7.0])
def test_two_nearest_kernel_equals_naive_on_random_pieces(max_distance):
    # the compiled kernel (unetlib._two_nearest): one window per id, clipped at the border,
    # must give scipy's distances to the last bit wherever they are <= max_distance
    rng = np.random.default_rng(int(max_distance) if math.isfinite(max_distance) else 99)
    for _ in range(40):
        labels = _random_pieces(rng)
        d1, d2 = two_nearest_distances(labels, max_distance=max_distance)
        n1, n2 = naive_two_nearest(labels)
        np.testing.assert_array_equal(d1, np.where(n1 <= max_distance, n1, np.inf))
        np.testing.assert_array_equal(d2, np.where(n2 <= max_distance, n2, np.inf))


def test_two_nearest_distances_wide_image_uses_64_bit_squares():
    # (h + w)^2 above int32's range: the squared distances are kept in int64
    labels = np.zeros((1, 46_400), np.int64)
    labels[0, [10, 11]] = 1
    labels[0, 30_000] = 2
    labels[0, 46_390] = 5
    d1, d2 = two_nearest_distances(labels)
    n1, n2 = naive_two_nearest(labels)
    np.testing.assert_array_equal(d1, n1)
    np.testing.assert_array_equal(d2, n2)
    assert d2[0, 0] == 30_000 - 0  # far beyond int32's square root


def test_cutoff_error_is_bounded_by_tol():
    labels = separate_touching(voronoi_cells((64, 64), 10, seed=5, radius=12))
    exact = border_weight(labels, tol=0.0)
    for tol in (1e-3, 1e-7):
        approx = border_weight(labels, tol=tol)
        assert np.abs(approx - exact).max() <= tol + 1e-6  # + float32 rounding
    assert cutoff_distance(10.0, 5.0, 1e-7) == pytest.approx(5 * math.sqrt(2 * math.log(1e8)))
    assert cutoff_distance(10.0, 5.0, 0.0) == math.inf


def test_stack_is_processed_per_image():
    images = [CASES[c]()[:24, :30] for c in ("touching", "gapped", "one_cell", "none")]
    stack = np.stack(images)
    got = weight_map(stack)
    assert got.shape == stack.shape
    for n, im in enumerate(images):
        np.testing.assert_array_equal(got[n], weight_map(im))
        np.testing.assert_allclose(got[n], naive_weight_map(im), rtol=0, atol=1e-5)


def test_real_hela_frame_matches_naive():
    path = data_root() / "DIC-C2DH-HeLa" / "01_GT" / "SEG" / "man_seg002.tif"
    if not path.is_file():
        pytest.skip(f"real data not found: {path}")
    PIL = pytest.importorskip("PIL.Image")  # tifffile needs imagecodecs for these LZW files
    labels = np.asarray(PIL.open(path))[::2, ::2].astype(np.int64)  # 256x256 keeps it quick
    assert len(np.unique(labels)) > 5
    got = weight_map(labels)
    np.testing.assert_allclose(got, naive_weight_map(labels), rtol=0, atol=1e-5)


# --------------------------------------------------------------------------------------------
# the border term on constructed cases


@pytest.mark.parametrize("gap", [1, 2, 5])
def test_border_term_between_two_bars_is_analytic(gap):
    # two vertical bars, `gap` background columns apart: in between, d1 + d2 = gap + 1
    labels = np.zeros((20, 30), np.int64)
    labels[:, 5:10] = 1
    labels[:, 10 + gap : 15 + gap] = 2
    w = weight_map(labels, w0=10.0, sigma=5.0, class_weights=None)
    expected = 10.0 * math.exp(-((gap + 1) ** 2) / 50.0)
    np.testing.assert_allclose(w[:, 10 : 10 + gap] - 1, expected, rtol=1e-6)
    assert np.all(w[labels > 0] == 1.0)  # no border term on cells


def test_class_weights_none_minus_one_is_border_term():
    labels = voronoi_cells((48, 64), 15, seed=6)
    w = weight_map(labels, class_weights=None)
    border = border_weight(separate_touching(labels))
    np.testing.assert_array_equal(w, np.float32(1) + border)  # same float32 operation
    np.testing.assert_allclose(w - 1, border, rtol=0, atol=1e-6)  # up to float32 rounding
    assert w.min() == 1.0 and w.max() > 5.0


def test_border_term_needs_two_cells():
    assert np.all(border_weight(one_cell((32, 40))) == 0)
    assert np.all(border_weight(np.zeros((8, 8), np.int64)) == 0)
    assert np.all(weight_map(one_cell((32, 40)), class_weights=None) == 1)


def test_weight_map_is_invariant_to_ids_and_transpose():
    labels = voronoi_cells((40, 48), 12, seed=7)
    perm = np.random.default_rng(0).permutation(13) * 1000 + 3
    perm[0] = 0
    w = weight_map(labels)
    np.testing.assert_array_equal(weight_map(perm[labels]), w)
    np.testing.assert_array_equal(weight_map(labels.T), w.T)


# --------------------------------------------------------------------------------------------
# separation


@pytest.mark.parametrize("connectivity", [1, 2])
def test_adjacent_rectangles_get_a_gap(connectivity):
    labels = np.zeros((10, 12), np.int32)
    labels[2:8, 1:6] = 1
    labels[2:8, 6:11] = 2
    sep = separate_touching(labels, connectivity)
    assert sep.dtype == labels.dtype
    assert np.all(sep[2:8, 5:7] == 0)  # both sides of the contact line removed
    assert np.all(sep[2:8, 1:5] == 1) and np.all(sep[2:8, 7:11] == 2)
    assert cc_label(sep > 0, connectivity=2).max() == 2


def test_diagonal_contact_depends_on_connectivity():
    labels = np.zeros((6, 6), np.int32)
    labels[1:3, 1:3] = 1
    labels[3:5, 3:5] = 2  # corners (2, 2) and (3, 3) touch diagonally
    assert np.array_equal(separate_touching(labels, connectivity=1), labels)
    sep = separate_touching(labels, connectivity=2)
    assert sep[2, 2] == 0 and sep[3, 3] == 0
    assert (sep > 0).sum() == (labels > 0).sum() - 2


@pytest.mark.parametrize("case", ["gapped", "one_cell", "none", "full"])
def test_separation_leaves_non_touching_cells_unchanged(case):
    labels = CASES[case]()
    np.testing.assert_array_equal(separate_touching(labels), labels)


@pytest.mark.parametrize("connectivity", [1, 2])
@pytest.mark.parametrize("seed", [0, 1])
def test_separation_matches_pixel_loop(connectivity, seed):
    labels = voronoi_cells((32, 40), 10, seed=seed, gap_prob=0.3)
    np.testing.assert_array_equal(
        separate_touching(labels, connectivity), naive_separate(labels, connectivity)
    )


def test_binary_target_separates_touching_cells():
    labels = voronoi_cells((64, 64), 8, seed=8, gap_prob=0.0)  # all cells touch, all thick
    target = binary_target(labels)
    assert target.dtype == np.uint8 and set(np.unique(target)) <= {0, 1}
    comps = cc_label(target, connectivity=2)
    # no connected component of the target holds pixels of two cells
    for c in range(1, comps.max() + 1):
        assert len(np.unique(labels[comps == c])) == 1
    assert len(np.unique(labels[target > 0])) == 8


# --------------------------------------------------------------------------------------------
# class balance


@pytest.mark.parametrize("case", ["touching", "mixed", "gapped", "one_cell"])
def test_balanced_classes_carry_equal_total_weight(case):
    target = binary_target(CASES[case]())
    wc = class_weight_map(target)
    total = target.size
    np.testing.assert_allclose(wc[target == 1].sum(), total / 2, rtol=1e-5)
    np.testing.assert_allclose(wc[target == 0].sum(), total / 2, rtol=1e-5)
    np.testing.assert_allclose(wc.sum(), total, rtol=1e-5)


@pytest.mark.parametrize("case", ["none", "full"])
def test_balanced_single_class_gets_weight_one(case):
    target = binary_target(CASES[case]())
    assert np.all(class_weight_map(target) == 1.0)
    assert np.all(weight_map(CASES[case]()) == 1.0)


def test_fixed_class_weights_and_stack_balance_per_image():
    target = binary_target(CASES["mixed"]())
    wc = class_weight_map(target, {0: 0.5, 1: 2.0})
    assert np.all(wc[target == 1] == 2.0) and np.all(wc[target == 0] == 0.5)
    stack = np.stack([target, np.zeros_like(target)])
    wcs = class_weight_map(stack)
    np.testing.assert_array_equal(wcs[0], class_weight_map(target))
    assert np.all(wcs[1] == 1.0)


# --------------------------------------------------------------------------------------------
# edge cases and bad input


def test_huge_and_non_contiguous_ids():
    small = np.zeros((20, 24), np.int64)
    small[2:9, 2:10], small[2:9, 10:20], small[12:18, 4:14] = 1, 2, 3
    want = weight_map(small)
    for ids in ([0, 5, 2**31 - 1, 77], [0, 2**40, 3, 2**62]):
        np.testing.assert_array_equal(weight_map(np.asarray(ids, np.int64)[small]), want)
    big = np.asarray([0, 2**63 + 7, 2**64 - 1, 1], np.uint64)[small]
    np.testing.assert_array_equal(weight_map(big), want)
    np.testing.assert_array_equal(weight_map(small.astype(np.uint8)), want)


def test_integral_float_labels_are_accepted():
    labels = voronoi_cells((32, 40), 8, seed=9)
    np.testing.assert_array_equal(weight_map(labels.astype(np.float32)), weight_map(labels))
    assert separate_touching(labels.astype(np.float64)).dtype == np.int64


@pytest.mark.parametrize(
    "bad, error, match",
    [
        (np.array([[0.0, 1.5], [2.0, 0.0]]), ValueError, "labels.*integral"),
        (np.array([[0, -1], [2, 0]]), ValueError, "labels.*non-negative"),
        (np.array([[0.0, -2.0], [2.0, 0.0]]), ValueError, "labels.*non-negative"),
        (np.array([[0.0, np.nan], [2.0, 0.0]]), ValueError, "labels.*finite"),
        (np.zeros((4, 4), bool), TypeError, "labels.*bool"),
        (np.zeros(5, np.int64), ValueError, "labels.*shape"),
        (np.zeros((2, 2, 4, 4), np.int64), ValueError, "labels.*shape"),
        (np.array([["a", "b"]]), TypeError, "labels.*dtype"),
    ],
)
def test_bad_labels_raise(bad, error, match):
    with pytest.raises(error, match=match):
        weight_map(bad)
    with pytest.raises(error, match=match):
        separate_touching(bad)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"sigma": 0.0}, ValueError, "sigma"),
        ({"sigma": float("nan")}, ValueError, "sigma"),
        ({"w0": -1.0}, ValueError, "w0"),
        ({"class_weights": "inverse"}, ValueError, "class_weights"),
        ({"class_weights": {1: 2.0}}, ValueError, "class_weights"),
        ({"class_weights": {0: 1.0, 1: -2.0}}, ValueError, "class_weights"),
        ({"class_weights": [1.0, 2.0]}, TypeError, "class_weights"),
        ({"connectivity": 3}, ValueError, "connectivity"),
        ({"tol": -1.0}, ValueError, "tol"),
    ],
)
def test_bad_parameters_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        weight_map(one_cell((16, 24)), **kwargs)


def test_zero_w0_gives_class_weights_only():
    labels = CASES["mixed"]()
    np.testing.assert_array_equal(
        weight_map(labels, w0=0.0), class_weight_map(binary_target(labels))
    )


# --------------------------------------------------------------------------------------------
# torch path (runs on CPU here; the same code runs on CUDA)


@pytest.mark.parametrize("case", ["mixed", "gapped", "one_cell", "none", "full"])
@pytest.mark.parametrize("class_weights", ["balanced", None, {0: 0.5, 1: 2.0}])
def test_torch_weight_map_matches_numpy(case, class_weights):
    torch = pytest.importorskip("torch")
    from unetlib.weights import weight_map_torch

    labels = CASES[case]()
    sigma = 2.0  # a small radius keeps the O(R^2) scan quick on the CPU
    got = weight_map_torch(torch.from_numpy(labels), sigma=sigma, class_weights=class_weights)
    assert got.dtype == torch.float32 and tuple(got.shape) == labels.shape
    want = weight_map(labels, sigma=sigma, class_weights=class_weights)
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-5)
    np.testing.assert_allclose(
        got.numpy(), naive_weight_map(labels, 10.0, sigma, class_weights), rtol=0, atol=1e-5
    )


def test_torch_weight_map_paper_parameters():
    torch = pytest.importorskip("torch")
    from unetlib.weights import weight_map_torch

    labels = CASES["mixed"]()
    got = weight_map_torch(torch.from_numpy(labels))  # w0 = 10, sigma = 5: R - 1 = 29.4 px
    np.testing.assert_allclose(got.numpy(), naive_weight_map(labels), rtol=0, atol=1e-5)


def test_torch_weight_map_stack_and_errors():
    torch = pytest.importorskip("torch")
    from unetlib.weights import weight_map_torch

    images = [CASES[c]()[:24, :30] for c in ("touching", "gapped", "none")]
    stack = torch.from_numpy(np.stack(images)).int()
    got = weight_map_torch(stack, sigma=2.0, chunk_elements=5000)  # many small chunks
    np.testing.assert_allclose(got.numpy(), weight_map(np.stack(images), sigma=2.0), atol=1e-5)
    with pytest.raises(ValueError, match="labels.*non-negative"):
        weight_map_torch(torch.tensor([[0, -1], [2, 0]]))
    with pytest.raises(TypeError, match="labels"):
        weight_map_torch(torch.zeros(4, 4))
    with pytest.raises(TypeError, match="labels"):
        weight_map_torch(np.zeros((4, 4), np.int64))



def test_kernel_compiles_where_no_cache_folder_is_writable():
    # a read-only install: numba finds no folder to cache machine code in and refuses
    # cache=True; the kernel is then compiled in memory, with the same distances
    import subprocess
    import sys

    from unetlib.paths import PROJECT_ROOT

    code = ("import numba.core.caching as c; c.CacheImpl._locator_classes = []\n"
            "import numpy as np\n"
            "from unetlib.weights import two_nearest_distances\n"
            "lab = np.zeros((8, 9), np.int64); lab[1, 1] = 1; lab[6, 7] = 2\n"
            "print(two_nearest_distances(lab)[1][1, 1])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=PROJECT_ROOT, check=True)
    assert float(out.stdout) == math.hypot(5, 6)
