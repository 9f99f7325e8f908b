"""docs/contract.md, "Notifications": worked example 5 recomputed (decision 0058/0059).

The example log plus the page's ``monitor-example-log`` line, replayed through the ledger, give
exactly the ``notification-record`` bytes; an outsider's fastavro reads them with the .avsc
files; the notification's ``event_hash`` is the hash of the ``MonitorCreated`` event, and the
record key is the documented one."""

from __future__ import annotations

import hashlib
import io
import json

from fastavro import parse_schema, schemaless_reader
from fastavro.schema import to_parsing_canonical_form

import ledger
from processors.partition_ledger import WIRE_FORMAT
from schemas import codec
from schemas.keys import notification_key
from schemas.model import COMMAND_TYPES, MonitorCreated, MonitorTriggered
from tests.unit.test_contract_doc import (
    HASH_BYTES,
    HEADER_BYTES,
    US_PER_MS,
    block,
    crc64_avro,
    example_command,
    example_log,
    hex_block,
    inline_named_types,
)


def _replayed() -> ledger.Decision:
    state = ledger.LedgerState(wire_format=WIRE_FORMAT)
    for index, line in enumerate(example_log()):
        ledger.step(
            state,
            example_command(index),
            line["record_timestamp_ms"] * US_PER_MS,
            line.get("actor", ""),
        )
    (line,) = [json.loads(text) for text in block("monitor-example-log").splitlines() if text]
    fields = dict(line["command"])
    command_type = {command.__name__: command for command in COMMAND_TYPES}[fields.pop("type")]
    fields["metadata"] = tuple(sorted(fields.get("metadata", {}).items()))
    return ledger.step(
        state,
        command_type(**fields),
        line["record_timestamp_ms"] * US_PER_MS,
        line.get("actor", ""),
    )


def test_the_notification_record_is_the_ledgers() -> None:
    decision = _replayed()
    (event,) = decision.events
    assert isinstance(event, MonitorCreated) and event.holds
    (notification,) = decision.notifications
    assert isinstance(notification, MonitorTriggered)
    data = hex_block("notification-record")
    assert codec.encode_notification(notification) == data, "notification-record"
    assert notification_key(notification) == b"acme/00000000000000000004/low-alice"
    # the event_hash is the chain link: SHA-256(prev_hash || the event's canonical bytes)
    (encoded,) = decision.encoded_events
    link = hashlib.sha256(event.prev_hash + encoded[HEADER_BYTES:-HASH_BYTES]).digest()
    assert notification.event_hash == link == encoded[-HASH_BYTES:]


def test_an_outsider_decodes_the_notification_record() -> None:
    data = hex_block("notification-record")
    schema = inline_named_types("NotificationEnvelope", keep_logical_types=False)
    canonical = to_parsing_canonical_form(schema).encode()
    assert crc64_avro(canonical).to_bytes(8, "little") == data[2:HEADER_BYTES]
    body = schemaless_reader(
        io.BytesIO(data[HEADER_BYTES:]),
        parse_schema(schema),
        None,
        return_record_name=True,
        return_record_name_override=True,
    )
    name, fields = body["notification"]  # type: ignore[index,call-overload]
    assert name == "streamledger.v1.MonitorTriggered"
    assert fields["notification_id"] == "acme:4:low-alice"
    assert (fields["field"], fields["operator"], fields["threshold"], fields["value"]) == (
        "available",
        "<",
        5000,
        2500,
    )
    assert fields["metadata"] == {"owner": "treasury"}
