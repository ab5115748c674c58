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


def own_folder_words(root: str | os.PathLike = PROJECT_ROOT) -> tuple[str, ...]:
    """The runs of 4 or more letters and digits in the names of the folders ``root`` sits in
    (a fresh clone's temporary folder: ``/tmp/mb.zopG/p`` gives ``zopG``). A scan for the path
    of the machine that made a page looks for them in any case, and a page's pictures hold such
    a run by chance (one in about a million base64 characters each): the runner clears them
    too (:func:`path_lookalike`)."""
    return tuple(sorted({w for part in Path(root).resolve().parts
                         for w in re.findall(r"[A-Za-z0-9]{4,}", part)}))


def path_lookalike(words: tuple[str, ...] = ()) -> re.Pattern:
    """:data:`MACHINE_PATH_LOOKALIKE`, and with ``words`` any of them in any case too."""
    if not words:
        return MACHINE_PATH_LOOKALIKE
    return re.compile(MACHINE_PATH_LOOKALIKE.pattern + "|" + "|".join(map(re.escape, words)),
                      re.IGNORECASE)


def png_without_path_lookalikes(data: str, words: tuple[str, ...] = ()) -> str:
    """A base64 PNG (``data``) whose text has no :func:`path_lookalike` of ``words``, with the same
    picture: the image data is split into one more ``IDAT`` chunk at each place the text reads
    like a path (PNG allows any split; the 12 bytes of a chunk boundary change the text there
    and, being a multiple of 3 bytes, none of the text after it). Returns ``data`` itself when
    it has no lookalike."""
    lookalike = path_lookalike(words)
    if not lookalike.search(data):
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
        hit = lookalike.search(text)
        if not hit:
            return text
        byte = hit.start() * 3 // 4 + 1  # inside the hit
        file_at, stream_at = max(((f, s) for f, s in starts if f <= byte), default=(byte, -1))
        cut = stream_at + byte - file_at
        if not 0 < cut < len(stream) or cut in cuts:
            raise ValueError(f"a path lookalike outside the PNG's image data: {hit.group(0)}")
        cuts.add(cut)
    raise ValueError("too many path lookalikes in the PNG's base64 text")


def jpeg_without_path_lookalikes(data: str, words: tuple[str, ...] = ()) -> str:
    """A base64 baseline JPEG (``data``) whose text has no :func:`path_lookalike` of ``words``,
    with the same picture. The JPEG must carry restart markers (``encode_image`` writes one after
    every block): the standard lets any marker be preceded by fill bytes (0xFF, ITU T.81
    B.1.1.2), so 0, 1 or 2 of them before each restart marker and before the end marker shift
    the following entropy-coded segment's bytes against the 3-byte groups of base64, which gives
    three different texts for it; an empty or one-byte comment after the start marker does the
    same for the headers. The choices are searched segment by segment, backtracking where a
    segment reads like a path in all three. Returns ``data`` itself when it has no lookalike."""
    lookalike = path_lookalike(words)
    if not lookalike.search(data):
        return data
    raw = base64.b64decode(data)
    if raw[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG (no start-of-image marker)")
    pos = 2
    while True:  # the headers, up to and with the start of the one scan
        if pos + 4 > len(raw) or raw[pos] != 0xFF:
            raise ValueError("a JPEG without a scan, or with a damaged header")
        kind, (length,) = raw[pos + 1], struct.unpack(">H", raw[pos + 2:pos + 4])
        if kind in (0xC2, 0xC6, 0xCA, 0xCE):
            raise ValueError("a progressive JPEG: only a baseline one can be cleared")
        pos += 2 + length
        if kind == 0xDA:
            break
    # the entropy-coded data, cut before each restart marker and the end marker (inside it an
    # 0xFF byte is always followed by 0x00, so a marker cannot be mistaken)
    pieces, start, at = [raw[2:pos]], pos, pos
    while True:
        at = raw.find(b"\xff", at)
        if at < 0 or at + 1 >= len(raw):
            raise ValueError("a JPEG without its end-of-image marker")
        nxt = raw[at + 1]
        if nxt == 0x00 or nxt == 0xFF:  # a stuffed byte, or a fill byte already there
            at += 1 if nxt == 0xFF else 2
            continue
        if 0xD0 <= nxt <= 0xD7 or nxt == 0xD9:
            pieces[-1] += raw[start:at]
            pieces.append(b"")
            start = at
            if nxt == 0xD9:
                pieces[-1] = raw[at:]
                break
            at += 2
            continue
        raise ValueError("a JPEG with more than one scan: only a baseline one can be cleared")
    # choices: a comment of 4 or 5 bytes (or none) after the start marker; 0-2 fill bytes
    # before each marker
    options = [[b"", b"\xff\xfe\x00\x02", b"\xff\xfe\x00\x03\x00"]] + \
        [[b"", b"\xff", b"\xff\xff"]] * (len(pieces) - 1)
    longest = max(len(w) for w in TOP_LEVEL_FOLDERS + CLONE_FOLDERS + words) + 2  # slash, ahead

    def clear_up_to(out: bytearray, since: int, final: bool) -> bool:
        """No lookalike starts in the text of ``out`` from byte ``since`` on (the last
        ``longest`` characters aside until ``final``: bytes still to come may change them)."""
        lo = max(0, since // 3 - longest) * 3
        hi = len(out) if final else len(out) - len(out) % 3
        text = base64.b64encode(out[lo:hi]).decode("ascii")
        limit = len(text) if final else len(text) - longest
        return not any(m.start() < limit for m in lookalike.finditer(text))

    out, chosen, starts, tries = bytearray(b"\xff\xd8"), [0], [2], 0  # starts: piece i's offset
    while True:
        i = len(chosen) - 1
        tries += 1
        if tries > 100_000:
            raise ValueError("too many path lookalikes in the JPEG's base64 text")
        del out[starts[i]:]  # what a choice since piece i had added
        out += options[i][chosen[i]] + pieces[i]
        if clear_up_to(out, starts[i], final=i == len(pieces) - 1):
            if i == len(pieces) - 1:
                return base64.b64encode(out).decode("ascii")
            chosen.append(0)
            starts.append(len(out))
            continue
        while chosen and chosen[-1] == len(options[len(chosen) - 1]) - 1:  # backtrack
            chosen.pop()
            starts.pop()
        if not chosen:
            raise ValueError("every choice of fill bytes leaves a path lookalike in the JPEG's "
                             "base64 text (too few restart markers?)")
        chosen[-1] += 1


def picture_without_path_lookalikes(data: str, fmt: str, words: tuple[str, ...] = ()) -> str:
    """A base64 picture of format ``fmt`` ("png" or "jpeg", or a MIME type "image/png",
    "image/jpeg") cleared of path lookalikes and of ``words`` (:func:`path_lookalike`,
    :func:`png_without_path_lookalikes`, :func:`jpeg_without_path_lookalikes`); another format
    is returned as it is when its text reads like no path, else refused."""
    kind = fmt.removeprefix("image/")
    if kind == "png":
        return png_without_path_lookalikes(data, words)
    if kind in ("jpeg", "jpg"):
        return jpeg_without_path_lookalikes(data, words)
    if path_lookalike(words).search(data):
        raise ValueError(f"a {fmt} picture whose base64 reads like a path cannot be cleared")
    return data
