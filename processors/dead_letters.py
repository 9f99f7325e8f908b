"""What goes to ``ledger.commands.dlq`` for a record the processor cannot read.

A dead letter keeps the original key, value and timestamp byte for byte, so it can be replayed
once the cause is fixed, and adds headers saying why and where it came from. The original
headers travel with it under ``dlq.original.<name>`` so they never collide with ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

HEADER_ERROR_KIND = "dlq.error.kind"
HEADER_ERROR_MESSAGE = "dlq.error.message"
HEADER_SOURCE_TOPIC = "dlq.source.topic"
HEADER_SOURCE_PARTITION = "dlq.source.partition"
HEADER_SOURCE_OFFSET = "dlq.source.offset"
HEADER_SOURCE_TIMESTAMP_MS = "dlq.source.timestamp_ms"
ORIGINAL_HEADER_PREFIX = "dlq.original."
ERROR_MESSAGE_CHARS_MAX = 1_000  # a header is not a log file

# The error kind is the codec's ``DecodeError.kind`` (wrong_marker, truncated,
# unknown_fingerprint, unexpected_record, body_invalid), or one of these:
KIND_MISSING_VALUE = "missing_value"  # a null value on the commands topic
# A decodable command that is not its partition's to decide (decision 0026): deciding it would
# fork its tenant's chain on another partition, so it is never decided and stores nothing.
KIND_KEY_MISMATCH = "key_mismatch"  # the record key is not the body's tenant_id (UTF-8)
KIND_WRONG_PARTITION = "wrong_partition"  # murmur2(tenant_id) % partitions names another one
HEADER_EXPECTED_PARTITION = "dlq.expected.partition"  # with both routing kinds

Headers = list[tuple[str, str | bytes | None]]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record for the DLQ: the original bytes plus the headers that explain it."""

    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    headers: Headers


def dead_letter(
    *,
    kind: str,
    message: str,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int,
    key: bytes | None,
    value: bytes | None,
    original_headers: Sequence[tuple[str, bytes | str | None]] | None,
    expected_partition: int | None = None,
) -> DeadLetter:
    """Build the DLQ record for one command record the processor does not decide."""
    headers: Headers = [
        (HEADER_ERROR_KIND, kind.encode()),
        (HEADER_ERROR_MESSAGE, _one_line(message)[:ERROR_MESSAGE_CHARS_MAX].encode()),
        (HEADER_SOURCE_TOPIC, topic.encode()),
        (HEADER_SOURCE_PARTITION, str(partition).encode()),
        (HEADER_SOURCE_OFFSET, str(offset).encode()),
        (HEADER_SOURCE_TIMESTAMP_MS, str(timestamp_ms).encode()),
    ]
    if expected_partition is not None:
        headers.append((HEADER_EXPECTED_PARTITION, str(expected_partition).encode()))
    for name, header_value in original_headers or ():
        headers.append((ORIGINAL_HEADER_PREFIX + name, _as_bytes(header_value)))
    return DeadLetter(key=key, value=value, timestamp_ms=timestamp_ms, headers=headers)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _as_bytes(value: bytes | str | None) -> bytes:
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode()
    return value
