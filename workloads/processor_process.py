"""``ProcessorProcess``: one real ``streamledger process`` child for tests and benchmarks."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from streamledger.settings import Settings, child_environment

REPO_ROOT = Path(__file__).resolve().parent.parent
PROCESS_EXIT_TIMEOUT_S = 30.0
# Short enough that a killed instance's partitions move within seconds in the tests.
TEST_LIMIT_FLAGS = (
    "--session-timeout-ms=6000",
    "--transaction-timeout-ms=10000",
    "--batch-records-max=500",
    "--batch-interval-ms=50",
    "--restore-timeout-s=60",
)


class ProcessorProcess:
    """One ``streamledger process`` child, with its output in a log file."""

    def __init__(
        self,
        settings: Settings,
        instance_id: str,
        log_directory: Path,
        metrics_port: int = 0,
        extra_flags: tuple[str, ...] = (),
    ) -> None:
        self.instance_id = instance_id
        self.log_path = log_directory / f"processor-{instance_id}-{uuid.uuid4().hex[:6]}.log"
        environment = child_environment(settings)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "streamledger.cli",
                    "process",
                    f"--instance-id={instance_id}",
                    f"--metrics-port={metrics_port}",
                    *TEST_LIMIT_FLAGS,
                    *extra_flags,
                ],
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
            )

    def kill(self) -> None:
        """``kill -9``: no clean-up of any kind."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=PROCESS_EXIT_TIMEOUT_S)

    def stop(self) -> int:
        """SIGTERM and wait; SIGKILL if it does not leave in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=PROCESS_EXIT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=PROCESS_EXIT_TIMEOUT_S)
        return self.process.returncode

    def wait_for_log(self, text: str, timeout_s: float) -> None:
        """Until ``text`` appears in the child's log (e.g. it restored its partitions)."""
        deadline = time.monotonic() + timeout_s
        while text not in self.log_path.read_text(errors="replace"):
            assert self.process.poll() is None, f"processor exited:\n{self.log()}"
            assert time.monotonic() < deadline, f"no {text!r} in {timeout_s} s:\n{self.log()}"
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]
