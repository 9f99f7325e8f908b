"""Processor throughput with exactly-once, against a no-logic transactional pass-through.

    python -m bench.bench_processor [--commands 100000] [--profile]

1. pre-fills a fresh ``ledger.commands`` (the loadgen's standard mix, 10 % duplicates);
2. pass-through: the same consumer and producer settings and batching, one transaction per
   batch, but each record is copied byte for byte to another topic (the machine's limit);
3. the real processor (``processors.loop.Processor``, in this process) on the same commands;
4. restore: every partition's state read back from the topics, as on assignment; the time is
   scaled to one million live idempotency keys, and the RSS growth gives memory per key.

Uses the shared settings (``STREAMLEDGER_*``; the demo stack by default) and a unique topic
prefix, deleted at the end. Not a timed test: it prints figures.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import gc
import pstats
import resource
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from infra import topics
from kafka_adapter.admin import admin_client
from kafka_adapter.security import ADMIN_PRINCIPAL, client_config
from processors.kafka_clients import consumer_config, producer_config
from processors.loop import Processor, tune_garbage_collection
from processors.metrics import ProcessorMetrics
from processors.partition_ledger import ledger_from_snapshot, restore_ledgers
from processors.processor_settings import ProcessorSettings, build_processor_settings
from processors.restore import PartitionSnapshot, admin_for, restore_consumer
from producers.loadgen import LoadPlan, generate
from schemas.codec import encode_command
from schemas.keys import command_key, partition_for
from schemas.topics import COMMANDS_TOPIC
from streamledger.settings import Settings, load_settings, replace

RUN_TIMEOUT_S = 900.0
POLL_S = 0.01
KEYS_PER_MILLION = 1_000_000
PASSTHROUGH_TOPIC = "bench.passthrough"


def main() -> None:
    arguments = parse_arguments()
    base = load_settings()
    settings = replace(
        base, topic_prefix=f"bench{uuid.uuid4().hex[:6]}.", partitions=arguments.partitions
    )
    topics.apply(settings)
    processor_settings = build_processor_settings(
        settings,
        instance_id="bench",
        metrics_port=0,
        limits={"batch_records_max": arguments.batch_records_max},
    )
    try:
        total = prefill(settings, arguments.commands, arguments.tenants)
        passthrough_rate = passthrough(settings, processor_settings, total)
        processor_rate = run_processor(processor_settings, total, profile=arguments.profile)
        restore_s_per_million, bytes_per_key, keys = measure_restore(processor_settings)
    finally:
        delete_topics(settings)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"commands:            {total}")
    print(f"pass-through:        {passthrough_rate:,.0f} records/s (EOS, no logic)")
    print(f"processor:           {processor_rate:,.0f} commands/s (EOS)")
    print(f"ratio:               {processor_rate / passthrough_rate:.2f} of pass-through")
    print(
        f"restore:             {restore_s_per_million:.2f} s per million live keys"
        f" (measured on {keys:,} keys, scaled linearly)"
    )
    print(
        f"state memory:        {bytes_per_key * KEYS_PER_MILLION / 2**20:,.0f} MiB per million keys"
    )
    print(f"peak RSS:            {peak_rss_mb:,.0f} MiB (whole benchmark process)")


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commands", type=int, default=100_000)
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--batch-records-max", type=int, default=5_000)
    parser.add_argument("--profile", action="store_true", help="cProfile the processor loop")
    return parser.parse_args()


def prefill(settings: Settings, commands: int, tenants: int) -> int:
    started = time.perf_counter()
    plan = LoadPlan(
        seed=42,
        tenants=tenants,
        commands=commands,
        start_us=int(time.time() * 1_000_000),  # recent: the topic's retention keeps them
        duplicate_share=0.10,
    )
    producer = Producer({**client_config(settings, ADMIN_PRINCIPAL), "linger.ms": 20})
    topic = settings.topic(COMMANDS_TOPIC)
    count = 0
    for generated in generate(plan):
        key = command_key(generated.command.tenant_id)
        producer.produce(
            topic,
            encode_command(generated.command),
            key,
            partition_for(key, settings.partitions),
            timestamp=generated.command.submitted_at_us // 1000,
        )
        count += 1
        if count % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(RUN_TIMEOUT_S) == 0
    print(f"pre-filled {count} commands in {time.perf_counter() - started:.1f} s")
    return count


def passthrough(settings: Settings, processor_settings: ProcessorSettings, total: int) -> float:
    """Consume → produce the same bytes → send offsets → commit, one transaction per batch."""
    output = settings.topic(PASSTHROUGH_TOPIC)
    admin = admin_client(settings)  # must outlive its futures
    for future in admin.create_topics([NewTopic(output, settings.partitions, 1)]).values():
        future.result(timeout=60)
    # the processor's client settings, as the stack's admin: the processor principal may not
    # write the pass-through topic (its ACLs name the ledger topics only)
    connection = client_config(settings, ADMIN_PRINCIPAL)
    config = {**consumer_config(processor_settings), **connection}
    config["group.id"] = config["group.id"] + "-passthrough"  # type: ignore[operator]
    consumer = Consumer(config)
    producer_settings = {**producer_config(processor_settings), **connection}
    producer_settings["transactional.id"] = f"{producer_settings['transactional.id']}-passthrough"
    producer = Producer(producer_settings)
    producer.init_transactions(60)
    commands = settings.topic(COMMANDS_TOPIC)
    consumer.subscribe([commands])
    done = 0
    started: float | None = None
    deadline = time.monotonic() + RUN_TIMEOUT_S
    timeout_s = processor_settings.batch_interval_ms / 1000
    while done < total and time.monotonic() < deadline:
        messages = consumer.consume(processor_settings.batch_records_max, timeout_s)
        if not messages:
            continue
        started = started or time.perf_counter()
        producer.begin_transaction()
        positions: dict[int, int] = {}
        for message in messages:
            partition, offset = message.partition(), message.offset()
            assert partition is not None and offset is not None
            producer.produce(output, message.value(), message.key(), partition)
            positions[partition] = offset + 1
        offsets = [TopicPartition(commands, p, o) for p, o in positions.items()]
        producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 60)
        producer.commit_transaction(60)
        done += len(messages)
    elapsed = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    assert done == total, f"pass-through saw {done} of {total}"
    return total / elapsed


def run_processor(
    processor_settings: ProcessorSettings,
    total: int,
    *,
    profile: bool,
    timed_from: int = 0,
    profiler: cProfile.Profile | None = None,
    measure: Callable[[], float] | None = None,
) -> float:
    """The real processor in this process until ``total`` commands are consumed; commands/s
    counted from the first consumed (or from the ``timed_from``-th) to the last."""
    metrics = ProcessorMetrics()
    tune_garbage_collection()  # as `streamledger process` does
    processor = Processor(processor_settings, metrics)
    processor.check_topics()
    stop = threading.Event()
    printed = profiler is None and profile
    profiler = profiler or (cProfile.Profile() if profile else None)
    errors: list[Exception] = []
    thread = threading.Thread(target=_run, args=(processor, stop, profiler, errors), daemon=True)
    thread.start()
    consumed = _counter(metrics.commands_consumed)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    if measure is not None:  # e.g. by the group's committed offsets (one batch may be all)
        rate = measure()
        stop.set()
        thread.join(RUN_TIMEOUT_S)
        assert not errors, errors
        return rate
    while consumed() <= timed_from and time.monotonic() < deadline and not errors:
        time.sleep(POLL_S)
    started, cpu_started, first = time.perf_counter(), time.process_time(), consumed()
    while consumed() < total and time.monotonic() < deadline and not errors:
        time.sleep(POLL_S)
    elapsed = time.perf_counter() - started
    cpu_s = time.process_time() - cpu_started
    # CPU time of the whole process (the loop, librdkafka's threads, this polling thread) per
    # command: what a loaded machine inflates least (5 sessions share 2 cores)
    if total > first:  # else everything was consumed before the timing started
        print(f"processor CPU:       {cpu_s / (total - first) * 1e6:.1f} µs per command")
    stop.set()
    thread.join(RUN_TIMEOUT_S)
    assert not errors, errors
    # >=: the processor appends tick records when pending deadlines pass (decision 0026)
    assert consumed() >= total, f"processor consumed {consumed()} of {total}"
    if profiler is not None and printed:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    return (total - first) / elapsed


def _run(
    processor: Processor,
    stop: threading.Event,
    profiler: cProfile.Profile | None,
    errors: list[Exception],
) -> None:
    try:
        if profiler is not None:
            profiler.enable()
        processor.run(stop)
    except Exception as exc:  # noqa: BLE001 - handed to the main thread
        errors.append(exc)
    finally:
        if profiler is not None:
            profiler.disable()


def _counter(counter: object) -> Callable[[], float]:
    def value() -> float:
        return float(counter._value.get())  # type: ignore[attr-defined]

    return value


def measure_restore(processor_settings: ProcessorSettings) -> tuple[float, float, int]:
    """Restore every partition as on assignment: seconds per million keys, bytes per key.

    The bytes are what the restored states hold, traced (``traced_state_bytes``): the RSS
    growth of the restore (this figure before 2026-12-06) counted only what the process could
    not take from memory it had freed, after the processor's run 87 to 441 MiB per million keys
    for the same states (bench/README.md, "Restore")."""
    reader = restore_consumer(processor_settings)
    # the processor's admin client is connected (it checked the partition counts at start)
    # when a partition is assigned; a new one would add its first connection to the restore
    admin = admin_for(processor_settings)
    partitions = _partitions(processor_settings, admin)
    # connected, as the processor's reader is by an assignment (made at its start, decision
    # 0124); the restore asks for the topics' metadata again, as the processor's does
    reader.list_topics(processor_settings.topics.balances, processor_settings.request_timeout_s)
    ledgers, snapshots = [], []
    started = time.perf_counter()
    # as the processor's loop restores an assignment (small partitions in one pass)
    for ledger, snapshot in restore_ledgers(reader, admin, processor_settings, range(partitions)):
        ledgers.append(ledger)
        snapshots.append(snapshot)
    elapsed = time.perf_counter() - started
    reader.close()
    keys = sum(ledger.live_idempotency_keys() for ledger in ledgers)
    del ledgers
    state_bytes = traced_state_bytes(snapshots, processor_settings)
    return elapsed * KEYS_PER_MILLION / max(keys, 1), state_bytes / max(keys, 1), keys


def traced_state_bytes(
    snapshots: list[PartitionSnapshot], processor_settings: ProcessorSettings
) -> int:
    """The bytes the states rebuilt from ``snapshots`` hold (``tracemalloc``), with whatever of
    the snapshots they keep (the encoded outcomes, and since decision 0102 their record keys):
    the states are rebuilt from copies of the snapshots made under the trace, and the copies
    dropped before reading it. What a restore adds to a process that has no freed memory to
    reuse; the snapshots themselves, freed after a restore, are not counted."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        copies = [_copied(snapshot) for snapshot in snapshots]
        states = [ledger_from_snapshot(snapshot, processor_settings) for snapshot in copies]
        del copies
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    del states
    return traced


