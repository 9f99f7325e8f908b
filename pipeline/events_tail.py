"""``streamledger events tail``: a downstream subscriber of ``ledger.events``, as JSON lines.

It reads with ``isolation.level=read_committed`` (an aborted processor transaction is never
seen), assigns the partitions itself (no consumer group, nothing committed: a tail never moves
anyone's position) and decodes each record with ``schemas.codec.decode_event``. With
``--tenant`` it reads only that tenant's partition (the key is the tenant id, placed by murmur2
like the commands) and prints only that tenant's events.

Each line is one event: ``type``, the event's fields (bytes as hex), and where it was read
(``partition``, ``offset``). Sequence numbers are gapless per tenant, so a subscriber can detect
a gap or a replay by itself.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, TopicPartition

from kafka_adapter.admin import KAFKA_CLIENT_LOGGER
from kafka_adapter.security import ADMIN_PRINCIPAL, client_config, principal_label, refused
from schemas.codec import decode_event
from schemas.keys import command_key, partition_for
from schemas.model import Event
from schemas.topics import EVENTS_TOPIC
from streamledger.errors import InfraError
from streamledger.settings import Settings

METADATA_TIMEOUT_S = 30.0
POLL_TIMEOUT_S = 0.5
CONSUME_BATCH_MAX = 1_000


def event_to_json(event: Event, *, partition: int | None = None, offset: int | None = None) -> str:
    """One JSON line: the event's type, its fields (bytes as hex) and where it was read. A
    multi-leg transaction event also says how many postings it has and what they move per
    currency (``posting_count``, ``amounts_by_currency``), so a 50-posting payout reads at a
    glance."""
    fields: dict[str, Any] = {"type": type(event).__name__}
    fields.update(dataclasses.asdict(event))
    fields["metadata"] = dict(event.metadata)  # since schemas v1.4: an object, not pairs
    postings = getattr(event, "postings", None)
    if postings is not None:
        amounts: dict[str, int] = {}
        for posting in postings:
            amounts[posting.currency] = amounts.get(posting.currency, 0) + posting.amount
        fields["posting_count"] = len(postings)
        fields["amounts_by_currency"] = amounts
    if partition is not None:
        fields["partition"] = partition
        fields["offset"] = offset
    return json.dumps(fields, default=json_default, separators=(",", ":"))


def json_default(value: object) -> object:
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def tail_consumer(settings: Settings) -> Consumer:
    return Consumer(
        {
            # an operator's tool: the stack's admin, unless --kafka-principal names another
            **client_config(settings, ADMIN_PRINCIPAL),
            "group.id": f"streamledger-tail-{uuid.uuid4().hex[:12]}",  # never joined/committed
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        },
        logger=KAFKA_CLIENT_LOGGER,
    )


def partitions_to_read(
    consumer: Consumer, topic: str, tenant: str | None, from_beginning: bool, *, principal: str
) -> list[TopicPartition]:
    metadata = consumer.list_topics(topic, timeout=METADATA_TIMEOUT_S).topics.get(topic)
    refusal = refused(principal, f"reading {topic}", getattr(metadata, "error", None))
    if refusal is not None:
        raise refusal
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise InfraError(f"topic {topic} not found; run `streamledger infra up`")
    numbers = sorted(metadata.partitions)
    if tenant is not None:
        numbers = [partition_for(command_key(tenant), len(numbers))]
    start = OFFSET_BEGINNING if from_beginning else OFFSET_END
    return [TopicPartition(topic, number, start) for number in numbers]


def tail_events(
    settings: Settings,
    *,
    tenant: str | None,
    from_beginning: bool,
    stop: threading.Event,
    exit_at_end: bool = False,
) -> Iterator[tuple[Event, int, int]]:
    """(event, partition, offset) as they are committed, until ``stop`` (or the end, if asked)."""
    topic = settings.topic(EVENTS_TOPIC)
    consumer = tail_consumer(settings)
    try:
        label = principal_label(settings, ADMIN_PRINCIPAL)
        partitions = partitions_to_read(consumer, topic, tenant, from_beginning, principal=label)
        consumer.assign(partitions)
        not_at_end = {partition.partition for partition in partitions}
        while not stop.is_set() and not (exit_at_end and not not_at_end):
            for record in consumer.consume(CONSUME_BATCH_MAX, POLL_TIMEOUT_S):
                error = record.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        refusal = refused(label, f"reading {topic}", error)
                        raise refusal or InfraError(f"reading {topic}: {error}")
                    not_at_end.discard(record.partition())
                    continue
                value = record.value()
                if value is None:
                    continue
                event = decode_event(value)
                if tenant is None or event.tenant_id == tenant:
                    yield event, record.partition() or 0, record.offset() or 0
    finally:
        consumer.close()


def print_events(
    settings: Settings,
    output: TextIO,
    *,
    tenant: str | None,
    from_beginning: bool,
    stop: threading.Event,
    exit_at_end: bool = False,
    events_max: int | None = None,
    on_line: Callable[[], None] | None = None,
) -> int:
    """Write JSON lines to ``output``; returns how many events were printed."""
    printed = 0
    for event, partition, offset in tail_events(
        settings,
        tenant=tenant,
        from_beginning=from_beginning,
        stop=stop,
        exit_at_end=exit_at_end,
    ):
        output.write(event_to_json(event, partition=partition, offset=offset) + "\n")
        output.flush()
        printed += 1
        if on_line is not None:
            on_line()
        if events_max is not None and printed >= events_max:
            break
    return printed
