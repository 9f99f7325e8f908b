"""What every local service module reports about itself."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ServiceReport:
    """The state of one local service, printed by ``streamledger infra up | status``."""

    name: str  # "kafka" or "postgresql"
    running: bool
    address: str  # where it listens, e.g. "127.0.0.1:19092"
    log_path: Path
    data_path: Path
    detail: str = ""  # e.g. "already running", "started in 8.2 s", the version

    def line(self) -> str:
        state = "running" if self.running else "stopped"
        extra = f" ({self.detail})" if self.detail else ""
        return f"{self.name:<11} {state:<8} {self.address:<22} log: {self.log_path}{extra}"
