"""Loaders of unetlib.data against fixtures written here (every format) and the real copies."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from unetlib.data import DATASETS, Sample, load_dataset
from unetlib.data.io import read_image, to_unit_float
from unetlib.data.isbi import membranes_to_instances, slice_indices
from unetlib.paths import data_root

# ---------------------------------------------------------------- ISBI 2012 fixtures


def _isbi_arrays(n: int = 30, size: int = 24, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
    labels = np.full((n, size, size), 255, dtype=np.uint8)
    labels[:, ::8, :] = 0  # membranes every 8 px: 3 x 3 interiors per slice
    labels[:, :, ::8] = 0
    for i in range(n):  # make slices distinguishable: slice i has an extra membrane cut
        labels[i, 1 + i % 6, 1:8] = 0
    return images, labels


def _write_isbi_pngs(root: Path, images, labels, challenge):
    for sub, arrs in (("train/image", images), ("train/label", labels), ("test/image", challenge)):
        d = root / "isbi2012" / sub
        d.mkdir(parents=True, exist_ok=True)
        for i, a in enumerate(arrs):
            iio.imwrite(d / f"{i}.png", a)


def _write_isbi_stacks(root: Path, images, labels, challenge):
    d = root / "isbi2012"
    d.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(d / "train-volume.tif", images)
    tifffile.imwrite(d / "train-labels.tif", labels)
    tifffile.imwrite(d / "test-volume.tif", challenge)


@pytest.fixture
def isbi_arrays():
    images, labels = _isbi_arrays()
    challenge = _isbi_arrays(seed=1)[0]
    return images, labels, challenge


@pytest.mark.parametrize("layout", ["png", "stack"])
@pytest.mark.parametrize("split,expected", [("train", range(20)), ("test", range(20, 30))])
def test_isbi_layouts_default_split(tmp_path, isbi_arrays, layout, split, expected):
    images, labels, challenge = isbi_arrays
    writer = _write_isbi_pngs if layout == "png" else _write_isbi_stacks
    writer(tmp_path, images, labels, challenge)
    ds = load_dataset("isbi2012", split, root=tmp_path)
    assert ds.options["layout"] == layout
    assert len(ds) == len(expected)
    for s, i in zip(ds, expected, strict=True):
        assert s.image.dtype == np.float32 and s.image.shape == (24, 24)
        np.testing.assert_array_equal(s.image, images[i] / np.float32(255))
        assert s.labels.dtype == np.int32
        # the 3 x 3 grid of interiors, one of them cut in two by the extra membrane
        assert s.n_cells == len(np.unique(membranes_to_instances(labels[i]))) - 1
        assert 9 <= s.n_cells <= 10
        assert np.all((s.labels > 0) == (labels[i] == 255))


def test_isbi_stack_and_png_layouts_agree(tmp_path, isbi_arrays):
    _write_isbi_pngs(tmp_path, *isbi_arrays)
    _write_isbi_stacks(tmp_path, *isbi_arrays)
    stack = load_dataset("isbi2012", "all", root=tmp_path)  # official stacks win in "auto"
    png = load_dataset("isbi2012", "all", root=tmp_path, layout="png")
    assert stack.options["layout"] == "stack" and len(stack) == len(png) == 30
    for a, b in zip(stack, png, strict=True):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.labels, b.labels)


def test_isbi_challenge_split_has_no_labels(tmp_path, isbi_arrays):
    _write_isbi_stacks(tmp_path, *isbi_arrays)
    ds = load_dataset("isbi2012", "challenge", root=tmp_path)
    assert len(ds) == 30 and all(s.labels is None for s in ds)
    np.testing.assert_array_equal(ds[3].image, isbi_arrays[2][3] / np.float32(255))


@pytest.mark.parametrize("folds", [3, 5, 7])
def test_isbi_kfold_partitions_the_stack(folds):
    tests = [slice_indices("test", folds, k) for k in range(folds)]
    assert sorted(i for t in tests for i in t) == list(range(30))
    for k, t in enumerate(tests):
        train = slice_indices("train", folds, k)
        assert not set(train) & set(t) and len(train) + len(t) == 30
        assert t == list(range(t[0], t[-1] + 1))  # contiguous blocks


@pytest.mark.parametrize(
    "kwargs,err",
    [
        ({"folds": 5}, ValueError),
        ({"folds": 5, "fold": 5}, ValueError),
        ({"folds": 1, "fold": 0}, ValueError),
        ({"split": "val"}, ValueError),
    ],
)
def test_isbi_bad_options(tmp_path, isbi_arrays, kwargs, err):
    _write_isbi_pngs(tmp_path, *isbi_arrays)
    split = kwargs.pop("split", "train")
    with pytest.raises(err):
        load_dataset("isbi2012", split, root=tmp_path, **kwargs)


def test_isbi_missing_folder_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="isbi2012"):
        load_dataset("isbi2012", root=tmp_path)


def test_isbi_corrupt_png_names_file(tmp_path, isbi_arrays):
    _write_isbi_pngs(tmp_path, *isbi_arrays)
    bad = tmp_path / "isbi2012/train/image/3.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    with pytest.raises(ValueError, match="3.png"):
        load_dataset("isbi2012", root=tmp_path)


def test_isbi_size_mismatch_names_both_files(tmp_path, isbi_arrays):
    _write_isbi_pngs(tmp_path, *isbi_arrays)
    iio.imwrite(tmp_path / "isbi2012/train/label/5.png", np.full((20, 24), 255, np.uint8))
    with pytest.raises(ValueError, match=r"image/5.png.*label/5.png"):
        load_dataset("isbi2012", root=tmp_path)


def test_isbi_short_stack_is_an_error(tmp_path, isbi_arrays):
    images, labels, challenge = isbi_arrays
    _write_isbi_stacks(tmp_path, images[:12], labels[:12], challenge)
    with pytest.raises(ValueError, match="train-volume.tif.*12"):
        load_dataset("isbi2012", root=tmp_path)


# ---------------------------------------------------------------- Cell Tracking Challenge


def _cells(size: int, seed: int, n: int = 3) -> np.ndarray:
    lab = np.zeros((size, size), np.uint16)
    rng = np.random.default_rng(seed)
    for k in range(1, n + 1):
        y, x = rng.integers(2, size - 8, 2)
        lab[y : y + 6, x : x + 6] = k
    return lab


def make_ctc(
    root: Path,
    name: str = "FAKE-C2DH-X",
    size: int = 24,
    frames: int = 5,
    gt: tuple[int, ...] = (1, 3),
    dtype=np.uint8,
) -> Path:
    """A tiny CTC set: sequences 01 (8-bit frames) and 02 (16-bit frames by default)."""
    base = root / name
    for seq, dt in (("01", dtype), ("02", np.uint16)):
        (base / seq).mkdir(parents=True)
        (base / f"{seq}_GT/SEG").mkdir(parents=True)
        (base / f"{seq}_ST/SEG").mkdir(parents=True)
        rng = np.random.default_rng(int(seq))
        for t in range(frames):
            hi = 255 if dt == np.uint8 else 60000
            tifffile.imwrite(
                base / seq / f"t{t:03d}.tif", rng.integers(0, hi + 1, (size, size)).astype(dt)
            )
            tifffile.imwrite(base / f"{seq}_ST/SEG/man_seg{t:03d}.tif", _cells(size, t))
        for t in gt:
            tifffile.imwrite(base / f"{seq}_GT/SEG/man_seg{t:03d}.tif", _cells(size, 100 + t, 4))
    return base


@pytest.mark.parametrize(
    "split,truth,expected",
    [
        ("train", "gold", ["01/t001", "01/t003"]),
        ("test", "gold", ["02/t001", "02/t003"]),
        ("train", "silver", [f"01/t{t:03d}" for t in range(5)]),
        ("all", "gold", ["01/t001", "01/t003", "02/t001", "02/t003"]),
    ],
)
def test_ctc_splits_and_truth(tmp_path, split, truth, expected):
    make_ctc(tmp_path)
    ds = load_dataset("FAKE-C2DH-X", split, root=tmp_path, truth=truth)
    assert ds.files == [f"FAKE-C2DH-X/{e}.tif" for e in expected]
    for s in ds:
        seq, t = s.name.split("/")[1], int(s.name[-7:-4])
        folder = "GT" if truth == "gold" else "ST"
        raw = tifffile.imread(tmp_path / f"FAKE-C2DH-X/{seq}_{folder}/SEG/man_seg{t:03d}.tif")
        np.testing.assert_array_equal(s.labels, raw.astype(np.int32))
        assert s.labels.dtype == np.int32 and s.image.dtype == np.float32


def test_ctc_16bit_frames_are_scaled_not_clipped(tmp_path):
    make_ctc(tmp_path)
    ds = load_dataset("FAKE-C2DH-X", "test", root=tmp_path)
    raw = tifffile.imread(tmp_path / "FAKE-C2DH-X/02/t001.tif")
    assert raw.dtype == np.uint16 and raw.max() > 255
    np.testing.assert_allclose(ds[0].image, raw / 65535.0, rtol=1e-6)
    assert 0.85 < ds[0].image.max() < 1.0  # 60000 / 65535, not saturated at 1
    mm = load_dataset("FAKE-C2DH-X", "test", root=tmp_path, normalize="minmax")[0].image
    assert mm.min() == 0.0 and mm.max() == 1.0
    assert len(np.unique(mm)) == len(np.unique(raw))  # distinct levels preserved


def test_ctc_known_defect_left_out_and_said(tmp_path):
    make_ctc(tmp_path, name="DIC-C2DH-HeLa", frames=68, gt=(2, 67))
    ds = load_dataset("DIC-C2DH-HeLa", root=tmp_path)
    assert ds.files == ["DIC-C2DH-HeLa/01/t002.tif"]
    assert "man_seg067.tif" in ds.describe() and "only 3" in ds.describe()
    full = load_dataset("DIC-C2DH-HeLa", root=tmp_path, include_incomplete=True)
    assert full.files == ["DIC-C2DH-HeLa/01/t002.tif", "DIC-C2DH-HeLa/01/t067.tif"]
    assert len(load_dataset("DIC-C2DH-HeLa", "test", root=tmp_path)) == 2  # only seq 01's defect


def _corrupt(path: Path) -> None:
    path.write_bytes(b"II*\x00" + b"\x00garbage" * 4)


@pytest.mark.parametrize(
    "break_it,exc,pattern",
    [
        (lambda b: _corrupt(b / "01/t001.tif"), ValueError, "t001.tif"),
        (lambda b: _corrupt(b / "01_GT/SEG/man_seg003.tif"), ValueError, "man_seg003.tif"),
        (
            lambda b: (b / "01_GT/SEG/man_seg001.tif").write_bytes(b""),
            ValueError,
            "man_seg001.tif.*empty",
        ),
        (
            lambda b: tifffile.imwrite(
                b / "01_GT/SEG/man_seg001.tif", np.zeros((24, 24), np.uint16)
            ),
            ValueError,
            "man_seg001.tif.*no labelled",
        ),
        (
            lambda b: tifffile.imwrite(
                b / "01_GT/SEG/man_seg001.tif", np.ones((20, 24), np.uint16)
            ),
            ValueError,
            "t001.tif.*man_seg001.tif",
        ),
        (
            lambda b: (b / "01/t003.tif").unlink(),
            FileNotFoundError,
            "man_seg003.tif.*without its frame",
        ),
        (
            lambda b: tifffile.imwrite(
                b / "01_GT/SEG/man_seg001.tif", np.full((24, 24), 1.5, np.float32)
            ),
            TypeError,
            "man_seg001",
        ),
        (
            lambda b: tifffile.imwrite(b / "01/t001.tif", np.full((24, 24), 7.0, np.float32)),
            ValueError,
            "t001.tif.*outside",
        ),
        (
            lambda b: tifffile.imwrite(b / "01/t001.tif", np.zeros((24, 24), np.complex64)),
            TypeError,
            "t001.tif.*dtype",
        ),
        (
            lambda b: tifffile.imwrite(b / "01/t001.tif", np.zeros((3, 5, 24, 24), np.uint8)),
            ValueError,
            "t001.tif",
        ),
    ],
    ids=[
        "corrupt-frame",
        "corrupt-mask",
        "empty-file",
        "all-background",
        "size-mismatch",
        "mask-without-frame",
        "float-labels",
        "float-image-range",
        "complex",
        "not-2d",
    ],
)
def test_ctc_bad_input_names_the_file(tmp_path, break_it, exc, pattern):
    base = make_ctc(tmp_path)
    break_it(base)
    with pytest.raises(exc, match=pattern):
        load_dataset("FAKE-C2DH-X", root=tmp_path)


def test_ctc_frame_without_silver_mask(tmp_path):
    base = make_ctc(tmp_path)
    (base / "01_ST/SEG/man_seg002.tif").unlink()
    with pytest.raises(FileNotFoundError, match="t002.tif.*without its silver-truth mask"):
        load_dataset("FAKE-C2DH-X", root=tmp_path, truth="silver")
    ds = load_dataset("FAKE-C2DH-X", root=tmp_path, truth="silver", frames_without_mask="skip")
    assert len(ds) == 4 and "01/t002.tif" not in " ".join(ds.files)


@pytest.mark.parametrize("missing", ["01", "01_GT/SEG"])
def test_ctc_missing_folder(tmp_path, missing):
    import shutil

    base = make_ctc(tmp_path)
    shutil.rmtree(base / missing)
    with pytest.raises((FileNotFoundError, ValueError), match="FAKE-C2DH-X"):
        load_dataset("FAKE-C2DH-X", root=tmp_path)


def test_unknown_name_and_bad_options(tmp_path):
    with pytest.raises(ValueError, match="unknown data set"):
        load_dataset("no-such-set", root=tmp_path)
    make_ctc(tmp_path)
    with pytest.raises(ValueError, match="truth"):
        load_dataset("FAKE-C2DH-X", root=tmp_path, truth="bronze")
    with pytest.raises(ValueError, match="normalize"):
        load_dataset("FAKE-C2DH-X", root=tmp_path, normalize="zscore")


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32, bool])
def test_to_unit_float_range_and_dtype(dtype):
    rng = np.random.default_rng(0)
    if dtype is bool:
        a = rng.random((8, 8)) > 0.5
    elif np.issubdtype(dtype, np.floating):
        a = rng.random((8, 8)).astype(dtype)
    else:
        info = np.iinfo(dtype)
        a = rng.integers(info.min, int(info.max) + 1, (8, 8)).astype(dtype)
        a[0, 0], a[0, 1] = info.min, info.max
    x = to_unit_float(a)
    assert x.dtype == np.float32 and x.min() >= 0 and x.max() <= 1
    if dtype not in (bool, np.float32):
        assert x[0, 0] == 0 and x[0, 1] == 1


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_lzw_tiff_reads_with_or_without_imagecodecs(tmp_path, dtype):
    """The CTC frames are LZW-compressed; tifffile needs imagecodecs for that, else Pillow."""
    from PIL import Image

    top = np.iinfo(dtype).max + 1
    a = ((np.arange(24 * 20).reshape(24, 20) * 97) % top).astype(dtype)
    Image.fromarray(a).save(tmp_path / "lzw.tif", compression="tiff_lzw")
    x = read_image(tmp_path / "lzw.tif")
    np.testing.assert_allclose(x, a / np.iinfo(dtype).max, rtol=1e-6)


def test_rgb_gray_png_reads_as_2d(tmp_path):
    g = np.arange(64, dtype=np.uint8).reshape(8, 8)
    iio.imwrite(tmp_path / "g.png", np.stack([g, g, g], -1))
    np.testing.assert_array_equal(read_image(tmp_path / "g.png"), g / np.float32(255))


# ---------------------------------------------------------------- LIVECell (COCO JSON)


def _square(x0, y0, x1, y1):
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


@pytest.fixture
def livecell_root(tmp_path):
    base = tmp_path / "livecell"
    imgs = base / "images" / "livecell_train_val_images"
    (imgs / "SkBr3").mkdir(parents=True)
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (30, 40), dtype=np.uint8)
    b = rng.integers(0, 256, (30, 40), dtype=np.uint8)
    tifffile.imwrite(imgs / "A172_Phase_A7_1_00d00h00m_1.tif", a)
    tifffile.imwrite(imgs / "SkBr3" / "SkBr3_Phase_E3_1_00d00h00m_2.tif", b)  # in a subfolder
    coco = {
        "images": [
            {"id": 1, "file_name": "A172_Phase_A7_1_00d00h00m_1.tif", "height": 30, "width": 40},
            {"id": 2, "file_name": "SkBr3_Phase_E3_1_00d00h00m_2.tif", "height": 30, "width": 40},
        ],
        "annotations": [
            {
                "id": 10,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "area": 300.0,
                "segmentation": _square(2, 2, 22, 17),
                "bbox": [2, 2, 20, 15],
            },
            {
                "id": 11,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "area": 48.0,
                "segmentation": _square(18, 10, 26, 16),
                "bbox": [18, 10, 8, 6],
            },  # overlaps 10
            {
                "id": 12,
                "image_id": 2,
                "category_id": 1,
                "iscrowd": 0,
                "area": 60.0,
                "segmentation": [[5, 5, 20, 5, 12, 20]],
                "bbox": [5, 5, 15, 15],
            },
        ],
        "categories": [{"id": 1, "name": "cell"}],
    }
    (base / "livecell_coco_train.json").write_text(json.dumps(coco))
    return tmp_path, a, b


def test_livecell_polygons_to_instances(livecell_root):
    root, a, b = livecell_root
    ds = load_dataset("livecell", "train", root=root)
    assert not ds.eager and len(ds) == 2
    s0, s1 = ds[0], ds[1]
    np.testing.assert_array_equal(s0.image, a / np.float32(255))
    np.testing.assert_array_equal(s1.image, b / np.float32(255))
    assert s1.name.endswith("SkBr3/SkBr3_Phase_E3_1_00d00h00m_2.tif")
    assert set(np.unique(s0.labels)) == {0, 1, 2} and set(np.unique(s1.labels)) == {0, 1}
    assert s0.labels[10, 10] == 1 and s0.labels[13, 22] == 2  # overlap goes to the smaller cell
    assert s0.labels[25, 35] == 0 and s0.labels[0, 0] == 0
    assert abs(np.count_nonzero(s0.labels == 2) - 48) <= 8 + 6 + 1  # polygon area +- perimeter
    assert s1.labels[10, 12] == 1


def test_livecell_cell_type_and_errors(livecell_root):
    root, _, _ = livecell_root
    assert load_dataset("livecell", root=root, cell_type="skbr3").files == [
        "SkBr3_Phase_E3_1_00d00h00m_2.tif"
    ]
    with pytest.raises(FileNotFoundError, match="livecell_coco_test.json"):
        load_dataset("livecell", "test", root=root)
    (root / "livecell/images/livecell_train_val_images/A172_Phase_A7_1_00d00h00m_1.tif").unlink()
    ds = load_dataset("livecell", root=root)
    with pytest.raises(FileNotFoundError, match="A172_Phase_A7_1_00d00h00m_1.tif"):
        ds[0]
    (root / "livecell/livecell_coco_train.json").write_text("{not json")
    with pytest.raises(ValueError, match="livecell_coco_train.json"):
        load_dataset("livecell", root=root)


# ---------------------------------------------------------------- Sample / Dataset


def test_sample_validates_types():
    with pytest.raises(TypeError):
        Sample(np.zeros((4, 4)), np.zeros((4, 4), np.int32), "x")  # float64 image
    with pytest.raises(TypeError):
        Sample(np.zeros((4, 4), np.float32), np.zeros((4, 5), np.int32), "x")
    assert Sample(np.zeros((4, 4), np.float32), None, "x").n_cells == 0


def test_datasets_pickle(tmp_path, livecell_root):
    import pickle

    make_ctc(tmp_path)
    for ds in (
        load_dataset("FAKE-C2DH-X", root=tmp_path),
        load_dataset("synthetic", n=2, size=32),
        load_dataset("livecell", root=livecell_root[0]),
    ):
        back = pickle.loads(pickle.dumps(ds))
        assert back.files == ds.files and len(back) == len(ds)
        np.testing.assert_array_equal(back[-1].labels, ds[-1].labels)


def test_dataset_sequence_protocol(tmp_path):
    make_ctc(tmp_path)
    ds = load_dataset("FAKE-C2DH-X", root=tmp_path, truth="silver")
    assert ds[-1].name == ds.files[-1] and [s.name for s in ds[1:3]] == ds.files[1:3]
    with pytest.raises(IndexError):
        ds[5]
    assert "FAKE-C2DH-X [train]: 5 images" in ds.describe()
    assert {"isbi2012", "DIC-C2DH-HeLa", "PhC-C2DH-U373", "livecell", "synthetic"} <= set(DATASETS)


# ---------------------------------------------------------------- the real copies


def _real(name: str) -> Path:
    root = data_root()
    if not (root / name).is_dir():
        pytest.skip(
            f"real data set {name} not found under {root} (set $UNETLIB_DATA or run "
            f"`python -m unetlib.data fetch {name}`)"
        )
    return root


def test_real_isbi2012():
    root = _real("isbi2012")
    train, test = load_dataset("isbi2012", "train", root), load_dataset("isbi2012", "test", root)
    chal = load_dataset("isbi2012", "challenge", root)
    assert (len(train), len(test), len(chal)) == (20, 10, 30)
    s = train[0]
    assert s.image.shape == (512, 512) and 0 <= s.image.min() and s.image.max() <= 1
    assert 50 < s.n_cells < 300 and chal[0].labels is None
    assert not set(train.files) & set(test.files)


def test_real_hela():
    root = _real("DIC-C2DH-HeLa")
    train = load_dataset("DIC-C2DH-HeLa", "train", root)
    test = load_dataset("DIC-C2DH-HeLa", "test", root)
    assert len(train) == 8 and len(test) == 9
    assert "DIC-C2DH-HeLa/01/t067.tif" not in train.files and "man_seg067" in train.describe()
    full = load_dataset("DIC-C2DH-HeLa", "train", root, include_incomplete=True)
    assert full[full.files.index("DIC-C2DH-HeLa/01/t067.tif")].n_cells == 3
    silver = load_dataset("DIC-C2DH-HeLa", "train", root, truth="silver")
    assert len(silver) == 84
    for s in test:
        assert s.image.shape == s.labels.shape == (512, 512) and s.n_cells >= 5


# ---------------------------------------------------------------- LIVECell: checked input


def _coco_with(livecell_root, segmentation) -> Path:
    root = livecell_root[0]
    path = root / "livecell/livecell_coco_train.json"
    coco = json.loads(path.read_text())
    coco["annotations"] = [{**coco["annotations"][0], "segmentation": segmentation}]
    path.write_text(json.dumps(coco))
    return root


@pytest.mark.parametrize("compressed", [True, False])
def test_livecell_rle_segmentation(livecell_root, compressed):
    """An RLE (COCO's compressed string or a list of runs) gives exactly its mask."""
    mask_utils = pytest.importorskip("pycocotools.mask")
    mask = np.zeros((30, 40), np.uint8)
    mask[3:12, 5:30] = 1
    mask[20:28, 1:4] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    counts = rle["counts"].decode()
    if not compressed:  # runs of the column-major flattened mask
        flat = mask.flatten(order="F")
        bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
        counts = ([0] if flat[0] else []) + np.diff(bounds).tolist()
    root = _coco_with(livecell_root, {"size": [30, 40], "counts": counts})
    labels = load_dataset("livecell", root=root)[0].labels
    np.testing.assert_array_equal(labels, mask.astype(np.int32))


def test_livecell_rle_decoder_matches_pycocotools():
    mask_utils = pytest.importorskip("pycocotools.mask")
    from unetlib.data.livecell import _decode_counts

    rng = np.random.default_rng(3)
    for _ in range(20):
        m = np.asfortranarray((rng.random((17, 23)) > rng.random()).astype(np.uint8))
        counts = mask_utils.encode(m)["counts"].decode()
        runs = _decode_counts(counts, "x")
        assert sum(runs) == m.size
        decoded = np.repeat(np.arange(len(runs)) % 2, runs).reshape(m.shape, order="F")
        np.testing.assert_array_equal(decoded, m)


def test_livecell_short_polygons_are_still_left_out(livecell_root):
    root = _coco_with(livecell_root, [[1, 1, 5, 5], [2, 2, 22, 2, 22, 17, 2, 17]])
    labels = load_dataset("livecell", root=root)[0].labels
    assert set(np.unique(labels)) == {0, 1} and labels[10, 10] == 1


def test_livecell_bad_polygon_names_file_and_annotation(livecell_root):
    root = _coco_with(livecell_root, [[2, 2, float("nan"), 2, 22, 17, 2, 17]])
    ds = load_dataset("livecell", root=root)  # geometry is checked when the image is read
    with pytest.raises(ValueError, match=r"livecell_coco_train\.json: annotation 10: .*NaN"):
        ds[0]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32])
