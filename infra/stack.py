"""The local stack as one thing: Kafka + PostgreSQL + the topics + the database schema.

``up`` is idempotent (a running service says "already running"), ``down`` stops both services,
``reset`` stops them and deletes their data. Concurrent callers on the same home (two test runs,
a developer's shell) are serialized by a lock file in ``{home}``, so they never race to start the
same broker twice.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from infra import (
    kafka_broker,
    postgres_server,
    postgres_standby,
    principals,
    prometheus_server,
    topics,
)
from infra.service import ServiceReport
from kafka_adapter.security import is_scram
from projections.migrations import apply_migrations
from streamledger.errors import InfraError, StreamLedgerError
from streamledger.settings import Settings

STACK_LOCK_TIMEOUT_S = 600.0  # a cold `up` may wait on a Maven download held by another caller
STACK_LOCK_POLL_INTERVAL_S = 0.2
APT_TIMEOUT_S = 600.0
# Debian's docker-compose (v1) validates docker-compose.yml without a Docker engine; the tests
# use it so the compose file is checked by a real implementation, not a string match.
COMPOSE_VALIDATOR_PACKAGE = "docker-compose"


@dataclass(frozen=True, slots=True)
class StackStatus:
    services: list[ServiceReport]
    topics: topics.TopicReport | None  # None when Kafka cannot be asked
    topics_problem: str = ""
    cluster: list[str] = dataclasses.field(default_factory=list)  # a multi-node Kafka's health

    def lines(self) -> list[str]:
        result = [service.line() for service in self.services] + self.cluster
        if self.topics is not None:
            result += self.topics.lines()
        elif self.topics_problem:
            result.append(f"topics: unknown ({self.topics_problem})")
        return result


@contextmanager
def stack_lock(settings: Settings) -> Iterator[None]:
    """Hold ``{home}/stack.lock`` exclusively, waiting at most ``STACK_LOCK_TIMEOUT_S``."""
    settings.home.mkdir(parents=True, exist_ok=True)
    path = settings.home / "stack.lock"
    with path.open("a") as handle:
        deadline = time.monotonic() + STACK_LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise InfraError(
                        f"another streamledger command has held {path} for more than"
                        f" {STACK_LOCK_TIMEOUT_S:g} s"
                    ) from None
                time.sleep(STACK_LOCK_POLL_INTERVAL_S)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- install ----------------------------------------------------------------------------------


def install(settings: Settings) -> list[str]:
    """Install what the stack needs (idempotent); returns one line per component."""
    started = time.monotonic()
    kafka_broker.ensure_installed(settings)
    lines = [
        f"kafka       {settings.kafka_version} jars in {kafka_broker.libs_directory(settings)}"
        f" ({time.monotonic() - started:.1f} s)"
    ]
    postgres_server.ensure_installed(settings)
    lines.append("postgresql  server binaries present")
    lines.append(f"compose     {ensure_compose_validator()}")
    lines.append(f"prometheus  {prometheus_server.ensure_installed()}")
    return lines


def ensure_compose_validator() -> str:
    """Install Debian's docker-compose (used only to validate docker-compose.yml) when root."""
    if shutil.which("docker-compose") is not None:
        return "docker-compose present (validates docker-compose.yml)"
    if os.geteuid() != 0:
        return (
            "docker-compose missing; `apt-get install docker-compose` (the compose test needs it)"
        )
    install_command = ["apt-get", "install", "-y", "-q", "--no-install-recommends"]
    try:
        run_apt([*install_command, COMPOSE_VALIDATOR_PACKAGE])
    except InfraError:
        # A fresh machine has no package lists yet.
        run_apt(["apt-get", "update", "-q"])
        run_apt([*install_command, COMPOSE_VALIDATOR_PACKAGE])
    return "docker-compose installed with apt-get"


