"""Projection benchmark: events/s into PostgreSQL vs raw COPY of the same rows, and balance read
latency with 8 concurrent readers while the projection writes.

    .venv/bin/python -m bench.bench_projection [--events 200000] [--tenants 50] [--profile]

Uses the stack the settings point at (``STREAMLEDGER_*``; e.g. the test stack with
``STREAMLEDGER_HOME=.streamledger-test STREAMLEDGER_KAFKA_PORT=29092
STREAMLEDGER_POSTGRES_PORT=25432``), a fresh topic prefix and a fresh database (created by the
cluster admin over the unix socket, dropped at the end).

1. build valid events with the pure core (posted and pending transfers), produce them
   transactionally to ``ledger.events`` (3 partitions) — the pre-filled topic;
2. projection: an in-process sink from offset 0 until every event is in PostgreSQL (events/s);
3. COPY limit: the same rows (planned beforehand, not timed) COPY'd with binary ``COPY`` into a
   fresh generation of the same tables (same migrations), in one transaction (rows/s, events/s):
   every row the projection leaves in the ledger's tables — accounts, balances, transfers,
   entries, ``event_chain`` (one link per event), ``tenant_heads``, the metadata tables — but
   not its three ``projection_offsets`` rows (decision 0111);
4. reads: 8 threads read random current balances through the reader role while a second sink
   projects the same log into another generation; p50/p95/p99.

The machine may be shared (other services, tests), so besides wall time it prints CPU time: this
process's (user + system, all threads: decode, planning, librdkafka, psycopg) and the PostgreSQL
backend's serving the writing connection (from ``/proc``, the server runs on this machine).
Compare figures of the same run only.

``--no-reads`` skips step 4. ``--profile`` runs step 2 under ``cProfile`` (every thread the
sink starts gets its own profiler, merged at the end) and prints the functions with the most own
time, in microseconds per event; step 4 is skipped. Profiling slows the client about twofold:
compare its split, not its rate.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import resource
import statistics
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql

from infra import postgres_server, topics
from ledger import Accepted, LedgerState, step
from processors.partition_ledger import WIRE_FORMAT
from projections.batch import fold_transfers, plan_batch
from projections.migrations import apply_migrations
from projections.queries import LedgerReader, reader_dsn
from projections.settings import ProjectionSettings
from projections.sink import ProjectionSink, tune_interpreter
from projections.store import (
    ACCOUNT_TYPES,
    BALANCE_COLUMNS,
    BALANCE_TYPES,
    CHAIN_TYPES,
    COPY_ACCOUNT_METADATA,
    COPY_ACCOUNTS,
    COPY_CHAIN,
    COPY_ENTRIES,
    COPY_TRANSFER_METADATA,
    COPY_TRANSFERS,
    ENTRY_TYPES,
    LIVE_SCHEMA,
    METADATA_TYPES,
    TRANSFER_TYPES,
    BatchTarget,
    copy_rows,
)
from schemas.event_time import to_datetime
from schemas.model import Event, OpenAccount, Transfer
from streamledger.settings import Settings, load_settings, replace
from workloads.projection_events import produce_events

READERS = 8
COPY_TENANT_HEADS = sql.SQL(
    "COPY {schema}.tenant_heads (tenant_id, last_sequence, last_hash, last_effective_at)"
    " FROM STDIN (FORMAT BINARY)"
)
HEAD_TYPES = ("text", "int8", "bytea", "timestamptz")
BASE_TIME_US = 1_700_000_000_000_000
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
PROFILE_FUNCTIONS_SHOWN = 25


@dataclass(frozen=True, slots=True)
class Timing:
    """Wall seconds, this process's CPU seconds and the writing backend's CPU seconds."""

    wall_s: float
    client_cpu_s: float
    server_cpu_s: float

    def describe(self, count: int, unit: str) -> str:
        return (
            f"{count} {unit} in {self.wall_s:.2f} s = {count / self.wall_s:,.0f} {unit}/s wall;"
            f" CPU: client {self.client_cpu_s:.2f} s, server {self.server_cpu_s:.2f} s"
            f" = {count / max(self.client_cpu_s + self.server_cpu_s, 1e-9):,.0f} {unit}/CPU-s"
        )


def process_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def backend_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a local PostgreSQL backend process."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S


def build_events(count: int, tenants: int, accounts: int, seed: int) -> list[Event]:
    rng = random.Random(seed)
    state = LedgerState(wire_format=WIRE_FORMAT, idempotency_retention_s=0)
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


def project(
    settings: Settings,
    projection: ProjectionSettings,
    schema: str,
    total: int,
    *,
    profiles: list[cProfile.Profile] | None = None,
) -> Timing:
    """Run a sink from offset 0 until ``total`` events are in PostgreSQL. With ``profiles``, the
    calling thread and every thread started meanwhile run under their own ``cProfile``."""
    tune_interpreter()  # as `streamledger project` does
    sink = ProjectionSink(settings, projection, schema=schema, subscribe=False)
    backend = sink.connection.info.backend_pid
    applied = 0
    sink.start()
    started, client_started = time.perf_counter(), process_cpu_s()
    server_started = backend_cpu_s(backend)
    if profiles is not None:
        start_profiling(profiles)
    try:
        while applied < total:
            applied += sink.run_once().events
        return Timing(
            time.perf_counter() - started,
            process_cpu_s() - client_started,
            backend_cpu_s(backend) - server_started,
        )
    finally:
        if profiles is not None:
            stop_profiling(profiles)
        sink.close()


def start_profiling(profiles: list[cProfile.Profile]) -> None:
    """Profile this thread, and each thread started from now on from its first call."""

    def profile_new_thread(*_: object) -> None:
        profile = cProfile.Profile()
        profiles.append(profile)
        profile.enable()  # replaces this hook for the rest of the thread

    threading.setprofile(profile_new_thread)
    profile = cProfile.Profile()
    profiles.append(profile)
    profile.enable()


def stop_profiling(profiles: list[cProfile.Profile]) -> None:
    threading.setprofile(None)
    for profile in profiles:
        profile.disable()


def print_profile(profiles: list[cProfile.Profile], events: int) -> None:
    """Own time per event of the costliest functions, all profiled threads merged."""
    stats = pstats.Stats(profiles[0])
    for profile in profiles[1:]:
        stats.add(profile)
    table: dict[tuple[str, int, str], tuple[int, int, float, float, object]]
    table = stats.stats  # type: ignore[attr-defined]  # pstats keeps its table untyped
    rows = sorted(table.items(), key=lambda item: item[1][2], reverse=True)
    print(f"profile ({len(profiles)} threads), own time per event:")
    for (filename, line, function), (_, calls, own_s, cumulative_s, _) in rows[
        :PROFILE_FUNCTIONS_SHOWN
    ]:
        where = f"{os.path.basename(filename)}:{line}({function})"
        print(
            f"  {own_s / events * 1e6:7.2f} us own {cumulative_s / events * 1e6:7.2f} us cum"
            f"  {calls:>8} calls  {where}"
        )


def copy_limit(
    settings: Settings, events: list[Event], schema: str = "ledger_copy_limit"
) -> tuple[Timing, int]:
    """Binary COPY of the planned rows of every event into a fresh generation of the same
    tables, in one transaction: the timing and the number of rows. Every row the projection
    writes into the ledger's tables is here, the hash chain's links and the tenants' heads
    included (decision 0111: the bench's ratio compares the same rows); only the projection's
    own bookkeeping (``projection_offsets``, one row per partition) is not."""
    target = BatchTarget(schema, "copy", "")
    apply_migrations(settings, schema=target.schema)
    plan = plan_batch(events)
    transfers = [row.as_tuple() for row in fold_transfers({}, plan.transfer_events).values()]
    copy_balances = sql.SQL(
        "COPY {schema}.balances (" + BALANCE_COLUMNS + ", normal_side) FROM STDIN (FORMAT BINARY)"
    )
    balances = [(*row, "credit") for row in plan.balances.values()]
    heads = [
        (run.tenant_id, run.last_sequence, run.last_hash, to_datetime(run.last_effective_at_us))
        for run in plan.tenant_runs.values()
    ]
    tables: list[tuple[sql.Composed, Sequence[str], Sequence[Sequence[object]]]] = [
        (target.compose(COPY_ACCOUNTS), ACCOUNT_TYPES, plan.accounts),
        (target.compose(copy_balances), (*BALANCE_TYPES, "text"), balances),
        (target.compose(COPY_TRANSFERS), TRANSFER_TYPES, transfers),
        (target.compose(COPY_ENTRIES), ENTRY_TYPES, plan.entries),
        (target.compose(COPY_CHAIN), CHAIN_TYPES, plan.chain),
        (target.compose(COPY_TENANT_HEADS), HEAD_TYPES, heads),
        (target.compose(COPY_ACCOUNT_METADATA), METADATA_TYPES, plan.account_metadata),
        (target.compose(COPY_TRANSFER_METADATA), METADATA_TYPES, plan.transfer_metadata),
    ]
    with psycopg.connect(settings.database_dsn, autocommit=True) as conn:
        backend = conn.info.backend_pid
        started, client_started = time.perf_counter(), process_cpu_s()
        server_started = backend_cpu_s(backend)
        with conn.transaction():
            for statement, types, rows in tables:
                if rows:  # as the projection: no COPY for a table the events leave empty
                    copy_rows(conn, statement, types, rows)
        timing = Timing(
            time.perf_counter() - started,
            process_cpu_s() - client_started,
            backend_cpu_s(backend) - server_started,
        )
    return timing, sum(len(rows) for _, _, rows in tables)


def read_latencies(
    settings: Settings, projection: ProjectionSettings, tenants: int, accounts: int, total: int
) -> tuple[list[float], Timing]:
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
        timing = project(settings, projection, "ledger_rewrite", total)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    return latencies, timing


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--batch-records-max", type=int, default=10_000)
    parser.add_argument("--profile", action="store_true", help="cProfile the projection pass")
    parser.add_argument("--no-reads", action="store_true", help="skip step 4 (read latency)")
    arguments = parser.parse_args()
    base = load_settings()
    settings = replace(base, topic_prefix=f"bench{uuid.uuid4().hex[:6]}.", partitions=3)
    database = f"sl_bench_{uuid.uuid4().hex[:8]}"
    postgres_server.create_scratch_database(settings, database)
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
            consumer_group=f"{settings.topic_prefix}streamledger-projection-bench",
            batch_records_max=arguments.batch_records_max,
        )  # batch_interval_ms: the default, as in bench.projection_suite
        profiles: list[cProfile.Profile] | None = [] if arguments.profile else None
        projected = project(settings, projection, LIVE_SCHEMA, len(events), profiles=profiles)
        copied, copied_rows = copy_limit(settings, events)
        projection_rate = len(events) / projected.wall_s
        copy_rate = len(events) / copied.wall_s
        print(f"projection: {projected.describe(len(events), 'events')}")
        print(f"raw COPY of the same rows: {copied.describe(copied_rows, 'rows')}")
        print(f"raw COPY as events: {copy_rate:,.0f} events/s wall")
        print(f"projection / raw COPY (wall, events/s) = {projection_rate / copy_rate:.2f}")
        print(
            f"projection CPU per event: client {projected.client_cpu_s / len(events) * 1e6:.1f} us,"
            f" server {projected.server_cpu_s / len(events) * 1e6:.1f} us"
        )
        if profiles is not None:
            print_profile(profiles, len(events))
        if profiles is not None or arguments.no_reads:
            return
        latencies, rewrite = read_latencies(
            settings, projection, arguments.tenants, arguments.accounts, len(events)
        )
        print(
            f"balance reads with {READERS} readers while projecting "
            f"({len(events) / rewrite.wall_s:,.0f} events/s meanwhile): {len(latencies)} reads, "
            f"p50 {percentile(latencies, 0.50):.2f} ms, p95 {percentile(latencies, 0.95):.2f} ms, "
            f"p99 {percentile(latencies, 0.99):.2f} ms,"
            f" mean {statistics.fmean(latencies) * 1000:.2f} ms"
        )
    finally:
        postgres_server.drop_scratch_database(settings, database)


if __name__ == "__main__":
    main()
