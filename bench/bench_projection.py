"""Projection benchmark: events/s into PostgreSQL vs raw COPY of the same rows, and balance read
latency with 8 concurrent readers while the projection writes.

    .venv/bin/python -m bench.bench_projection [--events 200000] [--tenants 50]

Uses the stack the settings point at (``STREAMLEDGER_*``; e.g. the test stack with
``STREAMLEDGER_HOME=.streamledger-test STREAMLEDGER_KAFKA_PORT=29092
STREAMLEDGER_POSTGRES_PORT=25432``), a fresh topic prefix and a fresh database (created by the
cluster admin over the unix socket, dropped at the end).

1. build valid events with the pure core (posted and pending transfers), produce them
   transactionally to ``ledger.events`` (3 partitions) — the pre-filled topic;
2. projection: an in-process sink from offset 0 until every event is in PostgreSQL (events/s);
3. COPY limit: the same rows (planned beforehand, not timed) COPY'd into a fresh generation of
   the same tables in one transaction per table (rows/s → events/s);
4. reads: 8 threads read random current balances through the reader role while a second sink
   projects the same log into another generation; p50/p95/p99.
"""

from __future__ import annotations

import argparse
import random
import statistics
import threading
import time
import uuid
from collections.abc import Sequence

import psycopg
from psycopg import sql

from infra import postgres_server, topics
from processors.ledger import Accepted, LedgerState, step
from projections.batch import fold_transfers, plan_batch
from projections.migrations import apply_migrations
from projections.queries import LedgerReader, reader_dsn
from projections.settings import ProjectionSettings
from projections.sink import ProjectionSink
from projections.store import LIVE_SCHEMA
from schemas.model import Event, OpenAccount, Transfer
from streamledger.settings import Settings, load_settings, replace
from tests.system.projection_workload import produce_events

READERS = 8
BASE_TIME_US = 1_700_000_000_000_000


def build_events(count: int, tenants: int, accounts: int, seed: int) -> list[Event]:
    rng = random.Random(seed)
    state = LedgerState(idempotency_retention_s=0)
    events: list[Event] = []
    clock = BASE_TIME_US
    counter = 0

    def run(command: OpenAccount | Transfer) -> None:
        nonlocal clock
        clock += 1
        decision = step(state, command, clock)
        state.commit()
        assert isinstance(decision, Accepted), decision.outcome
        events.extend(decision.events)

    for tenant in range(tenants):
        for account in range(accounts):
            counter += 1
            run(
                OpenAccount(
                    tenant_id=f"bench-{tenant}",
                    idempotency_key=f"k{counter}",
                    submitted_at_us=clock,
                    account_id=f"a{account}",
                    currency="USD",
                    asset_scale=2,
                )
            )
    while len(events) < count:
        counter += 1
        debit, credit = rng.sample(range(accounts), 2)
        run(
            Transfer(
                tenant_id=f"bench-{rng.randrange(tenants)}",
                idempotency_key=f"k{counter}",
                submitted_at_us=clock,
                transfer_id=f"t{counter}",
                debit_account_id=f"a{debit}",
                credit_account_id=f"a{credit}",
                amount=rng.randint(1, 10_000),
                currency="USD",
            )
        )
    return events


def admin(settings: Settings, statement: str, database: str) -> None:
    arguments = postgres_server.admin_connection_arguments(settings)
    with psycopg.connect(**arguments, autocommit=True) as conn:  # type: ignore[arg-type]
        conn.execute(
            sql.SQL(statement).format(
                database=sql.Identifier(database),
                owner=sql.Identifier(postgres_server.APP_ROLE),
                reader=sql.Identifier(postgres_server.READER_ROLE),
            )
        )


def project(settings: Settings, projection: ProjectionSettings, schema: str, total: int) -> float:
    sink = ProjectionSink(settings, projection, schema=schema, subscribe=False)
    applied = 0
    sink.start()
    started = time.perf_counter()
    try:
        while applied < total:
            applied += sink.run_once().events
    finally:
        elapsed = time.perf_counter() - started
        sink.close()
    return elapsed


