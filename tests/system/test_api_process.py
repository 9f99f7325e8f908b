"""The API process ends like the other pipeline processes: SIGTERM -> graceful shutdown -> exit 0.

uvicorn re-raises the signal it handled once it has shut down; with the default handlers the
process then died "by signal SIGTERM" after a clean shutdown, which ``streamledger run`` reported
like a crash.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import httpx

from streamledger.settings import Settings, child_environment
from tests.system.free_ports import free_port_range

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


def test_sigterm_ends_the_api_with_exit_code_0(ledger_settings: Settings) -> None:
    port = free_port_range(1)
    environment = child_environment(ledger_settings)
    process = subprocess.Popen(
        [sys.executable, "-m", "streamledger.cli", "api", f"--port={port}"],
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            assert process.poll() is None, process.communicate()[0].decode()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the API did not answer /healthz"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=STOP_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output.decode()
    assert b"Application shutdown complete" in output
