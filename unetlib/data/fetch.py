"""Downloading the data sets from their official sources, safely.

- Every file is streamed to a temp file ``.NAME.<pid>.XXXX.part`` in the destination folder,
  checked (length, SHA-256, completeness) and only then moved into place with ``os.replace``:
  the destination never holds a partial or unverified file. Any exception (including
  ``KeyboardInterrupt``, and SIGTERM under the command-line tool) removes the temp file.
- A fetch deletes only temp files it made itself, or leftovers of *its own data set* whose
  process (the ``<pid>`` in the name) is no longer alive: a run killed with SIGKILL leaves its
  ``.part`` file, the next fetch of that set removes it; a concurrent fetch's files, files of
  other sets and anything without a pid in its name are never touched.
- One fetch of a data set at a time: ``<root>/.<name>.lock`` (created with ``O_CREAT|O_EXCL``)
  holds the pid and host of the fetch that runs. A second fetch of the same set fails with an
  error naming the lock file; a lock whose process is gone (same host) is taken over.
- Without a recorded hash the download's completeness is checked by its type before it is
  installed: a ``.zip`` opens and passes ``testzip``, a ``.json`` is one complete document (its
  brackets close; a streaming scan, so a multi-GB file costs no memory), a ``.tif`` has every
  page's data inside the file, a ``.png`` / ``.jpg`` ends with its end marker and decodes. This
  matters for servers that send no ``Content-Length``: a connection closed early then looks
  like the end of the file. Files of other types are accepted on the length check alone.
- Zip archives are checked before anything is written: a member with an absolute path, a ``..``
  component, a drive letter, a symbolic link or another special file type is refused (zip slip),
  and so is a name listed twice or used for both a file and a folder. They are extracted into a
  temp folder next to the target; a new target is renamed into place, an existing one
  (``--force``, or a folder that holds other files of the set) gets only what the archive
  holds: files replace files of the same name, folders merge, and files the fetch did not
  install (notes, results) are left alone; where the archive has a file and the folder a
  sub-folder of that name (or the reverse) the fetch stops before moving anything. Files that an
  earlier version of the archive installed and the new one lacks stay too (nothing records
  them).
- Files and folders get the usual permissions (``0o666`` / ``0o777`` less the umask, e.g.
  0644 / 0755), not the ``0600`` / ``0700`` of ``mkstemp`` / ``mkdtemp``.
- Without network access the error names the URL and says how to proceed offline.

Checksums: where a SHA-256 is recorded in `SOURCES`, a mismatch is an error. Where none is
known (``sha256=None``) the file is accepted and its computed hash is printed and written next
to the data (``<target>/.sha256``) so that the value can be recorded. The Cell Tracking
Challenge hashes are those recorded by the torch-em project (``torch_em/data/datasets/
light_microscopy/ctc.py``); they were not re-verified here (no network), and a re-packaged
upstream zip would fail the check (pass ``verify=False`` / ``--no-verify`` knowingly).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import shutil
import socket
import stat
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..paths import data_root
from ..provenance import pid_alive

CHUNK = 1 << 20


@dataclass(frozen=True)
class Source:
    """One file to download.

    url: where it lives. sha256: its expected hash (None: unknown, computed and reported).
    dest: for a zip, the folder under the data root its contents go to (``strip`` leading path
    components are removed from member names first; ``None``: the one top folder all members
    share, if there is one); for a plain file, its path under the root.
    """

    url: str
    sha256: str | None
    dest: str
    extract: bool = False
    strip: int | None = None


_CTC_BASE = "http://data.celltrackingchallenge.net/training-datasets/"
_CTC_SHA256 = {  # recorded by torch-em (see the module docstring); not re-verified here
    "BF-C2DL-HSC": "0aa68ec37a9b06e72a5dfa07d809f56e1775157fb674bb75ff904936149657b1",
    "BF-C2DL-MuSC": "ca72b59042809120578a198ba236e5ed3504dd6a122ef969428b7c64f0a5e67d",
    "DIC-C2DH-HeLa": "832fed2d05bb7488cf9c51a2994b75f8f3f53b3c3098856211f2d39023c34e1a",
    "Fluo-C2DL-Huh7": "1912658c1b3d8b38b314eb658b559e7b39c256917150e9b3dd8bfdc77347617d",
    "Fluo-C2DL-MSC": "a083521f0cb673ae02d4957c5e6580c2e021943ef88101f6a2f61b944d671af2",
    "Fluo-N2DH-GOWT1": "1a7bd9a7d1d10c4122c7782427b437246fb69cc3322a975485c04e206f64fc2c",
    "Fluo-N2DH-SIM+": "3e809148c87ace80c72f563b56c35e0d9448dcdeb461a09c83f61e93f5e40ec8",
    "Fluo-N2DL-HeLa": "35dd99d58e071aba0b03880128d920bd1c063783cc280f9531fbdc5be614c82e",
    "PhC-C2DH-U373": "b18185c18fce54e8eeb93e4bbb9b201d757add9409bbf2283b8114185a11bc9e",
    "PhC-C2DL-PSC": "9d54bb8febc8798934a21bf92e05d92f5e8557c87e28834b2832591cdda78422",
}
_LIVECELL = "http://livecell-dataset.s3.eu-central-1.amazonaws.com/LIVECell_dataset_2021/"

#: name -> files to fetch. The CTC zips hold a top folder named after the set.
SOURCES: dict[str, tuple[Source, ...]] = {
    **{
        name: (Source(f"{_CTC_BASE}{name}.zip", sha, name, extract=True),)
        for name, sha in _CTC_SHA256.items()
    },
    # The challenge site (brainiac2.mit.edu/isbi_challenge) is gone; the ImageJ/Fiji download
    # server keeps the organisers' three stacks in one zip.
    "isbi2012": (
        Source(
            "https://downloads.imagej.net/ISBI-2012-challenge.zip", None, "isbi2012", extract=True
        ),
    ),
    "livecell": (
        Source(f"{_LIVECELL}images.zip", None, "livecell", extract=True, strip=0),
        *(
            Source(
                f"{_LIVECELL}annotations/LIVECell/livecell_coco_{s}.json",
                None,
                f"livecell/livecell_coco_{s}.json",
            )
            for s in ("train", "val", "test")
        ),
    ),
}


class FetchError(RuntimeError):
    """A download or an archive failed a check; the message says which and why."""


def sha256_file(path: str | os.PathLike) -> str:
    """Returns the SHA-256 of the file's bytes as a hex string (read in chunks of ``CHUNK``)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------- temp files and permissions

