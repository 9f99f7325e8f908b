"""What ``streamledger run`` needs but does not supervise: Kafka and PostgreSQL.

The supervisor never starts or restarts a child while a dependency of that child does not
answer: it waits, says in the status line what it waits for and since when, and starts the
child once the dependency answers again (decision 0023). Children already running are left
alone: a processor rides out a broker restart by itself, and one that cannot is caught by the
stall check. Probes are bounded (``probe_timeout_s``) and cached for ``probe_interval_s``, so a
supervisor pass never blocks for long and a broker that is down is not hammered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import psycopg

from kafka_adapter.admin import broker_count
from streamledger.errors import StreamLedgerError
from streamledger.settings import Settings

KAFKA = "kafka"
POSTGRESQL = "postgresql"
PROBE_TIMEOUT_S = 2.0

Probe = Callable[[], str | None]  # None: it answered; else one line saying why not


def kafka_probe(settings: Settings, *, timeout_s: float = PROBE_TIMEOUT_S) -> Probe:
    """A bounded metadata request to the bootstrap servers."""

    def probe() -> str | None:
        try:
            broker_count(settings, timeout_s=timeout_s)
        except StreamLedgerError as exc:
            return str(exc)
        return None

    return probe


def postgresql_probe(settings: Settings, *, timeout_s: float = PROBE_TIMEOUT_S) -> Probe:
    """A bounded connection as the app role and ``SELECT 1``."""

    def probe() -> str | None:
        try:
            with psycopg.connect(
                settings.database_dsn, connect_timeout=max(1, round(timeout_s)), autocommit=True
            ) as connection:
                connection.execute("SELECT 1")
        except psycopg.Error as exc:
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return f"PostgreSQL on port {settings.postgres_port}: {first_line}"
        return None

    return probe


def standard_probes(settings: Settings) -> dict[str, Probe]:
    return {KAFKA: kafka_probe(settings), POSTGRESQL: postgresql_probe(settings)}


@dataclass(slots=True)
class Availability:
    """One dependency's last probe: its answer and since when it has been down."""

    checked_at: float
    problem: str | None
    down_since: float | None


@dataclass(slots=True)
class DependencyWatch:
    """Probes on demand, at most once per ``probe_interval_s`` per dependency."""

    probes: Mapping[str, Probe]
    probe_interval_s: float = 2.0
    known: dict[str, Availability] = field(default_factory=dict)

    def missing(self, names: Sequence[str], now: float) -> list[str]:
        """The dependencies among ``names`` that do not answer now (probing stale ones)."""
        return [name for name in names if name in self.probes and not self._up(name, now)]

    def _up(self, name: str, now: float) -> bool:
        known = self.known.get(name)
        if known is None or now - known.checked_at >= self.probe_interval_s:
            problem = self.probes[name]()
            down_since = None
            if problem is not None:
                down_since = now if known is None or known.down_since is None else known.down_since
            known = Availability(checked_at=now, problem=problem, down_since=down_since)
            self.known[name] = known
        return known.problem is None

    def down(self) -> dict[str, Availability]:
        """The dependencies whose last probe failed."""
        return {name: known for name, known in self.known.items() if known.problem is not None}
