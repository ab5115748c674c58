"""unetlib.paths: where the data folder is found.

Order: the argument, $UNETLIB_DATA, ./data, ../shared/data (relative to the project root).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import unetlib
from unetlib import paths
from unetlib.paths import data_root


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A fake project root (``tmp/work/main``) with no data folders yet, and no $UNETLIB_DATA."""
    root = tmp_path / "work" / "main"
    root.mkdir(parents=True)
    monkeypatch.setattr(paths, "PROJECT_ROOT", root)
    monkeypatch.delenv("UNETLIB_DATA", raising=False)
    return root


def test_project_root_is_the_folder_holding_the_package():
    assert (paths.PROJECT_ROOT / "unetlib" / "paths.py").is_file()
    assert Path(unetlib.__file__).resolve().parent.parent == paths.PROJECT_ROOT


@pytest.mark.parametrize("kind", [str, Path])
def test_explicit_root_wins_over_everything(project, tmp_path, monkeypatch, kind):
    (project / "data").mkdir()
    monkeypatch.setenv("UNETLIB_DATA", str(tmp_path / "env"))
    (tmp_path / "env").mkdir()
    mine = tmp_path / "mine"
    mine.mkdir()
    got = data_root(kind(mine))
    assert isinstance(got, Path)
    assert got == mine


def test_explicit_root_need_not_exist(project, tmp_path):
    """No existence check: a missing folder is returned as is (``fetch`` creates it)."""
    missing = tmp_path / "does" / "not" / "exist"
    assert data_root(missing) == missing
    assert not missing.exists()


