"""Transactions on the real local broker: what committed is read, what aborted is never seen."""

from __future__ import annotations

import pytest

from infra.topics import ledger_topic_names
from tests.system.kafka_clients import (
    OPERATION_TIMEOUT_S,
    group_consumer,
    read_until,
    transactional_producer,
)

pytestmark = pytest.mark.system


def test_committed_transaction_is_read_by_a_read_committed_group_consumer(ledger_settings):
    topic = ledger_topic_names(ledger_settings).commands
    producer = transactional_producer(ledger_settings)
    producer.begin_transaction()
    producer.produce(topic, key=b"tenant-a", value=b"first")
    producer.produce(topic, key=b"tenant-a", value=b"second")
    producer.commit_transaction(OPERATION_TIMEOUT_S)

    consumer = group_consumer(ledger_settings, topic, isolation_level="read_committed")
    try:
        messages = read_until(consumer, b"second")
        consumer.commit(message=messages[-1], asynchronous=False)
    finally:
        consumer.close()

    assert [message.value() for message in messages] == [b"first", b"second"]
    assert {message.key() for message in messages} == {b"tenant-a"}


def test_aborted_transaction_is_invisible_to_read_committed(ledger_settings):
    topic = ledger_topic_names(ledger_settings).commands
    producer = transactional_producer(ledger_settings)
    producer.begin_transaction()
    producer.produce(topic, key=b"tenant-a", value=b"aborted")
    producer.flush(OPERATION_TIMEOUT_S)  # the record really reaches the log before the abort
    producer.abort_transaction(OPERATION_TIMEOUT_S)
    producer.begin_transaction()
    producer.produce(topic, key=b"tenant-a", value=b"committed")
    producer.commit_transaction(OPERATION_TIMEOUT_S)

    committed_reader = group_consumer(ledger_settings, topic, isolation_level="read_committed")
    uncommitted_reader = group_consumer(ledger_settings, topic, isolation_level="read_uncommitted")
    try:
        committed_values = [m.value() for m in read_until(committed_reader, b"committed")]
        uncommitted_values = [m.value() for m in read_until(uncommitted_reader, b"committed")]
    finally:
        committed_reader.close()
        uncommitted_reader.close()

    assert committed_values == [b"committed"]
    # The control: the aborted record is in the log, so its absence above is the isolation level.
    assert uncommitted_values == [b"aborted", b"committed"]
