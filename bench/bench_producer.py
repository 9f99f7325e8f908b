"""Producer throughput: SDK commands/s to the broker vs raw confluent-kafka (not a timed test).

    .venv/bin/python -m bench.bench_producer [--commands 300000] [--tenants 64] [--repetitions 3]

Uses the stack the settings point at (``STREAMLEDGER_*``; e.g. the test stack with
``STREAMLEDGER_HOME=.streamledger-test STREAMLEDGER_KAFKA_PORT=29092``) and a fresh topic prefix
(topics created with ``infra.topics.apply``, deleted at the end). ``make bench`` runs the same
measurement through ``run_producer`` (group ``sdk``).

Per repetition, back to back on the same topics (A B A B):

1. SDK: ``LedgerProducer.send`` of pre-built Transfer commands (validate + encode + placement +
   produce), then ``flush``: commands/s end to end (every record acknowledged), wall clock;
   then the same with ``ProducerSettings(report_successes=False)`` (failures-only delivery
   reports, decision 0110: no Python call per delivered record);
2. baseline: a raw ``confluent_kafka.Producer`` with the same client settings producing the
   already-encoded bytes of the same commands with the same keys and partitions, then ``flush``;
3. CPU µs per command of each: the calling thread (``time.thread_time``, over send + flush:
   the Python side, delivery reports included) and the whole process (``time.process_time``:
   librdkafka's threads too; the difference is librdkafka's own work).

The standalone run also prints the SDK's stages on the same commands, in CPU µs/command of the
calling thread: validate (``first_violation``), encode, key + partition. Target: SDK >= 100k
commands/s from one process. Wall-clock rates move with the machine's load (librdkafka's
threads share the cores with the caller); compare the CPU figures between runs.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Final, NamedTuple

from confluent_kafka import Producer

from bench import grants
from bench.bench_processor import delete_topics
from bench.results import BenchRun
from kafka_adapter.security import PRODUCER_PRINCIPAL, security_config
from producers.loadgen import LoadPlan, generate
from producers.sdk import LedgerProducer, ProducerSettings
from schemas.codec import encode_command
from schemas.keys import command_key, partition_for
from schemas.limits import first_violation
from schemas.model import Command
from schemas.topics import COMMANDS_TOPIC
from streamledger.settings import Settings, load_settings, replace

FLUSH_TIMEOUT_S: Final = 120.0
BENCH_PARTITIONS: Final = 12
POLL_EVERY_RECORDS: Final = 1_000  # the raw loop serves delivery reports as often as the SDK
GROUP: Final = "sdk"
SEND_FIGURE: Final = "send from one process (target >= 100k)"
FAILURES_ONLY_FIGURE: Final = "send, failure reports only (report_successes=False)"
RAW_FIGURE: Final = "raw confluent-kafka produce of the SDK's records"
RATIO_FIGURE: Final = "SDK send / raw produce (wall clock)"
# commands per make-bench size: a few seconds per side at ~100k/s
COMMANDS_PER_SIZE: Final = {"small": 200_000, "full": 500_000}
TENANTS: Final = 64


class Sample(NamedTuple):
    rate: float  # commands/s, send + flush, wall clock
    thread_us: float  # calling thread's CPU µs per command over send + flush
    process_us: float  # the whole process's CPU µs per command (librdkafka's threads too)
    correct: bool  # every record acknowledged


def bench_commands(count: int, tenants: int) -> list[Command]:
    plan = LoadPlan(
        seed=7,
        tenants=tenants,
        accounts_per_tenant=20,
        commands=count,
        duplicate_share=0.0,
        key_reuse_share=0.0,
    )
    return [item.command for item in generate(plan)]


def timed(run: Callable[[], bool], count: int) -> Sample:
    """``run`` (returns whether every record was acknowledged), timed three ways."""
    started, thread_started, process_started = (
        time.perf_counter(),
        time.thread_time(),
        time.process_time(),
    )
    correct = run()
    thread_s = time.thread_time() - thread_started
    process_s = time.process_time() - process_started
    elapsed_s = time.perf_counter() - started
    return Sample(count / elapsed_s, thread_s / count * 1e6, process_s / count * 1e6, correct)


def bench_sdk(
    settings: Settings, commands: list[Command], *, report_successes: bool = True
) -> Sample:
    """``send`` every command, then ``flush``."""
    limits = ProducerSettings(report_successes=report_successes)
    producer = LedgerProducer(settings, producer_settings=limits)

    def send_all() -> bool:
        send = producer.send
        for command in commands:
            send(command)
        producer.flush(FLUSH_TIMEOUT_S)
        return producer.delivered == len(commands) and producer.failed == 0

    return timed(send_all, len(commands))


def raw_records(commands: list[Command]) -> list[tuple[bytes, bytes, int]]:
    """(key, value, partition) of each command, as the SDK places and encodes it."""
    records = []
    for command in commands:
        key = command_key(command.tenant_id)
        records.append((key, encode_command(command), partition_for(key, BENCH_PARTITIONS)))
    return records


def bench_raw(settings: Settings, records: list[tuple[bytes, bytes, int]]) -> Sample:
    """``produce`` the SDK's bytes with the SDK's client settings, then ``flush``."""
    config = ProducerSettings().client_config(settings.kafka_bootstrap)
    config.update(security_config(settings, PRODUCER_PRINCIPAL))  # as the SDK connects
    producer = Producer(config)
    topic = settings.topic(COMMANDS_TOPIC)

    def produce_all() -> bool:
        for index, (key, value, partition) in enumerate(records):
            while True:
                try:
                    producer.produce(topic, value, key, partition)
                    break
                except BufferError:
                    producer.poll(0.05)
            if index % POLL_EVERY_RECORDS == 0:
                producer.poll(0)
        return producer.flush(FLUSH_TIMEOUT_S) == 0

    return timed(produce_all, len(records))


def fresh_topics(base: Settings) -> Settings:
    settings = replace(base, topic_prefix=grants.prefix("bprod"), partitions=BENCH_PARTITIONS)
    grants.apply_topics(settings)
    return settings


def run_producer(
    run: BenchRun, base: Settings, *, commands: int, tenants: int, repetitions: int
) -> None:
    """``make bench``'s part: per repetition the SDK, the SDK with failure reports only, then
    raw, on the same topics, into ``run``'s figures: the SDK's rates (group ``sdk``), the raw
    baseline (``limits``), the SDK/raw ratio and the CPU per command of each (calling thread;
    whole process)."""
    batch = bench_commands(commands, tenants)
    records = raw_records(batch)
    settings = fresh_topics(base)
    try:
        for _ in range(repetitions):
            sdk = bench_sdk(settings, batch)
            failures_only = bench_sdk(settings, batch, report_successes=False)
            raw = bench_raw(settings, records)
            add_checked(run, GROUP, SEND_FIGURE, "commands/s", sdk)
            add_checked(run, GROUP, FAILURES_ONLY_FIGURE, "commands/s", failures_only)
            add_checked(run, "limits", RAW_FIGURE, "records/s", raw)
            run.add("ratio", RATIO_FIGURE, "x", sdk.rate / raw.rate)
            for name, sample in (
                ("send", sdk),
                ("send, failure reports only", failures_only),
                ("raw produce", raw),
            ):
                run.add(GROUP, f"{name}: calling thread CPU per command", "µs", sample.thread_us)
                run.add(GROUP, f"{name}: process CPU per command", "µs", sample.process_us)
    finally:
        delete_topics(settings)


def add_checked(run: BenchRun, group: str, name: str, unit: str, sample: Sample) -> None:
    """The sample's rate as a figure, marked INCORRECT once a repetition lost a record."""
    figure = run.add(group, name, unit, sample.rate)
    figure.correct = sample.correct if figure.correct in (None, True) else False


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=300_000)
    parser.add_argument("--tenants", type=int, default=TENANTS)
    parser.add_argument("--repetitions", type=int, default=3)
    arguments = parser.parse_args()
    run = BenchRun(size="bench_producer", seed=7, repetitions=arguments.repetitions)
    run_producer(
        run,
        load_settings(),
        commands=arguments.commands,
        tenants=arguments.tenants,
        repetitions=arguments.repetitions,
    )
    commands = bench_commands(arguments.commands, arguments.tenants)
    for name, stage in stages(commands).items():
        cpu_us = cpu_us_per_command(stage, len(commands))
        run.add(GROUP, f"stage: {name}, calling thread CPU per command", "µs", cpu_us)
    run.report(RATIO_FIGURE, "SDK / raw")


if __name__ == "__main__":
    main()
