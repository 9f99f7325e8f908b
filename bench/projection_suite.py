"""Projection figures: events/s into PostgreSQL vs a raw binary COPY of the same rows.

One database for the suite (created by the cluster admin, dropped at the end), one pre-filled
``ledger.events`` topic; each repetition projects it from offset 0 into a fresh schema
generation, then COPYs the planned rows of the same events into another fresh generation.
"""

from __future__ import annotations

import time
import uuid

from bench import bench_projection
from bench.results import BenchRun
from infra import postgres_server, topics
from projections.migrations import apply_migrations
from projections.settings import ProjectionSettings
from streamledger.settings import Settings, replace
from workloads.projection_events import produce_events

PARTITIONS = 3


def run_projection(
    run: BenchRun, settings: Settings, *, events: int, tenants: int, repetitions: int, seed: int
) -> None:
    scoped = replace(settings, topic_prefix=f"p{uuid.uuid4().hex[:8]}.", partitions=PARTITIONS)
    database = f"sl_bench_{uuid.uuid4().hex[:8]}"
    postgres_server.create_scratch_database(scoped, database)
    url = f"postgresql://streamledger:streamledger@127.0.0.1:{scoped.postgres_port}/{database}"
    scoped = replace(scoped, database_url=url)
    try:
        topics.apply(scoped)
        built = bench_projection.build_events(events, tenants, 20, seed=seed)
        produce_events(scoped, built, transactional_id=f"bench-{uuid.uuid4().hex[:6]}")
        run.sizes["projection_events"] = len(built)
        for repetition in range(repetitions):
            schema = f"bench_r{repetition}"
            apply_migrations(scoped, schema=schema)
            projection = ProjectionSettings(
                consumer_group=f"{scoped.topic_prefix}streamledger-projection-bench-{repetition}",
                batch_records_max=10_000,
                # batch_interval_ms: the default (20 ms, decision 0017), as `streamledger project`
                # runs; with 200 the run's last consume, on a drained topic, waited 0.2 s of a
                # ~2 s run (bench/README.md, "Projection write path")
            )
            started = time.perf_counter()
            projected = bench_projection.project(scoped, projection, schema, len(built))
            wall_s = projected.wall_s or time.perf_counter() - started
            run.add("projection", "projection into PostgreSQL", "events/s", len(built) / wall_s)
            cpu_s = max(projected.client_cpu_s + projected.server_cpu_s, 1e-9)
            run.add("projection", "projection CPU (client + server)", "events/CPU-s",
                    len(built) / cpu_s)  # fmt: skip
            copied, _rows = bench_projection.copy_limit(scoped, built, schema=f"copy_r{repetition}")
            run.add("limits", "raw binary COPY of the same rows", "events/s",
                    len(built) / copied.wall_s)  # fmt: skip
    finally:
        postgres_server.drop_scratch_database(scoped, database)
        from bench.bench_processor import delete_topics

        delete_topics(scoped)
