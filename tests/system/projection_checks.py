"""Shared steps of the projection system tests: project until caught up, compare with the model."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
from psycopg import sql

from projections.settings import ProjectionSettings
from projections.sink import ProjectionSink
from projections.store import LIVE_SCHEMA
from streamledger.settings import Settings
from workloads.projection_events import ExpectedLedger

CATCH_UP_TIMEOUT_S = 120.0


def projection_for(settings: Settings, **changes: Any) -> ProjectionSettings:
    values: dict[str, Any] = {
        # the projection principal's groups under --kafka-security scram (decision 0063)
        "consumer_group": f"{settings.topic_prefix}streamledger-projection",
        "batch_records_max": 500,
        "batch_interval_ms": 100,
    }
    values.update(changes)
    return ProjectionSettings(**values)


def event_count(settings: Settings, schema: str = LIVE_SCHEMA) -> int:
    with psycopg.connect(settings.database_dsn) as conn:
        statement = sql.SQL("SELECT coalesce(sum(last_sequence), 0) FROM {}.tenant_heads")
        row = conn.execute(statement.format(sql.Identifier(schema))).fetchone()
    assert row is not None
    return int(row[0])


def project_until_caught_up(
    settings: Settings, total_events: int, projection: ProjectionSettings | None = None
) -> None:
    """Run an in-process sink until PostgreSQL holds every event (sequences sum per tenant)."""
    sink = ProjectionSink(settings, projection or projection_for(settings))
    stop = threading.Event()
    deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
    applied = event_count(settings)
    try:
        sink.start()
        while applied < total_events:
            assert time.monotonic() < deadline, f"projected {applied} of {total_events} events"
            applied += sink.run_once().events
    finally:
        stop.set()
        sink.close()
    assert applied == total_events


def assert_matches_model(settings: Settings, expected: ExpectedLedger) -> None:
    """Balances, journal size and transfer states in PostgreSQL equal the model's."""
    with psycopg.connect(settings.database_dsn) as conn:
        balances = {
            (tenant, account): (dp, cp, dq, cq)
            for tenant, account, dp, cp, dq, cq in conn.execute(
                "SELECT tenant_id, account_id, debits_posted, credits_posted, debits_pending,"
                " credits_pending FROM ledger.balances"
            )
        }
        entries, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT (tenant_id, account_id, sequence, kind))"
            " FROM ledger.entries"
        ).fetchone() or (0, 0)
        transfers = {
            (tenant, transfer): rest
            for tenant, transfer, *rest in conn.execute(
                "SELECT tenant_id, transfer_id, status, amount, amount_posted, amount_reversed,"
                " reverses, pending FROM ledger.transfers"
            )
        }
    assert balances == {key: account.counters() for key, account in expected.accounts.items()}
    assert entries == distinct == expected.postings
    assert transfers == {
        key: [t.status, t.amount, t.amount_posted, t.amount_reversed, t.reverses, t.pending]
        for key, t in expected.transfers.items()
    }
