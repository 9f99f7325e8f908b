"""The bench's workloads, built once per run from seeds and encoded once.

* ``standard``: the loadgen's standard mix (10 % duplicate retries, 2 % key-reuse conflicts,
  2 % overdraft attempts, 20 % pending of which a quarter expire on stream time, post/void);
* ``hot_tenant``: the same mix, but one tenant carries half of all commands;
* ``duplicates``: the standard commands twice: the second pass is all duplicates (a client
  replaying its whole history). Only the second pass is timed.

A workload is a list of ``Record`` (key, value, partition, timestamp) in production order;
``produce`` writes it to a topic and returns the producer's records/s — the raw producer figure.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from confluent_kafka import Producer

from producers.loadgen import LoadPlan, generate
from schemas.codec import encode_command
from schemas.keys import command_key, partition_for
from schemas.model import Command

PRODUCE_TIMEOUT_S = 300.0
HOT_TENANT_ID = "tenant-hot"
STEP_US = 1_000  # the loadgen's default submitted_at_us step


@dataclass(frozen=True, slots=True)
class Record:
    key: bytes
    value: bytes
    partition: int
    timestamp_ms: int
    command: Command


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    records: list[Record]
    timed_from: int = 0  # records before this index are processed but not timed
    seed: int = 0

    @property
    def timed_count(self) -> int:
        return len(self.records) - self.timed_from


def plan(seed: int, commands: int, tenants: int, start_us: int) -> LoadPlan:
    """The standard mix (DESIGN/issue 9): 10 % duplicates, 2 % key reuse, 2 % overdraft,
    15 % pending + 5 % expiring (short timeout) + 15 % post/void of open pending transfers."""
    return LoadPlan(
        seed=seed,
        tenants=tenants,
        commands=commands,
        start_us=start_us,
        duplicate_share=0.10,
        key_reuse_share=0.02,
        overdraft_share=0.02,
        pending_share=0.15,
        expiring_share=0.05,
        finish_pending_share=0.15,
    )


def recent_start_us(commands: int) -> int:
    """Timestamps that end now: inside the topics' retention, never in the broker's future."""
    return int(time.time() * 1_000_000) - (commands + 10_000) * STEP_US


def encode(commands: Iterable[Command], partitions: int) -> list[Record]:
    records = []
    for command in commands:
        key = command_key(command.tenant_id)
        records.append(
            Record(
                key,
                encode_command(command),
                partition_for(key, partitions),
                command.submitted_at_us // 1000,
                command,
            )
        )
    return records


def standard(seed: int, commands: int, tenants: int, partitions: int) -> Workload:
    start_us = recent_start_us(commands)
    generated = [g.command for g in generate(plan(seed, commands, tenants, start_us))]
    return Workload("standard", encode(generated, partitions), seed=seed)


def hot_tenant(seed: int, commands: int, tenants: int, partitions: int) -> Workload:
    """Half the commands from one tenant, interleaved in time with the rest's."""
    start_us = recent_start_us(commands)
    hot = [
        dataclasses.replace(g.command, tenant_id=HOT_TENANT_ID)
        for g in generate(plan(seed + 1, commands // 2, 1, start_us))
    ]
    rest = [g.command for g in generate(plan(seed, commands - len(hot), tenants, start_us))]
    merged = sorted(hot + rest, key=lambda command: command.submitted_at_us)  # stable
    return Workload("hot_tenant", encode(merged, partitions), seed=seed)


def duplicates(base: Workload) -> Workload:
    return Workload(
        "duplicates", base.records + base.records, timed_from=len(base.records), seed=base.seed
    )


def produce(connection: Mapping[str, str], topic: str, records: list[Record]) -> float:
    """Produce the already-encoded records as fast as the client goes; records/s (acked).

    ``connection``: ``kafka_adapter.security.client_config`` of the writing principal."""
    producer = Producer(
        {
            **connection,
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "compression.type": "lz4",
            "enable.idempotence": True,
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    started = time.perf_counter()
    for index, record in enumerate(records):
        while True:
            try:
                producer.produce(
                    topic, record.value, record.key, record.partition,
                    timestamp=record.timestamp_ms,
                )  # fmt: skip
                break
            except BufferError:
                producer.poll(0.05)
        if index % 5_000 == 0:
            producer.poll(0)
    remaining = producer.flush(PRODUCE_TIMEOUT_S)
    elapsed = time.perf_counter() - started
    assert remaining == 0, f"{remaining} records not delivered"
    return len(records) / elapsed
