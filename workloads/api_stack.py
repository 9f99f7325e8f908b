"""The whole pipeline for the API tests: processor, projection and ``streamledger api`` as child
processes on fresh topics and a fresh database, plus the tenants' API keys.

Everything is bounded: each wait has a timeout and fails with the children's logs.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from api.api_keys import create_api_key
from infra import postgres_server, topics
from projections.migrations import apply_migrations
from projections.store import LIVE_SCHEMA
from streamledger.settings import Settings, child_environment, replace
from workloads.processor_process import ProcessorProcess
from workloads.topics import delete_topics

REPO_ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_S = 120.0  # three children start and restore at once: a bound, not a pace
EXIT_TIMEOUT_S = 20.0
PARTITIONS = 3
RESTORED = "restored partition"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ChildProcess:
    """A ``streamledger`` child with its output in a log file."""

    def __init__(self, settings: Settings, arguments: list[str], log_path: Path) -> None:
        self.log_path = log_path
        environment = child_environment(settings)
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streamledger.cli", *arguments],
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
            )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=EXIT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=EXIT_TIMEOUT_S)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@dataclass
class ApiStack:
    settings: Settings
    base_url: str
    keys: dict[str, str]
    children: list[Any] = field(default_factory=list)

    def client(self, tenant: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {} if tenant is None else {"Authorization": f"Bearer {self.keys[tenant]}"}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30.0, **kwargs)

    def logs(self) -> str:
        return "\n".join(f"--- {child.log_path.name}\n{child.log()}" for child in self.children)


def fresh_settings(stack_settings: Settings) -> Settings:
    """Unique topics (applied) and a fresh, migrated database."""
    settings = replace(
        stack_settings, topic_prefix=f"api{uuid.uuid4().hex[:8]}.", partitions=PARTITIONS
    )
    topics.apply(settings)
    database = f"sl_api_{uuid.uuid4().hex[:12]}"
    postgres_server.create_scratch_database(settings, database)
    url = f"postgresql://streamledger:streamledger@127.0.0.1:{settings.postgres_port}/{database}"
    settings = replace(settings, database_url=url)
    apply_migrations(settings, schema=LIVE_SCHEMA)
    return settings


def drop_fresh(settings: Settings) -> None:
    delete_topics(settings, [*topics.declared_topic_names(settings)])
    database = settings.database_url.rsplit("/", 1)[1]
    postgres_server.drop_scratch_database(settings, database)


def wait_ready(stack: ApiStack, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=stack.base_url, timeout=5.0) as client:
        while True:
            for child in stack.children:
                assert child.process.poll() is None, f"a child exited:\n{stack.logs()}"
            try:
                if client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"API not ready in {timeout_s} s:\n{stack.logs()}"
            time.sleep(0.2)


@contextmanager
def running_api_stack(
    stack_settings: Settings,
    log_directory: Path,
    tenants: tuple[str, ...],
    api_flags: list[str],
    *,
    processor_flags: tuple[str, ...] = (),
    api_port: int | None = None,
) -> Iterator[ApiStack]:
    """``api_port``: the API's port (default: a free one the kernel picks)."""
    settings = fresh_settings(stack_settings)
    port = free_port() if api_port is None else api_port
    stack = ApiStack(settings, f"http://127.0.0.1:{port}", {})
    try:
        for tenant in tenants:
            stack.keys[tenant] = create_api_key(settings, tenant).token
        processor = ProcessorProcess(
            settings, f"api-{uuid.uuid4().hex[:6]}", log_directory, extra_flags=processor_flags
        )
        stack.children.append(processor)
        stack.children.append(
            ChildProcess(
                settings,
                ["project", "--no-metrics", "--batch-interval-ms=10"],
                log_directory / "projection.log",
            )
        )
        stack.children.append(
            ChildProcess(settings, ["api", f"--port={port}", *api_flags], log_directory / "api.log")
        )
        processor.wait_for_log(RESTORED, STARTUP_TIMEOUT_S)
        wait_ready(stack, STARTUP_TIMEOUT_S)
        yield stack
    finally:
        for child in reversed(stack.children):
            child.stop()
        drop_fresh(settings)
