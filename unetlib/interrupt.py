"""SIGTERM handled like Ctrl-C, so that the clean-up of partly written files runs.

``kill``, a batch scheduler's time limit and ``torchrun`` stopping its workers all send SIGTERM,
whose default action ends the process at once: the ``except BaseException`` / ``finally`` blocks
that remove temporary files (checkpoints, executed notebooks, downloads) never run. The command
lines of :mod:`unetlib.book`, :mod:`unetlib.train` and :mod:`unetlib.data` run under
:func:`sigterm_as_interrupt`. Should the clean-up itself hang (a library waiting forever on a
child process), a watchdog started by the signal removes the temporaries still being written
(:func:`unetlib.provenance.replacing` registers them) after :func:`grace_seconds` and exits 130.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

# the temporaries being written now (unetlib.provenance.replacing registers each one)
_PARTIALS: set[Path] = set()
_WATCHDOG: list[threading.Timer] = []


def register_partial(path: Path) -> None:
    """``path`` is a temporary being filled; removed by the watchdog if a clean-up hangs."""
    _PARTIALS.add(Path(path))


def unregister_partial(path: Path) -> None:
    _PARTIALS.discard(Path(path))


def grace_seconds() -> float:
    """How long the clean-up after SIGTERM may take (``UNETLIB_INTERRUPT_GRACE``, default 60 s)
    before :func:`_expire` removes the registered temporaries and ends the process."""
    return float(os.environ.get("UNETLIB_INTERRUPT_GRACE", "60"))


def _expire() -> None:
    """The clean-up after an interrupt hung (a library waiting forever on a child, as a
    Jupyter kernel's shutdown once did): remove what :func:`replacing` is still writing, say
    so, and exit 130 at once, so that no half-written file stays behind."""
    for path in list(_PARTIALS):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    print(f"interrupted; the clean-up did not finish within {grace_seconds():g} s: its "
          "temporary files were removed", file=sys.stderr, flush=True)
    os._exit(130)


def _raise(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _raise_with_watchdog(signum: int, frame: object) -> None:
    if not _WATCHDOG:  # the first signal starts the clock; the interrupt cleans up meanwhile
        timer = threading.Timer(grace_seconds(), _expire)
        timer.daemon = True
        timer.start()
        _WATCHDOG.append(timer)
    raise KeyboardInterrupt(f"signal {signum}")


def cleanup_finished() -> None:
    """The clean-up after an interrupt is done: stop the watchdog."""
    while _WATCHDOG:
        _WATCHDOG.pop().cancel()


def ignore_further_interrupts() -> None:
    """After an interrupt was caught and cleaned up: a second SIGINT or SIGTERM (a kernel's
    process group being stopped, a scheduler that signals twice) must not turn the clean exit
    into an uncaught ``KeyboardInterrupt`` (exit status -2) on the way out. Main thread only."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


@contextmanager
def sigterm_as_interrupt(watchdog: bool = False) -> Iterator[None]:
    """Within the block, SIGTERM raises ``KeyboardInterrupt`` (main thread only; elsewhere a
    no-op, since Python delivers signals to the main thread). With ``watchdog`` (a command
    line's whole process, :func:`run_command`) the signal also starts the clock of
    :func:`grace_seconds` for the clean-up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_with_watchdog if watchdog else _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_command(body: Callable[[], int], interrupted: str,
                errors: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError)) -> int:
    """The exit status of a command line's ``body`` run under :func:`sigterm_as_interrupt`:
    its own, 1 after one of ``errors`` (printed as ``error: ...``, not raised), 130 after an
    interrupt (Ctrl-C or SIGTERM; ``interrupted`` says what was kept or removed)."""
    try:
        with sigterm_as_interrupt(watchdog=True):
            return body()
    except errors as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        ignore_further_interrupts()
        cleanup_finished()
        print(f"interrupted; {interrupted}", file=sys.stderr)
        return 130
    finally:
        cleanup_finished()
