"""`python -m unetlib.data fetch` against a local http.server: checksums, atomic writes,
truncated downloads, zip slip, links, offline errors and kills."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import io
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from unetlib.data import load_dataset
from unetlib.data.__main__ import main as cli
from unetlib.data.fetch import (
    FetchError,
    Source,
    _json_incomplete,
    download,
    fetch,
    safe_extract,
)

PROJECT = Path(__file__).resolve().parent.parent


def _tif_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, a)
    return buf.getvalue()


def ctc_zip(top: str = "DIC-C2DH-HeLa") -> bytes:
    """A tiny CTC training archive laid out like the official zips (one top folder)."""
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{top}/", b"")
        for seq in ("01", "02"):
            for t in (0, 1):
                z.writestr(
                    f"{top}/{seq}/t{t:03d}.tif",
                    _tif_bytes(rng.integers(0, 256, (16, 16)).astype(np.uint8)),
                )
                lab = np.zeros((16, 16), np.uint16)
                lab[2:7, 2:7], lab[8:14, 8:14] = 1, 2
                z.writestr(f"{top}/{seq}_GT/SEG/man_seg{t:03d}.tif", _tif_bytes(lab))
    return buf.getvalue()


def evil_zip(kind: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("TOP/ok.txt", b"fine")  # a good member first: nothing may be written
        if kind == "slip":
            z.writestr("TOP/../../evil.txt", b"escaped")
        elif kind == "absolute":
            z.writestr("/tmp/unetlib-evil.txt", b"escaped")
        elif kind == "backslash":
            z.writestr("TOP\\..\\..\\evil.txt", b"escaped")
        elif kind == "symlink":
            info = zipfile.ZipInfo("TOP/link")
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, "/etc/passwd")
        elif kind == "fifo":
            info = zipfile.ZipInfo("TOP/pipe")
            info.external_attr = (stat.S_IFIFO | 0o644) << 16
            z.writestr(info, b"")
    return buf.getvalue()


def png_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    iio.imwrite(buf, a, extension=".png")
    return buf.getvalue()


GOOD = ctc_zip()
FRAME = (np.arange(64 * 64).reshape(64, 64) % 251).astype(np.uint8)
FILES = {
    "/DIC-C2DH-HeLa.zip": GOOD,
    "/plain.bin": b"0123456789" * 1000,
    "/ann.json": json.dumps(
        {"images": [{"id": i, "file_name": f"f{i}.tif"} for i in range(200)], "annotations": []}
    ).encode(),
    "/frame.tif": _tif_bytes(FRAME),
    "/frame.png": png_bytes(FRAME),
}
for _kind in ("slip", "absolute", "backslash", "symlink", "fifo"):
    FILES[f"/{_kind}.zip"] = evil_zip(_kind)


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        path = self.path
        if path.startswith(("/nolength/", "/nolength-full/")):  # no Content-Length, then close
            body = FILES["/" + path.split("/", 2)[2]]
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body if path.startswith("/nolength-full/") else body[: len(body) // 2])
            self.close_connection = True
            return
        if path.startswith("/truncated/"):  # promise more bytes than are sent, then hang up
            body = FILES["/" + path.split("/", 2)[2]]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body) + 5000))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if path.startswith("/slow/"):  # a download that takes ~20 s: for the kill tests
            body = FILES["/" + path.split("/", 2)[2]]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                for i in range(0, len(body), 256):
                    self.wfile.write(body[i : i + 256])
                    self.wfile.flush()
                    time.sleep(0.2)
            except (BrokenPipeError, ConnectionResetError):
                pass
            return
        body = FILES.get(path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextlib.contextmanager
def serve(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """A threaded http.server on 127.0.0.1 (a free port) for the block; yields its base URL."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def server():
    with serve(Handler) as url:
        yield url


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def registry(sha: str | None, file: str = "DIC-C2DH-HeLa.zip", dest: str = "DIC-C2DH-HeLa"):
    return {"fake": (Source(f"http://example.invalid/{file}", sha, dest, extract=True, strip=1),)}


def leftovers(root: Path) -> list[str]:
    if not root.exists():
        return []
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.name.endswith((".part", ".extracting", ".download", ".new"))
    )


