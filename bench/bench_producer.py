"""Producer throughput: SDK commands/s to the broker vs raw confluent-kafka (not a timed test).

    .venv/bin/python -m bench.bench_producer [--commands 300000] [--tenants 64]

Uses the stack the settings point at (``STREAMLEDGER_*``; e.g. the test stack with
``STREAMLEDGER_HOME=.streamledger-test STREAMLEDGER_KAFKA_PORT=29092``) and a fresh topic prefix
(topics created with ``infra.topics.apply``, deleted at the end).

1. SDK: ``LedgerProducer.send`` of pre-built Transfer commands (validate + encode + murmur2
   placement + produce), then ``flush``: commands/s end to end (every record acknowledged);
2. baseline, same run: a raw ``confluent_kafka.Producer`` with the same client settings
   producing the already-encoded bytes of the same commands with the same keys and partitions;
3. the SDK's stages on the same commands, in CPU µs/command of the calling thread
   (``time.thread_time``: other processes on the machine and librdkafka's own threads add
   nothing): validate (``first_violation``), encode, key + partition, and the whole ``send``
   loop next to the raw ``produce`` loop.
Prints the figures and the SDK/raw ratio. Target: SDK >= 100k commands/s from one process.
Wall-clock rates move with the machine's load; compare the CPU figures between runs.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable

from confluent_kafka import Producer

from infra import topics
from kafka_adapter.admin import admin_client
from kafka_adapter.security import PRODUCER_PRINCIPAL, security_config
from producers.loadgen import LoadPlan, generate
from producers.sdk import LedgerProducer, ProducerSettings
from schemas.codec import encode_command
from schemas.keys import command_key, partition_for
from schemas.limits import first_violation
from schemas.model import Command
from schemas.topics import COMMANDS_TOPIC
from streamledger.settings import Settings, load_settings, replace

FLUSH_TIMEOUT_S = 120.0
BENCH_PARTITIONS = 12


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=300_000)
    parser.add_argument("--tenants", type=int, default=64)
    arguments = parser.parse_args()
    settings = replace(
        load_settings(),
        topic_prefix=f"bench{uuid.uuid4().hex[:8]}.",
        partitions=BENCH_PARTITIONS,
    )
    topics.apply(settings)
    plan = LoadPlan(
        seed=7,
        tenants=arguments.tenants,
        accounts_per_tenant=20,
        commands=arguments.commands,
        duplicate_share=0.0,
        key_reuse_share=0.0,
    )
    commands = [item.command for item in generate(plan)]
    try:
        sdk_rate, sdk_send_us = bench_sdk(settings, commands)
        raw_rate, raw_produce_us = bench_raw(settings, commands)
    finally:
        delete(settings)
    print(f"commands            {len(commands):>12,}")
    print(f"SDK send+flush      {sdk_rate:>12,.0f} commands/s")
    print(f"raw produce+flush   {raw_rate:>12,.0f} records/s (same bytes, keys, partitions)")
    print(f"SDK / raw           {sdk_rate / raw_rate:>12.2f}")
    print("CPU µs/command of the calling thread:")
    print(f"  SDK send loop     {sdk_send_us:>12.2f}")
    print(f"  raw produce loop  {raw_produce_us:>12.2f}")
    for name, stage in stages(commands).items():
        print(f"  {name:<18}{cpu_us_per_command(stage, len(commands)):>12.2f}")


def stages(commands: list[Command]) -> dict[str, Callable[[], object]]:
    """The SDK's per-command work, stage by stage, on the same commands."""

    def validate() -> None:
        for command in commands:
            first_violation(command)

    def encode() -> None:
        for command in commands:
            encode_command(command)

    def key_and_partition() -> None:
        for command in commands:
            partition_for(command_key(command.tenant_id), BENCH_PARTITIONS)

    return {"validate": validate, "encode": encode, "key + partition": key_and_partition}


def cpu_us_per_command(run: Callable[[], object], count: int, rounds: int = 3) -> float:
    """The least calling-thread CPU time of ``rounds`` runs, per command."""
    best = float("inf")
    for _ in range(rounds):
        started = time.thread_time()
        run()
        best = min(best, time.thread_time() - started)
    return best / count * 1e6


def bench_sdk(settings: Settings, commands: list[Command]) -> tuple[float, float]:
    """(commands/s send+flush, calling-thread CPU µs per ``send``)."""
    producer = LedgerProducer(settings, producer_settings=ProducerSettings())
    started, cpu_started = time.perf_counter(), time.thread_time()
    for command in commands:
        producer.send(command)
    send_cpu_s = time.thread_time() - cpu_started
    producer.flush(FLUSH_TIMEOUT_S)
    elapsed = time.perf_counter() - started
    assert producer.delivered == len(commands), (producer.delivered, producer.failed)
    return len(commands) / elapsed, send_cpu_s / len(commands) * 1e6


def bench_raw(settings: Settings, commands: list[Command]) -> tuple[float, float]:
    """(records/s produce+flush, calling-thread CPU µs per ``produce``)."""
    prepared = []
    for command in commands:
        key = command_key(command.tenant_id)
        prepared.append((key, encode_command(command), partition_for(key, BENCH_PARTITIONS)))
    config = ProducerSettings().client_config(settings.kafka_bootstrap)
    config.update(security_config(settings, PRODUCER_PRINCIPAL))  # as the SDK connects
    producer = Producer(config)
    topic = settings.topic(COMMANDS_TOPIC)
    started, cpu_started = time.perf_counter(), time.thread_time()
    for index, (key, value, partition) in enumerate(prepared):
        while True:
            try:
                producer.produce(topic, value, key, partition)
                break
            except BufferError:
                producer.poll(0.05)
        if index % 1000 == 0:
            producer.poll(0)
    produce_cpu_s = time.thread_time() - cpu_started
    remaining = producer.flush(FLUSH_TIMEOUT_S)
    elapsed = time.perf_counter() - started
    assert remaining == 0
    return len(prepared) / elapsed, produce_cpu_s / len(prepared) * 1e6


def delete(settings: Settings) -> None:
    client = admin_client(settings)
    names = list(topics.ledger_topic_names(settings).all())
    for future in client.delete_topics(names, operation_timeout=30).values():
        future.result(timeout=30)


if __name__ == "__main__":
    main()