#: ``.LABEL.<pid>.XXXX.part`` (a file being downloaded) or ``...extracting`` (an archive being
#: unpacked); LABEL is the name of what it becomes. mkstemp's XXXX holds no dot.
_TEMP_NAME = re.compile(r"^\.(?P<label>.+)\.(?P<pid>\d{1,10})\.[^.]+\.(?P<kind>part|extracting)$")



def _temp_prefix(label: str) -> str:
    return f".{label}.{os.getpid()}."


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (``/proc``), since
    setting it (the only portable way to read it) races with other threads."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _normal_mode(directory: bool) -> int:
    """The mode ``open``/``mkdir`` would give (0644 / 0755 under umask 022); mkstemp and
    mkdtemp give 0600 / 0700, which would hide the data from other users of the machine."""
    return (0o777 if directory else 0o666) & ~_umask()


def _remove_abandoned(folder: Path, labels: set[str]) -> list[Path]:
    """Delete temp files and folders in ``folder`` named for one of ``labels`` whose process is
    no longer alive (killed with SIGKILL, or a crash of the machine). Anything else stays: the
    files of a fetch that is running, of other data sets, of other programs."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        m = _TEMP_NAME.match(path.name)
        if m is None or m["label"] not in labels or pid_alive(int(m["pid"])):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temp file and a rename: never half a file."""
    fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(path.name), suffix=".part", dir=path.parent)
    try:
        os.fchmod(fd, _normal_mode(directory=False))
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- the per-data-set lock


def _lock_owner() -> str:
    return f"{os.getpid()} {socket.gethostname()}\n"


