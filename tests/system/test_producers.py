"""Producers against the real broker: read back and decode, tenant placement, the CLI edges."""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Message, Producer

from kafka_adapter.security import ADMIN_PRINCIPAL, client_config
from producers.errors import ProducerError
from producers.jsonl import command_from_line
from producers.replies import OutcomeWaiter
from producers.sdk import LedgerProducer, ProducerSettings
from schemas import codec
from schemas.keys import outcome_key, partition_for
from schemas.model import GENESIS_HASH, Command, Outcome, OutcomeStatus, Transfer
from streamledger.settings import Settings
from tests.conftest import run_streamledger

pytestmark = pytest.mark.system

READ_TIMEOUT_S = 60.0
EXAMPLE = Path(__file__).parents[2] / "producers" / "examples" / "commands.jsonl"


def read_all(settings: Settings, topic: str, count: int) -> list[Message]:
    """Exactly ``count`` records of ``topic`` from the beginning (fails on timeout)."""
    consumer = Consumer(
        {
            **client_config(settings, ADMIN_PRINCIPAL),
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([settings.topic(topic)])
    messages: list[Message] = []
    deadline = time.monotonic() + READ_TIMEOUT_S
    try:
        while len(messages) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            messages.append(message)
        time.sleep(1.0)  # anything beyond ``count`` would be a bug; give it a chance to show
        while (extra := consumer.poll(0.2)) is not None:
            messages.append(extra)
    finally:
        consumer.close()
    assert len(messages) == count, f"read {len(messages)} records of {topic}, expected {count}"
    return messages


def transfers(tenants: int, per_tenant: int) -> list[Command]:
    return [
        Transfer(
            tenant_id=f"tenant-{tenant}",
            idempotency_key=f"k-{number}",
            submitted_at_us=1_700_000_000_000_000 + number,
            transfer_id=f"t-{number}",
            debit_account_id="cash",
            credit_account_id="sales",
            amount=number + 1,
            currency="USD",
            metadata=(("n", str(number)),),
        )
        for tenant in range(tenants)
        for number in range(per_tenant)
    ]


def test_produce_reads_back_decoded_on_the_tenants_partition(ledger_settings: Settings) -> None:
    sent = transfers(tenants=8, per_tenant=25)
    with LedgerProducer(ledger_settings) as producer:
        future = producer.submit(sent[0])
        for command in sent[1:]:
            producer.send(command)
        producer.flush(30)
    assert future.result(timeout=0).offset >= 0
    messages = read_all(ledger_settings, "ledger.commands", len(sent))
    decoded = {}
    for message in messages:
        command = codec.decode_command(message.value())
        assert message.key() == command.tenant_id.encode()
        assert message.partition() == partition_for(message.key(), producer.partitions)
        decoded[(command.tenant_id, command.idempotency_key)] = (command, message.offset())
    assert {key: command for key, (command, _) in decoded.items()} == {
        (c.tenant_id, c.idempotency_key): c for c in sent
    }
    for tenant in range(8):  # a tenant's commands keep their order
        offsets = [decoded[(f"tenant-{tenant}", f"k-{n}")][1] for n in range(25)]
        assert offsets == sorted(offsets)
    # failures-only delivery reports (decision 0110): delivered counted without a call each
    failures_only = ProducerSettings(report_successes=False)
    bulk = LedgerProducer(ledger_settings, producer_settings=failures_only)
    for command in sent:
        bulk.send(command)
    bulk.flush(30)
    assert (bulk.sent, bulk.delivered, bulk.failed, bulk.in_flight) == (len(sent), len(sent), 0, 0)
    with pytest.raises(ProducerError, match="report_successes"):
        bulk.submit(sent[0])


def test_placement_matches_the_java_partitioner_not_librdkafkas_default(
    ledger_settings: Settings,
) -> None:
    plain = Producer({**client_config(ledger_settings, ADMIN_PRINCIPAL),
                      "partitioner": "murmur2_random"})  # fmt: skip
    topic = ledger_settings.topic("ledger.commands")
    tenants = [f"tenant-{index}" for index in range(12)]
    for tenant in tenants:
        plain.produce(topic, b"x", tenant.encode())
    assert plain.flush(30) == 0
    by_tenant = {
        m.key().decode(): m.partition() for m in read_all(ledger_settings, "ledger.commands", 12)
    }
    assert by_tenant == {tenant: partition_for(tenant.encode(), 3) for tenant in tenants}


def test_produce_cli_with_good_and_bad_lines(ledger_settings: Settings, tmp_path: Path) -> None:
    good = EXAMPLE.read_text().splitlines()
    lines = [
        good[0],
        "this is not json",
        good[1],
        json.dumps({"type": "Transfer", "tenant_id": "acme"}),
        good[2].replace('"amount": 100000', '"amount": -3'),
        good[3],
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = run_streamledger(["produce", "--file", str(path)], ledger_settings)
    assert result.returncode == 1, result.stderr
    assert "sent=3 failed=3" in result.stdout
    assert "line 2: line: not JSON" in result.stderr
    assert "line 4: idempotency_key: is required" in result.stderr
    assert "line 5: amount: -3 is outside" in result.stderr
    messages = read_all(ledger_settings, "ledger.commands", 3)
    keys = sorted(codec.decode_command(m.value()).idempotency_key for m in messages)
    assert keys == sorted(command_from_line(good[i], default_submitted_at_us=0).idempotency_key
                          for i in (0, 1, 3))  # fmt: skip


def test_produce_cli_example_file_succeeds(ledger_settings: Settings) -> None:
    result = run_streamledger(["produce", "--file", str(EXAMPLE)], ledger_settings)
    assert result.returncode == 0, result.stderr
    lines = len(EXAMPLE.read_text().splitlines())
    assert f"sent={lines} failed=0" in result.stdout
    read_all(ledger_settings, "ledger.commands", lines)


def test_loadgen_records_what_it_sent_and_adds_poison(
    ledger_settings: Settings, tmp_path: Path
) -> None:
    record = tmp_path / "sent.jsonl"
    common = ["loadgen", "--seed", "5", "--tenants", "2", "--accounts", "3", "--commands", "200",
              "--quiet", "--start-us", "1700000000000000"]  # fmt: skip
    arguments = [*common, "--record", str(record), "--poison", "6"]
    result = run_streamledger(arguments, ledger_settings)
    assert result.returncode == 0, result.stderr
    recorded = record.read_text().splitlines()
    assert len(recorded) == 2 * (2 * 3 - 1) + 200
    messages = read_all(ledger_settings, "ledger.commands", len(recorded) + 6)
    decoded, poison = [], 0
    for message in messages:
        try:
            decoded.append(codec.decode_command(message.value()))
        except codec.DecodeError:
            poison += 1
    assert poison == 6
    expected = [command_from_line(line, default_submitted_at_us=0) for line in recorded]
    assert sorted(map(codec.encode_command, decoded)) == sorted(map(codec.encode_command, expected))
    again = tmp_path / "again.jsonl"  # the same seed sends the same commands again
    assert run_streamledger([*common, "--record", str(again)], ledger_settings).returncode == 0
    assert again.read_text() == record.read_text()


def test_request_waits_for_the_outcome(ledger_settings: Settings) -> None:
    """A stand-in processor answers on ledger.replies; the waiter returns that outcome."""
    command = transfers(tenants=1, per_tenant=1)[0]
    stop = threading.Event()

    def answer() -> None:
        consumer = Consumer({**client_config(ledger_settings, ADMIN_PRINCIPAL),
                             "group.id": f"test-{uuid.uuid4().hex}",
                             "auto.offset.reset": "earliest"})  # fmt: skip
        consumer.subscribe([ledger_settings.topic("ledger.commands")])
        replier = Producer({**client_config(ledger_settings, ADMIN_PRINCIPAL)})
        while not stop.is_set():
            message = consumer.poll(0.2)
            if message is None or message.error() is not None:
                continue
            seen = codec.decode_command(message.value())
            outcome = Outcome(
                tenant_id=seen.tenant_id, idempotency_key=seen.idempotency_key,
                command_type="Transfer", fingerprint=GENESIS_HASH, field_fingerprints=b"",
                status=OutcomeStatus.ACCEPTED, event_sequences=(1,), decided_at_us=1,
            )  # fmt: skip
            replier.produce(ledger_settings.topic("ledger.replies"), codec.encode_outcome(outcome),
                            outcome_key(seen.tenant_id, seen.idempotency_key),
                            partition=message.partition())  # fmt: skip
            replier.flush(10)
        consumer.close()

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        with LedgerProducer(ledger_settings) as producer:
            waiter = OutcomeWaiter(ledger_settings, producer)
            outcome = waiter.request(command, timeout_s=30)
            waiter.close()
    finally:
        stop.set()
        thread.join(10)
    assert outcome.status is OutcomeStatus.ACCEPTED
    assert outcome.idempotency_key == command.idempotency_key
    assert replace(command).tenant_id == outcome.tenant_id
