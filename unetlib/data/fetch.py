"""Downloading the data sets from their official sources, safely.

- Every file is streamed to a unique ``*.part`` temp file in the destination folder, its SHA-256
  is checked, and only then is it moved into place with ``os.replace``: the destination never
  holds a partial or unverified file. Any exception (including ``KeyboardInterrupt``, and SIGTERM
  under the command-line tool) removes the temp file; a run killed with SIGKILL can leave a
  ``*.part`` file behind, which the next ``fetch`` deletes.
- Zip archives are checked before anything is written: a member with an absolute path, a ``..``
  component, a drive letter, a symbolic link or another special file type is refused (zip slip).
  They are extracted into a temp folder next to the target, which is renamed into place.
- Without network access the error names the URL and says how to proceed offline.

Checksums: where a SHA-256 is recorded in `SOURCES`, a mismatch is an error. Where none is
known (``sha256=None``) the file is accepted and its computed hash is printed and written next
to the data (``<target>/.sha256``) so that the value can be recorded. The Cell Tracking
Challenge hashes are those recorded by the torch-em project (``torch_em/data/datasets/
light_microscopy/ctc.py``); they were not re-verified here (no network), and a re-packaged
upstream zip would fail the check (pass ``verify=False`` / ``--no-verify`` knowingly).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..paths import data_root

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
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _remove_stale_parts(folder: Path) -> None:
    for p in folder.glob(".*.part"):
        p.unlink(missing_ok=True)
    for p in folder.glob(".*.download"):
        p.unlink(missing_ok=True)
    for pattern in (".*.extracting", ".*.new"):
        for p in folder.glob(pattern):
            shutil.rmtree(p, ignore_errors=True)


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
    server's Content-Length) and on a checksum mismatch; ``dest`` is then untouched.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        got = 0
        with os.fdopen(fd, "wb") as out:
            try:
                response = urllib.request.urlopen(url, timeout=timeout)
            except urllib.error.HTTPError as exc:
                raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise FetchError(
                    f"cannot reach {url} ({reason}). Are you offline? Download the file by hand "
                    "and unpack it under the data root, or point --root / $UNETLIB_DATA at an "
                    "existing copy"
                ) from exc
            with response:
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
            out.flush()
            os.fsync(out.fileno())
        digest = h.hexdigest()
        if sha256 is not None and digest != sha256.lower():
            raise FetchError(
                f"{url}: SHA-256 mismatch (expected {sha256}, got {digest}); the file was discarded"
            )
        os.replace(tmp, dest)
        return digest
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _member_parts(info: zipfile.ZipInfo, archive: Path) -> tuple[str, ...]:
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
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise FetchError(f"{archive}: not a valid zip archive ({exc})") from exc
    with zf:
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
        need = sum(info.file_size for info, _ in plan)
        free = shutil.disk_usage(target.parent).free
        if need > free:
            raise FetchError(
                f"{archive}: needs {need / 1e9:.2f} GB to extract, only {free / 1e9:.2f} GB free "
                f"in {target.parent}"
            )
        tmp = Path(
            tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".extracting", dir=target.parent)
        )
        try:
            root_resolved = tmp.resolve()
            for info, parts in plan:
                out = tmp.joinpath(*parts)
                if not out.resolve().is_relative_to(root_resolved):
                    raise FetchError(f"{archive}: refusing member {info.filename!r}")
                if info.is_dir():
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


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
    local server). force: download again even if the data are present. verify=False skips the
    SHA-256 comparison (the hash is still computed and reported). sources: a registry to use
    instead of `SOURCES`.
    """
    registry = SOURCES if sources is None else sources
    if name not in registry:
        raise ValueError(f"unknown data set {name!r}; fetchable: {', '.join(sorted(registry))}")
    root = data_root(root)
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_parts(root)
    for src in registry[name]:
        url = src.url
        if base_url is not None:
            url = base_url.rstrip("/") + "/" + url.rsplit("/", 1)[-1]
        dest = root / src.dest
        marker = dest / f".fetched-{url.rsplit('/', 1)[-1]}"
        if src.extract:
            # A folder filled by an earlier fetch (marker) or, for a single-archive set, by hand.
            present = marker.exists() or (
                len(registry[name]) == 1 and dest.is_dir() and any(dest.iterdir())
            )
        else:
            present = dest.is_file()
        if present and not force:
            log(f"{dest} already present; skipping {url} (force=True downloads again)")
            continue
        expected = src.sha256 if verify else None
        if src.extract:
            dest.parent.mkdir(parents=True, exist_ok=True)
            _remove_stale_parts(dest.parent)
            archive = dest.parent / f".{dest.name}.{url.rsplit('/', 1)[-1]}.download"
            log(f"downloading {url}")
            try:
                digest = download(url, archive, expected, timeout=timeout)
                staged = dest.parent / f".{dest.name}.new"
                shutil.rmtree(staged, ignore_errors=True)
                safe_extract(archive, staged, strip=src.strip)
            finally:
                archive.unlink(missing_ok=True)
            _install_dir(staged, dest)
            marker.write_text(url + "\n", encoding="utf-8")
        else:
            log(f"downloading {url}")
            digest = download(url, dest, expected, timeout=timeout)
        _report_hash(src, digest, dest, log)
    return root / registry[name][0].dest.split("/")[0]


def _install_dir(staged: Path, dest: Path) -> None:
    """Move ``staged`` to ``dest``, merging into an existing folder (e.g. livecell/ holding
    JSON files already) without overwriting files that are there."""
    if not dest.exists():
        os.replace(staged, dest)
        return
    try:
        for item in staged.iterdir():
            target = dest / item.name
            if target.exists():
                if target.is_dir():
                    shutil.rmtree(target)
                else:
                    target.unlink()
            os.replace(item, target)
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def _report_hash(src: Source, digest: str, dest: Path, log: Callable[[str], None]) -> None:
    if src.sha256 is None:
        log(f"no recorded SHA-256 for {src.url}; computed {digest}")
        record = (dest if dest.is_dir() else dest.parent) / ".sha256"
        with open(record, "a", encoding="utf-8") as f:
            f.write(f"{digest}  {src.url}\n")
    elif digest != src.sha256:
        log(f"warning: {src.url} not verified (computed {digest}, recorded {src.sha256})")
    else:
        log(f"verified SHA-256 of {src.url}")


def main_fetch(name: str, root: str | None, base_url: str | None, force: bool, verify: bool) -> int:
    try:
        where = fetch(name, root, base_url=base_url, force=force, verify=verify)
    except (FetchError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{name} is in {where}")
    return 0