def _lock_abandoned(content: str) -> bool:
    """A lock is abandoned only when it names a process of this host that no longer exists;
    a lock of another host (a shared file system) or one being written is in use."""
    fields = content.split()
    if len(fields) != 2 or not fields[0].isdigit():
        return False
    return fields[1] == socket.gethostname() and not pid_alive(int(fields[0]))


def _read_lock(lock: Path) -> str | None:
    try:
        return lock.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None


def _take_over(lock: Path, stale: str) -> None:
    """Remove ``lock`` if it still holds ``stale``. The lock is first renamed aside, so that of
    two processes taking over the same dead lock only one removes it; the other, finding the
    winner's lock aside, puts it back (``os.link`` creates it only if the name is free)."""
    aside = lock.with_name(f"{lock.name}.{os.getpid()}.stale")
    try:
        os.rename(lock, aside)
    except FileNotFoundError:
        return
    try:
        if aside.read_text(encoding="utf-8", errors="replace") != stale:
            try:
                os.link(aside, lock)
            except OSError:
                pass
    finally:
        aside.unlink(missing_ok=True)


@contextmanager
def _dataset_lock(root: Path, name: str) -> Iterator[Path]:
    """Hold ``<root>/.<name>.lock`` for the block (see the module docstring)."""
    lock = root / f".{name.replace('/', '_')}.lock"
    mine = _lock_owner()
    for _ in range(5):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            held = _read_lock(lock)
            if held is not None and not _lock_abandoned(held):
                who = " on host ".join(held.split()) or "a process that is starting"
                raise FetchError(
                    f"{lock}: another fetch of {name!r} is running (pid {who}); wait for it, "
                    "or delete the lock file if no such fetch runs"
                ) from None
            if held is not None:
                _take_over(lock, held)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(mine)
        break
    else:
        raise FetchError(f"{lock}: could not take the lock (other fetches keep taking it)")
    try:
        yield lock
    finally:
        if _read_lock(lock) == mine:
            lock.unlink(missing_ok=True)


# ---------------------------------------------------------------- completeness by file type


def _json_incomplete(path: Path, chunk: int = CHUNK) -> str | None:
    """Why ``path`` is not one complete JSON object or array (None: it is). A streaming scan of
    the brackets outside strings, in constant memory, where ``json.load`` of a multi-GB
    annotation file would take many GB: it proves the file was not cut short (the loader then
    parses it and names any other fault)."""
    string = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
    depth, started, ended, carry = 0, False, False, b""
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            text = string.sub(b" ", carry + block)
            cut = text.find(b'"')  # a string that goes on in the next block
            text, carry = (text, b"") if cut < 0 else (text[:cut], _open_string(text[cut:]))
            pos = 0
            for m in re.finditer(rb"[\[\]{}]", text + b"{"):  # the sentinel ends the block
                if depth == 0 and text[pos : m.start()].strip():
                    return "data after the end of the document" if ended else "no { or [ first"
                if m.start() == len(text):
                    break
                if ended:
                    return "data after the end of the document"
                depth += 1 if m.group() in b"{[" else -1
                started = True
                if depth < 0:
                    return "a bracket closes that was never opened"
                ended = depth == 0
                pos = m.end()
    if carry:
        return "it ends inside a string"
    if not started:
        return "it is empty"
    if depth:
        return f"it ends with {depth} bracket(s) still open"
    return None


def _open_string(tail: bytes) -> bytes:
    """What of a string still open at the end of a block matters for the next one: its quote
    and a trailing backslash that escapes the next block's first byte. Its content does not,
    so a hostile endless string costs no memory."""
    body = tail[1:]
    backslashes = len(body) - len(body.rstrip(b"\\"))
    return b'"' + b"\\" * (backslashes % 2)