def test_good_archive_extracts_and_loads(server, tmp_path):
    logs = []
    where = fetch("fake", tmp_path, base_url=server, sources=registry(_sha(GOOD)), log=logs.append)
    assert where == tmp_path / "DIC-C2DH-HeLa"
    assert (where / "01/t000.tif").is_file() and (where / "02_GT/SEG/man_seg001.tif").is_file()
    assert leftovers(tmp_path) == [] and any("verified" in m for m in logs)
    ds = load_dataset("DIC-C2DH-HeLa", "test", root=tmp_path)
    assert len(ds) == 2 and ds[0].n_cells == 2
    logs.clear()  # a second fetch finds the data and downloads nothing
    fetch("fake", tmp_path, base_url=server, sources=registry(_sha(GOOD)), log=logs.append)
    assert any("already present" in m for m in logs)
    assert (where / ".fetched-DIC-C2DH-HeLa.zip").is_file()


def test_multi_file_set_installs_archive_next_to_existing_files(server, tmp_path):
    reg = {
        "multi": (
            Source("http://example.invalid/plain.bin", _sha(FILES["/plain.bin"]), "M/p.bin"),
            Source(
                "http://example.invalid/DIC-C2DH-HeLa.zip", _sha(GOOD), "M", extract=True, strip=0
            ),
        )
    }
    fetch("multi", tmp_path, base_url=server, sources=reg, log=lambda m: None)
    assert (tmp_path / "M/p.bin").read_bytes() == FILES["/plain.bin"]
    assert (tmp_path / "M/DIC-C2DH-HeLa/01/t000.tif").is_file() and leftovers(tmp_path) == []
    logs = []
    fetch("multi", tmp_path, base_url=server, sources=reg, log=logs.append)
    assert sum("already present" in m for m in logs) == 2


def test_unknown_checksum_is_computed_and_recorded(server, tmp_path):
    logs = []
    fetch("fake", tmp_path, base_url=server, sources=registry(None), log=logs.append)
    assert any(_sha(GOOD) in m for m in logs)
    assert _sha(GOOD) in (tmp_path / "DIC-C2DH-HeLa/.sha256").read_text()


def test_wrong_checksum_leaves_nothing(server, tmp_path):
    with pytest.raises(FetchError, match="SHA-256 mismatch"):
        fetch("fake", tmp_path, base_url=server, sources=registry("0" * 64), log=lambda m: None)
    assert not (tmp_path / "DIC-C2DH-HeLa").exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("file", ["plain.bin", "DIC-C2DH-HeLa.zip"])
def test_truncated_download_leaves_nothing(server, tmp_path, file):
    dest = tmp_path / "out" / file
    with pytest.raises(FetchError, match="truncated|interrupted"):
        download(f"{server}/truncated/{file}", dest)
    assert not dest.exists() and leftovers(tmp_path) == []


def test_plain_file_download_is_verified(server, tmp_path):
    body = FILES["/plain.bin"]
    assert download(f"{server}/plain.bin", tmp_path / "p.bin", _sha(body)) == _sha(body)
    assert (tmp_path / "p.bin").read_bytes() == body


@pytest.mark.parametrize("kind", ["slip", "absolute", "backslash", "symlink", "fifo"])
def test_malicious_zip_is_refused(server, tmp_path, kind):
    root = tmp_path / "root"
    reg = registry(None, file=f"{kind}.zip", dest="TOP")
    with pytest.raises(FetchError, match="refusing"):
        fetch("fake", root, base_url=server, sources=reg, log=lambda m: None)
    written = sorted(p.name for p in tmp_path.rglob("*"))
    assert written == ["root"], written  # not even the good member, nothing outside
    assert not Path("/tmp/unetlib-evil.txt").exists()


def test_safe_extract_unit(tmp_path):
    arc = tmp_path / "a.zip"
    arc.write_bytes(GOOD)
    out = safe_extract(arc, tmp_path / "x", strip=1)
    assert sorted(p.name for p in out.iterdir()) == ["01", "01_GT", "02", "02_GT"]
    with pytest.raises(FileExistsError):
        safe_extract(arc, tmp_path / "x")
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(FetchError, match="bad.zip"):
        safe_extract(tmp_path / "bad.zip", tmp_path / "y")


