"""Provenance for every number the book reports: hardware, command, and atomic result files."""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from unetlib.interrupt import register_partial, unregister_partial

# environment variables that hold PyTorch's CPU kernels below what the CPU has: with
# ONEDNN_MAX_CPU_ISA=AVX2 and ATEN_CPU_CAPABILITY=avx2 an AVX-512 CPU runs the kernels (and the
# fp32 training step) an AVX2-only CPU would; a result measured so records them
ISA_LIMIT_VARIABLES: tuple[str, ...] = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA",
                                        "ATEN_CPU_CAPABILITY")


def hardware(device: str | None = None) -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, threads, GPU (if any), library versions,
    and ``cpu_isa_limits`` (the :data:`ISA_LIMIT_VARIABLES` set) where the kernels were held
    below the CPU's own instruction set."""
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
        # the vector instructions PyTorch's CPU kernels use, and whether bf16 runs natively:
        # two CPUs both named "AMD EPYC" differ tenfold in a bf16 training step on these
        info["cpu_isa"] = torch.backends.cpu.get_cpu_capability()
        info["cpu_bf16"] = cpu_bf16()
        limits = {k: os.environ[k] for k in ISA_LIMIT_VARIABLES if os.environ.get(k)}
        if limits:
            info["cpu_isa_limits"] = limits
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["cuda"] = torch.version.cuda
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    if device is not None:
        info["device"] = str(device)
    return info


def cpu_bf16() -> bool:
    """Whether this CPU computes bf16 natively for PyTorch's oneDNN kernels (AVX-512 with its
    BF16 or core extensions, AMX, or Arm's BF16). Elsewhere (e.g. AVX2 only) bf16 autocast is
    emulated: a training step of the quick profile took 3.94 s instead of 0.41 s in fp32 on an
    AVX2 AMD EPYC with 2 cores (``benchmarks/results/bench_train_step_cpu_avx2.json``)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN: no fast bf16 either
        return False


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
    machine that ran it, see :func:`unetlib.paths.shown`), after the
    :data:`ISA_LIMIT_VARIABLES` that are set (``ONEDNN_MAX_CPU_ISA=AVX2 python ...``), which
    change what it measures."""
    from unetlib.paths import shown

    def word(arg: str) -> str:
        if not os.path.isabs(arg):
            return arg
        rel = os.path.relpath(arg)
        return rel if not rel.startswith("..") else shown(arg, data=False)

    env = [f"{k}={shlex.quote(os.environ[k])}" for k in ISA_LIMIT_VARIABLES if os.environ.get(k)]
    return " ".join([*env, shlex.join(["python", *(word(a) for a in sys.argv)])])


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as JSON to ``path`` atomically (see :func:`write_atomic`)."""
    text = json.dumps(data, indent=2, sort_keys=False, default=_jsonable) + "\n"
    return write_atomic(path, lambda f: f.write(text.encode()))


def write_atomic(
    path: str | os.PathLike, write: Callable[[BinaryIO], object], *, fsync: bool = False
) -> Path:
    """Create or replace the file ``path`` with what ``write`` writes to a binary file object,
    atomically: readers see the old file or the whole new one, never a part, and a ``write``
    that raises leaves the old file as it was and no temporary file (see :func:`replacing`).
    ``fsync`` also flushes the data to disk before the rename (checkpoints)."""
    path = Path(path)
    with replacing(path) as tmp, open(tmp, "wb") as f:
        write(f)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    return path


@contextmanager
def replacing(
    path: str | os.PathLike, *, directory: bool = False, keep_suffix: bool = False
) -> Iterator[Path]:
    """The one way this package puts a file (or a folder) in place: yield a new, empty temporary
    file (or folder) beside ``path`` for the caller to fill; when the ``with`` block ends
    normally it is renamed onto ``path`` (``os.replace``), when it raises (including
    ``KeyboardInterrupt``) it is removed and ``path`` is left as it was.

    The temporary is named ``.NAME.<pid>.XXXX.tmp`` (``.STEM.<pid>.XXXX.SUFFIX`` with
    ``keep_suffix``, for tools that insist on an extension), so a leftover of a killed process
    can be recognised by its pid, and it gets the mode ``open``/``mkdir`` would give (0644 /
    0755 under umask 022) rather than the 0600 / 0700 of ``mkstemp`` / ``mkdtemp``; copying
    a mode onto it (``shutil.copy2``) is kept. Missing parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    label, suffix = (path.stem, path.suffix) if keep_suffix else (path.name, ".tmp")
    where = dict(prefix=f".{label}.{os.getpid()}.", suffix=suffix, dir=path.parent)
    tmp: Path | None = None
    try:
        # created inside the try: an interrupt between creating and yielding it removes it too
        if directory:
            tmp = Path(tempfile.mkdtemp(**where))
        else:
            fd, tmp_name = tempfile.mkstemp(**where)
            tmp = Path(tmp_name)
            os.close(fd)
        register_partial(tmp)
        os.chmod(tmp, (0o777 if directory else 0o666) & ~_umask())
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if tmp is None:
            pass
        elif tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise
    finally:
        if tmp is not None:
            unregister_partial(tmp)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (``os.kill(pid, 0)``): a temporary named by a dead pid
    (:func:`replacing`) is a killed run's leftover. Unknown counts as alive, and so do 0 and
    negative numbers, which address process groups, never one process."""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


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