def _tiff_incomplete(path: Path) -> str | None:
    """Why the TIFF ``path`` is cut short or broken (None: every page's data lies inside the
    file). tifffile logs, rather than raises, a broken chain of pages, so its log is read too."""
    import tifffile

    problems: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            problems.append(record.getMessage())

    handler = _Collect(logging.WARNING)
    log = logging.getLogger("tifffile")
    log.addHandler(handler)
    try:
        size = path.stat().st_size
        with tifffile.TiffFile(path) as tif:
            for page in tif.pages:
                for offset, count in zip(page.dataoffsets, page.databytecounts, strict=False):
                    if offset + count > size:
                        return f"page data at byte {offset}+{count} lies beyond its {size} bytes"
    except Exception as exc:  # corrupt files surface as many exception types
        return f"{type(exc).__name__}: {exc}"
    finally:
        log.removeHandler(handler)
    return problems[0] if problems else None


#: How a whole PNG / JPEG ends (IEND chunk, end-of-image marker): Pillow decodes a file that
#: lacks them, so decoding alone does not prove it complete.
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_JPEG_END = b"\xff\xd9"


def _image_incomplete(path: Path, ending: bytes) -> str | None:
    """Why the PNG/JPEG ``path`` is cut short or does not decode (None: it is whole)."""
    from PIL import Image

    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - len(ending)))
        if f.read() != ending:
            return "it does not end with the format's end marker"
    try:
        with Image.open(path) as im:
            im.load()
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, ...
        return f"{type(exc).__name__}: {exc}"
    return None


def _zip_incomplete(path: Path) -> str | None:
    """Why the zip ``path`` is cut short or broken (None: it opens and every CRC matches)."""
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except Exception as exc:  # BadZipFile, zlib.error, EOFError, ...
        return f"{type(exc).__name__}: {exc}"
    return None if bad is None else f"member {bad!r} fails its CRC check"


_CHECKS: dict[str, Callable[[Path], str | None]] = {
    ".zip": _zip_incomplete,
    ".json": _json_incomplete,
    ".tif": _tiff_incomplete,
    ".tiff": _tiff_incomplete,
    ".png": functools.partial(_image_incomplete, ending=_PNG_END),
    ".jpg": functools.partial(_image_incomplete, ending=_JPEG_END),
    ".jpeg": functools.partial(_image_incomplete, ending=_JPEG_END),
}


def _url_suffix(url: str) -> str:
    return PurePosixPath(urllib.parse.urlsplit(url).path).suffix.lower()


def check_complete(path: str | os.PathLike, kind: str) -> str | None:
    """Why the file at ``path``, of type ``kind`` (a suffix such as ".zip"), is incomplete or
    corrupt; None when it is whole or when there is no check for the type."""
    check = _CHECKS.get(kind.lower())
    return None if check is None else check(Path(path))


# ---------------------------------------------------------------- downloading


