"""Proof that the broker does transactions end to end: the provisional ``streamledger demo``.

A transactional producer aborts one record and commits another; a ``read_committed`` consumer in
its own consumer group must read the committed one and never the aborted one. The records go to
``streamledger.roundtrip`` (one partition, short retention), never to a ledger topic, so the
ledger pipeline never sees them.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.cimpl import NewTopic  # not declared exported by confluent_kafka.admin

from kafka_adapter.admin import KAFKA_CLIENT_LOGGER, admin_client, kafka_error_text
from kafka_adapter.security import ADMIN_PRINCIPAL, client_config
from streamledger.errors import InfraError
from streamledger.settings import Settings

ROUND_TRIP_TOPIC = "streamledger.roundtrip"
ROUND_TRIP_RETENTION_MS = 24 * 60 * 60 * 1000
ROUND_TRIP_TIMEOUT_S = 60.0  # the whole round trip, including the first group join
TRANSACTION_TIMEOUT_MS = 60_000
POLL_TIMEOUT_S = 0.5
RECORDS_SCANNED_MAX = 100_000  # the topic only ever holds demo records; a bound all the same


@dataclass(frozen=True, slots=True)
class RoundTripReport:
    topic: str
    group: str
    committed_value: str
    aborted_value: str
    records_read: int
    elapsed_s: float

    def lines(self) -> list[str]:
        return [
            f"produced  '{self.aborted_value}' in a transaction, then aborted it",
            f"produced  '{self.committed_value}' in a transaction, then committed it",
            f"consumed  '{self.committed_value}' from {self.topic} as group {self.group}"
            f" (read_committed; {self.records_read} records scanned, the aborted one never seen)",
            f"round trip ok in {self.elapsed_s:.1f} s",
        ]


def prove_round_trip(
    settings: Settings, *, timeout_s: float = ROUND_TRIP_TIMEOUT_S
) -> RoundTripReport:
    started = time.monotonic()
    topic = settings.topic(ROUND_TRIP_TOPIC)
    ensure_topic(settings, topic, timeout_s)
    run_id = uuid.uuid4().hex[:12]
    aborted_value = f"aborted-{run_id}"
    committed_value = f"committed-{run_id}"
    try:
        produce_in_transactions(
            settings,
            topic,
            run_id=run_id,
            aborted_value=aborted_value,
            committed_value=committed_value,
            timeout_s=timeout_s,
        )
        group = f"streamledger-roundtrip-{run_id}"
        records_read = read_until(
            settings,
            topic,
            group=group,
            committed_value=committed_value,
            aborted_value=aborted_value,
            timeout_s=timeout_s,
        )
    except KafkaException as exc:
        raise InfraError(f"transactional round trip failed: {kafka_error_text(exc)}") from exc
    return RoundTripReport(
        topic, group, committed_value, aborted_value, records_read, time.monotonic() - started
    )


def ensure_topic(settings: Settings, topic: str, timeout_s: float) -> None:
    new_topic = NewTopic(
        topic,
        num_partitions=1,
        replication_factor=settings.replication_factor,
        config={"cleanup.policy": "delete", "retention.ms": str(ROUND_TRIP_RETENTION_MS)},
    )
    # Keep the client referenced until the future resolves: a collected client aborts it.
    client = admin_client(settings, timeout_s=timeout_s)
    futures = client.create_topics([new_topic], request_timeout=timeout_s)
    try:
        futures[topic].result(timeout=timeout_s)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return
        raise InfraError(f"creating topic {topic} failed: {kafka_error_text(exc)}") from exc


def produce_in_transactions(
    settings: Settings,
    topic: str,
    *,
    run_id: str,
    aborted_value: str,
    committed_value: str,
    timeout_s: float,
) -> None:
    producer = Producer(
        {
            **client_config(settings, ADMIN_PRINCIPAL),
            "transactional.id": f"streamledger-roundtrip-{run_id}",
            "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
        },
        logger=KAFKA_CLIENT_LOGGER,
    )
    producer.init_transactions(timeout_s)
    producer.begin_transaction()
    producer.produce(topic, key=run_id.encode(), value=aborted_value.encode())
    producer.flush(timeout_s)
    producer.abort_transaction(timeout_s)
    producer.begin_transaction()
    producer.produce(topic, key=run_id.encode(), value=committed_value.encode())
    producer.commit_transaction(timeout_s)


def read_until(
    settings: Settings,
    topic: str,
    *,
    group: str,
    committed_value: str,
    aborted_value: str,
    timeout_s: float,
) -> int:
    """Read from the start as a group member until the committed value arrives."""
    consumer = Consumer(
        {
            **client_config(settings, ADMIN_PRINCIPAL),
            "group.id": group,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        },
        logger=KAFKA_CLIENT_LOGGER,
    )
    try:
        consumer.subscribe([topic])
        records_read = 0
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and records_read < RECORDS_SCANNED_MAX:
            message = consumer.poll(POLL_TIMEOUT_S)
            if message is None:
                continue
            if message.error() is not None:
                raise KafkaException(message.error())
            records_read += 1
            value = (message.value() or b"").decode()
            if value == aborted_value:
                raise InfraError(f"read_committed consumer saw the aborted record {value!r}")
            if value == committed_value:
                consumer.commit(message=message, asynchronous=False)
                return records_read
    finally:
        consumer.close()
    raise InfraError(
        f"the committed record did not come back within {timeout_s:g} s"
        f" ({records_read} records read from {topic})"
    )