def _zip(names: list[str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for n in names:
            z.writestr(n, b"" if n.endswith("/") else n.encode())
    return buf.getvalue()


@pytest.mark.parametrize(
    "names,strip,expected",
    [
        (
            ["ISBI/", "ISBI/train-volume.tif", "ISBI/test-volume.tif"],
            None,
            ["test-volume.tif", "train-volume.tif"],
        ),
        (["train-volume.tif", "test-volume.tif"], None, ["test-volume.tif", "train-volume.tif"]),
        (["images/a/x.tif", "images/b/y.tif"], 0, ["images/a/x.tif", "images/b/y.tif"]),
        (["T/x.tif", "__MACOSX/T/._x.tif"], None, ["x.tif"]),
    ],
)
def test_safe_extract_strip(tmp_path, names, strip, expected):
    arc = tmp_path / "a.zip"
    arc.write_bytes(_zip(names))
    out = safe_extract(arc, tmp_path / "out", strip=strip)
    got = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert got == expected


def test_cli_list_and_describe(tmp_path, capsys):
    assert cli(["list"]) == 0
    assert "isbi2012: https://downloads.imagej.net" in capsys.readouterr().out
    assert cli(["describe", "synthetic"]) == 0
    assert "synthetic [test]: 8 images" in capsys.readouterr().out
    assert cli(["describe", "PhC-C2DH-U373", "--root", str(tmp_path)]) == 1
    assert "PhC-C2DH-U373 folder not found" in capsys.readouterr().err


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_offline_message_names_url(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(
        FetchError, match=r"cannot reach http://127\.0\.0\.1:\d+/DIC-C2DH-HeLa\.zip.*offline"
    ):
        fetch("fake", tmp_path, base_url=url, sources=registry(None), log=lambda m: None)
    assert leftovers(tmp_path) == [] and not (tmp_path / "DIC-C2DH-HeLa").exists()


def test_http_error_and_unknown_name(server, tmp_path):
    with pytest.raises(FetchError, match="HTTP 404"):
        download(f"{server}/nothing.zip", tmp_path / "n.zip")
    with pytest.raises(ValueError, match="unknown data set"):
        fetch("no-such-set", tmp_path)


def test_cli_uses_the_official_registry(server, tmp_path, capsys):
    # The fixture archive is not the official one: the recorded SHA-256 rejects it ...
    rc = cli(["fetch", "DIC-C2DH-HeLa", "--root", str(tmp_path), "--base-url", server])
    assert rc == 1 and "SHA-256 mismatch" in capsys.readouterr().err
    assert not (tmp_path / "DIC-C2DH-HeLa").exists() and leftovers(tmp_path) == []
    # ... and --no-verify accepts it knowingly.
    rc = cli(
        ["fetch", "DIC-C2DH-HeLa", "--root", str(tmp_path), "--base-url", server, "--no-verify"]
    )
    assert rc == 0 and (tmp_path / "DIC-C2DH-HeLa/01/t001.tif").is_file()


def _start_slow_fetch(server: str, root: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(PROJECT))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "unetlib.data",
            "fetch",
            "DIC-C2DH-HeLa",
            "--root",
            str(root),
            "--base-url",
            f"{server}/slow",
            "--no-verify",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # a shell that starts the suite in the background (`make test &`) hands its children
        # SIGINT ignored, and Python then installs no KeyboardInterrupt handler: the fetch would
        # not see the SIGINT this test sends. Restore the default, as a terminal would have it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 30
    while not leftovers(root):  # wait until the temp file is being written
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"fetch did not start: {proc.communicate()}")
        time.sleep(0.05)
    time.sleep(0.3)
    return proc


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_killed_fetch_leaves_no_partial_data(server, tmp_path, sig):
    root = tmp_path / "root"
    proc = _start_slow_fetch(server, root)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    if sig != signal.SIGKILL:
        assert proc.returncode == 130 and b"partial files removed" in err, err
    assert not (root / "DIC-C2DH-HeLa").exists()
    if sig != signal.SIGKILL:
        assert leftovers(root) == []  # cleaned up on the way out
    # SIGKILL cannot be caught: a .part may remain; the next fetch removes it and succeeds.
    fetch("DIC-C2DH-HeLa", root, base_url=server, verify=False, log=lambda m: None)
    assert (root / "DIC-C2DH-HeLa/02/t000.tif").is_file() and leftovers(root) == []


# ---------------------------------------------------------------- a fetch touches only its own


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def live_pid():
    """The pid of a process that runs for the test (another user of the data folder)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def test_fetch_removes_only_its_own_abandoned_temp_files(server, tmp_path, live_pid):
    root = tmp_path / "root"
    root.mkdir()
    dead = _dead_pid()
    keep = [
        f".DIC-C2DH-HeLa.{live_pid}.k3j_x.part",  # a fetch that is running
        f".other-set.{dead}.a1b2.part",  # another data set's
        ".notes.part",  # not a fetch's name at all
        ".DIC-C2DH-HeLa.zip.abc123.part",  # the old naming (no pid): cannot be proven dead
    ]
    gone = [f".DIC-C2DH-HeLa.{dead}.zz9_q.part"]
    for name in keep + gone:
        (root / name).write_bytes(b"someone's bytes")
    (root / f".DIC-C2DH-HeLa.{dead}.qq.extracting").mkdir()
    (root / f".DIC-C2DH-HeLa.{dead}.qq.extracting/x.tif").write_bytes(b"half")
    logs = []
    with pytest.raises(FetchError, match="HTTP 404"):  # and a failed fetch deletes nothing else
        fetch(
            "fake",
            root,
            base_url=server,
            sources=registry(None, file="nothing.zip"),
            log=logs.append,
        )
    assert sorted(p.name for p in root.iterdir()) == sorted(keep)
    assert all((root / n).read_bytes() == b"someone's bytes" for n in keep)
    assert sum("left by a fetch that was killed" in m for m in logs) == 2


def test_temp_files_carry_the_pid(server, tmp_path):
    seen = []

    def progress(got, total):  # look at the folder while the download runs
        seen.extend(p.name for p in tmp_path.iterdir())

    download(f"{server}/plain.bin", tmp_path / "p.bin", progress=progress)
    assert seen and all(n.startswith(f".p.bin.{os.getpid()}.") for n in seen), seen
    assert all(n.endswith(".part") for n in seen) and leftovers(tmp_path) == []


def test_concurrent_fetch_is_refused_and_its_files_kept(server, tmp_path):
    root = tmp_path / "root"
    proc = _start_slow_fetch(server, root)
    try:
        partial = [p for p in root.iterdir() if p.name.endswith(".part")]
        lock = root / ".DIC-C2DH-HeLa.lock"
        assert lock.read_text().split()[0] == str(proc.pid)
        with pytest.raises(FetchError, match=r"\.DIC-C2DH-HeLa\.lock.*another fetch"):
            fetch("DIC-C2DH-HeLa", root, base_url=server, verify=False, log=lambda m: None)
        with pytest.raises(FetchError, match="HTTP 404"):  # another set in the same root
            reg = registry(None, file="nothing.zip", dest="OTHER")
            fetch("fake", root, base_url=server, sources=reg, log=lambda m: None)
        assert all(p.exists() for p in partial) and lock.exists()
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    assert (root / "DIC-C2DH-HeLa/02/t001.tif").is_file() and not lock.exists()
    assert leftovers(root) == []


def test_dead_lock_is_taken_over_live_or_foreign_lock_refused(server, tmp_path, live_pid):
    lock = tmp_path / ".fake.lock"
    reg = registry(_sha(GOOD))
    for who in (f"{live_pid} {socket.gethostname()}", f"{_dead_pid()} another-host", ""):
        lock.write_text(who + "\n")
        with pytest.raises(FetchError, match=r"\.fake\.lock"):
            fetch("fake", tmp_path, base_url=server, sources=reg, log=lambda m: None)
        assert lock.read_text() == who + "\n"  # left as it was
    lock.write_text(f"{_dead_pid()} {socket.gethostname()}\n")
    fetch("fake", tmp_path, base_url=server, sources=reg, log=lambda m: None)
    assert (tmp_path / "DIC-C2DH-HeLa/01/t000.tif").is_file()
    assert not lock.exists() and not list(tmp_path.glob(".fake.lock*"))


def test_force_replaces_only_what_it_installs(server, tmp_path):
    reg = registry(_sha(GOOD))
    where = fetch("fake", tmp_path, base_url=server, sources=reg, log=lambda m: None)
    original = (where / "01/t000.tif").read_bytes()
    (where / "01/t000.tif").write_bytes(b"damaged")
    (where / "01/notes.txt").write_text("mine")  # inside a folder the archive installs
    (where / "results").mkdir()
    (where / "results/seg.tif").write_text("mine too")
    fetch("fake", tmp_path, base_url=server, sources=reg, force=True, log=lambda m: None)
    assert (where / "01/t000.tif").read_bytes() == original
    assert (where / "01/notes.txt").read_text() == "mine"
    assert (where / "results/seg.tif").read_text() == "mine too"
    assert leftovers(tmp_path) == []


def test_force_refuses_to_delete_a_folder_in_the_way(server, tmp_path):
    reg = registry(_sha(GOOD))
    where = fetch("fake", tmp_path, base_url=server, sources=reg, log=lambda m: None)
    in_the_way = where / "02/t001.tif"
    in_the_way.unlink()
    in_the_way.mkdir()
    (in_the_way / "keep.txt").write_text("mine")
    before = (where / "01/t000.tif").read_bytes()
    (where / "01/t000.tif").write_bytes(b"damaged")
    with pytest.raises(FetchError, match=r"02/t001\.tif: a folder where the archive installs"):
        fetch("fake", tmp_path, base_url=server, sources=reg, force=True, log=lambda m: None)
    assert (in_the_way / "keep.txt").read_text() == "mine"
    assert (where / "01/t000.tif").read_bytes() == b"damaged" != before  # nothing moved
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------- downloads without a length


@pytest.mark.parametrize("file", ["ann.json", "frame.tif", "frame.png", "DIC-C2DH-HeLa.zip"])
def test_cut_download_without_length_is_not_installed(server, tmp_path, file):
    extract = file.endswith(".zip")
    dest = "OUT" if extract else f"OUT/{file}"
    src = Source(f"http://example.invalid/{file}", None, dest, extract=extract, strip=1)
    with pytest.raises(FetchError) as err:
        fetch("cut", tmp_path, base_url=f"{server}/nolength", sources={"cut": (src,)})
    msg = str(err.value)
    assert f"{server}/nolength/{file}" in msg and "incomplete or corrupt" in msg, msg
    assert str(tmp_path / dest) in msg
    assert not (tmp_path / dest).exists() and leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == (["OUT"] if not extract else [])
    # The whole file, still without a length, passes the check and is installed.
    fetch("cut", tmp_path, base_url=f"{server}/nolength-full", sources={"cut": (src,)})
    assert (tmp_path / dest).exists() and leftovers(tmp_path) == []


# ---------------------------------------------------------------- permissions


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_installed_files_get_normal_permissions(server, tmp_path, umask_022):
    where = fetch("fake", tmp_path, base_url=server, sources=registry(None), log=lambda m: None)
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in [where, *where.rglob("*")]}
    assert {oct(m) for p, m in modes.items() if p.is_dir()} == {"0o755"}
    assert {oct(m) for p, m in modes.items() if p.is_file()} == {"0o644"}
    assert (where / ".sha256").is_file() and (where / ".fetched-DIC-C2DH-HeLa.zip").is_file()
    download(f"{server}/plain.bin", tmp_path / "sub/p.bin")
    assert oct(stat.S_IMODE((tmp_path / "sub/p.bin").stat().st_mode)) == "0o644"
    assert oct(stat.S_IMODE((tmp_path / "sub").stat().st_mode)) == "0o755"


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1 << 20])
def test_json_completeness_scan(tmp_path, chunk):
    """Every proper prefix of a document is incomplete, whatever the block size (strings with
    brackets, quotes and backslashes cross the block boundaries)."""
    doc = json.dumps({"a": ['x"]}\\', {"b": [1, 2.5e3, None]}], "c": "\\\\", "d": {}})
    path = tmp_path / "a.json"
    path.write_text(doc + "\n")
    assert _json_incomplete(path, chunk) is None
    for cut in range(len(doc)):
        path.write_text(doc[:cut])
        assert _json_incomplete(path, chunk) is not None, doc[:cut]
    for bad in ("<html></html>", "{} {}", "[]]", '"just a string"', "{}x"):
        path.write_text(bad)
        assert _json_incomplete(path, chunk) is not None, bad
