"""An abort that fails with a retriable error (a timeout while the broker restarts; librdkafka:
"retry call to resume") is asked again, ``ABORT_RETRIES_MAX`` times; a non-retriable error is
raised at once. Before, the first timed-out abort made the processor
exit and the supervisor restart it (the chaos test, seed 202, in CI)."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException

from processors.kafka_clients import KafkaTransport, ProcessorKafkaError
from processors.processor_settings import ABORT_RETRIES_MAX, build_processor_settings
from streamledger.settings import Settings


class AbortingProducer:
    """Fails its first ``failures`` aborts with ``error``, then succeeds."""

    def __init__(self, failures: int, error: KafkaError) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def abort_transaction(self, timeout_s: float) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise KafkaException(self.error)


def transport_with(producer: AbortingProducer) -> KafkaTransport:
    shared = Settings(home=Path("/nonexistent"), topic_prefix="t.", partitions=3)
    settings = build_processor_settings(shared, instance_id="0", metrics_port=0)
    transport = KafkaTransport.__new__(KafkaTransport)  # no clients: only the producer is used
    transport.settings = settings
    transport.producer = producer  # type: ignore[assignment]
    return transport


TIMED_OUT = KafkaError(KafkaError._TIMED_OUT, "Timed out waiting for operation", retriable=True)


def test_a_timed_out_abort_is_asked_again() -> None:
    producer = AbortingProducer(failures=ABORT_RETRIES_MAX, error=TIMED_OUT)
    transport_with(producer).abort()
    assert producer.calls == ABORT_RETRIES_MAX + 1


def test_an_abort_that_keeps_timing_out_is_raised_after_the_retries() -> None:
    producer = AbortingProducer(failures=100, error=TIMED_OUT)
    with pytest.raises(ProcessorKafkaError, match="abort_transaction"):
        transport_with(producer).abort()
    assert producer.calls == ABORT_RETRIES_MAX + 1


def test_a_non_retriable_abort_error_is_raised_at_once() -> None:
    producer = AbortingProducer(failures=1, error=KafkaError(KafkaError._STATE, "bad state"))
    with pytest.raises(ProcessorKafkaError, match="abort_transaction"):
        transport_with(producer).abort()
    assert producer.calls == 1
