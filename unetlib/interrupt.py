"""SIGTERM handled like Ctrl-C, so that the clean-up of partly written files runs.

``kill``, a batch scheduler's time limit and ``torchrun`` stopping its workers all send SIGTERM,
whose default action ends the process at once: the ``except BaseException`` / ``finally`` blocks
that remove temporary files (checkpoints, executed notebooks, downloads) never run. The command
lines of :mod:`unetlib.book`, :mod:`unetlib.train` and :mod:`unetlib.data` run under
:func:`sigterm_as_interrupt`.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


def _raise(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


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
