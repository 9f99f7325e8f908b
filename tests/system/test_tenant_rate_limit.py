"""Issue 21 §4 on the real broker: a flooding tenant is rate limited while a quiet tenant on the
**same partition** is never limited (decision 0083); the quiet tenant's p99 latency (command
appended -> reply produced, both broker/host timestamps) is printed alone, with the flood and
the rate limit, and with the flood and no rate limit. Timing is reported, never asserted.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Producer

from infra.topics import ledger_topic_names
from kafka_adapter.admin import KAFKA_CLIENT_LOGGER
from kafka_adapter.security import ADMIN_PRINCIPAL, client_config
from processors.partition_ledger import (
    REPLY_KIND_HEADER,
    REPLY_NOT_STORED,
    REPLY_RETRY_AFTER_HEADER,
    REPLY_TO_HEADER,
)
from producers.replies import OutcomeWaiter, Reply
from producers.sdk import LedgerProducer
from schemas.codec import decode_outcome, encode_command
from schemas.keys import command_key, partition_for
from schemas.model import OpenAccount, Outcome, OutcomeStatus, RejectReason
from streamledger.settings import Settings
from tests.system.free_ports import free_port_range
from tests.system.processor_harness import (
    ProcessorProcess,
    TopicRecord,
    read_topic,
    wait_until_consumed,
)

pytestmark = pytest.mark.system
CONSUME_TIMEOUT_S = 180.0
RATE_PER_S = 200
BURST = 200
LIMIT_FLAGS = (f"--tenant-commands-per-second={RATE_PER_S}", f"--tenant-command-burst={BURST}")
QUIET_COMMANDS = 60
QUIET_PACE_S = 0.025  # 40 commands/s: well inside the quiet tenant's 200/s
FLOOD_CHUNKS = 20
FLOOD_CHUNK_COMMANDS = 1_500  # 30,000 commands in ~2 s: far over 200/s
FLOOD_PACE_S = 0.1
QUIET_TENANT = "quiet"


def flood_tenant_on_the_same_partition(partitions: int) -> str:
    quiet_partition = partition_for(command_key(QUIET_TENANT), partitions)
    for index in range(1_000):
        candidate = f"flood-{index}"
        if partition_for(command_key(candidate), partitions) == quiet_partition:
            return candidate
    raise AssertionError("no flood tenant on the quiet tenant's partition")


def open_account(tenant: str, key: str) -> OpenAccount:
    return OpenAccount(
        tenant_id=tenant,
        idempotency_key=key,
        submitted_at_us=1,
        account_id=key,
        currency="EUR",
        asset_scale=2,
    )


def _producer(settings: Settings, linger_ms: int) -> Producer:
    return Producer(
        {
            **client_config(settings, ADMIN_PRINCIPAL),
            "enable.idempotence": True,
            "linger.ms": linger_ms,
        },
        logger=KAFKA_CLIENT_LOGGER,
    )


def _produce(producer: Producer, settings: Settings, tenant: str, value: bytes) -> None:
    key = command_key(tenant)
    producer.produce(
        ledger_topic_names(settings).commands,
        value,
        key,
        partition=partition_for(key, settings.partitions),
    )
    producer.poll(0)


def flood(settings: Settings, tenant: str, phase: str) -> threading.Thread:
    """Start a thread producing FLOOD_CHUNKS x FLOOD_CHUNK_COMMANDS commands of ``tenant``."""
    values = [
        encode_command(open_account(tenant, f"{phase}-{n}"))
        for n in range(FLOOD_CHUNKS * FLOOD_CHUNK_COMMANDS)
    ]

    def run() -> None:
        producer = _producer(settings, linger_ms=5)
        for chunk in range(FLOOD_CHUNKS):
            started = time.monotonic()
            for value in values[chunk * FLOOD_CHUNK_COMMANDS : (chunk + 1) * FLOOD_CHUNK_COMMANDS]:
                _produce(producer, settings, tenant, value)
            time.sleep(max(0.0, FLOOD_PACE_S - (time.monotonic() - started)))
        assert producer.flush(60) == 0

    thread = threading.Thread(target=run, name=f"flood-{phase}")
    thread.start()
    return thread


def quiet(settings: Settings, phase: str) -> None:
    """QUIET_COMMANDS commands of the quiet tenant, each sent at once, paced."""
    producer = _producer(settings, linger_ms=0)
    for n in range(QUIET_COMMANDS):
        _produce(
            producer,
            settings,
            QUIET_TENANT,
            encode_command(open_account(QUIET_TENANT, f"{phase}-{n}")),
        )
        producer.flush(10)
        time.sleep(QUIET_PACE_S)
    assert producer.flush(60) == 0


@dataclass(frozen=True)
class Answer:
    command: TopicRecord
    reply: TopicRecord
    outcome: Outcome

    @property
    def latency_ms(self) -> int:
        return self.reply.timestamp_ms - self.command.timestamp_ms


def answers(settings: Settings) -> dict[bytes, Answer]:
    """The first reply of each key (tenant/key) with its command record and outcome."""
    names = ledger_topic_names(settings)
    commands = {(r.partition, r.offset): r for r in read_topic(settings, names.commands)}
    found: dict[bytes, Answer] = {}
    for reply in read_topic(settings, names.replies):
        (reply_to,) = [value for name, value in reply.headers if name == REPLY_TO_HEADER]
        partition, offset = (int(part) for part in reply_to.split(b":"))
        answer = Answer(commands[(partition, offset)], reply, decode_outcome(reply.value or b""))
        found.setdefault(reply.key, answer)  # a key's first reply (a retry's comes later)
    return found


def p99_ms(found: dict[bytes, Answer], phase: str) -> float:
    latencies = [
        answer.latency_ms
        for key, answer in found.items()
        if key.startswith(f"{QUIET_TENANT}/{phase}-".encode())
    ]
    assert len(latencies) == QUIET_COMMANDS, phase
    return statistics.quantiles(latencies, n=100, method="inclusive")[98]


def run_phase(
    settings: Settings, processes: list[ProcessorProcess], phase: str, tenant: str | None
) -> None:
    thread = None if tenant is None else flood(settings, tenant, phase)
    quiet(settings, phase)
    if thread is not None:
        thread.join(timeout=CONSUME_TIMEOUT_S)
    wait_until_consumed(settings, CONSUME_TIMEOUT_S, processes)


def test_a_flooding_tenant_is_rate_limited_and_its_neighbour_is_not(
    ledger_settings: Settings, tmp_path: Path
) -> None:
    settings = ledger_settings
    flooder = flood_tenant_on_the_same_partition(settings.partitions)
    metrics_port = free_port_range(1)
    limited = ProcessorProcess(
        settings, "a", tmp_path, metrics_port=metrics_port, extra_flags=LIMIT_FLAGS
    )
    try:
        run_phase(settings, [limited], "warm-up", None)  # started, assigned, restored
        run_phase(settings, [limited], "alone", None)
        run_phase(settings, [limited], "limited", flooder)
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        retry_reply = _retry_a_rate_limited_command(settings, flooder, answers(settings))
    finally:
        assert limited.stop() == 0, limited.log()
    unlimited = ProcessorProcess(settings, "a", tmp_path)
    try:
        run_phase(settings, [unlimited], "unlimited", flooder)
    finally:
        assert unlimited.stop() == 0, unlimited.log()

    found = answers(settings)
    quiet_outcomes = [a.outcome for k, a in found.items() if k.startswith(b"quiet/")]
    assert len(quiet_outcomes) == 4 * QUIET_COMMANDS
    assert all(outcome.status is OutcomeStatus.ACCEPTED for outcome in quiet_outcomes)
    retried = f"{flooder}/{retry_reply.outcome.idempotency_key}".encode()
    admitted = _assert_the_flood_was_limited(settings, found, flooder, retried)
    assert f'rate_limited_commands_total{{tenant="{flooder}"}}' in scraped
    assert 'tenant="quiet"' not in scraped
    assert retry_reply.outcome.status is OutcomeStatus.ACCEPTED and retry_reply.kind == "decided"
    print(
        f"\nquiet tenant p99 (command appended -> reply produced), {QUIET_COMMANDS} commands"
        f" at {1 / QUIET_PACE_S:.0f}/s; flood {FLOOD_CHUNKS * FLOOD_CHUNK_COMMANDS} commands"
        f" in ~{FLOOD_CHUNKS * FLOOD_PACE_S:.0f} s on the same partition:"
        f"\n  alone                          {p99_ms(found, 'alone'):8.1f} ms"
        f"\n  flood, rate limit {RATE_PER_S}/s burst {BURST}  {p99_ms(found, 'limited'):8.1f} ms"
        f"\n  flood, no rate limit           {p99_ms(found, 'unlimited'):8.1f} ms"
        f"\nflood with the limit: {admitted} admitted, the rest rate_limited"
    )


def _assert_the_flood_was_limited(
    settings: Settings, found: dict[bytes, Answer], flooder: str, retried: bytes
) -> int:
    """Check the flood's answers; return how many of its commands were admitted."""
    flood_answers = [a for k, a in found.items() if k.startswith(f"{flooder}/limited-".encode())]
    assert len(flood_answers) == FLOOD_CHUNKS * FLOOD_CHUNK_COMMANDS
    limited = [a for a in flood_answers if a.outcome.reason is RejectReason.RATE_LIMITED]
    admitted = [a for a in flood_answers if a.outcome.status is OutcomeStatus.ACCEPTED]
    assert limited and len(limited) + len(admitted) == len(flood_answers)
    for answer in limited:
        headers = dict(answer.reply.headers)
        assert headers[REPLY_KIND_HEADER] == REPLY_NOT_STORED
        assert int(headers[REPLY_RETRY_AFTER_HEADER]) >= 1
        assert answer.outcome.detail.startswith("tenant_id: rate limited: ")
    # by record time: never more than burst + rate x elapsed
    times_ms = [a.command.timestamp_ms for a in flood_answers]
    elapsed_ms = max(times_ms) - min(times_ms)
    assert len(admitted) * 1_000 <= BURST * 1_000 + RATE_PER_S * elapsed_ms
    stored = {r.key for r in read_topic(settings, ledger_topic_names(settings).outcomes)}
    # replies only: the keys stay free (the one retried later was decided then)
    assert {a.reply.key for a in limited} & stored == {retried}
    assert all(a.reply.key in stored for a in admitted)
    return len(admitted)


def _retry_a_rate_limited_command(
    settings: Settings, flooder: str, found: dict[bytes, Answer]
) -> Reply:
    """A rate-limited flood command retried with the same key, once its retry-after has long
    passed in record time, is decided normally (the SDK's request_reply)."""
    key = next(
        answer.outcome.idempotency_key
        for answer in found.values()
        if answer.outcome.tenant_id == flooder
        and answer.outcome.reason is RejectReason.RATE_LIMITED
    )
    with LedgerProducer(settings) as producer:
        waiter = OutcomeWaiter(settings, producer)
        try:
            return waiter.request_reply(open_account(flooder, key), timeout_s=CONSUME_TIMEOUT_S)
        finally:
            waiter.close()
