"""Signed commands (issue 21 §2, decisions 0084-0086): the key registry's records and the HMAC.

A command record on ``ledger.commands`` proves who may act for its tenant with two headers:

- ``streamledger.signature.key_id``: the key id, ASCII, ``PRINCIPAL:vN`` (``KEY_ID_PATTERN``);
- ``streamledger.signature``: 64 lowercase hex digits of
  ``HMAC-SHA256(secret, key_id_utf8 + b"\\x00" + value)`` where ``value`` is the record's exact
  value bytes (the single-object Avro bytes as produced).

The secrets are never on the log; each one derives from the processor's *master secret*
(32 random bytes in a 0600 file of the stack home):

- ``principal_secret = HMAC-SHA256(master, b"streamledger-principal/v1\\x00" + principal)``;
- ``key_secret = HMAC-SHA256(principal_secret, b"streamledger-signing-key/v1\\x00" + tenant
  + b"\\x00" + key_id)``: what an upstream system holds for one tenant;
- ``operator_secret = HMAC-SHA256(master, b"streamledger-operator/v1")``: signs the registry's
  own commands (key id ``operator``).

A key is valid for a command only if the tenant's registry holds it, granted and not revoked at
the command's record time. The registry changes through ``SigningKeyCommand`` records (GRANT,
REVOKE) on the tenant's own command partition, so every command is judged at a known position
of the log. Their state is a ``SigningKeyState`` per key on ``ledger.balances``.

Pure: no I/O, no clock. The records have their own top-level schemas (``schemas/signing/``),
fingerprinted like the ledger's, so ``decode_command`` rejects them as unknown: the processor
recognises them first by their 10-byte header (``is_signing_key_command``).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import io
import re
from dataclasses import dataclass
from typing import Any, Final

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import to_parsing_canonical_form

from schemas.avro_schemas import (
    NAMESPACE,
    SCHEMA_DIRECTORY,
    expand,
    fingerprint_bytes,
    read_named_types,
    without_logical_types,
)
from schemas.codec import HEADER_BYTES, MARKER, BodyInvalidError, TruncatedError
from schemas.keys import KEY_SEPARATOR

SIGNING_SCHEMA_DIRECTORY: Final = SCHEMA_DIRECTORY / "signing"
KEY_ID_HEADER: Final = "streamledger.signature.key_id"
SIGNATURE_HEADER: Final = "streamledger.signature"
SIGNATURE_HEX_LENGTH: Final = 64
KEY_ID_SEPARATOR: Final = b"\x00"
OPERATOR_KEY_ID: Final = "operator"
PRINCIPAL_LABEL: Final = b"streamledger-principal/v1\x00"
SIGNING_KEY_LABEL: Final = b"streamledger-signing-key/v1\x00"
OPERATOR_LABEL: Final = b"streamledger-operator/v1"
MASTER_SECRET_BYTES: Final = 32
# PRINCIPAL:vN, PRINCIPAL a Kafka principal name (streamledger.settings.PRINCIPAL_NAME_PATTERN)
KEY_ID_PATTERN: Final = re.compile(r"([a-z0-9][a-z0-9._-]{0,63}):v([1-9][0-9]{0,8})")
KEY_ID_LENGTH_MAX: Final = 75
IDEMPOTENCY_KEY_LENGTH_MAX: Final = 255
OVERLAP_MS_MAX: Final = 366 * 86_400_000  # a rotation's overlap: at most a year
SIGNING_KEY_STATE_KIND: Final = "signing-key"


class SigningKeyAction(enum.Enum):
    GRANT = "GRANT"
    REVOKE = "REVOKE"


@dataclass(frozen=True, slots=True, kw_only=True)
class SigningKeyCommand:
    """GRANT or REVOKE ``key_id`` for ``tenant_id`` (a revoke keeps the key ``overlap_ms``)."""

    tenant_id: str
    idempotency_key: str
    action: SigningKeyAction
    key_id: str
    overlap_ms: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SigningKeyState:
    """One key of a tenant's registry (``ledger.balances``), kept after its revocation."""

    tenant_id: str
    key_id: str
    granted_at_us: int
    granted_offset: int
    revoked_at_us: int | None = None
    revoked_offset: int | None = None

    def valid_at(self, record_timestamp_us: int) -> bool:
        return self.revoked_at_us is None or record_timestamp_us < self.revoked_at_us


