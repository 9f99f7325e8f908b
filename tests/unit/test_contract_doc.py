"""docs/contract.md recomputed: its worked examples, from the page's own definitions.

The page is written for a verifier that never reads the code. This test is such a verifier for
the page's examples: it parses the fenced blocks (```` ```hex <title> ````, ```` ```text <title>
````, ```` ```json <title> ````), decodes the hex with fastavro against the ``.avsc`` files (named
types inlined here, not by ``schemas.avro_schemas``), and recomputes the schema fingerprints, the
hash chain and the command fingerprint from the definitions the page states, implemented again
below (CRC-64-AVRO, tagged encoding). Only then does it compare with the project's functions, so
a change of the code that the page does not follow fails here, naming the block.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import struct
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader
from fastavro.schema import fingerprint as fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

import ledger
from ledger.fingerprints import _encode_value as encode_field_value
from processors import dead_letters
from processors.partition_ledger import OUTCOME_TIMES_HEADER, WIRE_FORMAT, outcome_times
from schemas import codec
from schemas.avro_schemas import CURRENT_VERSION, TOP_LEVEL_RECORDS
from schemas.keys import murmur2, partition_for
from schemas.model import COMMAND_TYPES, Command, RejectReason

REPO_ROOT = Path(__file__).resolve().parents[2]
DOC = REPO_ROOT / "docs" / "contract.md"
SCHEMA_DIRECTORY = REPO_ROOT / "schemas"
VECTORS = Path(__file__).parent / "vectors" / "schema_fingerprints.json"
NAMESPACE = "streamledger.v1"
HEADER_BYTES = 10  # marker + fingerprint
HASH_BYTES = 32
MARKER = bytes.fromhex("c301")
GENESIS_HASH = bytes(HASH_BYTES)
US_PER_MS = 1_000
RETENTION_US = 30 * 86_400 * 1_000_000  # the documented default
NULL_TIME = -(2**63)
EXAMPLE_TRANSFER_INDEX = 2  # the third line of the example log

FENCE = re.compile(r"^```(\w+) ([\w-]+)\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)


# --------------------------------------------------------------------------- reading the page


@cache
def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


@cache
def blocks() -> dict[str, str]:
    found: dict[str, str] = {}
    for _language, title, body in FENCE.findall(doc_text()):
        assert title not in found, f"two blocks titled {title!r} in {DOC.name}"
        found[title] = body
    return found


def block(title: str) -> str:
    assert title in blocks(), f"{DOC.name} has no fenced block titled {title!r}"
    return blocks()[title]


def hex_block(title: str) -> bytes:
    """A ```` ```hex ```` block's bytes: each line's hex before its ``#`` comment."""
    text = "".join(line.split("#", 1)[0] for line in block(title).splitlines())
    return bytes.fromhex("".join(text.split()))


def arrow_lines(title: str) -> list[tuple[str, str]]:
    """``left -> right`` lines of a text block (``#`` lines are comments)."""
    rows = []
    for line in block(title).splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            left, right = line.split("->")
            rows.append((left.strip(), right.strip()))
    return rows


def section(heading: str) -> str:
    """The text under a ``#``-heading up to the next heading of the same or a higher level."""
    level = len(heading) - len(heading.lstrip("#"))
    start = doc_text().index(heading + "\n")
    rest = doc_text()[start + len(heading) + 1 :]
    ending = re.search(rf"^#{{1,{level}}} ", rest, re.MULTILINE)
    return rest if ending is None else rest[: ending.start()]


@cache
def example_log() -> list[dict[str, Any]]:
    return [json.loads(line) for line in block("example-log").splitlines() if line.strip()]


def example_command(index: int) -> Command:
    """A command of the example log as the ledger's model value (JSON-lines format)."""
    fields = dict(example_log()[index]["command"])
    command_type = {command.__name__: command for command in COMMAND_TYPES}[fields.pop("type")]
    fields["metadata"] = tuple(sorted(fields.get("metadata", {}).items()))
    return command_type(**fields)


# --------------------------------------------------------------------------- an outsider's tools


def inline_named_types(
    name: str, *, keep_logical_types: bool, directory: Path = SCHEMA_DIRECTORY
) -> dict[str, Any]:
    """The schema of a top-level record from the .avsc files, named types inlined at first use."""
    files = {path.stem: json.loads(path.read_text()) for path in directory.glob("*.avsc")}
    defined: set[str] = set()

    def inline(node: Any) -> Any:
        if isinstance(node, str) and node.startswith(NAMESPACE + "."):
            short = node.removeprefix(NAMESPACE + ".")
            if short in defined:
                return node
            defined.add(short)
            return inline(files[short])
        if isinstance(node, list):
            return [inline(item) for item in node]
        if isinstance(node, dict):
            if node.get("type") in ("record", "enum", "fixed"):
                defined.add(node["name"])
            nested = ("type", "fields", "items", "values")
            return {
                key: inline(value) if key in nested else value
                for key, value in node.items()
                if keep_logical_types or key != "logicalType"
            }
        return node

    return dict(inline(files[name]))


def crc64_avro(data: bytes) -> int:
    """CRC-64-AVRO as the Avro specification writes it (the value of Java's ``long``)."""
    empty = 0xC15D213AA4D7A795
    table = []
    for index in range(256):
        value = index
        for _ in range(8):
            value = (value >> 1) ^ (empty & -(value & 1))
        table.append(value)
    fingerprint = empty
    for byte in data:
        fingerprint = (fingerprint >> 8) ^ table[(fingerprint ^ byte) & 0xFF]
    return fingerprint


def avro_decode(name: str, data: bytes) -> Any:
    """Decode single-object bytes whose header names ``name``'s current schema."""
    assert data[:2] == MARKER, f"{name}: no c3 01 marker"
    assert data[2:HEADER_BYTES] == documented_fingerprints()[name][0], f"{name}: fingerprint"
    schema = parse_schema(inline_named_types(name, keep_logical_types=False))
    stream = io.BytesIO(data[HEADER_BYTES:])
    value = schemaless_reader(stream, schema, None, return_record_name=True)
    assert stream.read() == b"", f"{name}: bytes left after the record"
    return value


def tagged_encoding(value: object) -> bytes:
    """The page's tagged encoding of a fingerprinted value."""
    if isinstance(value, str):
        return b"S" + value.encode("utf-8", "surrogatepass")
    if value is None:
        return b"N"
    if isinstance(value, bool):
        return b"T" if value else b"F"
    if isinstance(value, int):
        return b"I" + str(value).encode("ascii")
    assert isinstance(value, list | tuple), f"no tagged encoding for {value!r}"
    items = [tagged_encoding(item) for item in value]
    return b"L" + b"".join(struct.pack(">I", len(item)) + item for item in items)


def as_tuples(value: Any) -> Any:
    """JSON lists as the tuples the ledger's model holds."""
    return tuple(as_tuples(item) for item in value) if isinstance(value, list) else value


@cache
def documented_fingerprints() -> dict[str, tuple[bytes, int, int]]:
    """record -> (header bytes, Java long as unsigned hex value, Java long signed)."""
    rows = {}
    for line in block("schema-fingerprints").splitlines():
        if line.strip() and not line.startswith("#"):
            name, header, java_hex, java_signed = line.split()
            rows[name] = (bytes.fromhex(header), int(java_hex, 16), int(java_signed))
    return rows


# --------------------------------------------------------------------------- the page's shape


def test_every_example_block_is_there() -> None:
    expected = {
        "schema-fingerprints",
        "command-record",
        "example-log",
        "event-record",
        "event-hash-input",
        "event-hash",
        "event-record-v1-3",
        "outcome-times-header",
        "tagged-encoding-examples",
        "fingerprint-fields",
        "fingerprint-input",
        "fingerprint",
        "outcome-record",
    }
    assert expected <= set(blocks())


def test_sections_for_routing_time_and_replies_exist() -> None:
    for heading in ("## Routing", "## Time", "## Replies (`ledger.replies`)"):
        assert heading + "\n" in doc_text(), heading


# --------------------------------------------------------------------------- schema fingerprints


def schema_fingerprint_rows() -> str:
    """The ``schema-fingerprints`` rows the current .avsc files give (shown when they differ)."""
    lines = []
    for name in TOP_LEVEL_RECORDS:
        schema = inline_named_types(name, keep_logical_types=True)
        java_long = crc64_avro(to_parsing_canonical_form(schema).encode())
        signed = java_long - (1 << 64 if java_long >> 63 else 0)
        header = java_long.to_bytes(8, "little").hex()
        lines.append(f"{name:<17} {header:<28} {java_long:016x}{'':<15} {signed}")
    return "\n".join(lines)


def test_schema_fingerprint_table_is_the_crc64_of_the_canonical_form() -> None:
    rows = documented_fingerprints()
    assert set(rows) == set(TOP_LEVEL_RECORDS), "one row per top-level record"
    vectors = json.loads(VECTORS.read_text())
    for name, (header, java_long, java_signed) in rows.items():
        canonical = to_parsing_canonical_form(
            inline_named_types(name, keep_logical_types=True)
        ).encode()
        assert crc64_avro(canonical) == java_long, (
            f"{name}: the schema changed; the table should read:\n{schema_fingerprint_rows()}"
        )
        assert java_long - (1 << 64 if java_long >> 63 else 0) == java_signed, name
        assert java_long.to_bytes(8, "little") == header, f"{name}: header = the long reversed"
        assert fastavro_fingerprint(canonical.decode(), "CRC-64-AVRO") == header.hex(), name
        assert vectors[f"{CURRENT_VERSION}/{name}"] == header.hex(), f"{name}: the vectors file"
        assert codec.current_fingerprints()[name] == header, f"{name}: the codec"


# --------------------------------------------------------------------------- worked example 1


def test_command_record_decodes_to_the_logged_command() -> None:
    data = hex_block("command-record")
    branch, record = avro_decode("CommandEnvelope", data)["command"]
    logged = dict(example_log()[EXAMPLE_TRANSFER_INDEX]["command"])
    assert branch == f"{NAMESPACE}.{logged.pop('type')}"
    defaults: dict[str, Any] = {
        "pending": False,
        "pending_timeout_s": None,
        "reverses": None,
        "metadata": {},
    }
    assert record == defaults | logged
    command = example_command(EXAMPLE_TRANSFER_INDEX)
    assert codec.encode_command(command) == data, "command-record: not the codec's bytes"
    assert codec.decode_command(data) == command


# --------------------------------------------------------------------------- worked example 2


def test_event_record_hash_is_sha256_of_prev_hash_and_canonical_bytes() -> None:
    data = hex_block("event-record")
    branch, event = avro_decode("EventEnvelope", data)["event"]
    assert branch == f"{NAMESPACE}.TransferPosted"
    logged = example_log()[EXAMPLE_TRANSFER_INDEX]
    assert event["effective_at_us"] == logged["record_timestamp_ms"] * US_PER_MS
    assert event["effective_at_us"] != logged["command"]["submitted_at_us"]
    assert event["event_id"] == f"{event['tenant_id']}:{event['sequence']}"
    debit, credit = event["balances"]  # the debit account first, then the credit account
    assert (debit["account_id"], credit["account_id"]) == (
        event["debit_account_id"],
        event["credit_account_id"],
    )
    assert (debit["debits_posted"], credit["credits_posted"]) == (event["amount"],) * 2
    hash_input = hex_block("event-hash-input")
    assert hash_input == event["prev_hash"] + data[HEADER_BYTES:-HASH_BYTES]
    digest = hashlib.sha256(hash_input).digest()
    assert digest == hex_block("event-hash") == data[-HASH_BYTES:] == event["hash"]


def test_a_v1_3_event_record_still_decodes_and_verifies() -> None:
    """The page's v1.3 record of event 3: no metadata bytes, v1.3's fingerprint; its hash is
    SHA-256(prev_hash || the bytes as written), and the v1.4 reader decodes it, metadata empty."""
    data = hex_block("event-record-v1-3")
    schema = inline_named_types(
        "EventEnvelope", keep_logical_types=True, directory=SCHEMA_DIRECTORY / "history" / "v1.3"
    )
    java_long = crc64_avro(to_parsing_canonical_form(schema).encode())
    assert data[2:HEADER_BYTES] == java_long.to_bytes(8, "little"), "the v1.3 fingerprint"
    stream = io.BytesIO(data[HEADER_BYTES:])
    writer = parse_schema(
        inline_named_types(
            "EventEnvelope",
            keep_logical_types=False,
            directory=SCHEMA_DIRECTORY / "history" / "v1.3",
        )
    )
    branch, event = schemaless_reader(stream, writer, None, return_record_name=True)["event"]
    assert stream.read() == b""
    assert branch == f"{NAMESPACE}.TransferPosted" and "metadata" not in event
    digest = hashlib.sha256(event["prev_hash"] + data[HEADER_BYTES:-HASH_BYTES]).digest()
    assert digest == data[-HASH_BYTES:] == event["hash"]
    decoded = codec.decode_event(data)
    assert decoded.metadata == () and decoded.hash == digest
    assert codec.record_canonical_bytes(data) == data[HEADER_BYTES:-HASH_BYTES]
    current = avro_decode("EventEnvelope", hex_block("event-record"))["event"][1]
    assert current["metadata"] == example_log()[EXAMPLE_TRANSFER_INDEX]["command"]["metadata"]
    assert {key: event[key] for key in ("transfer_id", "amount", "balances")} == {
        key: current[key] for key in ("transfer_id", "amount", "balances")
    }


def replay_example_log() -> list[ledger.Decision]:
    state = ledger.LedgerState(
        wire_format=WIRE_FORMAT, idempotency_retention_s=ledger.DEFAULT_IDEMPOTENCY_RETENTION_S
    )
    assert state.idempotency_retention_us == RETENTION_US, "the documented default retention"
    return [
        ledger.step(
            state,
            example_command(index),
            line["record_timestamp_ms"] * US_PER_MS,
            line.get("actor", ""),  # since v1.7: the verified signing key id, "" unsigned
        )
        for index, line in enumerate(example_log())
    ]


def test_the_example_log_gives_the_documented_bytes() -> None:
    decisions = replay_example_log()
    records = [encoded for decision in decisions for encoded in decision.encoded_events]
    assert len(records) == len(example_log())
    prev_hash = GENESIS_HASH  # the chain recomputed from the bytes alone
    for record in records:
        expected = hashlib.sha256(prev_hash + record[HEADER_BYTES:-HASH_BYTES]).digest()
        assert record[-HASH_BYTES:] == expected
        prev_hash = expected
    assert records[-1] == hex_block("event-record"), "event-record: not the ledger's bytes"
    assert hex_block("event-hash-input")[:HASH_BYTES] == records[-2][-HASH_BYTES:]
    stored = decisions[-1].stored_outcome
    assert stored is not None
    assert codec.encode_outcome(stored) == hex_block("outcome-record"), "outcome-record"
    assert outcome_times(stored) == hex_block("outcome-times-header"), "outcome-times-header"


def test_the_example_partition() -> None:
    found = re.search(r"`acme` → murmur2 `(-?\d+)` → partition `(\d+)` of (\d+)", doc_text())
    assert found is not None
    hashed, partition, partitions = (int(group) for group in found.groups())
    assert murmur2(b"acme") == hashed
    assert (hashed & 0x7FFFFFFF) % partitions == partition == partition_for(b"acme", partitions)


# --------------------------------------------------------------------------- fingerprints


def test_tagged_encoding_examples() -> None:
    for written, encoded in arrow_lines("tagged-encoding-examples"):
        value = as_tuples(json.loads(written))
        expected = bytes.fromhex("".join(encoded.split()))
        assert tagged_encoding(value) == expected, written
        assert encode_field_value(value) == expected, f"{written}: the ledger's encoding"


def test_fingerprinted_fields_table_is_the_ledgers() -> None:
    text = section("### Command fingerprints")
    for command_type in COMMAND_TYPES:
        row = re.search(rf"^\| `{command_type.__name__}` \| (.*) \|$", text, re.MULTILINE)
        assert row is not None, command_type.__name__
        names = tuple(re.findall(r"`(\w+)`", row.group(1)))
        assert names == ledger.FINGERPRINT_FIELDS[command_type], command_type.__name__


def test_fingerprint_example_from_the_tagged_encoding() -> None:
    command = example_command(EXAMPLE_TRANSFER_INDEX)
    rows = arrow_lines("fingerprint-fields")
    names = tuple(left.split()[0] for left, _ in rows)
    assert names == ledger.FINGERPRINT_FIELDS[type(command)]
    digests = []
    for (left, right), name in zip(rows, names, strict=True):
        encoding = bytes.fromhex("".join(left.split()[1:]))
        assert encoding == tagged_encoding(getattr(command, name)), name
        digest = hashlib.sha256(encoding).digest()[:8]
        assert digest == bytes.fromhex(right), name
        digests.append(digest)
    joined = b"".join(digests)
    fingerprint_input = hex_block("fingerprint-input")
    assert fingerprint_input == type(command).__name__.encode("ascii") + b"\x00" + joined
    fingerprint = hashlib.sha256(fingerprint_input).digest()
    assert fingerprint == hex_block("fingerprint")
    assert ledger.command_fingerprint(command) == (fingerprint, joined), "the ledger's function"
    assert ledger.reference_command_fingerprint(command) == (fingerprint, joined)


# --------------------------------------------------------------------------- worked example 4


def test_outcome_record_and_its_times_header() -> None:
    outcome = avro_decode("Outcome", hex_block("outcome-record"))
    fingerprint_input = hex_block("fingerprint-input")
    assert outcome["fingerprint"] == hex_block("fingerprint")
    assert outcome["field_fingerprints"] == fingerprint_input[-len(outcome["field_fingerprints"]) :]
    assert (outcome["status"], outcome["reason"], outcome["detail"]) == ("ACCEPTED", None, "")
    assert outcome["event_sequences"] == [3]
    decided_at_us = example_log()[EXAMPLE_TRANSFER_INDEX]["record_timestamp_ms"] * US_PER_MS
    assert outcome["decided_at_us"] == decided_at_us
    assert outcome["expires_at_us"] == decided_at_us + RETENTION_US
    header = hex_block("outcome-times-header")
    assert header[0] == 0, "starts with NUL, as the page warns"
    decided, expires = struct.unpack(">qq", header)
    assert (decided, expires) == (outcome["decided_at_us"], outcome["expires_at_us"])
    assert NULL_TIME.to_bytes(8, "big", signed=True).hex(" ") in doc_text()
    assert f"`{OUTCOME_TIMES_HEADER}`" in doc_text()


# --------------------------------------------------------------------------- rules and DLQ


def test_reject_reasons_are_listed_in_precedence_order() -> None:
    text = section("### Rejection reasons, in precedence order")
    listed = re.findall(r"^\d+\. `([A-Z_]+)`", text, re.MULTILINE)
    symbols = json.loads((SCHEMA_DIRECTORY / "RejectReason.avsc").read_text())["symbols"]
    assert listed == symbols == [reason.name for reason in RejectReason]


@pytest.mark.parametrize(
    "name",
    [
        dead_letters.HEADER_ERROR_KIND,
        dead_letters.HEADER_ERROR_MESSAGE,
        dead_letters.HEADER_SOURCE_TOPIC,
        dead_letters.HEADER_SOURCE_PARTITION,
        dead_letters.HEADER_SOURCE_OFFSET,
        dead_letters.HEADER_SOURCE_TIMESTAMP_MS,
        dead_letters.ORIGINAL_HEADER_PREFIX + "<name>",
        dead_letters.KIND_MISSING_VALUE,
        *(error.kind for error in codec.DecodeError.__subclasses__()),
    ],
)
def test_dead_letter_headers_and_kinds_are_documented(name: str) -> None:
    assert f"| `{name}` |" in section("## Dead letters (`ledger.commands.dlq`)")


def test_dead_letter_message_bound_is_the_documented_one() -> None:
    bound = f"at most {dead_letters.ERROR_MESSAGE_CHARS_MAX:,} characters"
    assert bound in section("## Dead letters (`ledger.commands.dlq`)")
