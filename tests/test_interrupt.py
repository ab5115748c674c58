"""unetlib.interrupt: SIGTERM as Ctrl-C while clean-up runs, and a quiet exit afterwards."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

from unetlib.interrupt import sigterm_as_interrupt


def test_sigterm_raises_keyboard_interrupt_inside_the_block_only():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="signal 15"), sigterm_as_interrupt():
        signal.raise_signal(signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.parametrize("second", ["SIGINT", "SIGTERM"])
def test_a_second_signal_after_the_clean_up_keeps_exit_status_130(second):
    """The command lines catch the first interrupt, clean up and return 130; a second signal on
    the way out (a kernel's process group being stopped, a scheduler signalling twice) must not
    turn that into an uncaught KeyboardInterrupt (exit status -2) or a SIGTERM death (-15)."""
    code = textwrap.dedent(f"""
        import signal, sys
        from unetlib.interrupt import ignore_further_interrupts, sigterm_as_interrupt

        def main():
            try:
                with sigterm_as_interrupt():
                    signal.raise_signal(signal.SIGTERM)
            except KeyboardInterrupt:
                ignore_further_interrupts()
                signal.raise_signal(signal.{second})
                return 130
            return 0

        sys.exit(main())
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 130, proc.stderr
