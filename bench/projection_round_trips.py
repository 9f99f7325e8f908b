"""Round trips, statements and wall time of the projection's database transaction, alone.

    .venv/bin/python -m bench.projection_round_trips [--events-per-batch 40] [--batches 200]
        [--staged-rows-max 2048]

Against the stack the ``STREAMLEDGER_*`` settings name (PostgreSQL only), in a scratch database
(created by the cluster admin, dropped at the end): ``bench.bench_projection``'s events (posted
transfers between ``--accounts`` accounts of ``--tenants`` tenants) planned and formatted as the
sink does, then written by ``projections.store.write_batch`` one batch after the other on one
connection, the accounts' openings first. No Kafka and no sink thread: this times the write
transaction and nothing else (decision 0127).

- round trips: the writer connection's libpq protocol trace over ``--trace-batches`` batches;
  each switch from messages the client sent to messages the server sent is one wait;
  statements: ``Query`` and ``Bind`` messages; ``COPY``: ``CopyInResponse`` messages;
- wall and CPU over ``--batches`` batches: ``write_batch``'s wall time (mean, p50, p90, p99),
  the calling thread's CPU (``time.thread_time``) and the backend's (``/proc``).

``--busy-thread``: as in the sink, a second Python thread runs meanwhile (here a pure-Python
spin; in the sink, decoding and planning the next batch) with the sink's thread switch interval
(``tune_interpreter``): after each round trip the writer waits for the GIL as well.

For an A/B, run it from each tree (e.g. ``git archive REV | tar -x -C DIR``, then from DIR with
``PYTHONPATH=DIR``), alternating.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace as replace_field
from typing import Any

import psycopg
from psycopg.pq import Trace

from bench.bench_projection import backend_cpu_s, build_events
from infra import postgres_server
from projections.batch import PlanContext, plan_records
from projections.event_records import EventRecord, event_record
from projections.migrations import apply_migrations
from projections.sink import tune_interpreter
from projections.store import LIVE_SCHEMA, BatchTarget, format_rows, prepare_session, write_batch
from streamledger.settings import load_settings, replace

PERCENTILES = 100


class Writer:
    """Plans, formats and writes ``records[start:end]`` as the sink's batch from offset
    ``start`` of partition 0."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        records: Sequence[EventRecord],
        *,
        staged_rows_max: int,
    ) -> None:
        self.conn, self.records, self.staged_rows_max = conn, records, staged_rows_max
        self.cursor = conn.cursor()
        self.target = BatchTarget(LIVE_SCHEMA, "round-trips", "events")
        self.context = PlanContext(partitions=None, held={}, releases={})

    def prepared(self, start: int, end: int) -> Callable[[], object]:
        records = self.records[start:end]
        locations = [(0, offset) for offset in range(start, end)]
        plan = plan_records(records, locations, self.context)
        formatted = format_rows(self.cursor, plan, staged_rows_max=self.staged_rows_max)

        def replan(held: Any) -> Any:
            return plan_records(records, locations, replace_field(self.context, held=dict(held)))

        return lambda: write_batch(
            self.conn,
            self.target,
            plan,
            consumed_from={0: start},
            next_offsets={0: end},
            replan=replan,
            formatted=formatted,
        )


def count_trace(lines: Sequence[str]) -> tuple[int, int, int]:
    """Round trips, statements and ``COPY``s in libpq trace lines (timestamps suppressed)."""
    switches, statements, copies, previous = 0, 0, 0, ""
    for line in lines:
        fields = line.split("\t")
        direction, message = fields[0], fields[2] if len(fields) > 2 else ""
        if direction == "B" and previous == "F":
            switches += 1
        previous = direction
        statements += direction == "F" and message in ("Query", "Bind")
        copies += direction == "B" and message == "CopyInResponse"
    return switches, statements, copies


def spin(stop: threading.Event) -> None:
    """Pure-Python work holding the GIL between switch intervals until ``stop``."""
    total = 0
    while not stop.is_set():
        for value in range(1_000):
            total += value * value


def time_writes(
    writer: Writer, position: int, size: int, batches: int, *, busy_thread: bool
) -> tuple[list[float], list[float], float]:
    """Each batch's wall and thread CPU seconds, and the backend's CPU seconds for all."""
    stop = threading.Event()
    if busy_thread:
        tune_interpreter()
        threading.Thread(target=spin, args=(stop,), daemon=True).start()
    walls: list[float] = []
    cpus: list[float] = []
    backend = writer.conn.info.backend_pid
    server_started = backend_cpu_s(backend)
    for _ in range(batches):
        write = writer.prepared(position, position + size)
        started, cpu_started = time.perf_counter(), time.thread_time()
        write()
        walls.append(time.perf_counter() - started)
        cpus.append(time.thread_time() - cpu_started)
        position += size
    stop.set()
    return walls, cpus, backend_cpu_s(backend) - server_started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events-per-batch", type=int, default=40)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--trace-batches", type=int, default=5)
    parser.add_argument("--tenants", type=int, default=8)
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--busy-thread", action="store_true", help="a Python thread spins beside")
    parser.add_argument(
        "--staged-rows-max",
        type=int,
        default=0,
        help="the projection setting staged_rows_max (0, the default: one COPY per table)",
    )
    arguments = parser.parse_args()
    size, traced = arguments.events_per_batch, arguments.trace_batches
    settings = load_settings()
    database = f"sl_round_trips_{uuid.uuid4().hex[:8]}"
    postgres_server.create_scratch_database(settings, database)
    url = f"postgresql://streamledger:streamledger@127.0.0.1:{settings.postgres_port}/{database}"
    settings = replace(settings, database_url=url)
    try:
        apply_migrations(settings, schema=LIVE_SCHEMA)
        opening = arguments.tenants * arguments.accounts
        total = opening + size * (arguments.batches + traced)
        events = build_events(total, arguments.tenants, arguments.accounts, seed=7)
        with psycopg.connect(settings.database_dsn, autocommit=True) as conn:
            prepare_session(conn)
            records = [event_record(event) for event in events]
            writer = Writer(conn, records, staged_rows_max=arguments.staged_rows_max)
            writer.prepared(0, opening)()
            position = opening
            with tempfile.NamedTemporaryFile("r+") as trace:
                conn.pgconn.trace(trace.fileno())
                conn.pgconn.set_trace_flags(Trace.SUPPRESS_TIMESTAMPS)
                for _ in range(traced):
                    writer.prepared(position, position + size)()
                    position += size
                conn.pgconn.untrace()
                trace.seek(0)
                switches, statements, copies = count_trace(trace.read().splitlines())
            print(
                f"per transaction of {size} events: {switches / traced:.1f} round trips,"
                f" {statements / traced:.1f} statements ({copies / traced:.1f} COPY)"
            )
            walls, cpus, server_s = time_writes(
                writer, position, size, arguments.batches, busy_thread=arguments.busy_thread
            )
        cut = statistics.quantiles(walls, n=PERCENTILES)
        print(
            f"write_batch wall ms: mean {statistics.fmean(walls) * 1e3:.2f},"
            f" p50 {cut[49] * 1e3:.2f}, p90 {cut[89] * 1e3:.2f}, p99 {cut[98] * 1e3:.2f};"
            f" CPU ms per transaction: client thread {statistics.fmean(cpus) * 1e3:.2f},"
            f" backend {server_s / arguments.batches * 1e3:.2f}"
        )
    finally:
        postgres_server.drop_scratch_database(settings, database)


if __name__ == "__main__":
    main()