def test_explicit_root_expands_the_home_folder(project, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_root("~/cells") == tmp_path / "home" / "cells"


def test_environment_variable_comes_second(project, tmp_path, monkeypatch):
    (project / "data").mkdir()
    monkeypatch.setenv("UNETLIB_DATA", str(tmp_path / "from_env"))
    # taken even though it does not exist and ./data does
    assert data_root() == tmp_path / "from_env"
    assert data_root(None) == tmp_path / "from_env"


def test_environment_variable_expands_the_home_folder(project, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("UNETLIB_DATA", "~/d")
    assert data_root() == tmp_path / "home" / "d"


def test_empty_environment_variable_is_ignored(project, monkeypatch):
    (project / "data").mkdir()
    monkeypatch.setenv("UNETLIB_DATA", "")
    assert data_root() == project / "data"


def test_project_data_before_shared_data(project):
    (project / "data").mkdir()
    (project.parent / "shared" / "data").mkdir(parents=True)
    assert data_root() == project / "data"


def test_shared_data_when_there_is_no_project_data(project):
    (project.parent / "shared" / "data").mkdir(parents=True)
    assert data_root() == project.parent / "shared" / "data"


def test_a_file_named_data_is_not_a_data_folder(project):
    (project / "data").write_text("not a folder")
    (project.parent / "shared" / "data").mkdir(parents=True)
    assert data_root() == project.parent / "shared" / "data"


def test_first_candidate_when_nothing_exists(project):
    got = data_root()
    assert got == project / "data"
    assert not got.exists()  # nothing is created


def test_relative_to_the_project_root_not_the_working_directory(project, tmp_path, monkeypatch):
    """Notebooks run from notebooks/ or book/ must find the same data as the project root."""
    elsewhere = tmp_path / "elsewhere" / "notebooks"
    (elsewhere / "data").mkdir(parents=True)
    (elsewhere.parent / "shared" / "data").mkdir(parents=True)
    (project.parent / "shared" / "data").mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    assert data_root() == project.parent / "shared" / "data"
    (project / "data").mkdir()
    assert data_root() == project / "data"
    assert data_root().is_absolute()


def test_shown_paths_are_relative_even_through_a_link(tmp_path):
    from unetlib.paths import PROJECT_ROOT, shown

    assert shown(PROJECT_ROOT / "book" / "x.ipynb") == "book/x.ipynb"
    assert shown(PROJECT_ROOT.parent / "elsewhere" / "x") == "../elsewhere/x"
    # the data folder lies wherever a machine keeps it: pages name it, not its place
    from unetlib.paths import data_root

    assert shown(data_root()) == "<data root>"
    assert shown(data_root() / "isbi2012" / "a.tif") == "<data root>/isbi2012/a.tif"
    target = tmp_path / "elsewhere"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    assert shown(link / "f.txt") == "f.txt"  # outside the project: the name only
    assert "/" not in shown("/etc/passwd")


def _png_with_chunk(data: bytes) -> tuple[bytes, np.ndarray]:
    """A small PNG with a private ancillary chunk ``data`` right after its header."""
    import io
    import struct
    import zlib

    from PIL import Image

    pixels = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    raw = buf.getvalue()
    body = b"teSt" + data
    chunk = struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    return raw[:33] + chunk + raw[33:], pixels


def test_png_without_path_lookalikes_keeps_the_picture_and_clears_the_text():
    import base64
    import io

    from PIL import Image

    from unetlib.paths import MACHINE_PATH_LOOKALIKE, png_without_path_lookalikes

    rng = np.random.default_rng(0)
    for _ in range(50):  # noise pictures until one's base64 reads like a path somewhere
        pixels = rng.integers(0, 256, (160, 160), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="PNG")
        text = base64.b64encode(buf.getvalue()).decode()
        if MACHINE_PATH_LOOKALIKE.search(text):
            break
    assert MACHINE_PATH_LOOKALIKE.search(text)
    cleared = png_without_path_lookalikes(text)
    assert not MACHINE_PATH_LOOKALIKE.search(cleared)
    again = np.asarray(Image.open(io.BytesIO(base64.b64decode(cleared))))
    assert np.array_equal(again, pixels)
    clean = base64.b64encode(_png_with_chunk(b"abc")[0]).decode()
    assert png_without_path_lookalikes(clean) is clean  # nothing to clear: unchanged
    # a lookalike outside the image data cannot be split away: an error, not a silent pass
    # (the chunk's data starts at byte 41; byte 42 begins a base64 group, which reads "/tmp")
    png, _ = _png_with_chunk(b"x" + base64.b64decode("/tmp") + b"yz")
    with pytest.raises(ValueError, match="outside the PNG's image data: /tmp"):
        png_without_path_lookalikes(base64.b64encode(png).decode())
    with pytest.raises(ValueError, match="not a PNG"):
        png_without_path_lookalikes(base64.b64encode(b"GIF89a" + base64.b64decode("/tmp")).decode())


def test_a_path_lookalike_includes_the_clone_folder_as_a_whole_segment():
    from unetlib.paths import MACHINE_PATH_LOOKALIKE

    assert MACHINE_PATH_LOOKALIKE.search("Ab/p/Cd") and MACHINE_PATH_LOOKALIKE.search("x/P/y")
    assert MACHINE_PATH_LOOKALIKE.search("Ab/p+Cd") and MACHINE_PATH_LOOKALIKE.search("Ab/p")
    assert not MACHINE_PATH_LOOKALIKE.search("Ab/pCd/") and not MACHINE_PATH_LOOKALIKE.search("/p9")


def _noise_jpeg_with_lookalike(restart_blocks: int, shape=(128, 160, 3)) -> tuple[str, np.ndarray]:
    """Base64 of a noise JPEG (``unetlib.widgets.encode_image``) whose text reads like a path."""
    import base64

    from unetlib.paths import MACHINE_PATH_LOOKALIKE
    from unetlib.widgets import encode_image

    rng = np.random.default_rng(0)
    for _ in range(200):
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        text = base64.b64encode(encode_image(pixels, "jpeg", 90, 2, restart_blocks)).decode()
        if MACHINE_PATH_LOOKALIKE.search(text):
            return text, pixels
    raise AssertionError("no noise picture read like a path")


def _decoded(text: str) -> np.ndarray:
    import base64
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))))


def test_jpeg_without_path_lookalikes_keeps_the_picture_and_clears_the_text():
    from unetlib.paths import MACHINE_PATH_LOOKALIKE, jpeg_without_path_lookalikes

    text, _ = _noise_jpeg_with_lookalike(restart_blocks=2)
    cleared = jpeg_without_path_lookalikes(text)
    assert not MACHINE_PATH_LOOKALIKE.search(cleared)
    assert np.array_equal(_decoded(cleared), _decoded(text))  # fill bytes: the same pixels
    assert jpeg_without_path_lookalikes(cleared) is cleared  # nothing left to clear
    with pytest.raises(ValueError, match="not a JPEG"):
        jpeg_without_path_lookalikes("/tmpAAAA")


