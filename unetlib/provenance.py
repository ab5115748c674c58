"""Provenance for every number the book reports: hardware, command, and atomic result files."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any


def hardware(device: str | None = None) -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, threads, GPU (if any), library versions."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["cuda"] = torch.version.cuda
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    if device is not None:
        info["device"] = str(device)
    return info


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def command_line() -> str:
    """The command that is running, as a user would retype it in the project root: the
    interpreter is ``python`` and paths are shown relative to the project (no path of the
    machine that ran it, see :func:`unetlib.paths.shown`)."""
    from unetlib.paths import shown

    def word(arg: str) -> str:
        if not os.path.isabs(arg):
            return arg
        rel = os.path.relpath(arg)
        return rel if not rel.startswith("..") else shown(arg)

    return shlex.join(["python", *(word(a) for a in sys.argv)])


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as JSON to ``path`` via a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are for everyone to read
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=False, default=_jsonable)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors: nested lists or numbers
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
