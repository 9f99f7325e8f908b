"""Producer throughput: SDK commands/s to the broker vs raw confluent-kafka (not a timed test).

    .venv/bin/python -m bench.bench_producer [--commands 300000] [--tenants 64]

Uses the stack the settings point at (``STREAMLEDGER_*``; e.g. the test stack with
``STREAMLEDGER_HOME=.streamledger-test STREAMLEDGER_KAFKA_PORT=29092``) and a fresh topic prefix
(topics created with ``infra.topics.apply``, deleted at the end).

1. SDK: ``LedgerProducer.send`` of pre-built Transfer commands (validate + encode + murmur2
   placement + produce), then ``flush``: commands/s end to end (every record acknowledged);
2. baseline, same run: a raw ``confluent_kafka.Producer`` with the same client settings
   producing the already-encoded bytes of the same commands with the same keys and partitions;
3. the codec's share: encode-only time for the same commands.
Prints the figures and the SDK/raw ratio. Target: SDK >= 100k commands/s from one process.
"""

from __future__ import annotations

import argparse
import time
import uuid

from confluent_kafka import Producer

from infra import topics
from infra.kafka_admin import admin_client
from producers.loadgen import LoadPlan, generate
from producers.sdk import LedgerProducer, ProducerSettings
from schemas.codec import encode_command
from schemas.keys import command_key, partition_for
from schemas.model import Command
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
        sdk_rate = bench_sdk(settings, commands)
        raw_rate = bench_raw(settings, commands)
    finally:
        delete(settings)
    started = time.perf_counter()
    for command in commands:
        encode_command(command)
    encode_us = (time.perf_counter() - started) / len(commands) * 1e6
    print(f"commands            {len(commands):>12,}")
    print(f"SDK send+flush      {sdk_rate:>12,.0f} commands/s")
    print(f"raw produce+flush   {raw_rate:>12,.0f} records/s (same bytes, keys, partitions)")
    print(f"SDK / raw           {sdk_rate / raw_rate:>12.2f}")
    print(f"encode only         {encode_us:>12.2f} µs/command")


def bench_sdk(settings: Settings, commands: list[Command]) -> float:
    producer = LedgerProducer(settings, producer_settings=ProducerSettings())
    started = time.perf_counter()
    for command in commands:
        producer.send(command)
    producer.flush(FLUSH_TIMEOUT_S)
    elapsed = time.perf_counter() - started
    assert producer.delivered == len(commands), (producer.delivered, producer.failed)
    return len(commands) / elapsed


def bench_raw(settings: Settings, commands: list[Command]) -> float:
    prepared = []
    for command in commands:
        key = command_key(command.tenant_id)
        prepared.append((key, encode_command(command), partition_for(key, BENCH_PARTITIONS)))
    config = ProducerSettings().client_config(settings.kafka_bootstrap)
    producer = Producer(config)
    topic = settings.topic("ledger.commands")
    started = time.perf_counter()
    for index, (key, value, partition) in enumerate(prepared):
        while True:
            try:
                producer.produce(topic, value, key, partition)
                break
            except BufferError:
                producer.poll(0.05)
        if index % 1000 == 0:
            producer.poll(0)
    remaining = producer.flush(FLUSH_TIMEOUT_S)
    elapsed = time.perf_counter() - started
    assert remaining == 0
    return len(prepared) / elapsed


def delete(settings: Settings) -> None:
    client = admin_client(settings)
    names = list(topics.ledger_topic_names(settings).all())
    for future in client.delete_topics(names, operation_timeout=30).values():
        future.result(timeout=30)


if __name__ == "__main__":
    main()