def test_jpeg_without_restart_markers_cannot_always_be_cleared():
    """Without restart markers only a comment after the start marker can shift the text: three
    texts in all, and a large noise picture reads like a path in each. An error, not a pass."""
    from unetlib.paths import jpeg_without_path_lookalikes

    text, _ = _noise_jpeg_with_lookalike(restart_blocks=0, shape=(512, 512, 3))
    with pytest.raises(ValueError, match="every choice of fill bytes"):
        jpeg_without_path_lookalikes(text)


def test_a_progressive_jpeg_is_refused():
    import base64
    import io

    from PIL import Image

    from unetlib.paths import MACHINE_PATH_LOOKALIKE, jpeg_without_path_lookalikes

    rng = np.random.default_rng(1)
    for _ in range(200):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(
            buf, format="JPEG", progressive=True)
        text = base64.b64encode(buf.getvalue()).decode()
        if MACHINE_PATH_LOOKALIKE.search(text):
            break
    with pytest.raises(ValueError, match="progressive"):
        jpeg_without_path_lookalikes(text)


def test_a_cleared_jpeg_decodes_to_the_same_pixels_in_chromium():
    """The fill bytes are the standard's; a browser's decoder (Chromium's) skips them too."""
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    sync_api = pytest.importorskip("playwright.sync_api")
    if chromium is None:
        pytest.skip("Debian chromium not installed (make setup)")
    from unetlib.paths import jpeg_without_path_lookalikes

    text, _ = _noise_jpeg_with_lookalike(restart_blocks=2)
    cleared = jpeg_without_path_lookalikes(text)
    draw = """async (src) => { const im = new Image(); im.src = 'data:image/jpeg;base64,' + src;
        await im.decode(); const canvas = document.createElement('canvas');
        canvas.width = im.width; canvas.height = im.height;
        const context = canvas.getContext('2d'); context.drawImage(im, 0, 0);
        return Array.from(context.getImageData(0, 0, im.width, im.height).data); }"""
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"])
        try:
            page = browser.new_page()
            before, after = page.evaluate(draw, text), page.evaluate(draw, cleared)
        finally:
            browser.close()
    assert len(after) == 128 * 160 * 4 and after == before


def test_picture_without_path_lookalikes_dispatches_by_format_and_refuses_the_rest():
    from unetlib.paths import (
        MACHINE_PATH_LOOKALIKE,
        jpeg_without_path_lookalikes,
        picture_without_path_lookalikes,
    )

    text, _ = _noise_jpeg_with_lookalike(restart_blocks=2)
    cleared = jpeg_without_path_lookalikes(text)
    assert picture_without_path_lookalikes(text, "image/jpeg") == cleared
    assert picture_without_path_lookalikes(text, "jpeg") == cleared
    with pytest.raises(ValueError, match="not a PNG"):  # a JPEG labelled PNG is not passed
        picture_without_path_lookalikes(text, "png")
    with pytest.raises(ValueError, match="image/gif picture"):
        picture_without_path_lookalikes("R0lG/tmpAAAA", "image/gif")
    assert picture_without_path_lookalikes("R0lGAAAA", "image/gif") == "R0lGAAAA"
    assert not MACHINE_PATH_LOOKALIKE.search(cleared)


def test_a_clones_folder_names_are_cleared_from_pictures_too():
    """A scan for the path of the machine that made a page may look for its clone folder's name
    (``/tmp/mb.zopG/p``: ``zopG``) in any case, and base64 holds such a run by chance."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    from unetlib.paths import own_folder_words, picture_without_path_lookalikes

    assert own_folder_words("/tmp/mb.zopG/p") == ("zopG",)
    assert own_folder_words("/tmp/tmp.Ab3dE9xYzQ/p") == ("Ab3dE9xYzQ",)
    rng = np.random.default_rng(0)
    for fmt in ("png", "jpeg"):
        buf = io.BytesIO()
        picture = Image.fromarray(rng.integers(0, 255, (64, 96), dtype=np.uint8))
        if fmt == "png":
            picture.save(buf, "png")
        else:
            picture.save(buf, "jpeg", quality=70, restart_marker_blocks=2)
        data = base64.b64encode(buf.getvalue()).decode("ascii")
        word = data[len(data) // 2:len(data) // 2 + 4].swapcase()  # a run that is there
        assert word.lower() in data.lower()
        cleared = picture_without_path_lookalikes(data, fmt, (word,))
        assert word.lower() not in cleared.lower()
        assert np.array_equal(_decoded(cleared), _decoded(data))
