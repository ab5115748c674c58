"""Fault injection: corrupt files, malformed annotations, hostile archives and broken downloads,
each with the outcome a user gets.

Every case injects one fault and asserts its exact outcome: the error type and that its message
names the file, URL or field at fault; that no temp or partial file is left; that no file
outside the target changed (a snapshot of the test's whole folder, target included, before and
after). A few faults leave the data intact (a PNG without its end chunk, a TIFF stack that lost
trailing page headers but none of its pixels, a polygon a little outside the image): those
cases assert that the data load equal to the clean copy, or exactly clipped.

Groups: the loaders' image files (CTC TIFF frames and masks, ISBI 2012 PNG slices and TIFF
stacks, LIVECell frames); LIVECell COCO JSON; zip archives (unpacked by `safe_extract` and by
`fetch` from a local server); downloads from an http.server on 127.0.0.1 that cuts, resets,
stalls, errs or sends the wrong content. The tally of the run is written to the terminal at
the end of the module.

Measured by the final run (2 CPU cores, about 5 s): 221 cases, 213 clear errors, 8 intact (6
PNG and 1 TIFF-stack faults that load equal to the clean copy, 1 polygon clipped exactly),
0 silent wrong results, 0 crashes, 0 unclear errors, 0 partial files, 0 files changed. For
comparison, the module run against the code before this change, with 24 cases left out that
could crash or exhaust the process (NaN, infinite and huge coordinates, RLEs, the huge TIFF):
197 cases, 115 clear errors, 29 silent wrong results, 23 crashes, 22 unclear errors, 0 partial
files, 17 runs that changed files; and a ``null`` polygon coordinate, run first, crashed the
interpreter (a segfault in pycocotools).
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import stat
import struct
import time
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile
from test_data_fetch import FILES, Handler, leftovers, png_bytes, serve
from test_data_loaders import _isbi_arrays, _write_isbi_pngs, _write_isbi_stacks, make_ctc

from unetlib.data import load_dataset
from unetlib.data.fetch import FetchError, Source, fetch, safe_extract

TALLY: Counter[str] = Counter()
CATEGORIES = (
    "cases",
    "clear errors",
    "intact (fault does not change the data)",
    "silent wrong results",
    "crashes",
    "unclear errors",
    "partial files",
    "files changed",
)


@pytest.fixture(scope="module", autouse=True)
def _tally(request):
    """Write the module's tally to the terminal once all its cases ran."""
    yield
    line = ", ".join(f"{TALLY[c]} {c}" for c in CATEGORIES)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\ntest_faults tally: {line}")


