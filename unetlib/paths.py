"""Where data, results and checkpoints live."""

from __future__ import annotations

import os
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