# --------------------------------------------------------------------------- key ids and secrets


def key_id_problem(key_id: str) -> str | None:
    """Why ``key_id`` is not ``PRINCIPAL:vN``, or None."""
    if len(key_id) > KEY_ID_LENGTH_MAX or KEY_ID_PATTERN.fullmatch(key_id) is None:
        return f"{key_id[:80]!r} is not PRINCIPAL:vN (principal a-z 0-9 . _ -, N 1-999999999)"
    return None


def key_id_of(principal: str, version: int) -> str:
    return f"{principal}:v{version}"


def principal_of(key_id: str) -> str:
    """The principal part of a valid key id."""
    return key_id.rpartition(":")[0]


def version_of(key_id: str) -> int:
    """The N of a valid key id ``PRINCIPAL:vN``."""
    return int(key_id.rpartition(":v")[2])


def principal_secret(master: bytes, principal: str) -> bytes:
    """The secret a principal derives all its tenant keys from (given to the HTTP API)."""
    return hmac.digest(master, PRINCIPAL_LABEL + principal.encode(), "sha256")


def key_secret(principal_key: bytes, tenant_id: str, key_id: str) -> bytes:
    """The secret of ``key_id`` for ``tenant_id``, from its principal's secret."""
    message = SIGNING_KEY_LABEL + tenant_id.encode() + KEY_ID_SEPARATOR + key_id.encode()
    return hmac.digest(principal_key, message, "sha256")


def tenant_key_secret(master: bytes, tenant_id: str, key_id: str) -> bytes:
    """The secret of a tenant key, from the master (the processor and ``tenants grant``)."""
    return key_secret(principal_secret(master, principal_of(key_id)), tenant_id, key_id)


def operator_secret(master: bytes) -> bytes:
    return hmac.digest(master, OPERATOR_LABEL, "sha256")


def signature(secret: bytes, key_id: bytes, value: bytes) -> bytes:
    """The 32-byte HMAC-SHA256 of a record value under ``key_id`` (ASCII bytes)."""
    return hmac.digest(secret, key_id + KEY_ID_SEPARATOR + value, "sha256")


def signature_headers(secret: bytes, key_id: str, value: bytes) -> list[tuple[str, bytes]]:
    """The two headers that sign ``value`` with ``key_id``."""
    encoded = key_id.encode()
    return [
        (KEY_ID_HEADER, encoded),
        (SIGNATURE_HEADER, signature(secret, encoded, value).hex().encode()),
    ]


def signing_key_state_key(tenant_id: str, key_id: str) -> bytes:
    """The ``ledger.balances`` key of a ``SigningKeyState``."""
    return f"{tenant_id}{KEY_SEPARATOR}{SIGNING_KEY_STATE_KIND}{KEY_SEPARATOR}{key_id}".encode()


# --------------------------------------------------------------------------- encoding


@dataclass(frozen=True, slots=True)
class _Schema:
    name: str
    expanded: dict[str, Any]
    fingerprint: bytes
    wire: Any

    @property
    def header(self) -> bytes:
        return MARKER + self.fingerprint


def _load(name: str) -> _Schema:
    named = read_named_types(SIGNING_SCHEMA_DIRECTORY)
    expanded = expand(f"{NAMESPACE}.{name}", named)
    return _Schema(
        name=name,
        expanded=expanded,
        fingerprint=fingerprint_bytes(to_parsing_canonical_form(expanded)),
        wire=parse_schema(without_logical_types(expanded)),
    )


COMMAND_SCHEMA: Final = _load("SigningKeyCommand")
STATE_SCHEMA: Final = _load("SigningKeyState")


