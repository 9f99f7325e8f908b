"""Processor commands/s with signature verification on vs off, in the same run (issue 21 §2).

    python -m bench.signature_suite [--commands 100000] [--tenants 200] [--repetitions 2]

The same loadgen commands (standard mix, 10 % duplicates) are pre-filled twice, on two fresh
topic sets: *off* unsigned, processed with ``--command-signatures off``; *on* after one
operator-signed GRANT per tenant, each command signed with its tenant's key (the SDK's
headers), processed with the default ``enrolled`` mode, so every command is verified. Each
repetition runs off then on, in this process (``bench.bench_processor.run_processor``), and
the check is that both runs stored the same number of outcomes (no command of the signed run
was refused). Target (decision 0086): on >= 0.9 x off. Not a timed test: it prints figures.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition

from bench.bench_processor import RUN_TIMEOUT_S, delete_topics, run_processor
from infra import topics
from kafka_adapter.security import ADMIN_PRINCIPAL, client_config
from processors.processor_settings import ProcessorSettings, build_processor_settings
from processors.signing_master import ensure_master
from producers.loadgen import LoadPlan, generate
from schemas.codec import encode_command
from schemas.keys import command_key, partition_for
from schemas.signing_keys import (
    OPERATOR_KEY_ID,
    SigningKeyAction,
    SigningKeyCommand,
    encode_signing_key_command,
    operator_secret,
    signature_headers,
    tenant_key_secret,
)
from schemas.topics import COMMANDS_TOPIC, OUTCOMES_TOPIC
from streamledger.settings import Settings, load_settings, replace

KEY_ID = "bench:v1"
TARGET_RATIO = 0.9


def prefill(settings: Settings, commands: int, tenants: int, *, signed: bool) -> int:
    """The loadgen's commands (signed: after a GRANT per tenant, with signature headers)."""
    master = ensure_master(settings.home)
    plan = LoadPlan(
        seed=42,
        tenants=tenants,
        commands=commands,
        start_us=int(time.time() * 1_000_000),
        duplicate_share=0.10,
    )
    producer = Producer({**client_config(settings, ADMIN_PRINCIPAL), "linger.ms": 20})
    topic = settings.topic(COMMANDS_TOPIC)
    secrets: dict[str, bytes] = {}
    count = 0
    for generated in generate(plan):
        tenant_id = generated.command.tenant_id
        key = command_key(tenant_id)
        partition = partition_for(key, settings.partitions)
        if signed and tenant_id not in secrets:
            secrets[tenant_id] = tenant_key_secret(master, tenant_id, KEY_ID)
            grant = encode_signing_key_command(
                SigningKeyCommand(
                    tenant_id=tenant_id,
                    idempotency_key=f"grant-{KEY_ID}",
                    action=SigningKeyAction.GRANT,
                    key_id=KEY_ID,
                )
            )
            headers = signature_headers(operator_secret(master), OPERATOR_KEY_ID, grant)
            producer.produce(topic, grant, key, partition, headers=headers)
            count += 1
        value = encode_command(generated.command)
        timestamp = generated.command.submitted_at_us // 1000
        if signed:
            headers = signature_headers(secrets[tenant_id], KEY_ID, value)
            producer.produce(topic, value, key, partition, timestamp=timestamp, headers=headers)
        else:
            producer.produce(topic, value, key, partition, timestamp=timestamp)
        count += 1
        if count % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(RUN_TIMEOUT_S) == 0
    return count


def stored_outcomes(settings: Settings) -> int:
    """Records written to ledger.outcomes (high watermarks): what the run decided and stored."""
    consumer = Consumer({**client_config(settings, ADMIN_PRINCIPAL), "group.id": "bench-count"})
    topic = settings.topic(OUTCOMES_TOPIC)
    total = 0
    for partition in range(settings.partitions):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
        total += high - low
    consumer.close()
    return total


def one_run(base: Settings, arguments: argparse.Namespace, *, signed: bool) -> tuple[float, int]:
    """Commands/s of the processor and the outcomes it stored, on fresh topics."""
    settings = replace(
        base, topic_prefix=f"bsig{uuid.uuid4().hex[:6]}.", partitions=arguments.partitions
    )
    topics.apply(settings)
    processor_settings: ProcessorSettings = build_processor_settings(
        settings,
        instance_id="bench-signatures",
        metrics_port=0,
        command_signatures="enrolled" if signed else "off",
    )
    try:
        total = prefill(settings, arguments.commands, arguments.tenants, signed=signed)
        rate = run_processor(processor_settings, total, profile=False)
        return rate, stored_outcomes(settings)
    finally:
        delete_topics(settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commands", type=int, default=100_000)
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--repetitions", type=int, default=2)
    arguments = parser.parse_args()
    base = load_settings()
    off_rates, on_rates = [], []
    for repetition in range(arguments.repetitions):
        off_rate, off_stored = one_run(base, arguments, signed=False)
        on_rate, on_stored = one_run(base, arguments, signed=True)
        # both runs store the same outcomes: no signed command was refused
        check = "ok" if on_stored == off_stored else f"FAILED ({on_stored} vs {off_stored})"
        print(
            f"repetition {repetition + 1}: off {off_rate:,.0f} commands/s,"
            f" on {on_rate:,.0f} commands/s, ratio {on_rate / off_rate:.3f}, check {check}"
        )
        off_rates.append(off_rate)
        on_rates.append(on_rate)
    off, on = statistics.median(off_rates), statistics.median(on_rates)
    verdict = "met" if on / off >= TARGET_RATIO else "NOT met"
    print(f"commands:          {arguments.commands} ({arguments.tenants} tenants)")
    print(f"verification off:  {off:,.0f} commands/s (median of {len(off_rates)})")
    print(f"verification on:   {on:,.0f} commands/s (median of {len(on_rates)})")
    print(f"ratio on/off:      {on / off:.3f} (target >= {TARGET_RATIO}: {verdict})")


if __name__ == "__main__":
    main()
