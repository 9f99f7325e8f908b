"""SIGTERM is honoured within shutdown_timeout_s even while the main thread is stuck in a call
that never returns to the interpreter (the librdkafka #5456 hang): the stop thread takes the
signal, and ends the process with EXIT_SHUTDOWN_ABANDONED and the stacks in its log."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from processors.cli import EXIT_SHUTDOWN_ABANDONED

STUCK = """
import signal, threading, time, sys
from processors.cli import STOP_SIGNALS, install_stop_signals
signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
stop, finished = threading.Event(), threading.Event()
install_stop_signals(stop, finished, shutdown_timeout_s={timeout})
print("ready", flush=True)
if {finish}:
    stop.wait(30)
    finished.set()
    sys.exit(0)
time.sleep(60)  # stands for a C call that never comes back to the interpreter
"""


def run_until_signalled(*, finish: bool, timeout_s: float) -> tuple[int, str, float]:
    child = subprocess.Popen(
        [sys.executable, "-c", STUCK.format(timeout=timeout_s, finish=finish)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    started = time.monotonic()
    child.send_signal(signal.SIGTERM)
    output, _ = child.communicate(timeout=30)
    return child.returncode, output, time.monotonic() - started


def test_a_stuck_loop_leaves_within_the_shutdown_timeout_with_its_stacks() -> None:
    code, output, seconds = run_until_signalled(finish=False, timeout_s=1.0)
    assert code == EXIT_SHUTDOWN_ABANDONED
    assert seconds < 10  # not the 60 s the main thread is stuck for
    assert "did not finish within shutdown_timeout_s" in output
    assert "Thread" in output  # faulthandler's stack dump


def test_a_loop_that_finishes_exits_cleanly() -> None:
    code, output, _ = run_until_signalled(finish=True, timeout_s=10.0)
    assert code == 0, output
