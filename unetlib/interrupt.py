"""SIGTERM handled like Ctrl-C, so that the clean-up of partly written files runs.

``kill``, a batch scheduler's time limit and ``torchrun`` stopping its workers all send SIGTERM,
whose default action ends the process at once: the ``except BaseException`` / ``finally`` blocks
that remove temporary files (checkpoints, executed notebooks, downloads) never run. The command
lines of :mod:`unetlib.book`, :mod:`unetlib.train` and :mod:`unetlib.data` run under
:func:`sigterm_as_interrupt`.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def _raise(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def ignore_further_interrupts() -> None:
    """After an interrupt was caught and cleaned up: a second SIGINT or SIGTERM (a kernel's
    process group being stopped, a scheduler that signals twice) must not turn the clean exit
    into an uncaught ``KeyboardInterrupt`` (exit status -2) on the way out. Main thread only."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises ``KeyboardInterrupt`` (main thread only; elsewhere a
    no-op, since Python delivers signals to the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise)
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
        with sigterm_as_interrupt():
            return body()
    except errors as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        ignore_further_interrupts()
        print(f"interrupted; {interrupted}", file=sys.stderr)
        return 130
