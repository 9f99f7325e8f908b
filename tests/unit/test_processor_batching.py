"""``take_batch``: a batch is what was already fetched; only an idle consumer waits, and only
for the first record (decision 0017)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from confluent_kafka import Message

from kafka_adapter.batches import take_batch
from processors.kafka_clients import producer_config
from processors.processor_settings import build_processor_settings
from streamledger.settings import Settings


class FakeSource:
    """Hands out queued records; notes every (num_messages, timeout) it was asked for."""

    def __init__(self, fetched: list[str], arriving: list[str] | None = None) -> None:
        self.fetched = fetched  # already in the local queue
        self.arriving = arriving or []  # arrive during a wait, all at once
        self.calls: list[tuple[int, float]] = []

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        self.calls.append((num_messages, timeout))
        if not self.fetched and timeout > 0:
            self.fetched, self.arriving = self.arriving, []
        taken, self.fetched = self.fetched[:num_messages], self.fetched[num_messages:]
        return cast(list[Message], taken)


def taken(records: list[Message]) -> list[Any]:
    return list(records)


def test_records_already_fetched_are_taken_without_waiting_up_to_the_maximum() -> None:
    source = FakeSource(["a", "b", "c"])
    assert taken(take_batch(source, 2, 0.1)) == ["a", "b"]
    assert source.calls == [(2, 0)]
    assert taken(take_batch(source, 2, 0.1)) == ["c"]
    assert source.calls[-1] == (2, 0)


def test_an_idle_consumer_waits_for_the_first_record_then_takes_what_came_with_it() -> None:
    source = FakeSource([], arriving=["a", "b", "c"])
    assert taken(take_batch(source, 10, 0.1)) == ["a", "b", "c"]
    assert source.calls == [(10, 0), (1, 0.1), (9, 0)]


def test_nothing_arriving_within_the_wait_is_an_empty_batch() -> None:
    source = FakeSource([])
    assert taken(take_batch(source, 10, 0.1)) == []
    assert source.calls == [(10, 0), (1, 0.1)]


def test_a_batch_of_one_never_asks_for_zero_records() -> None:
    source = FakeSource([], arriving=["a", "b"])
    assert taken(take_batch(source, 1, 0.1)) == ["a"]
    assert source.calls == [(1, 0), (1, 0.1)]


def test_the_transactional_producer_retries_concurrent_transactions_quickly() -> None:
    """librdkafka's default retry.backoff.ms (100) made every transaction last >= ~100 ms: the
    AddOffsetsToTxn right after a commit is answered CONCURRENT_TRANSACTIONS and retried."""
    settings = Settings(home=Path("/nonexistent"), topic_prefix="p.")
    config = producer_config(build_processor_settings(settings, instance_id="0"))
    assert cast(int, config["retry.backoff.ms"]) <= 20
    assert cast(int, config["linger.ms"]) <= 1
