"""Codec: round-trips, bytes equal to fastavro writing the whole envelope, fingerprints, errors."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import codec
from schemas.avro_schemas import crc64_avro, fingerprint_bytes, load_all_versions
from schemas.model import (
    GENESIS_HASH,
    AccountBalance,
    Transfer,
    TransferPosted,
)
from tests.unit.contract_strategies import commands, events, notifications, outcomes, states

VECTORS = Path(__file__).parent / "vectors" / "schema_fingerprints.json"
EXAMPLES = settings(max_examples=200, deadline=None)

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
EVENT = TransferPosted(
    tenant_id="acme",
    sequence=3,
    event_id="acme:3",
    idempotency_key="order-17",
    effective_at_us=1_700_000_000_000_001,
    balances=(AccountBalance(account_id="cash", currency="USD", debits_posted=1250),),
    prev_hash=GENESIS_HASH,
    hash=b"\x01" * 32,
    transfer_id="t-17",
    debit_account_id="cash",
    credit_account_id="sales",
    amount=1250,
    currency="USD",
    reverses=None,
)


@EXAMPLES
@given(commands)
def test_commands_round_trip(command: Any) -> None:
    assert codec.decode_command(codec.encode_command(command)) == command


@EXAMPLES
@given(events)
def test_events_round_trip(event: Any) -> None:
    assert codec.decode_event(codec.encode_event(event)) == event


@EXAMPLES
@given(outcomes)
def test_outcomes_round_trip(outcome: Any) -> None:
    assert codec.decode_outcome(codec.encode_outcome(outcome)) == outcome


@EXAMPLES
@given(states)
def test_states_round_trip(state: Any) -> None:
    assert codec.decode_state(codec.encode_state(state)) == state


@EXAMPLES
@given(notifications)
def test_notifications_round_trip(notification: Any) -> None:
    assert codec.decode_notification(codec.encode_notification(notification)) == notification


def _plain_fastavro_bytes(family: codec.RecordFamily, value: Any) -> bytes:
    """What fastavro writes for the whole top-level record, with the single-object header."""
    branch = family.by_type[type(value)]
    record = codec.to_avro(value, branch.field_names)
    if family.envelope_field is not None:
        record = {family.envelope_field: (branch.full_name, record)}
    buffer = io.BytesIO()
    schemaless_writer(buffer, parse_schema(dict(family.current.expanded)), record)
    return codec.MARKER + family.current.fingerprint + buffer.getvalue()


@EXAMPLES
@given(st.data())
def test_bytes_equal_fastavro_writing_the_whole_envelope(data: st.DataObject) -> None:
    family, strategy = data.draw(
        st.sampled_from(
            [
                (codec.COMMANDS, commands),
                (codec.EVENTS, events),
                (codec.OUTCOMES, outcomes),
                (codec.STATES, states),
                (codec.NOTIFICATIONS, notifications),
            ]
        )
    )
    value = data.draw(strategy)
    encoded = codec._encode(family, value)
    assert encoded == _plain_fastavro_bytes(family, value)
    # and any Avro reader with the .avsc file reads it back
    body = io.BytesIO(encoded[codec.HEADER_BYTES :])
    schemaless_reader(body, parse_schema(dict(family.current.expanded)), None)


def test_crc64_avro_matches_the_avro_specification_vectors() -> None:
    # share/test/data/schema-tests.txt of Apache Avro (signed 64-bit values)
    assert crc64_avro(b'"null"') == 7195948357588979594
    assert crc64_avro(b'"boolean"') == -6970731678124411036 % 2**64
    assert crc64_avro(b'"int"') == 8247732601305521295
    assert crc64_avro(b'{"name":"foo","type":"fixed","size":15}') == 1756455273707447556
    assert fingerprint_bytes('"null"') == (7195948357588979594).to_bytes(8, "little")


def test_fingerprints_are_pinned() -> None:
    pinned = json.loads(VECTORS.read_text())
    found = {f"{v}/{n}": fp.hex() for (v, n), fp in codec.all_fingerprints().items()}
    assert found == pinned, "a schema changed: add a history version and update the vectors"


def test_fingerprint_sits_little_endian_after_the_marker() -> None:
    encoded = codec.encode_command(TRANSFER)
    assert encoded[:2] == b"\xc3\x01"
    assert encoded[2:10] == codec.current_fingerprints()["CommandEnvelope"]


def test_encoding_is_deterministic_for_metadata_order() -> None:
    first = Transfer(**{**_fields(TRANSFER), "metadata": (("a", "1"), ("b", "2"))})
    assert codec.encode_command(first) == codec.encode_command(first)


def _fields(value: Any) -> dict[str, Any]:
    return {name: getattr(value, name) for name in value.__dataclass_fields__}


@pytest.mark.parametrize(
    ("data", "error", "says"),
    [
        (b"", codec.TruncatedError, "marker"),
        (b"\xc3", codec.TruncatedError, "marker"),
        (b"{}", codec.WrongMarkerError, "7b7d"),
        (b"\xc3\x01\x00\x01", codec.TruncatedError, "header"),
        (b"\xc3\x01" + b"\xff" * 8 + b"\x02", codec.UnknownFingerprintError, "ffffffffffffffff"),
    ],
)
def test_header_errors_say_which(data: bytes, error: type[Exception], says: str) -> None:
    with pytest.raises(error, match=says):
        codec.decode_command(data)


def test_truncated_body() -> None:
    encoded = codec.encode_command(TRANSFER)
    for length in range(codec.HEADER_BYTES, len(encoded)):
        with pytest.raises(codec.TruncatedError):
            codec.decode_command(encoded[:length])


def test_trailing_bytes_are_invalid() -> None:
    with pytest.raises(codec.BodyInvalidError, match="left after"):
        codec.decode_command(codec.encode_command(TRANSFER) + b"\x00")


def test_bad_union_index_is_invalid() -> None:
    encoded = bytearray(codec.encode_command(TRANSFER))
    encoded[codec.HEADER_BYTES] = len(codec.COMMANDS.branches) << 1  # one past the last branch
    with pytest.raises(codec.BodyInvalidError, match="union branch"):
        codec.decode_command(bytes(encoded))


def test_invalid_utf8_is_invalid() -> None:
    encoded = bytearray(codec.encode_command(TRANSFER))
    encoded[codec.HEADER_BYTES + 2] = 0xFF  # first byte of tenant_id "acme"
    with pytest.raises(codec.BodyInvalidError):
        codec.decode_command(bytes(encoded))


def test_another_record_is_unexpected() -> None:
    with pytest.raises(codec.UnexpectedRecordError, match="EventEnvelope"):
        codec.decode_command(codec.encode_event(EVENT))


def test_every_decode_error_is_a_decode_error_with_a_kind() -> None:
    kinds = {
        error.kind
        for error in (
            codec.WrongMarkerError,
            codec.TruncatedError,
            codec.UnknownFingerprintError,
            codec.UnexpectedRecordError,
            codec.BodyInvalidError,
        )
        if issubclass(error, codec.DecodeError)
    }
    assert len(kinds) == 5


def test_encode_errors_are_typed() -> None:
    bad_hash = TransferPosted(**{**_fields(EVENT), "hash": b"short"})
    with pytest.raises(codec.EncodeError):
        codec.encode_event(bad_hash)
    with pytest.raises(codec.EncodeError, match="not a CommandEnvelope"):
        codec.encode_command(EVENT)  # type: ignore[arg-type]


@EXAMPLES
@given(events, st.binary(min_size=32, max_size=32))
def test_canonical_bytes_ignore_the_hash_only(event: Any, other_hash: bytes) -> None:
    canonical = codec.event_canonical_bytes(event)
    assert canonical == codec.event_canonical_bytes(
        type(event)(**{**_fields(event), "hash": other_hash})
    )
    moved = type(event)(**{**_fields(event), "sequence": event.sequence % 1000 + 1001})
    assert codec.event_canonical_bytes(moved) != canonical


@EXAMPLES
@given(events)
def test_sealing_encodes_once_with_the_hash_last(event: Any) -> None:
    digest, encoded = codec.seal_event(event)
    assert digest == codec.event_chain_hash(event)
    assert encoded == codec.encode_event(type(event)(**{**_fields(event), "hash": digest}))
    assert encoded[codec.HEADER_BYTES : -32] == codec.event_canonical_bytes(event)
    assert encoded[-32:] == digest


def test_canonical_bytes_vector() -> None:
    """Pins the canonical form: the ledger core's hash chain depends on these exact bytes."""
    canonical = codec.event_canonical_bytes(EVENT)
    assert (
        canonical.hex()
        == (
            "02"  # union index 1 (TransferPosted)
            "0861636d65"  # tenant_id "acme"
            "06"  # sequence 3
            "0c61636d653a33"  # event_id "acme:3"
            "02106f726465722d3137"  # idempotency_key: union branch 1, "order-17"
            "8280f28183898506"  # effective_at_us (zig-zag varint)
            "02"
            "0863617368"
            "06555344"
            "c413"
            "00"
            "00"
            "00"
            "00"  # one balance, then block end
            + "00"
            * 32  # prev_hash
            + "08742d3137"
            "0863617368"
            "0a73616c6573"  # transfer, debit, credit ids
            "c413"
            "06555344"
            "00"  # amount 1250, "USD", reverses null
            "00"  # metadata (since v1.4): an empty map
            "00"  # actor (since v1.7): "" (an unsigned command)
        )
    )
    assert (
        codec.event_chain_hash(EVENT)
        == __import__("hashlib").sha256(GENESIS_HASH + canonical).digest()
    )