def _open_url(url: str, timeout: float):
    try:
        return urllib.request.urlopen(url, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(
            f"cannot reach {url} ({reason}). Are you offline? Download the file by hand "
            "and unpack it under the data root, or point --root / $UNETLIB_DATA at an "
            "existing copy"
        ) from exc


def _stream(url: str, out, timeout: float, progress) -> str:
    """Copy ``url`` into the open file ``out``; returns the SHA-256. A short read against the
    server's Content-Length, a reset or a timeout is a FetchError."""
    h = hashlib.sha256()
    got = 0
    with _open_url(url, timeout) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length is not None and length.isdigit() else None
        while True:
            try:
                block = response.read(CHUNK)
            except Exception as exc:  # http.client.IncompleteRead, resets, timeouts
                raise FetchError(
                    f"{url}: download interrupted after {got} bytes"
                    + (f" of {total}" if total else "")
                    + f" ({type(exc).__name__})"
                ) from exc
            if not block:
                break
            out.write(block)
            h.update(block)
            got += len(block)
            if progress:
                progress(got, total)
    if total is not None and got != total:
        raise FetchError(f"{url}: truncated download ({got} of {total} bytes)")
    return h.hexdigest()


def _download_to_temp(
    url: str,
    dest: Path,
    sha256: str | None,
    *,
    timeout: float,
    progress: Callable[[int, int | None], None] | None = None,
) -> tuple[Path, str]:
    """Download ``url`` into a temp file beside ``dest`` (named for it, with this pid) and check
    it; returns the temp file, which the caller moves or deletes, and its SHA-256."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(dest.name), suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, _normal_mode(directory=False))
        with os.fdopen(fd, "wb") as out:
            digest = _stream(url, out, timeout, progress)
            out.flush()
            os.fsync(out.fileno())
        if sha256 is not None and digest != sha256.lower():
            raise FetchError(
                f"{url}: SHA-256 mismatch (expected {sha256}, got {digest}); the file was discarded"
            )
        if sha256 is None:  # nothing vouches for the bytes: check that the file is whole
            why = check_complete(tmp, _url_suffix(url) or dest.suffix)
            if why is not None:
                raise FetchError(
                    f"{url}: the download is incomplete or corrupt ({why}); {dest} was not "
                    "installed (no SHA-256 is recorded for it, and the server may have closed "
                    "the connection early)"
                )
        return tmp, digest
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def download(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    *,
    timeout: float = 60.0,
    progress: Callable[[int, int | None], None] | None = None,
) -> str:
    """Download ``url`` to ``dest`` atomically; returns the file's SHA-256.

    Raises FetchError when offline, on HTTP errors, on a short read (fewer bytes than the
    server's Content-Length), on a checksum mismatch and, without a checksum, when the file is
    incomplete for its type (see the module docstring); ``dest`` is then untouched and no temp
    file is left.
    """
    dest = Path(dest)
    tmp, digest = _download_to_temp(url, dest, sha256, timeout=timeout, progress=progress)
    try:
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return digest


# ---------------------------------------------------------------- zip archives


def _member_parts(info: zipfile.ZipInfo, archive: str | Path) -> tuple[str, ...]:
    name = info.filename
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if stat.S_ISLNK(mode):
        raise FetchError(f"{archive}: refusing symbolic link member {name!r}")
    if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
        raise FetchError(f"{archive}: refusing special file member {name!r}")
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        raise FetchError(f"{archive}: refusing member with an absolute path {name!r}")
    parts = tuple(p for p in PurePosixPath(norm).parts if p not in ("", "."))
    if ".." in parts:
        raise FetchError(f"{archive}: refusing member that escapes the target {name!r}")
    if "\x00" in norm:
        raise FetchError(f"{archive}: refusing member with a NUL byte in its name")
    return parts


def _plan(
    zf: zipfile.ZipFile, archive: str | Path, strip: int | None
) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    """Every member checked and its path after ``strip``: (info, parts) to extract."""
    checked = [(info, _member_parts(info, archive)) for info in zf.infolist()]
    # macOS resource forks are not data
    checked = [(i, p) for i, p in checked if p and p[0] != "__MACOSX"]
    if strip is None:
        tops = {parts[0] for _, parts in checked if parts}
        only_dirs_at_top = all(len(p) > 1 or i.is_dir() for i, p in checked if p)
        strip = 1 if len(tops) == 1 and only_dirs_at_top else 0
    plan = []
    for info, parts in checked:
        if strip:
            if len(parts) <= strip:
                if info.is_dir() or not parts:
                    continue
                raise FetchError(
                    f"{archive}: member {info.filename!r} lies above the {strip} stripped "
                    "folder level(s)"
                )
            parts = parts[strip:]
        if parts:
            plan.append((info, parts))
    _check_collisions(plan, archive)
    return plan


def _check_collisions(
    plan: list[tuple[zipfile.ZipInfo, tuple[str, ...]]], archive: str | Path
) -> None:
    """Refuse a file listed twice (which copy wins depends on the tool that unpacks it) and a
    name that is a file in one member and a folder in another."""
    files: set[tuple[str, ...]] = set()
    folders: set[tuple[str, ...]] = set()
    for info, parts in plan:
        folders.update(parts[:i] for i in range(1, len(parts)))
        if info.is_dir():
            folders.add(parts)
        elif parts in files:
            raise FetchError(f"{archive}: member {info.filename!r} is listed twice")
        else:
            files.add(parts)
    both = files & folders
    if both:
        name = "/".join(sorted(both)[0])
        raise FetchError(f"{archive}: {name!r} is both a file and a folder in the archive")


def _extract_to_temp(
    archive: Path, target: Path, strip: int | None, shown: str | None = None
) -> Path:
    """Check every member of ``archive``, then extract it into a temp folder beside ``target``
    (``.NAME.<pid>.XXXX.extracting``); returns that folder, which the caller moves or deletes.
    Errors name ``shown`` (the URL of a downloaded archive: its temp file is gone by then)."""
    shown = str(archive) if shown is None else shown
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise FetchError(f"{shown}: not a valid zip archive ({exc})") from exc
    with zf:
        plan = _plan(zf, shown, strip)
        need = sum(info.file_size for info, _ in plan)
        free = shutil.disk_usage(target.parent).free
        if need > free:
            raise FetchError(
                f"{shown}: needs {need / 1e9:.2f} GB to extract, only {free / 1e9:.2f} GB free "
                f"in {target.parent}"
            )
        tmp = Path(
            tempfile.mkdtemp(
                prefix=_temp_prefix(target.name), suffix=".extracting", dir=target.parent
            )
        )
        try:
            os.chmod(tmp, _normal_mode(directory=True))
            root_resolved = tmp.resolve()
            for info, parts in plan:
                _extract_member(zf, info, tmp.joinpath(*parts), root_resolved, shown)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return tmp


def _extract_member(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, out: Path, root: Path, archive: str
) -> None:
    if not out.resolve().is_relative_to(root):
        raise FetchError(f"{archive}: refusing member {info.filename!r}")
    if info.is_dir():
        out.mkdir(parents=True, exist_ok=True)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with zf.open(info) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
        # a bad CRC or deflate stream; an unknown compression method; encryption (RuntimeError)
        raise FetchError(
            f"{archive}: member {info.filename!r} cannot be extracted ({exc})"
        ) from exc


def safe_extract(
    archive: str | os.PathLike, target: str | os.PathLike, *, strip: int | None = 0
) -> Path:
    """Extract a zip into ``target`` (which must not exist yet), refusing unsafe members.

    All members are checked before anything is written; the contents are extracted into a temp
    folder beside ``target`` and renamed into place, so ``target`` appears complete or not at all.
    ``strip`` leading path components are removed from every member (like ``tar --strip``);
    ``strip=None`` removes the single top folder that all members share, if there is one.
    """
    archive, target = Path(archive), Path(target)
    if target.exists():
        raise FileExistsError(f"{target}: already exists")
    tmp = _extract_to_temp(archive, target, strip)
    try:
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


# ---------------------------------------------------------------- installing


def _check_mergeable(staged: Path, dest: Path) -> None:
    """Refuse, before anything moves, an install that would have to delete something in
    ``dest``: a folder where the archive has a file, or a file where it has a folder."""
    if not dest.is_dir():
        raise FetchError(
            f"{dest}: not a folder, but the fetch installs a folder there; move it away and "
            "fetch again"
        )
    for item in staged.iterdir():
        target = dest / item.name
        if not os.path.lexists(target):
            continue
        if item.is_dir():
            _check_mergeable(item, target)
        elif target.is_dir():
            raise FetchError(
                f"{target}: a folder where the archive installs a file; move it away and fetch "
                "again (nothing was changed)"
            )


def _merge(staged: Path, dest: Path) -> None:
    for item in sorted(staged.iterdir()):
        target = dest / item.name
        if item.is_dir() and target.is_dir():
            _merge(item, target)
        else:
            os.replace(item, target)  # a new name, or a file replacing the file of that name


def _install_dir(staged: Path, dest: Path) -> None:
    """Move ``staged`` to ``dest``: renamed whole if ``dest`` does not exist, else merged into
    it, files replacing files of the same name, so that files in ``dest`` that the archive does
    not hold (a user's notes, a set's other downloads) are kept. ``staged`` is gone after."""
    try:
        if not os.path.lexists(dest):
            os.replace(staged, dest)
            return
        _check_mergeable(staged, dest)
        _merge(staged, dest)
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def _record_hash(folder: Path, digest: str, url: str) -> None:
    record = folder / ".sha256"
    old = record.read_text(encoding="utf-8") if record.is_file() else ""
    _write_text_atomic(record, old + f"{digest}  {url}\n")


def _report_hash(src: Source, digest: str, dest: Path, log: Callable[[str], None]) -> None:
    if src.sha256 is None:
        log(f"no recorded SHA-256 for {src.url}; computed {digest}")
        _record_hash(dest if dest.is_dir() else dest.parent, digest, src.url)
    elif digest != src.sha256:
        log(f"warning: {src.url} not verified (computed {digest}, recorded {src.sha256})")
    else:
        log(f"verified SHA-256 of {src.url}")


# ---------------------------------------------------------------- fetch


def _url_of(src: Source, base_url: str | None) -> str:
    if base_url is None:
        return src.url
    return base_url.rstrip("/") + "/" + src.url.rsplit("/", 1)[-1]


def _is_present(src: Source, dest: Path, marker: Path, n_sources: int) -> bool:
    if not src.extract:
        return dest.is_file()
    # A folder filled by an earlier fetch (marker) or, for a single-archive set, by hand.
    return marker.exists() or (n_sources == 1 and dest.is_dir() and any(dest.iterdir()))


def _fetch_archive(
    url: str, dest: Path, sha256: str | None, strip: int | None, timeout: float
) -> str:
    """Download and unpack one archive into ``dest``; returns the archive's SHA-256."""
    archive, digest = _download_to_temp(url, dest, sha256, timeout=timeout)
    try:
        staged = _extract_to_temp(archive, dest, strip, shown=url)
    finally:
        archive.unlink(missing_ok=True)
    _install_dir(staged, dest)
    return digest


def _fetch_source(
    src: Source,
    root: Path,
    n_sources: int,
    *,
    base_url: str | None,
    force: bool,
    verify: bool,
    timeout: float,
    log: Callable[[str], None],
) -> None:
    url = _url_of(src, base_url)
    dest = root / src.dest
    marker = dest / f".fetched-{url.rsplit('/', 1)[-1]}"
    if _is_present(src, dest, marker, n_sources) and not force:
        log(f"{dest} already present; skipping {url} (force=True downloads again)")
        return
    expected = src.sha256 if verify else None
    log(f"downloading {url}")
    if src.extract:
        digest = _fetch_archive(url, dest, expected, src.strip, timeout)
        _write_text_atomic(marker, url + "\n")
    else:
        digest = download(url, dest, expected, timeout=timeout)
    _report_hash(src, digest, dest, log)


def fetch(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    base_url: str | None = None,
    force: bool = False,
    verify: bool = True,
    sources: Mapping[str, tuple[Source, ...]] | None = None,
    timeout: float = 60.0,
    log: Callable[[str], None] = print,
) -> Path:
    """Download data set ``name`` into the data root; returns the folder it lives in.

    base_url: replaces everything before each file name in the URLs (a mirror, or the tests'
    local server). force: download again even if the data are present (replacing only what the
    download installs). verify=False skips the SHA-256 comparison (the hash is still computed and
    reported). sources: a registry to use instead of `SOURCES`. A second fetch of the same set
    while one runs is a FetchError naming the lock file.
    """
    registry = SOURCES if sources is None else sources
    if name not in registry:
        raise ValueError(f"unknown data set {name!r}; fetchable: {', '.join(sorted(registry))}")
    root = data_root(root)
    root.mkdir(parents=True, exist_ok=True)
    with _dataset_lock(root, name):
        for src in registry[name]:
            dest = root / src.dest
            for p in _remove_abandoned(dest.parent, {dest.name}):
                log(f"removed {p.name}, left by a fetch that was killed")
        for src in registry[name]:
            _fetch_source(
                src,
                root,
                len(registry[name]),
                base_url=base_url,
                force=force,
                verify=verify,
                timeout=timeout,
                log=log,
            )
    return root / registry[name][0].dest.split("/")[0]


def main_fetch(name: str, root: str | None, base_url: str | None, force: bool, verify: bool) -> int:
    """:func:`fetch` for the command line: says where the data set is, or prints the error.

    Returns the exit status: 0 when fetched (or already present), 1 on an error."""
    try:
        where = fetch(name, root, base_url=base_url, force=force, verify=verify)
    except (FetchError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{name} is in {where}")
    return 0
