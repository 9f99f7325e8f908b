"""Issue 13 on the real broker: misrouted records never fork a chain, time never goes back,
pending transfers expire at their deadline on an idle partition, every command gets one reply.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.cimpl import NewTopic

from infra import principals, topics
from infra.topics import ledger_topic_names
from kafka_adapter.admin import KAFKA_CLIENT_LOGGER, admin_client
from kafka_adapter.security import ADMIN_PRINCIPAL, client_config, is_scram
from processors import dead_letters
from processors.partition_ledger import (
    REPLY_DECIDED,
    REPLY_DUPLICATE,
    REPLY_KIND_HEADER,
    REPLY_NOT_STORED,
    REPLY_TO_HEADER,
)
from processors.ticks import TICK_KEY
from producers.replies import OutcomeWaiter
from producers.sdk import LedgerProducer
from schemas.codec import decode_event, decode_outcome, encode_command
from schemas.keys import command_key, partition_for
from schemas.model import (
    Command,
    OpenAccount,
    OutcomeStatus,
    PendingExpired,
    RejectReason,
    Transfer,
    TransferPending,
)
from streamledger.settings import Settings, replace
from tests.conftest import delete_topics
from tests.system.processor_harness import (
    ProcessorProcess,
    TopicRecord,
    produce_commands,
    read_topic,
    wait_until_consumed,
)

pytestmark = pytest.mark.system
CONSUME_TIMEOUT_S = 60.0
TICK_INTERVAL_MS = 200
# the bound the issue asks for: the tick interval, plus a batch and a commit on a loaded machine
EXPIRY_DELAY_MAX_S = TICK_INTERVAL_MS / 1000 + 5.0
HOUR_MS = 3_600_000
CONFIG_SETTLE_S = 2.0
FAST_TICKS = (f"--expiry-tick-interval-ms={TICK_INTERVAL_MS}",)


def tenants_on_different_partitions(partitions: int) -> tuple[str, str]:
    first = "route-a"
    for index in range(1_000):
        other = f"route-b{index}"
        if partition_for(command_key(other), partitions) != partition_for(
            command_key(first), partitions
        ):
            return first, other
    raise AssertionError("no two tenants on different partitions")


def open_account(tenant: str, account_id: str, key: str) -> OpenAccount:
    return OpenAccount(
        tenant_id=tenant,
        idempotency_key=key,
        submitted_at_us=1,
        account_id=account_id,
        currency="EUR",
        asset_scale=2,
    )


def transfer(tenant: str, transfer_id: str, key: str, **fields: object) -> Transfer:
    return Transfer(
        tenant_id=tenant,
        idempotency_key=key,
        submitted_at_us=1,
        transfer_id=transfer_id,
        debit_account_id="cash",
        credit_account_id="sales",
        amount=100,
        currency="EUR",
        **fields,  # type: ignore[arg-type]
    )


def produce_at(
    settings: Settings,
    command: Command,
    *,
    key: bytes | None = None,
    partition: int | None = None,
    timestamp_ms: int | None = None,
) -> None:
    """One record with a chosen key, partition and producer timestamp (a misbehaving client)."""
    producer = Producer({**client_config(settings, ADMIN_PRINCIPAL)}, logger=KAFKA_CLIENT_LOGGER)
    record_key = command_key(command.tenant_id) if key is None else key
    extra: dict[str, int] = {} if timestamp_ms is None else {"timestamp": timestamp_ms}
    producer.produce(
        ledger_topic_names(settings).commands,
        encode_command(command),
        record_key,
        partition=partition_for(record_key, settings.partitions)
        if partition is None
        else partition,
        **extra,
    )
    assert producer.flush(30) == 0


def run_processor_until_consumed(settings: Settings, tmp_path: Path) -> None:
    processor = ProcessorProcess(settings, "a", tmp_path)
    try:
        wait_until_consumed(settings, CONSUME_TIMEOUT_S, [processor])
    finally:
        assert processor.stop() == 0, processor.log()


def events_of(settings: Settings, tenant: str) -> list[tuple[TopicRecord, object]]:
    records = read_topic(settings, ledger_topic_names(settings).events)
    found = []
    for record in records:
        assert record.value is not None
        event = decode_event(record.value)
        if event.tenant_id == tenant:
            found.append((record, event))
    return found


def header(record: TopicRecord, name: str) -> bytes:
    values = [value for key, value in record.headers if key == name]
    assert len(values) == 1, (name, record.headers)
    return values[0]


def test_misrouted_records_go_to_the_dlq_and_never_fork_a_chain(
    ledger_settings: Settings, tmp_path: Path
) -> None:
    owner, victim = tenants_on_different_partitions(ledger_settings.partitions)
    owner_partition = partition_for(command_key(owner), ledger_settings.partitions)
    victim_partition = partition_for(command_key(victim), ledger_settings.partitions)
    produce_commands(ledger_settings, [open_account(victim, "cash", "v-open")])
    # the reproduction: key = the owner, partition = the owner's, body = the victim
    produce_at(ledger_settings, open_account(victim, "x", "forged-1"), key=command_key(owner))
    # the right key on the wrong partition
    produce_at(ledger_settings, open_account(victim, "y", "forged-2"), partition=owner_partition)
    produce_commands(ledger_settings, [open_account(owner, "cash", "o-open")])
    run_processor_until_consumed(ledger_settings, tmp_path)

    names = ledger_topic_names(ledger_settings)
    letters = read_topic(ledger_settings, names.commands_dlq)
    kinds = sorted(header(r, dead_letters.HEADER_ERROR_KIND) for r in letters)
    assert kinds == [b"key_mismatch", b"wrong_partition"]
    for letter in letters:
        assert letter.partition == owner_partition  # the input's partition number
        assert (
            header(letter, dead_letters.HEADER_EXPECTED_PARTITION) == str(victim_partition).encode()
        )
    victim_events = events_of(ledger_settings, victim)
    assert [event.sequence for _, event in victim_events] == [1]  # type: ignore[attr-defined]
    assert {record.partition for record, _ in victim_events} == {victim_partition}
    stored = read_topic(ledger_settings, names.outcomes) + read_topic(
        ledger_settings, names.replies
    )
    keys = {record.key for record in stored}
    assert not any(b"forged" in key for key in keys), keys  # nothing stored under any key
    assert f"{victim}/v-open".encode() in keys and f"{owner}/o-open".encode() in keys


def test_a_back_dated_record_never_moves_its_tenant_back_in_time(
    ledger_settings: Settings, tmp_path: Path
) -> None:
    tenant = "skewed"
    produce_commands(
        ledger_settings,
        [open_account(tenant, "cash", "k1"), open_account(tenant, "sales", "k2")],
    )
    now_ms = int(time.time() * 1000)
    produce_at(ledger_settings, transfer(tenant, "t1", "k3"), timestamp_ms=now_ms - HOUR_MS)
    produce_commands(ledger_settings, [transfer(tenant, "t2", "k4")])
    run_processor_until_consumed(ledger_settings, tmp_path)
    effective = [event.effective_at_us for _, event in events_of(ledger_settings, tenant)]  # type: ignore[attr-defined]
    assert len(effective) == 4
    assert effective == sorted(effective)
    # the broker stamped the command (LogAppendTime): the client's hour-old clock is not used
    assert min(effective) > (now_ms - HOUR_MS / 2) * 1000


def test_every_command_gets_exactly_one_reply(ledger_settings: Settings, tmp_path: Path) -> None:
    tenant = "replies"
    commands: list[Command] = [
        open_account(tenant, "cash", "k1"),
        open_account(tenant, "sales", "k2"),
        transfer(tenant, "t1", "k3"),
        transfer(tenant, "t1", "k3"),  # a retry: the original outcome again
        transfer(tenant, "t9", "k3"),  # the key reused for another transfer
        transfer(tenant, "t1", "k5"),  # a new key for an existing transfer id: rejected
    ]
    produce_commands(ledger_settings, commands)
    run_processor_until_consumed(ledger_settings, tmp_path)
    names = ledger_topic_names(ledger_settings)
    command_records = [r for r in read_topic(ledger_settings, names.commands) if r.key != TICK_KEY]
    replies = read_topic(ledger_settings, names.replies)
    assert len(replies) == len(command_records) == len(commands)
    answered = sorted(header(r, REPLY_TO_HEADER) for r in replies)
    assert answered == sorted(f"{r.partition}:{r.offset}".encode() for r in command_records)
    by_offset = {int(header(r, REPLY_TO_HEADER).split(b":")[1]): r for r in replies}
    ordered = [by_offset[r.offset] for r in sorted(command_records, key=lambda r: r.offset)]
    kinds = [header(r, REPLY_KIND_HEADER) for r in ordered]
    assert kinds == [
        REPLY_DECIDED,
        REPLY_DECIDED,
        REPLY_DECIDED,
        REPLY_DUPLICATE,
        REPLY_NOT_STORED,
        REPLY_DECIDED,
    ]
    outcomes = [decode_outcome(r.value or b"") for r in ordered]
    assert outcomes[3] == outcomes[2]  # the duplicate's reply is the original outcome
    assert outcomes[4].reason is RejectReason.IDEMPOTENCY_KEY_REUSED
    assert outcomes[4].detail.startswith("transfer_id: ")
    assert outcomes[5].status is OutcomeStatus.REJECTED  # t1 exists already: a stored rejection
    # the key-reuse reply did not overwrite the stored outcome of k3
    stored = {
        r.key: decode_outcome(r.value or b"") for r in read_topic(ledger_settings, names.outcomes)
    }
    assert stored[f"{tenant}/k3".encode()] == outcomes[2]


def test_a_pending_transfer_expires_at_its_deadline_on_an_idle_partition(
    ledger_settings: Settings, tmp_path: Path
) -> None:
    tenant = "idle"
    processor = ProcessorProcess(
        ledger_settings,
        "a",
        tmp_path,
        extra_flags=FAST_TICKS,
    )
    try:
        # The deadline is 1 s after the broker appends the pending transfer: start the processor
        # first, or its start-up (seconds on a loaded machine) would count against the bound.
        partition = partition_for(command_key(tenant), ledger_settings.partitions)
        processor.wait_for_log(f"restored partition {partition}:", CONSUME_TIMEOUT_S)
        produce_commands(
            ledger_settings,
            [
                open_account(tenant, "cash", "k1"),
                open_account(tenant, "sales", "k2"),
                transfer(tenant, "p1", "k3", pending=True, pending_timeout_s=1),
            ],
        )
        found: list[tuple[TopicRecord, object]] = []
        deadline = time.monotonic() + CONSUME_TIMEOUT_S
        while not found and time.monotonic() < deadline:
            assert processor.process.poll() is None, processor.log()
            events = events_of(ledger_settings, tenant)
            found = [(r, e) for r, e in events if isinstance(e, PendingExpired)]
            time.sleep(0.5)
        assert found, f"no expiry within {CONSUME_TIMEOUT_S} s:\n{processor.log()}"
        ((expired_record, expired),) = found
        (pending,) = [e for _, e in events if isinstance(e, TransferPending)]
        assert isinstance(expired, PendingExpired)
        assert pending.expires_at_us is not None
        # effective at its deadline, not at the time of the tick that found it due
        assert expired.effective_at_us == pending.expires_at_us
        # written within the bound after the deadline, though nobody else wrote to the partition
        delay_s = (expired_record.timestamp_ms * 1000 - pending.expires_at_us) / 1e6
        assert 0 <= delay_s <= EXPIRY_DELAY_MAX_S, delay_s
        commands = read_topic(ledger_settings, ledger_topic_names(ledger_settings).commands)
        ticks = [r for r in commands if r.key == TICK_KEY]
        assert ticks and all(r.value == b"" for r in ticks)
    finally:
        assert processor.stop() == 0, processor.log()


def test_the_sdk_gets_an_answer_for_a_retry_and_for_a_reused_key(
    ledger_settings: Settings, tmp_path: Path
) -> None:
    tenant = "sdk-replies"
    produce_commands(
        ledger_settings,
        [open_account(tenant, "cash", "k1"), open_account(tenant, "sales", "k2")],
    )
    processor = ProcessorProcess(ledger_settings, "a", tmp_path)
    try:
        with LedgerProducer(ledger_settings) as producer:
            waiter = OutcomeWaiter(ledger_settings, producer)
            try:
                first = waiter.request(transfer(tenant, "t1", "k3"), timeout_s=CONSUME_TIMEOUT_S)
                retried = waiter.request(transfer(tenant, "t1", "k3"), timeout_s=CONSUME_TIMEOUT_S)
                reused = waiter.request(transfer(tenant, "t2", "k3"), timeout_s=CONSUME_TIMEOUT_S)
            finally:
                waiter.close()
    finally:
        assert processor.stop() == 0, processor.log()
    assert first.status is OutcomeStatus.ACCEPTED
    assert retried == first  # a retry after a timeout reads the original answer
    assert reused.reason is RejectReason.IDEMPOTENCY_KEY_REUSED
    assert reused.detail.startswith("transfer_id: ")


def test_replaying_the_command_log_with_its_ticks_gives_byte_identical_events(
    ledger_settings: Settings, tmp_path: Path
) -> None:
    """The log decides everything: the command records (ticks included) produced again with
    their timestamps into fresh topics give the same events, byte for byte."""
    tenants = ("replay-a", "replay-b")
    commands: list[Command] = []
    for tenant in tenants:
        commands += [open_account(tenant, "cash", "k1"), open_account(tenant, "sales", "k2")]
        commands += [
            transfer(tenant, f"p{n}", f"p{n}", pending=True, pending_timeout_s=1) for n in range(3)
        ]
    produce_commands(ledger_settings, commands)
    first = ProcessorProcess(
        ledger_settings,
        "a",
        tmp_path,
        extra_flags=FAST_TICKS,
    )
    try:
        expired: list[object] = []
        deadline = time.monotonic() + CONSUME_TIMEOUT_S
        while len(expired) < 6 and time.monotonic() < deadline:
            assert first.process.poll() is None, first.log()
            events = read_topic(ledger_settings, ledger_topic_names(ledger_settings).events)
            expired = [
                r for r in events if isinstance(decode_event(r.value or b""), PendingExpired)
            ]
            time.sleep(0.5)
        assert len(expired) == 6, first.log()
        wait_until_consumed(ledger_settings, CONSUME_TIMEOUT_S, [first])
    finally:
        assert first.stop() == 0, first.log()
    original = read_topic(ledger_settings, ledger_topic_names(ledger_settings).events)
    log = read_topic(ledger_settings, ledger_topic_names(ledger_settings).commands)
    assert any(record.key == TICK_KEY for record in log)

    replay = replace(ledger_settings, topic_prefix=f"r{uuid.uuid4().hex[:8]}.")
    create_replay_topics(replay)
    try:
        producer = Producer({**client_config(replay, ADMIN_PRINCIPAL)})
        for record in log:
            producer.produce(
                ledger_topic_names(replay).commands,
                record.value,
                record.key,
                partition=record.partition,
                timestamp=record.timestamp_ms,
            )
        assert producer.flush(30) == 0
        copied = read_topic(replay, ledger_topic_names(replay).commands)
        assert sorted(r.timestamp_ms for r in copied) == sorted(r.timestamp_ms for r in log), (
            "the copy was restamped: no replay"
        )
        second = ProcessorProcess(replay, "a", tmp_path)
        try:
            wait_until_consumed(replay, CONSUME_TIMEOUT_S, [second])
        finally:
            assert second.stop() == 0, second.log()
        replayed = read_topic(replay, ledger_topic_names(replay).events)
    finally:
        delete_topics(replay, [*ledger_topic_names(replay).all()])

    def by_partition(records: list[TopicRecord]) -> dict[int, list[bytes | None]]:
        grouped: dict[int, list[bytes | None]] = {}
        for record in records:
            grouped.setdefault(record.partition, []).append(record.value)
        return grouped

    replayed_values = by_partition(replayed)
    for partition, values in by_partition(original).items():
        # the replaying processor may tick later expiries of its own at the end: a prefix
        assert replayed_values[partition][: len(values)] == values


def is_expiry(record: TopicRecord) -> bool:
    return isinstance(decode_event(record.value or b""), PendingExpired)


def create_replay_topics(settings: Settings) -> None:
    """The ledger topics as declared, but ``ledger.commands`` CreateTime from its creation, so
    the copy keeps the original timestamps (a config changed later takes effect on the broker
    asynchronously, and records appended before it are restamped)."""
    declared = []
    for definition in topics.TOPIC_DEFINITIONS:
        configs = topics.declared_configs(definition, settings)
        if definition.name == "ledger.commands":
            configs["message.timestamp.type"] = "CreateTime"
        declared.append(
            NewTopic(
                settings.topic(definition.name),
                num_partitions=settings.partitions,
                replication_factor=settings.replication_factor,
                config=configs,
            )
        )
    client = admin_client(settings)  # kept alive until the futures are done
    for future in client.create_topics(declared).values():
        future.result(timeout=30)
    if is_scram(settings):  # what topics.apply grants the service principals on these topics
        principals.create_services(settings)