def test_canonical_bytes_vector_with_metadata() -> None:
    """Since v1.4 the causing command's metadata is the last field before ``hash``: a map
    written sorted by key, in one block, covered by the hash."""
    tagged = TransferPosted(
        **{**_fields(EVENT), "metadata": (("channel", "web"), ("order", "A-17"))}
    )
    metadata = (
        "04"  # a block of 2 entries
        "0e6368616e6e656c"  # "channel"
        "06776562"  # "web"
        "0a6f72646572"  # "order"
        "08412d3137"  # "A-17"
        "00"  # end of the map
    )
    canonical = codec.event_canonical_bytes(tagged)
    assert canonical.hex() == codec.event_canonical_bytes(EVENT)[:-2].hex() + metadata + "00"
    encoded = codec.encode_event(tagged)
    assert codec.record_canonical_bytes(encoded) == canonical
    assert codec.decode_event(encoded) == tagged


def test_canonical_bytes_vector_with_actor() -> None:
    """Since v1.7 who issued the command (``actor``) is the last field before ``hash``, after
    ``metadata``: a string, covered by the hash (decision 0093)."""
    signed = TransferPosted(**{**_fields(EVENT), "actor": "payments-gw:v1"})
    actor = "1c" + b"payments-gw:v1".hex()  # length 14, zig-zag 28
    canonical = codec.event_canonical_bytes(signed)
    assert canonical.hex() == codec.event_canonical_bytes(EVENT)[:-1].hex() + actor
    assert codec.event_chain_hash(signed) != codec.event_chain_hash(EVENT)
    encoded = codec.encode_event(signed)
    assert codec.record_canonical_bytes(encoded) == canonical
    assert codec.decode_event(encoded) == signed


def test_history_versions_are_loaded() -> None:
    assert set(load_all_versions()) >= {"v1.0", "v1.1"}
