"""Where data, results and checkpoints live."""

from __future__ import annotations

import base64
import os
import re
import struct
import zlib
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data folder: ``root``, else ``$UNETLIB_DATA``, else ``./data``, else ``../shared/data``.

    ``./data`` and ``../shared/data`` are taken relative to the project root (the folder that
    holds ``unetlib/``), so notebooks run from ``notebooks/`` or ``book/`` find the same data.
    Returns the first candidate that exists; if none does, the first candidate (so that a later
    ``fetch`` knows where to write).
    """
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("UNETLIB_DATA")
    if env:
        return Path(env).expanduser()
    candidates = [PROJECT_ROOT / "data", PROJECT_ROOT.parent / "shared" / "data"]
    for c in candidates:
        if c.is_dir():
            return c
    return candidates[0]


def shown(path: str | os.PathLike, data: bool = True) -> str:
    """``path`` as a page or a result file may print it: inside the data folder as
    ``<data root>/...`` (:func:`data_root`: where it lies differs between machines), else
    relative to the project root (``../x`` when it lies beside the project), else with the home
    folder as ``~``; never a path that only exists on the machine that made the page. With
    ``data=False`` (a command to retype) the data folder gets no ``<data root>`` form."""
    given = Path(os.path.abspath(Path(path).expanduser()))  # ``..`` folded, links kept
    root = data_root().resolve()
    for p in (given, given.resolve()) if data else ():  # wherever this machine keeps it
        if p == root or root in p.parents:
            return str(Path("<data root>") / p.relative_to(root))
    for p in (given, given.resolve()):
        for base, prefix in ((PROJECT_ROOT, ""), (PROJECT_ROOT.parent, "../")):
            try:
                return prefix + str(p.relative_to(base))
            except ValueError:
                continue
    try:
        return "~/" + str(given.relative_to(Path.home()))
    except ValueError:
        return given.name


# The top-level folders of the machines a book is made on (Linux, macOS, containers, notebooks in
# the cloud): a path of the machine starts with one of them.
TOP_LEVEL_FOLDERS: tuple[str, ...] = (
    "app", "bin", "boot", "content", "data", "dev", "env", "etc", "home", "lib", "media", "mnt",
    "net", "nix", "opt", "private", "proc", "root", "run", "sbin", "scratch", "shared", "snap",
    "src", "srv", "sys", "tmp", "users", "usr", "var", "volumes", "work", "workspace")

# What a scan of committed files for paths of the machine that made them looks for: a slash and a
# top-level folder name, in any case. Base64 pictures hit it by chance ("/TMPz8", "/MNTcb",
# "/rUN", "/Etc").
# the folder a fresh clone is made in by the README's and the CI's check (``$d/p``), as a whole
# path segment (not followed by a letter or digit: "/p/", "/p+", "/p" at the end): a scan for the
# clone's path finds those in pictures too
CLONE_FOLDERS: tuple[str, ...] = ("p",)
MACHINE_PATH_LOOKALIKE = re.compile("/(?:" + "|".join(TOP_LEVEL_FOLDERS) + ")|/(?:"
                                    + "|".join(CLONE_FOLDERS) + ")(?![a-z0-9])", re.IGNORECASE)


def png_without_path_lookalikes(data: str) -> str:
    """A base64 PNG (``data``) whose text has no :data:`MACHINE_PATH_LOOKALIKE`, with the same
    picture: the image data is split into one more ``IDAT`` chunk at each place the text reads
    like a path (PNG allows any split; the 12 bytes of a chunk boundary change the text there
    and, being a multiple of 3 bytes, none of the text after it). Returns ``data`` itself when
    it has no lookalike."""
    if not MACHINE_PATH_LOOKALIKE.search(data):
        return data
    raw = base64.b64decode(data)
    if raw[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG (no PNG signature)")
    before, stream, after, pos = b"", b"", b"", 8  # chunks before the image data, it, the rest
    while pos < len(raw):
        (n,) = struct.unpack(">I", raw[pos:pos + 4])
        kind, chunk = raw[pos + 4:pos + 8], raw[pos:pos + 12 + n]
        if kind == b"IDAT":
            stream += raw[pos + 8:pos + 8 + n]
        elif stream:
            after += chunk
        else:
            before += chunk
        pos += 12 + n
    cuts: set[int] = set()
    for _ in range(1000):
        out, starts, last = bytearray(raw[:8] + before), [], 0  # starts: (file, stream) offsets
        for cut in [*sorted(cuts), len(stream)]:
            body = b"IDAT" + stream[last:cut]
            starts.append((len(out) + 8, last))
            out += struct.pack(">I", cut - last) + body + struct.pack(">I", zlib.crc32(body))
            last = cut
        out += after
        text = base64.b64encode(bytes(out)).decode("ascii")
        hit = MACHINE_PATH_LOOKALIKE.search(text)
        if not hit:
            return text
        byte = hit.start() * 3 // 4 + 1  # inside the hit
        file_at, stream_at = max(((f, s) for f, s in starts if f <= byte), default=(byte, -1))
        cut = stream_at + byte - file_at
        if not 0 < cut < len(stream) or cut in cuts:
            raise ValueError(f"a path lookalike outside the PNG's image data: {hit.group(0)}")
        cuts.add(cut)
    raise ValueError("too many path lookalikes in the PNG's base64 text")