# ---------------------------------------------------------------- outcome bookkeeping


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every path under ``folder`` with its kind, mode and (files) content hash."""
    out = {}
    for p in sorted(folder.rglob("*")):
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
        out[str(p.relative_to(folder))] = (stat.S_IFMT(st.st_mode), st.st_mode, digest)
    return out


def _classify(action: Callable[[], object], exc: type[Exception], names: list[str]):
    """(category, detail, value) of running ``action`` when it should raise ``exc`` naming
    every string of ``names``."""
    try:
        value = action()
    except exc as e:
        missing = [n for n in names if n not in str(e)]
        if missing:
            return "unclear errors", f"{type(e).__name__}: {e} (does not name {missing})", None
        return "clear errors", str(e), None
    except Exception as e:  # noqa: BLE001 - any other exception is what we count as a crash
        return "crashes", f"{type(e).__name__}: {e}", None
    return "silent wrong results", f"no error (expected {exc.__name__})", value


def expect_error(
    action: Callable[[], object], exc: type[Exception], names: list[str], folder: Path
) -> None:
    """Assert that ``action`` raises ``exc`` naming ``names``, leaving ``folder`` unchanged and
    free of temp files; count the outcome."""
    before = snapshot(folder)
    category, detail, _ = _classify(action, exc, names)
    _count(category, folder, before)
    assert category == "clear errors", detail
    assert leftovers(folder) == [] and snapshot(folder) == before


def expect_intact(action: Callable[[], object], check: Callable[[object], None], folder: Path):
    """Assert that ``action`` succeeds and ``check`` accepts its result (the fault did not
    change the data); count the outcome."""
    before = snapshot(folder)
    try:
        value = action()
    except Exception as e:  # noqa: BLE001
        _count("crashes", folder, before)
        raise AssertionError(f"expected the data intact, got {type(e).__name__}: {e}") from e
    try:
        check(value)
    except AssertionError:
        _count("silent wrong results", folder, before)
        raise
    _count("intact (fault does not change the data)", folder, before)
    assert leftovers(folder) == [] and snapshot(folder) == before


def _count(category: str, folder: Path, before: dict) -> None:
    TALLY["cases"] += 1
    TALLY[category] += 1
    TALLY["partial files"] += bool(leftovers(folder))
    TALLY["files changed"] += snapshot(folder) != before


# ---------------------------------------------------------------- byte-level faults


def _rng_bytes(n: int) -> bytes:
    return np.random.default_rng(1).integers(0, 256, n, dtype=np.uint8).tobytes()


def _flip(b: bytes, at: int) -> bytes:
    out = bytearray(b)
    out[at] ^= 0xFF
    return bytes(out)


def _png_chunk(b: bytes, name: bytes) -> tuple[int, int]:
    """(start of the chunk's data, its length) of the first chunk ``name``."""
    i = b.index(name)
    return i + 4, struct.unpack(">I", b[i - 4 : i])[0]


def _set_first_ifd(b: bytes, offset: int) -> bytes:
    return b[:4] + struct.pack("<I", offset) + b[8:]


def _set_tiff_size(b: bytes, width: int, height: int) -> bytes:
    out = bytearray(b)
    with tifffile.TiffFile(io.BytesIO(b)) as tif:
        tags = tif.pages[0].tags
        for name, value in (("ImageWidth", width), ("ImageLength", height)):
            tag = tags[name]
            fmt = "<I" if tag.dtype == 4 else "<H"
            out[tag.valueoffset : tag.valueoffset + struct.calcsize(fmt)] = struct.pack(fmt, value)
    return bytes(out)


COMMON = {
    "empty": lambda b: b"",
    "header-only": lambda b: b[:8],
    "cut-half": lambda b: b[: len(b) // 2],
    "garbage": lambda b: _rng_bytes(len(b)),
    "zeros": lambda b: bytes(len(b)),
}
TIFF_FAULTS = {
    **COMMON,
    "one-byte-short": lambda b: b[:-1],
    "bad-magic": lambda b: b"XX" + b[2:],
    "ifd-past-eof": lambda b: _set_first_ifd(b, 10**6),
    "png-inside": lambda b: png_bytes(np.zeros((4, 4), np.uint8)),
}
PNG_FAULTS = {
    **COMMON,
    "cut-in-idat": lambda b: b[: sum(_png_chunk(b, b"IDAT")) - 7],
    "bad-signature": lambda b: b"\x89PNX" + b[4:],
    "ihdr-crc": lambda b: _flip(b, sum(_png_chunk(b, b"IHDR"))),
    "idat-data-flip": lambda b: _flip(
        b, _png_chunk(b, b"IDAT")[0] + _png_chunk(b, b"IDAT")[1] // 2
    ),
    "tiff-inside": lambda b: (lambda f: (tifffile.imwrite(f, np.zeros((4, 4))), f.getvalue())[1])(
        io.BytesIO()
    ),
}
#: Faults after which every pixel is still there: the loaders read the data unchanged.
PNG_INTACT = {
    "no-iend": lambda b: b[:-12],
    "one-byte-short": lambda b: b[:-1],
    "idat-crc": lambda b: _flip(b, sum(_png_chunk(b, b"IDAT"))),
}
STACK_INTACT = {"lost-last-page-headers": lambda b: b[:-100]}


def _corrupt(path: Path, fault: Callable[[bytes], bytes]) -> None:
    path.write_bytes(fault(path.read_bytes()))


def _load_all(name: str, root: Path, **options) -> list:
    ds = load_dataset(name, "train", root=root, **options)
    return [(s.image.copy(), None if s.labels is None else s.labels.copy()) for s in ds]


def _same_as(reference: list) -> Callable[[list], None]:
    def check(samples: list) -> None:
        assert len(samples) == len(reference)
        for (img, lab), (ref_img, ref_lab) in zip(samples, reference, strict=True):
            np.testing.assert_array_equal(img, ref_img)
            np.testing.assert_array_equal(lab, ref_lab)

    return check


# ---------------------------------------------------------------- loaders: CTC TIFF


@pytest.mark.parametrize("fault", sorted(TIFF_FAULTS))
@pytest.mark.parametrize(
    "target", ["FAKE-C2DH-X/01/t001.tif", "FAKE-C2DH-X/01_GT/SEG/man_seg001.tif"]
)
def test_ctc_corrupt_tiff(tmp_path, target, fault):
    make_ctc(tmp_path)
    _corrupt(tmp_path / target, TIFF_FAULTS[fault])
    expect_error(
        lambda: _load_all("FAKE-C2DH-X", tmp_path), ValueError, [str(tmp_path / target)], tmp_path
    )


def test_ctc_tiff_declaring_a_huge_image(tmp_path):
    """A width/height tag of 60,000 x 60,000 must not be allocated (3.6 GB, 29 GB as float)."""
    make_ctc(tmp_path)
    target = tmp_path / "FAKE-C2DH-X/01/t001.tif"
    _corrupt(target, lambda b: _set_tiff_size(b, 60000, 60000))
    expect_error(lambda: _load_all("FAKE-C2DH-X", tmp_path), ValueError, [str(target)], tmp_path)


# ---------------------------------------------------------------- loaders: ISBI 2012


@pytest.fixture
def isbi_pngs(tmp_path):
    images, labels = _isbi_arrays()
    _write_isbi_pngs(tmp_path, images, labels, _isbi_arrays(seed=1)[0])
    return tmp_path


@pytest.mark.parametrize("fault", sorted(PNG_FAULTS))
@pytest.mark.parametrize("target", ["isbi2012/train/image/3.png", "isbi2012/train/label/3.png"])
def test_isbi_corrupt_png(isbi_pngs, target, fault):
    _corrupt(isbi_pngs / target, PNG_FAULTS[fault])
    expect_error(
        lambda: _load_all("isbi2012", isbi_pngs), ValueError, [str(isbi_pngs / target)], isbi_pngs
    )


@pytest.mark.parametrize("fault", sorted(PNG_INTACT))
@pytest.mark.parametrize("target", ["isbi2012/train/image/3.png", "isbi2012/train/label/3.png"])
def test_isbi_png_fault_that_keeps_the_pixels(isbi_pngs, target, fault):
    reference = _load_all("isbi2012", isbi_pngs)
    _corrupt(isbi_pngs / target, PNG_INTACT[fault])
    expect_intact(lambda: _load_all("isbi2012", isbi_pngs), _same_as(reference), isbi_pngs)


@pytest.fixture
def isbi_stacks(tmp_path):
    images, labels = _isbi_arrays()
    _write_isbi_stacks(tmp_path, images, labels, _isbi_arrays(seed=1)[0])
    return tmp_path


STACK_FAULTS = {k: TIFF_FAULTS[k] for k in TIFF_FAULTS if k not in ("one-byte-short",)}


@pytest.mark.parametrize("fault", sorted(STACK_FAULTS))
@pytest.mark.parametrize("target", ["isbi2012/train-volume.tif", "isbi2012/train-labels.tif"])
def test_isbi_corrupt_stack(isbi_stacks, target, fault):
    _corrupt(isbi_stacks / target, STACK_FAULTS[fault])
    expect_error(
        lambda: _load_all("isbi2012", isbi_stacks),
        ValueError,
        [str(isbi_stacks / target)],
        isbi_stacks,
    )


@pytest.mark.parametrize("fault", sorted(STACK_INTACT))
def test_isbi_stack_fault_that_keeps_the_pixels(isbi_stacks, fault):
    reference = _load_all("isbi2012", isbi_stacks)
    _corrupt(isbi_stacks / "isbi2012/train-volume.tif", STACK_INTACT[fault])
    expect_intact(lambda: _load_all("isbi2012", isbi_stacks), _same_as(reference), isbi_stacks)


# ---------------------------------------------------------------- loaders: LIVECell

LIVECELL_FRAME = "livecell/images/livecell_train_val_images/A172_Phase_A7_1_00d00h00m_1.tif"
ANN = "livecell/livecell_coco_train.json"


def _square(x0, y0, x1, y1) -> list[list[float]]:
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def make_livecell(root: Path) -> dict:
    """Two 30 x 40 frames (one in a cell-type subfolder) and three annotations (ids 10-12)."""
    pytest.importorskip("pycocotools")
    imgs = root / "livecell/images/livecell_train_val_images"
    (imgs / "SkBr3").mkdir(parents=True)
    rng = np.random.default_rng(0)
    tifffile.imwrite(
        imgs / "A172_Phase_A7_1_00d00h00m_1.tif", rng.integers(0, 256, (30, 40), np.uint8)
    )
    tifffile.imwrite(
        imgs / "SkBr3/SkBr3_Phase_E3_1_00d00h00m_2.tif", rng.integers(0, 256, (30, 40), np.uint8)
    )

    def ann(i, image_id, seg, area):
        return {"id": i, "image_id": image_id, "iscrowd": 0, "area": area, "segmentation": seg}

    coco = {
        "images": [
            {"id": 1, "file_name": "A172_Phase_A7_1_00d00h00m_1.tif", "height": 30, "width": 40},
            {"id": 2, "file_name": "SkBr3_Phase_E3_1_00d00h00m_2.tif", "height": 30, "width": 40},
        ],
        "annotations": [
            ann(10, 1, _square(2, 2, 22, 17), 300.0),
            ann(11, 1, _square(18, 10, 26, 16), 48.0),
            ann(12, 2, [[5, 5, 20, 5, 12, 20]], 60.0),
        ],
        "categories": [{"id": 1, "name": "cell"}],
    }
    write_coco(root, coco)
    return coco


def write_coco(root: Path, coco) -> None:
    (root / ANN).write_text(json.dumps(coco))  # NaN and Infinity as Python's json writes them


@pytest.mark.parametrize("fault", sorted(COMMON))
def test_livecell_corrupt_frame(tmp_path, fault):
    make_livecell(tmp_path)
    _corrupt(tmp_path / LIVECELL_FRAME, COMMON[fault])
    expect_error(
        lambda: _load_all("livecell", tmp_path),
        ValueError,
        [str(tmp_path / LIVECELL_FRAME)],
        tmp_path,
    )


def _seg(value):
    return lambda c: c["annotations"][0].__setitem__("segmentation", value)


def _ann(key, value):
    return lambda c: c["annotations"][0].__setitem__(key, value)


def _img(key, value):
    return lambda c: c["images"][0].__setitem__(key, value)


def _drop(where, key):
    return lambda c: c[where][0].pop(key)


ZIGZAG = [v for _ in range(5000) for v in (0, 0, 40, 30)]
#: case -> (how to break the parsed JSON, strings the error must name besides the JSON file)
COCO_FAULTS: dict[str, tuple[Callable[[dict], object], list[str]]] = {
    "polygon-nan": (_seg([[float("nan"), 2, 22, 2, 22, 17, 2, 17]]), ["annotation 10", "NaN"]),
    "polygon-inf": (_seg([[2, 2, float("inf"), 2, 22, 17, 2, 17]]), ["annotation 10", "infinite"]),
    "polygon-minus-inf": (_seg([[2, 2, 22, 2, 22, float("-inf"), 2, 17]]), ["annotation 10"]),
    "polygon-1e300": (_seg([[2, 2, 1e300, 2, 22, 17, 2, 17]]), ["annotation 10", "outside"]),
    "polygon-1e18": (_seg([[2, 2, 1e18, 2, 1e18, 1e18, 2, 17]]), ["annotation 10", "outside"]),
    "polygon-minus-1e12": (_seg([[-1e12, 2, 22, 2, 22, 17, 2, 17]]), ["annotation 10"]),
    "polygon-far-outside": (_seg([[500, 2, 520, 2, 520, 17, 500, 17]]), ["annotation 10"]),
    "polygon-zigzag-outline": (_seg([ZIGZAG]), ["annotation 10", "outline"]),
    "polygon-string": (_seg([[2, 2, "22", 2, 22, 17, 2, 17]]), ["annotation 10", "polygon 0"]),
    "polygon-bool": (_seg([[2, 2, True, 2, 22, 17, 2, 17]]), ["annotation 10", "polygon 0"]),
    "polygon-null": (_seg([[2, 2, None, 2, 22, 17, 2, 17]]), ["annotation 10", "polygon 0"]),
    "polygon-odd-length": (_seg([[2, 2, 22, 2, 22, 17, 2]]), ["annotation 10", "odd"]),
    "polygon-not-a-list": (_seg([5]), ["annotation 10", "polygon 0"]),
    "polygon-nested-deeper": (_seg([[[2, 2], [22, 2], [22, 17]]]), ["annotation 10"]),
    "segmentation-null": (_seg(None), ["annotation 10", "segmentation"]),
    "segmentation-string": (_seg("M 2 2 L 22 2"), ["annotation 10", "segmentation"]),
    "segmentation-missing": (_drop("annotations", "segmentation"), ["annotation 10"]),
    "rle-wrong-size": (_seg({"size": [10, 10], "counts": [100]}), ["annotation 10", "size"]),
    "rle-size-swapped": (_seg({"size": [40, 30], "counts": [1200]}), ["annotation 10", "size"]),
    "rle-runs-too-short": (_seg({"size": [30, 40], "counts": [5, 3]}), ["annotation 10", "1200"]),
    "rle-runs-too-long": (_seg({"size": [30, 40], "counts": [5, 3000]}), ["annotation 10"]),
    "rle-negative-run": (_seg({"size": [30, 40], "counts": [1300, -100]}), ["annotation 10"]),
    "rle-string-garbage": (_seg({"size": [30, 40], "counts": "!!!!"}), ["annotation 10"]),
    "rle-string-too-long": (_seg({"size": [30, 40], "counts": "0o:0"}), ["annotation 10"]),
    "rle-string-endless-run": (_seg({"size": [30, 40], "counts": "o" * 5000}), ["annotation 10"]),
    "rle-counts-number": (_seg({"size": [30, 40], "counts": 1200}), ["annotation 10", "counts"]),
    "rle-counts-floats": (_seg({"size": [30, 40], "counts": [600.0, 600.0]}), ["annotation 10"]),
    "ann-id-missing": (_drop("annotations", "id"), ["annotations[0]", "id"]),
    "ann-id-string": (_ann("id", "10"), ["annotations[0]", "'10'"]),
    "ann-id-float": (_ann("id", 10.5), ["annotations[0]", "10.5"]),
    "ann-id-bool": (_ann("id", True), ["annotations[0]", "id"]),
    "ann-area-nan": (_ann("area", float("nan")), ["annotation 10", "area"]),
    "ann-area-string": (_ann("area", "big"), ["annotation 10", "area"]),
    "ann-area-negative": (_ann("area", -5), ["annotation 10", "area"]),
    "ann-not-an-object": (lambda c: c["annotations"].__setitem__(0, [1, 2]), ["annotations[0]"]),
    "img-id-missing": (_drop("images", "id"), ["images[0]", "id"]),
    "img-id-string": (_img("id", "1"), ["images[0]", "id"]),
    "img-id-duplicate": (_img("id", 2), ["image 2", "twice"]),
    "img-height-string": (_img("height", "30"), ["image 1", "height"]),
    "img-height-zero": (_img("height", 0), ["image 1", "height"]),
    "img-height-negative": (_img("height", -30), ["image 1", "height"]),
    "img-height-huge": (_img("height", 10**9), ["image 1", "height"]),
    "img-height-nan": (_img("height", float("nan")), ["image 1", "height"]),
    "img-width-fraction": (_img("width", 40.5), ["image 1", "width"]),
    "img-width-missing": (_drop("images", "width"), ["image 1", "width"]),
    "img-size-not-the-frame": (_img("width", 41), ["size mismatch", "A172"]),
    "file-name-absolute": (_img("file_name", "/etc/hostname"), ["image 1", "file_name"]),
    "file-name-dotdot": (_img("file_name", "../../secret.tif"), ["image 1", "file_name"]),
    "file-name-backslash": (_img("file_name", "..\\..\\secret.tif"), ["image 1", "file_name"]),
    "file-name-drive": (_img("file_name", "C:/secret.tif"), ["image 1", "file_name"]),
    "file-name-nul": (_img("file_name", "A172\x00.tif"), ["image 1", "file_name"]),
    "file-name-number": (_img("file_name", 7), ["image 1", "file_name"]),
    "file-name-empty": (_img("file_name", ""), ["image 1", "file_name"]),
    "images-not-a-list": (lambda c: c.__setitem__("images", {"1": {}}), ["'images'"]),
    "annotations-not-a-list": (lambda c: c.__setitem__("annotations", 3), ["'annotations'"]),
    "images-missing": (lambda c: c.pop("images"), ["images"]),
}
#: Faults written as raw text (not a parsed-and-dumped dict).
COCO_TEXT_FAULTS = {
    "json-cut-half": lambda t: t[: len(t) // 2],
    "json-empty": lambda t: "",
    "json-top-level-list": lambda t: "[" + t + "]",
    "json-html": lambda t: "<html>503 Service Unavailable</html>",
}


@pytest.mark.parametrize("case", sorted(COCO_FAULTS))
def test_livecell_malformed_coco(tmp_path, case):
    coco = make_livecell(tmp_path)
    # A real TIFF where an escaping file_name would lead: loading it would be a silent mistake.
    tifffile.imwrite(tmp_path / "livecell/secret.tif", np.zeros((30, 40), np.uint8))
    breaker, names = COCO_FAULTS[case]
    breaker(coco)
    write_coco(tmp_path, coco)
    expect_error(
        lambda: _load_all("livecell", tmp_path), ValueError, [str(tmp_path / ANN), *names], tmp_path
    )


@pytest.mark.parametrize("case", sorted(COCO_TEXT_FAULTS))
def test_livecell_broken_json_text(tmp_path, case):
    make_livecell(tmp_path)
    path = tmp_path / ANN
    path.write_text(COCO_TEXT_FAULTS[case](path.read_text()))
    expect_error(lambda: _load_all("livecell", tmp_path), ValueError, [str(path)], tmp_path)


def test_livecell_polygon_a_little_outside_is_clipped(tmp_path):
    """Within one image side of the frame pycocotools clips exactly: the square 30 x 40 frame
    holds rows 0-9 and columns 35-39 of a polygon reaching to (-5, -5) and (45, 10)."""
    coco = make_livecell(tmp_path)
    coco["annotations"][:2] = [{**coco["annotations"][0], "segmentation": _square(35, -5, 45, 10)}]
    write_coco(tmp_path, coco)

    def check(samples):
        labels = samples[0][1]
        assert set(np.unique(labels)) == {0, 1}
        rows, cols = np.nonzero(labels)
        assert (rows.min(), rows.max(), cols.min(), cols.max()) == (0, 9, 35, 39)

    expect_intact(lambda: _load_all("livecell", tmp_path), check, tmp_path)


# ---------------------------------------------------------------- zip archives


def _zip(members: list[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Duplicate name" is the point of a case
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("TOP/ok.txt", b"fine")  # a good member first: nothing may be written
            for name, data in members:
                z.writestr(name, data)
    return buf.getvalue()


def _typed(name: str, kind: int, data: bytes = b"") -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.external_attr = (kind | 0o644) << 16
    return info, data


def _patch_headers(b: bytes, local_at: int, central_at: int, value: bytes) -> bytes:
    """Overwrite a field in every local (PK\\3\\4) and central (PK\\1\\2) header."""
    out = bytearray(b)
    for sig, at in ((b"PK\x03\x04", local_at), (b"PK\x01\x02", central_at)):
        i = out.find(sig)
        while i >= 0:
            out[i + at : i + at + len(value)] = value
            i = out.find(sig, i + 4)
    return bytes(out)


def _corrupt_member(b: bytes) -> bytes:
    i = b.index(b"hello world hello")
    return _flip(b, i + 3)


BAD_ZIPS: dict[str, bytes] = {
    "slip": _zip([("TOP/../../evil.txt", b"escaped")]),
    "slip-top": _zip([("../evil.txt", b"escaped")]),
    "slip-dot": _zip([("TOP/./../../../evil.txt", b"escaped")]),
    "absolute": _zip([("/tmp/unetlib-evil.txt", b"escaped")]),
    "backslash": _zip([("TOP\\..\\..\\evil.txt", b"escaped")]),
    "drive": _zip([("C:/evil.txt", b"escaped")]),
    "symlink": _zip([_typed("TOP/link", stat.S_IFLNK, b"/etc/passwd")]),
    "fifo": _zip([_typed("TOP/pipe", stat.S_IFIFO)]),
    "char-device": _zip([_typed("TOP/dev", stat.S_IFCHR)]),
    "duplicate-name": _zip([("TOP/ok.txt", b"other")]),
    "file-and-folder": _zip([("TOP/a", b"file"), ("TOP/a/b", b"inside")]),
    "above-strip": _zip([("loose.txt", b"top level")]),
    "crc-mismatch": _corrupt_member(_zip([("TOP/b.txt", b"hello world hello world")])),
    "unknown-compression": _patch_headers(_zip([]), 8, 10, struct.pack("<H", 99)),
    "encrypted": _patch_headers(_zip([]), 6, 8, struct.pack("<H", 1)),
    "not-a-zip": b"<html>404 Not Found</html>",
    "empty": b"",
    "cut-half": _zip([("TOP/c.txt", b"x" * 5000)])[:3000],
}


class FaultHandler(Handler):
    """`Handler` plus /zip/NAME (the archives above) and /fault/KIND/FILE (broken responses)."""

    def do_GET(self):
        parts = self.path.split("/")
        if len(parts) == 3 and parts[1] == "zip":
            return self._send(200, BAD_ZIPS[parts[2].removesuffix(".zip")])
        if len(parts) != 4 or parts[1] != "fault":
            return super().do_GET()
        kind, body = parts[2], FILES["/" + parts[3]]
        if kind.startswith("http-"):
            return self.send_error(int(kind[5:]))
        if kind == "redirect-loop":
            self.send_response(302)
            self.send_header("Location", self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        return self._fault(kind, body)

    def _fault(self, kind: str, body: bytes) -> None:
        half = body[: len(body) // 2]
        sends = {
            "cl-nothing": (len(body), b""),
            "cl-one-byte": (len(body), body[:1]),
            "cl-half": (len(body), half),
            "cl-all-but-one": (len(body), body[:-1]),
            "cl-too-small": (len(body) // 2, body),
            "nolen-half": (None, half),
            "nolen-all-but-one": (None, body[:-1]),
            "nolen-empty": (None, b""),
            "html-200": (None, b"<html><body>Service Unavailable</body></html>"),
        }
        if kind in ("reset", "stall"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(half)
            self.wfile.flush()
            if kind == "stall":
                time.sleep(1.5)
            else:
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
            self.close_connection = True
            return
        length, data = sends[kind]
        self._send(200, data, length)

    def _send(self, code: int, data: bytes, length: int | None = -1) -> None:
        self.send_response(code)
        if length is not None:
            self.send_header("Content-Length", str(len(data) if length == -1 else length))
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    def finish(self):
        try:
            super().finish()
        except OSError:  # the reset case closed the socket under us
            pass


@pytest.fixture(scope="module")
def fault_server():
    with serve(FaultHandler) as url:
        yield url


def _zip_setup(tmp_path: Path) -> Path:
    """A data root two levels down (so that ``../../`` lands inside the watched folder) that
    already holds another set and a file of the user."""
    root = tmp_path / "a/b/root"
    (root / "OTHER").mkdir(parents=True)
    (root / "OTHER/keep.txt").write_text("someone's data")
    (tmp_path / "outside.txt").write_text("not the fetch's")
    return root


@pytest.mark.parametrize("via", ["fetch", "safe_extract"])
@pytest.mark.parametrize("case", sorted(BAD_ZIPS))
def test_hostile_or_broken_zip(fault_server, tmp_path, case, via):
    root = _zip_setup(tmp_path)
    if via == "fetch":
        src = Source(f"http://example.invalid/{case}.zip", None, "OUT", extract=True, strip=1)
        url = f"{fault_server}/zip/{case}.zip"
        action = lambda: fetch(  # noqa: E731
            "z", root, base_url=f"{fault_server}/zip", sources={"z": (src,)}, log=lambda m: None
        )
        names = [url]
    else:
        archive = tmp_path / f"{case}.zip"
        archive.write_bytes(BAD_ZIPS[case])
        action = lambda: safe_extract(archive, root / "OUT", strip=1)  # noqa: E731
        names = [str(archive)]
    expect_error(action, FetchError, names, tmp_path)
    assert (
        not Path("/tmp/unetlib-evil.txt").exists() and not (tmp_path.parent / "evil.txt").exists()
    )


# ---------------------------------------------------------------- downloads


DOWNLOAD_KINDS = [
    "cl-nothing",
    "cl-one-byte",
    "cl-half",
    "cl-all-but-one",
    "cl-too-small",
    "nolen-half",
    "nolen-all-but-one",
    "nolen-empty",
    "html-200",
    "reset",
    "http-403",
    "http-404",
    "http-500",
    "redirect-loop",
]
DOWNLOAD_FILES = ["ann.json", "frame.tif", "frame.png", "DIC-C2DH-HeLa.zip"]


def _fetch_one(server: str, kind: str, file: str, root: Path, timeout: float = 10.0):
    extract = file.endswith(".zip")
    dest = "OUT" if extract else f"OUT/{file}"
    src = Source(f"http://example.invalid/{file}", None, dest, extract=extract, strip=1)
    return lambda: fetch(
        "d",
        root,
        base_url=f"{server}/fault/{kind}",
        sources={"d": (src,)},
        force=True,  # a folder OUT with a file of the user is there: download anyway
        timeout=timeout,
        log=lambda m: None,
    )


@pytest.mark.parametrize("file", DOWNLOAD_FILES)
@pytest.mark.parametrize("kind", DOWNLOAD_KINDS)
def test_broken_download(fault_server, tmp_path, kind, file):
    root = tmp_path / "root"
    (root / "OUT").mkdir(parents=True)  # the set's folder exists, with a file of the user
    (root / "OUT/notes.txt").write_text("mine")
    url = f"{fault_server}/fault/{kind}/{file}"
    expect_error(_fetch_one(fault_server, kind, file, root), FetchError, [url], tmp_path)


def test_stalled_download_times_out(fault_server, tmp_path):
    root = tmp_path / "root"
    (root / "OUT").mkdir(parents=True)
    url = f"{fault_server}/fault/stall/ann.json"
    action = _fetch_one(fault_server, "stall", "ann.json", root, timeout=0.3)
    expect_error(action, FetchError, [url, "interrupted"], tmp_path)
