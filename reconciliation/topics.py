"""The reconciliation topics: names, and creating them beside the ledger's (idempotently).

``ledger.statements`` (``Statement`` and ``StatementLine`` records) and ``ledger.reconciliation``
(``ReconciliationResult`` records), keyed by tenant, partitioned like ``ledger.events`` (the
matcher reads a tenant's statements and events from the same partition number and writes its
results there). Both keep their records forever (``retention.ms=-1``, never compacted: every key
is a tenant): they are the audit trail of what the bank said and what reconciliation decided.
"""

from __future__ import annotations

import time
from typing import Final

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.cimpl import NewTopic

from kafka_adapter.admin import ADMIN_REQUEST_TIMEOUT_S, admin_client, kafka_error_text
from schemas.topics import EVENTS_TOPIC
from streamledger.errors import TopicError
from streamledger.settings import Settings

STATEMENTS_TOPIC: Final = "ledger.statements"
RECONCILIATION_TOPIC: Final = "ledger.reconciliation"
RECONCILIATION_TOPICS: Final = (STATEMENTS_TOPIC, RECONCILIATION_TOPIC)
KEPT_FOREVER: Final = {"cleanup.policy": "delete", "retention.ms": "-1"}
VISIBLE_POLL_S: Final = 0.1


def ensure_topics(settings: Settings, *, timeout_s: float = ADMIN_REQUEST_TIMEOUT_S) -> int:
    """Create the reconciliation topics if missing, with ``ledger.events``' partition count, and
    return that count; refuse (``TopicError``) when ``ledger.events`` is missing or a count
    differs."""
    client = admin_client(settings, timeout_s=timeout_s)
    try:
        metadata = client.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise TopicError(f"listing topics failed: {kafka_error_text(exc)}") from exc
    events = metadata.topics.get(settings.topic(EVENTS_TOPIC))
    if events is None:
        raise TopicError(
            f"{settings.topic(EVENTS_TOPIC)} does not exist (streamledger topics apply)"
        )
    partitions = len(events.partitions)
    missing = []
    for name in RECONCILIATION_TOPICS:
        found = metadata.topics.get(settings.topic(name))
        if found is None:
            missing.append(settings.topic(name))
        elif len(found.partitions) != partitions:
            raise TopicError(
                f"{settings.topic(name)} has {len(found.partitions)} partitions,"
                f" {settings.topic(EVENTS_TOPIC)} {partitions}: they must be equal"
            )
    if missing:
        _create(settings, missing, partitions, timeout_s)
    return partitions


def _create(settings: Settings, names: list[str], partitions: int, timeout_s: float) -> None:
    client = admin_client(settings, timeout_s=timeout_s)
    configs = {**KEPT_FOREVER, "min.insync.replicas": str(settings.min_insync_replicas)}
    new_topics = [
        NewTopic(
            name,
            num_partitions=partitions,
            replication_factor=settings.replication_factor,
            config=configs,
        )
        for name in names
    ]
    futures = client.create_topics(
        new_topics, operation_timeout=timeout_s, request_timeout=timeout_s
    )
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise TopicError(f"creating topic {name} failed: {kafka_error_text(exc)}") from exc
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        topics = client.list_topics(timeout=timeout_s).topics
        if all(name in topics and len(topics[name].partitions) == partitions for name in names):
            return
        time.sleep(VISIBLE_POLL_S)
    raise TopicError(f"{', '.join(names)} not visible within {timeout_s:g} s of creation")