def copy_limit(settings: Settings, events: list[Event]) -> float:
    """Seconds to COPY the planned rows of every event into a fresh generation."""
    schema = "ledger_copy_limit"
    apply_migrations(settings, schema=schema)
    plan = plan_batch(events)
    transfers = [row.as_tuple() for row in fold_transfers({}, plan.transfer_events).values()]
    tables: dict[str, tuple[str, Sequence[Sequence[object]]]] = {
        "accounts": (
            "tenant_id, account_id, currency, asset_scale, debits_must_not_exceed_credits,"
            " credits_must_not_exceed_debits, overdraft_limit, opened_sequence, opened_at",
            plan.accounts,
        ),
        "balances": (
            "tenant_id, account_id, debits_posted, credits_posted, debits_pending,"
            " credits_pending, last_sequence, updated_at, normal_side",
            [(*row, "credit") for row in plan.balances.values()],
        ),
        "transfers": (
            "tenant_id, transfer_id, debit_account_id, credit_account_id, currency,"
            " amount, pending, status, amount_posted, amount_reversed, reverses,"
            " expires_at, created_sequence, last_sequence, created_at, updated_at",
            transfers,
        ),
        "entries": (
            "tenant_id, account_id, sequence, kind, side, transfer_id, event_type,"
            " currency, amount, debits_posted_after, credits_posted_after,"
            " debits_pending_after, credits_pending_after, effective_at",
            plan.entries,
        ),
    }
    with psycopg.connect(settings.database_dsn, autocommit=True) as conn:
        started = time.perf_counter()
        with conn.transaction():
            for table, (columns, rows) in tables.items():
                statement = sql.SQL("COPY {}.{} (" + columns + ") FROM STDIN").format(
                    sql.Identifier(schema), sql.Identifier(table)
                )
                with conn.cursor() as cursor, cursor.copy(statement) as copy:
                    for row in rows:
                        copy.write_row(row)
        return time.perf_counter() - started


def read_latencies(
    settings: Settings, projection: ProjectionSettings, tenants: int, accounts: int, total: int
) -> tuple[list[float], float]:
    latencies: list[float] = []
    stop = threading.Event()
    lock = threading.Lock()

    def reader_loop(seed: int) -> None:
        rng = random.Random(seed)
        local: list[float] = []
        with LedgerReader(reader_dsn(settings), projection) as reader:
            while not stop.is_set():
                tenant, account = f"bench-{rng.randrange(tenants)}", f"a{rng.randrange(accounts)}"
                started = time.perf_counter()
                reader.balance(tenant, account)
                local.append(time.perf_counter() - started)
        with lock:
            latencies.extend(local)

    threads = [threading.Thread(target=reader_loop, args=(i,)) for i in range(READERS)]
    for thread in threads:
        thread.start()
    try:
        apply_migrations(settings, schema="ledger_rewrite")
        elapsed = project(settings, projection, "ledger_rewrite", total)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    return latencies, elapsed


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--batch-records-max", type=int, default=10_000)
    arguments = parser.parse_args()
    base = load_settings()
    settings = replace(base, topic_prefix=f"bench{uuid.uuid4().hex[:6]}.", partitions=3)
    database = f"sl_bench_{uuid.uuid4().hex[:8]}"
    admin(settings, "CREATE DATABASE {database} OWNER {owner} TEMPLATE template0", database)
    admin(settings, "GRANT CONNECT ON DATABASE {database} TO {reader}", database)
    url = f"postgresql://streamledger:streamledger@127.0.0.1:{settings.postgres_port}/{database}"
    settings = replace(settings, database_url=url)
    try:
        topics.apply(settings)
        apply_migrations(settings, schema=LIVE_SCHEMA)
        started = time.perf_counter()
        events = build_events(arguments.events, arguments.tenants, arguments.accounts, seed=7)
        print(f"built {len(events)} events in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        produce_events(settings, events, transactional_id=f"bench-{uuid.uuid4().hex[:6]}")
        print(f"produced them in {time.perf_counter() - started:.1f} s")
        projection = ProjectionSettings(
            consumer_group=f"{settings.topic_prefix}bench",
            batch_records_max=arguments.batch_records_max,
            batch_interval_ms=200,
        )
        projected_s = project(settings, projection, LIVE_SCHEMA, len(events))
        copy_s = copy_limit(settings, events)
        projection_rate = len(events) / projected_s
        copy_rate = len(events) / copy_s
        print(
            f"projection: {len(events)} events in {projected_s:.2f} s"
            f" = {projection_rate:,.0f} events/s"
        )
        print(f"raw COPY of the same rows: {copy_s:.2f} s = {copy_rate:,.0f} events/s")
        print(f"projection / COPY = {projection_rate / copy_rate:.2f}")
        latencies, rewrite_s = read_latencies(
            settings, projection, arguments.tenants, arguments.accounts, len(events)
        )
        print(
            f"balance reads with {READERS} readers while projecting "
            f"({len(events) / rewrite_s:,.0f} events/s meanwhile): {len(latencies)} reads, "
            f"p50 {percentile(latencies, 0.50):.2f} ms, p95 {percentile(latencies, 0.95):.2f} ms, "
            f"p99 {percentile(latencies, 0.99):.2f} ms,"
            f" mean {statistics.fmean(latencies) * 1000:.2f} ms"
        )
    finally:
        admin(settings, "DROP DATABASE IF EXISTS {database} WITH (FORCE)", database)


if __name__ == "__main__":
    main()
