"""unetlib.interrupt: SIGTERM as Ctrl-C while clean-up runs, and a quiet exit afterwards."""

from __future__ import annotations

import os
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


def test_a_hung_clean_up_still_removes_the_temporaries_and_exits_130(tmp_path):
    """SIGTERM while a file is being written, and the clean-up then hangs (as a Jupyter
    kernel's shutdown once did in CI): after the grace period the watchdog removes the
    temporary that ``replacing`` registered, says so and exits 130; the target never appears."""
    target = tmp_path / "page.json"
    code = textwrap.dedent(f"""
        import signal, sys, time
        from unetlib.interrupt import run_command
        from unetlib.provenance import replacing

        def body():
            with replacing({str(target)!r}) as tmp:
                tmp.write_text("half")
                try:
                    signal.raise_signal(signal.SIGTERM)
                finally:
                    time.sleep(120)  # a clean-up that never finishes
            return 0

        sys.exit(run_command(body, "nothing kept"))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "UNETLIB_INTERRUPT_GRACE": "1"})
    assert proc.returncode == 130, proc.stderr
    assert "did not finish within 1 s" in proc.stderr
    assert list(tmp_path.iterdir()) == []  # neither the temporary nor the target


def test_a_clean_up_that_finishes_stops_the_watchdog(tmp_path):
    code = textwrap.dedent("""
        import signal, sys, time
        from unetlib.interrupt import run_command

        def body():
            signal.raise_signal(signal.SIGTERM)
            return 0

        status = run_command(body, "nothing kept")
        time.sleep(2)  # past the grace period: a stopped watchdog does not fire
        sys.exit(status + 1)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "UNETLIB_INTERRUPT_GRACE": "0.5"})
    assert proc.returncode == 131, proc.stderr
    assert "did not finish" not in proc.stderr
