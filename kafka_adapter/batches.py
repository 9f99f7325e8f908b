"""Taking a batch from a Kafka consumer without adding a wait (decision 0017)."""

from __future__ import annotations

from typing import Protocol

from confluent_kafka import Message


class BatchSource(Protocol):
    """The part of ``confluent_kafka.Consumer`` that ``take_batch`` uses (tests fake it)."""

    def consume(self, num_messages: int, timeout: float) -> list[Message]: ...


def take_batch(source: BatchSource, records_max: int, first_wait_s: float) -> list[Message]:
    """Every record already fetched (at most ``records_max``) without waiting; when there is
    none, the first to arrive within ``first_wait_s`` and the records fetched with it.

    ``Consumer.consume(n, timeout)`` returns only once it has ``n`` records or the timeout has
    passed, so asking for a full batch with a wait holds every record of a partial batch for
    the whole timeout. Taken this way a batch is whatever arrived while the caller was busy
    with the previous one: large under load, one record when idle, never an added wait
    (decision 0017)."""
    assert records_max >= 1
    records = source.consume(records_max, 0)
    if records:
        return records
    first = source.consume(1, first_wait_s)
    if not first or records_max == 1:
        return first
    return first + source.consume(records_max - 1, 0)
