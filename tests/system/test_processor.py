"""The real processor (``streamledger process`` as a child process) on the real broker.

A seeded workload goes through it; the topics must then equal an independent reference fold
of the commands (``ledger_reference``): every outcome once, every event once with a gapless
sequence and an unbroken hash chain, and the latest balances.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from confluent_kafka.cimpl import NewPartitions

from infra.topics import ledger_topic_names
from kafka_adapter.admin import admin_client
from processors import dead_letters
from schemas.codec import decode_outcome, encode_command
from schemas.keys import command_key, partition_for
from schemas.model import OpenAccount
from streamledger.settings import Settings
from tests.conftest import run_streamledger
from tests.system.ledger_reference import ReferenceLedger
from tests.system.ledger_workload import workload
from tests.system.processor_harness import (
    ProcessorProcess,
    assert_outputs_match,
    produce_commands,
    produce_raw,
    read_topic,
    wait_until_consumed,
)

pytestmark = pytest.mark.system
CONSUME_TIMEOUT_S = 60.0


def test_seeded_workload_matches_the_reference_fold(
    ledger_settings: Settings, tmp_path: Path
) -> None:
    commands = workload(seed=7, tenants=6, commands_per_tenant=120)
    produce_commands(ledger_settings, commands)
    processor = ProcessorProcess(ledger_settings, "a", tmp_path)
    try:
        wait_until_consumed(ledger_settings, CONSUME_TIMEOUT_S, [processor])
    finally:
        assert processor.stop() == 0, processor.log()
    assert_outputs_match(ledger_settings, ReferenceLedger().fold(commands))


def test_a_restarted_processor_restores_state_and_goes_on(
    ledger_settings: Settings, tmp_path: Path
) -> None:
    commands = workload(seed=11, tenants=4, commands_per_tenant=100)
    half = len(commands) // 2
    produce_commands(ledger_settings, commands[:half])
    first = ProcessorProcess(ledger_settings, "a", tmp_path)
    try:
        wait_until_consumed(ledger_settings, CONSUME_TIMEOUT_S, [first])
    finally:
        assert first.stop() == 0, first.log()
    produce_commands(ledger_settings, commands[half:])
    second = ProcessorProcess(ledger_settings, "a", tmp_path)
    try:
        wait_until_consumed(ledger_settings, CONSUME_TIMEOUT_S, [second])
    finally:
        assert second.stop() == 0, second.log()
    assert "restored partition" in second.log()
    assert_outputs_match(ledger_settings, ReferenceLedger().fold(commands))


def test_poison_records_go_to_the_dlq_and_the_partition_moves_on(
    ledger_settings: Settings, tmp_path: Path
) -> None:
    tenant = "poisoned"
    key = command_key(tenant)
    partition = partition_for(key, ledger_settings.partitions)
    valid = encode_command(
        OpenAccount(
            tenant_id=tenant,
            idempotency_key="open-1",
            submitted_at_us=1,
            account_id="a",
            currency="EUR",
            asset_scale=2,
        )
    )
    unknown_fingerprint = b"\xc3\x01" + struct.pack("<Q", 12345) + valid[10:]
    poison = [
        (b"not avro at all", "wrong_marker"),
        (unknown_fingerprint, "unknown_fingerprint"),
        (valid[:12], "truncated"),
    ]
    for value, _ in poison:
        produce_raw(ledger_settings, partition, key, value)
    produce_raw(ledger_settings, partition, key, valid)
    processor = ProcessorProcess(ledger_settings, "a", tmp_path)
    try:
        wait_until_consumed(ledger_settings, CONSUME_TIMEOUT_S, [processor])
    finally:
        assert processor.stop() == 0, processor.log()
    names = ledger_topic_names(ledger_settings)
    letters = read_topic(ledger_settings, names.commands_dlq)
    assert [(r.value, dict(r.headers)[dead_letters.HEADER_ERROR_KIND]) for r in letters] == [
        (value, kind.encode()) for value, kind in poison
    ]
    for offset, letter in enumerate(letters):
        headers = dict(letter.headers)
        assert letter.partition == partition
        assert letter.key == key
        assert headers[dead_letters.HEADER_SOURCE_TOPIC] == names.commands.encode()
        assert headers[dead_letters.HEADER_SOURCE_PARTITION] == str(partition).encode()
        assert headers[dead_letters.HEADER_SOURCE_OFFSET] == str(offset).encode()
        assert headers[dead_letters.HEADER_ERROR_MESSAGE]
        assert headers[dead_letters.ORIGINAL_HEADER_PREFIX + "origin"] == b"test"
    outcomes = [
        decode_outcome(r.value) for r in read_topic(ledger_settings, names.outcomes) if r.value
    ]
    assert [(o.idempotency_key, o.status.value) for o in outcomes] == [("open-1", "accepted")]


def test_refuses_to_run_when_partition_counts_differ(ledger_settings: Settings) -> None:
    names = ledger_topic_names(ledger_settings)
    admin = admin_client(ledger_settings)
    futures = admin.create_partitions(
        [NewPartitions(names.outcomes, ledger_settings.partitions + 1)]
    )
    for future in futures.values():
        future.result(timeout=30)
    result = run_streamledger(["process", "--instance-id=a", "--metrics-port=0"], ledger_settings)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "same partition count" in lines[0]
    assert f"{names.outcomes}={ledger_settings.partitions + 1}" in lines[0]