def test_isbi_labels_of_0_and_255_read_the_same_in_any_integer_type(dtype):
    lab = np.full((8, 8), 255)
    lab[:, 4] = 0  # one membrane column: two cells
    assert membranes_to_instances(lab.astype(dtype)).max() == 2
    rescaled = (lab.astype(np.uint16) * 257)  # a copy rescaled to the 16-bit range
    assert membranes_to_instances(rescaled).max() == 2


def test_isbi_label_without_membranes_is_refused():
    with pytest.raises(ValueError, match="no membrane pixels"):
        membranes_to_instances(np.full((8, 8), 255, np.uint8))


def test_centre_crops_spread_and_crop():
    from unetlib.data import Sample, centre_crops

    frames = [Sample(np.full((40, 50), i / 10, np.float32), np.full((40, 50), i, np.int32),
                     f"f{i}") for i in range(10)]
    out = centre_crops(frames, 3, 16)
    assert [s.name for s in out] == ["f0", "f4", "f9"]
    assert all(s.image.shape == (16, 16) and s.labels.shape == (16, 16) for s in out)
    assert centre_crops(frames, 20, 100)[0].image.shape == (40, 50)  # never larger than a frame
    with pytest.raises(ValueError, match="size"):
        centre_crops(frames, 1, 0)


def test_time_point_reads_sequence_and_frame_and_refuses_other_names():
    from unetlib.data.ctc import time_point

    assert time_point("DIC-C2DH-HeLa/01/t002.tif") == ("DIC-C2DH-HeLa/01", 2)
    assert time_point("X\\02\\t117.tif") == ("X/02", 117)
    with pytest.raises(ValueError, match="'a/b.png' is not a Cell Tracking Challenge frame"):
        time_point("a/b.png")
