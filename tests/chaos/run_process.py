"""``streamledger run`` as a child process for the chaos runs, with chaos-sized limits."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from processors.cli import EXIT_SHUTDOWN_ABANDONED
from streamledger.settings import Settings, child_environment

STOP_TIMEOUT_S = 60.0


def stopped_cleanly(line: str) -> bool:
    """A child's line after ``stopping:``: exit code 0, or a processor that honoured SIGTERM but
    left its last batch to the broker to abort after a Kafka call hung past its own timeout
    (``EXIT_SHUTDOWN_ABANDONED``, librdkafka #5456; bounded and logged, nothing lost)."""
    if "(exit code 0)" in line:
        return True
    return line.startswith("processor-") and f"(exit code {EXIT_SHUTDOWN_ABANDONED})" in line


PROCESSOR_FLAGS = (  # short limits: a killed instance's partitions move within seconds
    "--session-timeout-ms=6000",
    "--transaction-timeout-ms=10000",
    "--batch-records-max=500",
    "--batch-interval-ms=50",
    "--shutdown-timeout-s=15",
    "--restore-timeout-s=30",
    "--stall-timeout-s=90",  # a hung processor dumps its stacks and restarts within the catch-up
)


class RunProcess:
    """``streamledger run`` as a child process, output in a log file."""

    def __init__(self, settings: Settings, log_path: Path, *, api_port: int) -> None:
        self.log_path = log_path
        environment = child_environment(settings)
        arguments = [
            "run",
            "--status-interval-s=2",
            "--shutdown-timeout-s=30",
            f"--api-port={api_port}",
            *(f"--processor-arg={flag}" for flag in PROCESSOR_FLAGS),
        ]
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streamledger.cli", *arguments],
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT_S)
        return self.process.returncode