def run_apt(command: list[str]) -> None:
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        completed = subprocess.run(
            command, env=environment, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=APT_TIMEOUT_S, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise InfraError(f"{' '.join(command)} took longer than {APT_TIMEOUT_S:g} s") from None
    if completed.returncode != 0:
        last = (completed.stderr or completed.stdout).strip().splitlines()[-1:] or ["no output"]
        raise InfraError(f"{' '.join(command)} failed: {last[0]}")


# --- lifecycle --------------------------------------------------------------------------------


def up(settings: Settings, *, with_standby: bool = False) -> list[ServiceReport]:
    """Start Kafka and PostgreSQL (each unless running), apply the topics and the migrations;
    with ``with_standby`` (or a standby made earlier) start the hot standby as well."""
    with stack_lock(settings):
        if postgres_standby_promoted(settings):
            return up_after_promotion(settings)
        kafka, postgres = start_services(settings)
        topic_report = topics.apply(settings)
        principal_lines = principals.service_lines() if is_scram(settings) else []
        applied = apply_migrations(settings)
        standby = []
        if with_standby or wants_standby(settings):
            standby = [postgres_standby.start(settings)]  # after the migrations: it copies them
    topics_detail = "; ".join(["topics: " + topics_summary(topic_report), *principal_lines])
    migrations_detail = "migrations: " + (", ".join(applied) if applied else "up to date")
    return [with_detail(kafka, topics_detail), with_detail(postgres, migrations_detail), *standby]


def wants_standby(settings: Settings) -> bool:
    return bool(settings.postgres_standby_port) and postgres_standby.is_created(settings)


def postgres_standby_promoted(settings: Settings) -> bool:
    """The old primary was fenced by ``infra promote``: the standby is the primary now."""
    primary = postgres_server.ClusterPaths.of(settings)
    return (primary.data / postgres_server.FENCE_FILE_NAME).is_file()


def up_after_promotion(settings: Settings) -> list[ServiceReport]:
    """Kafka and the promoted standby (the primary now); the fenced old primary stays down."""
    kafka = kafka_broker.start(settings)
    topic_report = topics.apply(settings)
    promoted = postgres_standby.start(settings)
    applied = apply_migrations(settings)
    migrations_detail = "migrations: " + (", ".join(applied) if applied else "up to date")
    return [
        with_detail(kafka, "topics: " + topics_summary(topic_report)),
        with_detail(promoted, migrations_detail),
        postgres_server.status(settings),
    ]


def promote(settings: Settings) -> list[str]:
    """Fence the primary and promote the standby (docs/availability.md, the runbook)."""
    with stack_lock(settings):
        return postgres_standby.promote(settings)


def start_services(settings: Settings) -> tuple[ServiceReport, ServiceReport]:
    """Start both services side by side: the JVM and initdb each take seconds on their own.

    If one fails, the other is stopped again when this call started it, so a failed ``up``
    leaves the machine as it found it.
    """
    kafka_was_running = kafka_broker.is_running(settings)
    postgres_was_running = postgres_server.status(settings).running
    if not kafka_was_running:
        kafka_broker.check_ports_free(settings)  # fail fast, before PostgreSQL is touched
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="stack-up") as pool:
        kafka_future = pool.submit(kafka_broker.start, settings)
        postgres_future = pool.submit(postgres_server.start, settings)
        kafka_error = kafka_future.exception()
        postgres_error = postgres_future.exception()
    if kafka_error is None and postgres_error is None:
        return kafka_future.result(), postgres_future.result()
    if kafka_error is None and not kafka_was_running:
        kafka_broker.stop(settings)
    if postgres_error is None and not postgres_was_running:
        postgres_server.stop(settings)
    error = kafka_error if kafka_error is not None else postgres_error
    assert error is not None
    raise error


def topics_summary(report: topics.TopicReport) -> str:
    if not report.changed:
        return f"{len(topics.TOPIC_DEFINITIONS)} up to date"
    parts = []
    if report.missing:
        parts.append(f"{len(report.missing)} created")
    if report.config_drift:
        parts.append(f"{len(report.config_drift)} config values corrected")
    return ", ".join(parts)


def with_detail(report: ServiceReport, extra: str) -> ServiceReport:
    detail = f"{report.detail}; {extra}" if report.detail else extra
    return dataclasses.replace(report, detail=detail)


def down(settings: Settings) -> list[str]:
    """Stop both services (each a no-op when stopped); one line per service."""
    with stack_lock(settings):
        return stop_each(
            [
                ("kafka", kafka_broker.stop),
                ("pg-standby", postgres_standby.stop),
                ("postgresql", postgres_server.stop),
            ],
            settings,
        )


def stop_each(
    services: list[tuple[str, Callable[[Settings], None]]], settings: Settings
) -> list[str]:
    """Stop every service even if one fails, then raise the first failure."""
    lines: list[str] = []
    failures: list[StreamLedgerError] = []
    for name, stop in services:
        try:
            stop(settings)
            lines.append(f"{name:<11} stopped")
        except StreamLedgerError as exc:
            failures.append(exc)
    if failures:
        raise failures[0]
    return lines


def status(settings: Settings) -> StackStatus:
    nodes = kafka_broker.node_statuses(settings)
    services = [*nodes, postgres_server.status(settings)]
    if postgres_standby.is_created(settings) and settings.postgres_standby_port:
        services.append(postgres_standby.status(settings))
    if not any(node.running for node in nodes):
        return StackStatus(services, None, "Kafka is not running")
    cluster = cluster_lines(settings)
    try:
        return StackStatus(services, topics.check(settings), cluster=cluster)
    except StreamLedgerError as exc:
        return StackStatus(services, None, str(exc), cluster=cluster)


def cluster_lines(settings: Settings) -> list[str]:
    """The controller leader and the replication state, for a cluster of more than one node."""
    if settings.brokers == 1:
        return []
    try:
        return [kafka_broker.cluster_health(settings).line()]
    except StreamLedgerError as exc:
        return [f"kafka cluster: unknown ({exc})"]


def reset(settings: Settings) -> list[str]:
    """Stop both services and delete their data under ``{home}`` (the jar cache stays)."""
    with stack_lock(settings):
        kafka_broker.reset(settings)
        postgres_standby.reset(settings)
        postgres_server.reset(settings)
    removed = [
        kafka_broker.KafkaPaths.of(settings).directory,
        postgres_standby.standby_paths(settings).root,
        postgres_data(settings),
    ]
    return [f"removed {path}" for path in removed]


def postgres_data(settings: Settings) -> Path:
    return postgres_server.ClusterPaths.of(settings).root
