"""Report benchmark (issue 19 §5), at a small size: statement and trial-balance latency.

    .venv/bin/python -m bench.bench_reports [--events 20000] [--accounts 200] [--repeats 50]

Uses the stack the settings point at (like ``bench.bench_projection``: a fresh topic prefix and
a fresh database, dropped at the end). One tenant; ``--events`` posted transfers between
``--accounts`` accounts are produced, projected, then read through the reader role:

- statement: one random account, a window of a tenth of the history, ``--repeats`` times;
- trial balance: every account as of a random past instant, ``--repeats`` times.

It prints p50/p99 of each. The issue's targets (a 1M-entry account's 1-day statement p99 <= 50 ms,
a 100k-account trial balance <= 2 s) are for ``--size full`` runs on a machine of its own; this
is the same measurement at a size a shared machine can take. Compare figures of one run only.
"""

from __future__ import annotations

import argparse
import random
import time
import uuid

from bench.bench_projection import build_events, percentile, project
from infra import postgres_server, topics
from projections.batch import to_datetime
from projections.migrations import apply_migrations
from projections.queries import LedgerReader, reader_dsn
from projections.reports import run_report, statement_steps, trial_balance_steps
from projections.settings import ProjectionSettings
from projections.store import LIVE_SCHEMA
from streamledger.settings import Settings, load_settings, replace
from workloads.projection_events import produce_events

TENANT = "bench-0"


def timed_reads(settings: Settings, events_count: int, arguments: argparse.Namespace) -> None:
    first_us, last_us = 1, 1
    rng = random.Random(11)
    projection = ProjectionSettings(consumer_group="unused", batch_records_max=1_000)
    with LedgerReader(reader_dsn(settings), projection) as reader:

        def fetch(statement: str, parameters: tuple[object, ...]) -> list[object]:
            return reader.fetch(TENANT, statement, parameters)

        bounds = reader.fetch(
            TENANT,
            "SELECT min(effective_at), max(effective_at) FROM ledger.event_chain"
            " WHERE tenant_id = %s",
            (TENANT,),
        )
        first, last = bounds[0]
        first_us = int(first.timestamp() * 1_000_000)
        last_us = int(last.timestamp() * 1_000_000)
        window_us = max(1, (last_us - first_us) // 10)
        statements: list[float] = []
        entries = 0
        for _ in range(arguments.repeats):
            start_us = rng.randint(first_us, max(first_us, last_us - window_us))
            account = f"a{rng.randrange(arguments.accounts)}"
            steps = statement_steps(
                TENANT, account, to_datetime(start_us), to_datetime(start_us + window_us)
            )
            started = time.perf_counter()
            statement = run_report(steps, fetch)
            statements.append(time.perf_counter() - started)
            entries += 0 if statement is None else len(statement.entries)
        trials: list[float] = []
        for _ in range(arguments.repeats):
            steps_tb = trial_balance_steps(TENANT, to_datetime(rng.randint(first_us, last_us)))
            started = time.perf_counter()
            run_report(steps_tb, fetch)
            trials.append(time.perf_counter() - started)
    print(
        f"statement (window = a tenth of {events_count} events, {entries / len(statements):.0f}"
        f" entries on average): p50 {percentile(statements, 0.5):.2f} ms,"
        f" p99 {percentile(statements, 0.99):.2f} ms"
    )
    print(
        f"trial balance ({arguments.accounts} accounts, a past instant):"
        f" p50 {percentile(trials, 0.5):.2f} ms, p99 {percentile(trials, 0.99):.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=50)
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
        events = build_events(arguments.events, 1, arguments.accounts, seed=19)
        produce_events(settings, events, transactional_id=f"bench-{uuid.uuid4().hex[:6]}")
        projection = ProjectionSettings(
            consumer_group=f"{settings.topic_prefix}streamledger-projection-bench",
            batch_records_max=5_000,
        )
        projected = project(settings, projection, LIVE_SCHEMA, len(events))
        print(f"projected {len(events)} events in {projected.wall_s:.1f} s")
        timed_reads(settings, len(events), arguments)
    finally:
        postgres_server.drop_scratch_database(settings, database)


if __name__ == "__main__":
    main()
