"""Projection figures: events/s into PostgreSQL vs a raw binary COPY of the same rows.

One database for the suite (created by the cluster admin, dropped at the end), one pre-filled
``ledger.events`` topic; each repetition projects it from offset 0 into a fresh schema
generation, then COPYs the planned rows of the same events into another fresh generation.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier as BarrierType

from confluent_kafka import TopicPartition

from bench import bench_projection, grants
from bench.bench_projection import backend_cpu_s, process_cpu_s
from bench.results import BenchRun
from infra import postgres_server
from projections.migrations import apply_migrations
from projections.settings import ProjectionSettings
from projections.sink import ProjectionSink, tune_interpreter
from schemas.keys import command_key, partition_for
from streamledger.settings import Settings, load_settings, replace
from workloads.projection_events import produce_events

PARTITIONS = 3
WRITERS_PARTITIONS = 4  # several writers: 1 or 2 writers get equal partition ranges
WRITER_TIMEOUT_S = 300.0


def run_projection(
    run: BenchRun, settings: Settings, *, events: int, tenants: int, repetitions: int, seed: int
) -> None:
    scoped = replace(settings, topic_prefix=grants.prefix("p"), partitions=PARTITIONS)
    database = f"sl_bench_{uuid.uuid4().hex[:8]}"
    postgres_server.create_scratch_database(scoped, database)
    url = f"postgresql://streamledger:streamledger@127.0.0.1:{scoped.postgres_port}/{database}"
    scoped = replace(scoped, database_url=url)
    try:
        grants.apply_topics(scoped)
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


# ------------------------------------------------------------------ several writers


def assign_range(sink: ProjectionSink, partitions: Sequence[int]) -> None:
    """Start ``sink`` on ``partitions`` only (a partition range, as a member of the projection's
    consumer group gets from the range assignor), without the group's join and rebalances."""
    sink.consumer_started = True
    metadata = sink.consumer.list_topics(sink.target.topic, timeout=30)
    sink.partition_count = len(metadata.topics[sink.target.topic].partitions)
    assigned = [TopicPartition(sink.target.topic, partition) for partition in partitions]
    sink.on_assign(sink.consumer, assigned)


@dataclass(frozen=True, slots=True)
class WriterJob:
    """One writer's share: its partition range and how many events the range holds."""

    settings: Settings
    schema: str
    partitions: Sequence[int]
    total: int


def writer_process(
    job: WriterJob, ready: BarrierType, results: Queue[bench_projection.Timing]
) -> None:
    """One writer (a child process): its partition range from offset 0 until its events are in
    PostgreSQL; puts its wall (from the common start) and CPU on ``results``."""
    settings, schema, partitions, total = job.settings, job.schema, job.partitions, job.total
    tune_interpreter()
    projection = ProjectionSettings(
        consumer_group=f"{settings.topic_prefix}streamledger-projection-bench-writers",
        batch_records_max=10_000,
    )
    sink = ProjectionSink(settings, projection, schema=schema, subscribe=False)
    backend = sink.connection.info.backend_pid
    assign_range(sink, partitions)
    ready.wait()
    started = time.perf_counter()
    client_started, server_started = process_cpu_s(), backend_cpu_s(backend)
    applied = 0
    try:
        while applied < total:
            applied += sink.run_once().events
        results.put(
            bench_projection.Timing(
                time.perf_counter() - started,
                process_cpu_s() - client_started,
                backend_cpu_s(backend) - server_started,
            )
        )
    finally:
        sink.close()


def project_with_writers(
    settings: Settings, schema: str, per_partition: Sequence[int], writers: int
) -> bench_projection.Timing:
    """``writers`` child processes, each projecting a contiguous range of the partitions into
    the same schema of the same database at once: wall of the slowest, CPU of all."""
    context = multiprocessing.get_context("fork")
    ranges = [
        [p for p in range(len(per_partition)) if p * writers // len(per_partition) == w]
        for w in range(writers)
    ]
    ready = context.Barrier(writers)
    results: Queue[bench_projection.Timing] = context.Queue()
    children = [
        context.Process(
            target=writer_process,
            args=(
                WriterJob(settings, schema, part, sum(per_partition[p] for p in part)),
                ready,
                results,
            ),
        )
        for part in ranges
    ]
    for child in children:
        child.start()
    timings = [results.get(timeout=WRITER_TIMEOUT_S) for _ in children]
    for child in children:
        child.join(WRITER_TIMEOUT_S)
        assert child.exitcode == 0, f"a projection writer failed: exit code {child.exitcode}"
    return bench_projection.Timing(
        max(timing.wall_s for timing in timings),
        sum(timing.client_cpu_s for timing in timings),
        sum(timing.server_cpu_s for timing in timings),
    )


def compare_writers(
    settings: Settings, *, events: int, tenants: int, writers: Sequence[int], rounds: int
) -> None:
    """Print events/s and events per CPU-second for each writer count, alternating."""
    scoped = replace(settings, topic_prefix=grants.prefix("p"), partitions=WRITERS_PARTITIONS)
    database = f"sl_bench_{uuid.uuid4().hex[:8]}"
    postgres_server.create_scratch_database(scoped, database)
    url = f"postgresql://streamledger:streamledger@127.0.0.1:{scoped.postgres_port}/{database}"
    scoped = replace(scoped, database_url=url)
    try:
        grants.apply_topics(scoped)
        built = bench_projection.build_events(events, tenants, 20, seed=42)
        produce_events(scoped, built, transactional_id=f"bench-{uuid.uuid4().hex[:6]}")
        per_partition = [0] * WRITERS_PARTITIONS
        for event in built:
            per_partition[partition_for(command_key(event.tenant_id), WRITERS_PARTITIONS)] += 1
        print(f"{len(built)} events, per partition {per_partition}")
        for round_number in range(rounds):
            for count in writers:
                schema = f"bench_w{count}_r{round_number}"
                apply_migrations(scoped, schema=schema)
                timing = project_with_writers(scoped, schema, per_partition, count)
                print(f"{count} writer(s), load {os.getloadavg()[0]:.1f}: "
                      + timing.describe(len(built), "events"))  # fmt: skip
    finally:
        postgres_server.drop_scratch_database(scoped, database)
        from bench.bench_processor import delete_topics

        delete_topics(scoped)


def main() -> None:
    parser = argparse.ArgumentParser(description="projection writers: 1 vs N into one database")
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--writers", default="1,2", help="writer counts, alternated")
    parser.add_argument("--rounds", type=int, default=2)
    arguments = parser.parse_args()
    compare_writers(
        load_settings(),
        events=arguments.events,
        tenants=arguments.tenants,
        writers=[int(count) for count in arguments.writers.split(",")],
        rounds=arguments.rounds,
    )


if __name__ == "__main__":
    main()
