"""LedgerProducer against a fake client: validation, placement, delivery, backpressure."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from producers.errors import (
    BackpressureTimeoutError,
    CommandValidationError,
    DeliveryError,
    FlushTimeoutError,
    ProducerError,
)
from producers.sdk import LedgerProducer, ProducerSettings, post_transaction
from schemas import codec
from schemas.keys import partition_for
from schemas.model import Posting, PostTransaction, Transfer
from streamledger.settings import Settings

SETTINGS = Settings(home=Path("/nonexistent"), topic_prefix="test.")
TRANSFER = Transfer(
    tenant_id="acme",
    idempotency_key="order-17",
    submitted_at_us=1_700_000_000_000_000,
    transfer_id="t-17",
    debit_account_id="cash",
    credit_account_id="sales",
    amount=1250,
    currency="USD",
)


class FakeMessage:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self._where = (topic, partition, offset)

    def topic(self) -> str:
        return self._where[0]

    def partition(self) -> int:
        return self._where[1]

    def offset(self) -> int:
        return self._where[2]


@dataclass
class FakeClient:
    partitions: int = 3
    full_for: int = 0  # produce raises BufferError this many times
    fail_with: str | None = None
    keep_undelivered: bool = False
    failures_only: bool = False  # as delivery.report.only.error: no report for a delivered record
    produced: list[tuple[str, bytes, bytes, int]] = field(default_factory=list)
    pending: list[tuple[Any, FakeMessage]] = field(default_factory=list)

    def produce(
        self, topic: str, value: bytes, key: bytes, partition: int, on_delivery: Any
    ) -> None:
        if self.full_for > 0:
            self.full_for -= 1
            raise BufferError("Local: Queue full")
        self.produced.append((topic, key, value, partition))
        self.pending.append((on_delivery, FakeMessage(topic, partition, len(self.produced) - 1)))

    def poll(self, timeout: float) -> int:
        served, self.pending = self.pending, []
        for callback, message in served:
            if self.fail_with is not None or not self.failures_only:
                callback(self.fail_with, message)
        return len(served)

    def __len__(self) -> int:
        return len(self.pending)

    def flush(self, timeout: float) -> int:
        if self.keep_undelivered:
            return len(self.pending)
        self.poll(0)
        return 0

    def list_topics(self, topic: str, timeout: float) -> Any:
        partitions = {number: object() for number in range(self.partitions)}
        return SimpleNamespace(topics={topic: SimpleNamespace(error=None, partitions=partitions)})


def make(client: FakeClient, **limits: Any) -> LedgerProducer:
    return LedgerProducer(SETTINGS, client=client, producer_settings=ProducerSettings(**limits))


def test_send_validates_encodes_keys_and_places() -> None:
    client = FakeClient(partitions=7)
    producer = make(client)
    producer.send(TRANSFER)
    producer.flush(1)
    topic, key, value, partition = client.produced[0]
    assert topic == "test.ledger.commands"
    assert key == b"acme"
    assert partition == partition_for(b"acme", 7)
    assert codec.decode_command(value) == TRANSFER
    assert producer.delivered == 1


def test_invalid_command_raises_naming_the_field_and_sends_nothing() -> None:
    client = FakeClient()
    producer = make(client)
    with pytest.raises(CommandValidationError, match="amount") as caught:
        producer.send(replace(TRANSFER, amount=0))
    assert caught.value.field == "amount"
    assert client.produced == []


def test_submit_future_resolves_on_delivery() -> None:
    producer = make(FakeClient())
    future = producer.submit(TRANSFER)
    assert not future.done()
    producer.poll(0)
    assert future.result(timeout=0).partition == partition_for(b"acme", 3)


def test_failed_delivery_reaches_the_future_and_the_flush() -> None:
    client = FakeClient(fail_with="Broker: Not enough replicas")
    producer = make(client)
    future = producer.submit(TRANSFER)
    producer.send(TRANSFER)
    with pytest.raises(DeliveryError, match="1 records failed"):
        producer.flush(1)
    with pytest.raises(DeliveryError, match="replicas"):
        future.result(timeout=0)
    assert producer.failed == 2


def test_backpressure_retries_then_succeeds() -> None:
    client = FakeClient(full_for=3)
    producer = make(client, backpressure_poll_s=0.0)
    producer.send(TRANSFER)
    assert len(client.produced) == 1


def test_backpressure_gives_up_after_its_timeout() -> None:
    client = FakeClient(full_for=10**9)
    producer = make(client, backpressure_poll_s=0.0, backpressure_timeout_s=0.05)
    with pytest.raises(BackpressureTimeoutError, match="queue stayed full"):
        producer.send(TRANSFER)


def test_flush_is_bounded() -> None:
    producer = make(FakeClient(keep_undelivered=True))
    producer.send(TRANSFER)
    with pytest.raises(FlushTimeoutError) as caught:
        producer.flush(0.01)
    assert caught.value.undelivered == 1


def test_missing_topic_is_an_error() -> None:
    client = FakeClient()
    client.list_topics = lambda topic, timeout: SimpleNamespace(topics={})  # type: ignore[method-assign]
    with pytest.raises(ProducerError, match="not usable"):
        make(client)


def test_client_config_is_idempotent_and_acks_all() -> None:
    config = ProducerSettings().client_config("127.0.0.1:1")
    assert config["enable.idempotence"] is True
    assert config["acks"] == "all"
    assert {"linger.ms", "batch.size", "queue.buffering.max.messages"} <= set(config)


@dataclass
class ConfiguredClient(FakeClient):
    """Stands in for ``confluent_kafka.Producer`` built by the SDK: the config's ``on_delivery``
    serves records produced without a callback of their own."""

    config: dict[str, Any] = field(default_factory=dict)
    per_record_callbacks: int = 0

    def produce(  # type: ignore[override]
        self, topic: str, value: bytes, key: bytes, partition: int, on_delivery: Any = None
    ) -> None:
        if on_delivery is None:
            on_delivery = self.config["on_delivery"]
        else:
            self.per_record_callbacks += 1
        super().produce(topic, value, key, partition, on_delivery)


def _built_by_the_sdk(
    monkeypatch: pytest.MonkeyPatch, overrides: dict[str, Any] | None = None
) -> tuple[LedgerProducer, list[ConfiguredClient]]:
    built: list[ConfiguredClient] = []

    def build(config: dict[str, Any]) -> ConfiguredClient:
        built.append(ConfiguredClient(config=config))
        return built[-1]

    monkeypatch.setattr("producers.sdk.Producer", build)
    return LedgerProducer(SETTINGS, client_config_overrides=overrides), built


def test_default_delivery_callback_sits_in_the_client_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    producer, built = _built_by_the_sdk(monkeypatch)
    client = built[0]
    assert client.config["on_delivery"] == producer._on_delivery
    producer.send(TRANSFER)
    future = producer.submit(TRANSFER)
    producer.flush(1)
    assert producer.delivered == 2 and future.result(timeout=0).offset == 1
    assert client.per_record_callbacks == 1  # only submit() hands one over


def test_failures_of_config_delivered_records_reach_the_flush(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    producer, built = _built_by_the_sdk(monkeypatch)
    built[0].fail_with = "Broker: Not enough replicas"
    producer.send(TRANSFER)
    producer.send_raw(b"acme", b"poison")
    with pytest.raises(DeliveryError, match="2 records failed"):
        producer.flush(1)
    assert producer.failed == 2


def test_a_delivery_callback_in_the_overrides_keeps_per_record_counting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[Any] = []
    producer, built = _built_by_the_sdk(
        monkeypatch, {"on_delivery": lambda error, message: seen.append(error)}
    )
    producer.send(TRANSFER)
    producer.flush(1)
    assert built[0].per_record_callbacks == 1 and producer.delivered == 1 and seen == []


FEE_SPLIT_LEGS = [
    ("card", "merchant", 9710, "USD"),
    ("card", "platform", 260, "USD"),
    ("card", "network", 30, "USD"),
]


def test_post_transaction_builds_a_checked_multi_leg_command_that_sends_like_a_transfer() -> None:
    command = post_transaction(
        tenant_id="acme",
        idempotency_key="pay-17",
        transaction_id="pay-17",
        postings=[
            *FEE_SPLIT_LEGS[:2],
            Posting(
                debit_account_id="card", credit_account_id="network", amount=30, currency="USD"
            ),
        ],
        submitted_at_us=1_700_000_000_000_000,
        metadata={"order": "A-17", "channel": "web"},
    )
    assert isinstance(command, PostTransaction)
    assert [posting.amount for posting in command.postings] == [9710, 260, 30]
    assert command.metadata == (("channel", "web"), ("order", "A-17"))
    client = FakeClient(partitions=7)
    producer = make(client)
    producer.send(command)
    producer.flush(1)
    _, key, value, partition = client.produced[0]
    assert (key, partition) == (b"acme", partition_for(b"acme", 7))
    assert codec.decode_command(value) == command


def test_post_transaction_names_the_failing_posting_and_defaults_the_time() -> None:
    legs = [*FEE_SPLIT_LEGS, ("card", "tax", 0, "USD")]
    with pytest.raises(CommandValidationError) as caught:
        post_transaction(
            tenant_id="acme", idempotency_key="pay-18", transaction_id="pay-18", postings=legs
        )
    assert caught.value.field == "postings[3].amount"
    with pytest.raises(CommandValidationError) as empty:
        post_transaction(
            tenant_id="acme", idempotency_key="pay-19", transaction_id="pay-19", postings=[]
        )
    assert empty.value.field == "postings"
    command = post_transaction(
        tenant_id="acme", idempotency_key="pay-20", transaction_id="pay-20", postings=FEE_SPLIT_LEGS
    )
    assert command.submitted_at_us > 1_700_000_000_000_000


def test_failures_only_reports_count_deliveries_without_a_call_per_record() -> None:
    assert ProducerSettings().client_config("b:9092")["delivery.report.only.error"] is False
    limits = ProducerSettings(report_successes=False)
    assert limits.client_config("b:9092")["delivery.report.only.error"] is True
    client = FakeClient(failures_only=True)
    producer = make(client, report_successes=False)
    for number in range(3):
        producer.send(replace(TRANSFER, idempotency_key=f"order-{number}"))
    assert (producer.delivered, producer.in_flight) == (0, 3)
    producer.flush(1)
    assert (producer.sent, producer.delivered, producer.failed, producer.in_flight) == (3, 3, 0, 0)


def test_failures_only_reports_still_fail_the_flush_and_refuse_per_command_reports() -> None:
    client = FakeClient(failures_only=True, fail_with="Broker: Topic authorization failed")
    producer = make(client, report_successes=False)
    producer.send(TRANSFER)
    with pytest.raises(DeliveryError, match="authorization"):
        producer.flush(1)
    assert (producer.delivered, producer.failed) == (0, 1)
    with pytest.raises(ProducerError, match="report_successes"):
        producer.submit(TRANSFER)
    with pytest.raises(ProducerError, match="report_successes"):
        producer.send(TRANSFER, on_delivery=lambda report: None)
    assert len(client.produced) == 1  # nothing queued for the refused ones