def _copied(snapshot: PartitionSnapshot) -> PartitionSnapshot:
    """The snapshot with new ``bytes`` objects, so what a state keeps of it is traced; a key
    object shared by a topic's values and header values (as ``read_partition`` makes them) is
    copied once and shared the same way."""
    keys: dict[bytes, bytes] = {}

    def fresh(values: dict[bytes, bytes]) -> dict[bytes, bytes]:
        copied: dict[bytes, bytes] = {}
        for key, value in values.items():
            new_key = keys.get(key)
            if new_key is None:
                new_key = keys[key] = bytes(bytearray(key))
            copied[new_key] = bytes(bytearray(value))
        return copied

    return dataclasses.replace(
        snapshot,
        records={topic: fresh(values) for topic, values in snapshot.records.items()},
        header_values={topic: fresh(values) for topic, values in snapshot.header_values.items()},
    )


def _partitions(processor_settings: ProcessorSettings, admin: AdminClient) -> int:
    metadata = admin.list_topics(processor_settings.topics.commands, 30)
    return len(metadata.topics[processor_settings.topics.commands].partitions)


def delete_topics(settings: Settings) -> None:
    # every topic ``topics.apply`` created (the reconciliation's too: ledger_topic_names missed
    # them, 2 topics left per bench run) and the pass-through's
    names = [*topics.declared_topic_names(settings), settings.topic(PASSTHROUGH_TOPIC)]
    client = admin_client(settings)
    existing = set(client.list_topics(timeout=30).topics)
    doomed = [name for name in names if name in existing]
    if doomed:
        for future in client.delete_topics(doomed, operation_timeout=30).values():
            future.result(timeout=60)


if __name__ == "__main__":
    main()