def _write(schema: _Schema, record: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    buffer.write(schema.header)
    schemaless_writer(buffer, schema.wire, record)
    return buffer.getvalue()


def _read(schema: _Schema, data: bytes) -> dict[str, Any]:
    if len(data) < HEADER_BYTES or bytes(data[:HEADER_BYTES]) != schema.header:
        raise TruncatedError(f"not a {schema.name}: its 10-byte header differs")
    buffer = io.BytesIO(data)
    buffer.seek(HEADER_BYTES)
    try:
        record: dict[str, Any] = schemaless_reader(buffer, schema.wire, None)  # type: ignore[assignment]
    except (EOFError, StopIteration) as exc:
        raise TruncatedError(f"{schema.name}: the body ends early") from exc
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        raise BodyInvalidError(f"{schema.name}: {type(exc).__name__}: {exc}") from exc
    if buffer.tell() != len(data):
        raise BodyInvalidError(f"{schema.name}: {len(data) - buffer.tell()} bytes left over")
    return record


def is_signing_key_command(value: bytes) -> bool:
    """Whether ``value`` starts with the ``SigningKeyCommand`` header (one slice compare)."""
    return value[:HEADER_BYTES] == COMMAND_SCHEMA.header


def is_signing_key_state(value: bytes) -> bool:
    return value[:HEADER_BYTES] == STATE_SCHEMA.header


def encode_signing_key_command(command: SigningKeyCommand) -> bytes:
    return _write(
        COMMAND_SCHEMA,
        {
            "tenant_id": command.tenant_id,
            "idempotency_key": command.idempotency_key,
            "action": command.action.value,
            "key_id": command.key_id,
            "overlap_ms": command.overlap_ms,
        },
    )


def decode_signing_key_command(data: bytes) -> SigningKeyCommand:
    """Raises a ``DecodeError`` subclass."""
    record = _read(COMMAND_SCHEMA, data)
    try:
        return SigningKeyCommand(
            tenant_id=record["tenant_id"],
            idempotency_key=record["idempotency_key"],
            action=SigningKeyAction(record["action"]),
            key_id=record["key_id"],
            overlap_ms=record["overlap_ms"],
        )
    except (ValueError, KeyError) as exc:
        raise BodyInvalidError(f"SigningKeyCommand: {exc}") from exc


def encode_signing_key_state(state: SigningKeyState) -> bytes:
    return _write(
        STATE_SCHEMA,
        {
            "tenant_id": state.tenant_id,
            "key_id": state.key_id,
            "granted_at_us": state.granted_at_us,
            "granted_offset": state.granted_offset,
            "revoked_at_us": state.revoked_at_us,
            "revoked_offset": state.revoked_offset,
        },
    )


def decode_signing_key_state(data: bytes) -> SigningKeyState:
    """Raises a ``DecodeError`` subclass."""
    record = _read(STATE_SCHEMA, data)
    return SigningKeyState(**record)


def signing_key_command_problem(command: SigningKeyCommand) -> tuple[str, str] | None:
    """(field, reason) of the first field outside the contract, or None (the tenant id is
    checked by the ledger's own limits, ``schemas.limits.tenant_id_problem``)."""
    if not 1 <= len(command.idempotency_key) <= IDEMPOTENCY_KEY_LENGTH_MAX:
        return "idempotency_key", f"must be 1-{IDEMPOTENCY_KEY_LENGTH_MAX} characters"
    if (problem := key_id_problem(command.key_id)) is not None:
        return "key_id", problem
    if not 0 <= command.overlap_ms <= OVERLAP_MS_MAX:
        return "overlap_ms", f"must be 0-{OVERLAP_MS_MAX}"
    if command.action is SigningKeyAction.GRANT and command.overlap_ms:
        return "overlap_ms", "must be 0 on a GRANT"
    return None


def sha256_of(value: bytes) -> bytes:
    """The SHA-256 of a registry command's bytes: its reply's ``fingerprint``."""
    return hashlib.sha256(value).digest()
