"""Who may act for a tenant: the signing-key registry of one partition (decision 0084).

Pure (no clock, no I/O). ``KeyRegistry`` holds the ``SigningKeyState`` of every key granted to
a tenant of the partition, restored from ``ledger.balances`` like the rest of the state, and
follows the Kafka transaction like the ledger state: changes are staged per batch, written as
state records with the batch and committed with it, or dropped on abort.

``verify`` judges a command record **before** anything else is decided (precedence 0 of the
contract's rules): a command that fails is rejected ``UNAUTHENTICATED`` with a reply only, so a
forged command can neither read the outcome stored under a key nor burn the key (decision 0085).
It returns the *actor* on success: the key id, or ``""`` for a command accepted unsigned.

Time is record time made monotonic per partition (``now_us``), so a revocation takes effect at
a known position of the tenant's command partition and a replay judges every command alike.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from schemas.limits import tenant_id_problem
from schemas.signing_keys import (
    KEY_ID_HEADER,
    KEY_ID_SEPARATOR,
    OPERATOR_KEY_ID,
    SIGNATURE_HEADER,
    SigningKeyAction,
    SigningKeyCommand,
    SigningKeyState,
    encode_signing_key_state,
    operator_secret,
    signature,
    signing_key_command_problem,
    signing_key_state_key,
    tenant_key_secret,
)

MICROSECONDS_PER_MILLISECOND: Final = 1_000
UNSIGNED_ACTOR: Final = ""
SIGNED_HEADER_COUNT: Final = 2
SECRET_CACHE_MAX: Final = 100_000  # derived secrets kept per partition (then the cache restarts)
SHA256_BLOCK_BYTES: Final = 64
# HMAC's pads (RFC 2104), as translation tables: key.translate(IPAD) = each key byte ^ 0x36
IPAD: Final = bytes(byte ^ 0x36 for byte in range(256))
OPAD: Final = bytes(byte ^ 0x5C for byte in range(256))
HeaderValue = str | bytes | None
# as confluent-kafka hands them over (a list of pairs), or a mapping (processors.transport)
Headers = Sequence[tuple[str, HeaderValue]] | Mapping[str, HeaderValue] | None


class SignatureMode(enum.Enum):
    """``off``: nothing is checked; ``enrolled``: a tenant that was ever granted a key must sign
    (the others may still send unsigned commands); ``required``: every command must be signed."""

    OFF = "off"
    ENROLLED = "enrolled"
    REQUIRED = "required"


def parse_signature_mode(text: str) -> SignatureMode:
    try:
        return SignatureMode(text.strip())
    except ValueError:
        raise ValueError(f"{text[:40]!r} is not one of off, enrolled, required") from None


@dataclass(frozen=True, slots=True)
class Unauthenticated:
    """The command may not be decided: ``detail`` says why (it names ``tenant_id``)."""

    detail: str


class RegistryChange(enum.Enum):
    CHANGED = "changed"  # the registry changed: a new state record
    UNCHANGED = "unchanged"  # already so (a retried command): nothing new
    REJECTED = "rejected"  # invalid or not signed by the operator


@dataclass(frozen=True, slots=True)
class RegistryDecision:
    change: RegistryChange
    detail: str  # what happened, or (rejected) "<field>: <reason>"
    unauthenticated: bool = False  # rejected because the operator signature failed


def signature_of(headers: Headers) -> tuple[bytes | None, bytes | None]:
    """(key id, hex signature) from a record's headers; None for a missing one."""
    if headers is None:  # an unsigned record (isinstance of a Mapping below is an ABC check)
        return None, None
    if (  # the SDK's two headers, in its order: no scan
        type(headers) is list
        and len(headers) == SIGNED_HEADER_COUNT
        and headers[0][0] == KEY_ID_HEADER
        and headers[1][0] == SIGNATURE_HEADER
    ):
        return _as_bytes(headers[0][1]), _as_bytes(headers[1][1])
    key_id: HeaderValue = None
    mac: HeaderValue = None
    if isinstance(headers, Mapping):
        key_id, mac = headers.get(KEY_ID_HEADER), headers.get(SIGNATURE_HEADER)
    elif headers:
        for name, value in headers:
            if name == SIGNATURE_HEADER:
                mac = value
            elif name == KEY_ID_HEADER:
                key_id = value
    return _as_bytes(key_id), _as_bytes(mac)


def keyed_sha256(secret: bytes, prefix: bytes) -> tuple[Any, Any]:
    """HMAC-SHA256 under ``secret`` as its two keyed SHA-256 states (RFC 2104): the inner one
    already fed the key's inner pad and ``prefix``, the outer one its outer pad. Then for a
    message ``m``: ``outer.copy()`` updated with ``inner.copy()`` updated with ``m``'s
    ``digest()`` gives ``HMAC(secret, prefix + m)``. Two plain SHA-256 copies cost less than
    copying an OpenSSL HMAC context (three digest contexts, copied again by its digest) and the
    ``hmac`` module's Python wrapper around it (decision 0137)."""
    key = hashlib.sha256(secret).digest() if len(secret) > SHA256_BLOCK_BYTES else secret
    key = key.ljust(SHA256_BLOCK_BYTES, b"\x00")
    inner = hashlib.sha256(key.translate(IPAD))
    inner.update(prefix)
    return inner, hashlib.sha256(key.translate(OPAD))


def keyed_hexdigest(keyed: tuple[Any, Any], message: bytes) -> bytes:
    """The 64 lowercase hex digits (ASCII bytes) of ``HMAC(secret, prefix + message)`` from
    ``keyed_sha256(secret, prefix)``; the cached states are copied, not consumed."""
    inner = keyed[0].copy()
    inner.update(message)
    outer = keyed[1].copy()
    outer.update(inner.digest())
    return outer.hexdigest().encode()  # type: ignore[no-any-return]


def _ascii(key_id: bytes) -> str | None:
    try:
        return key_id.decode("ascii")
    except UnicodeDecodeError:
        return None


def _as_bytes(value: HeaderValue) -> bytes | None:
    return value.encode("utf-8", "replace") if isinstance(value, str) else value


def _unauthenticated(why: str) -> Unauthenticated:
    return Unauthenticated(f"tenant_id: unauthenticated: {why}")


class KeyRegistry:
    """The signing keys of one partition's tenants, committed and staged with the batch."""

    def __init__(
        self,
        master: bytes,
        mode: SignatureMode,
        states: Iterable[SigningKeyState] = (),
        *,
        stream_time_us: int = 0,
    ) -> None:
        self.mode = mode
        self._master = master
        self._operator_secret = operator_secret(master)
        self._committed: dict[str, dict[str, SigningKeyState]] = {}
        self._staged: dict[tuple[str, str], SigningKeyState] = {}
        # (tenant, key id as in the header) -> (key id text, its keyed SHA-256 states)
        self._macs: dict[tuple[str, bytes], tuple[str, tuple[Any, Any]]] = {}
        # the latest record time seen, committed and in the open batch (an aborted batch's
        # records are read again: their times must not judge them twice)
        self._committed_latest_us = stream_time_us
        self._latest_us = stream_time_us
        for state in states:
            self._committed.setdefault(state.tenant_id, {})[state.key_id] = state

    def key(self, tenant_id: str, key_id: str) -> SigningKeyState | None:
        staged = self._staged.get((tenant_id, key_id)) if self._staged else None
        if staged is not None:
            return staged
        keys = self._committed.get(tenant_id)
        return None if keys is None else keys.get(key_id)

    def keys(self, tenant_id: str) -> list[SigningKeyState]:
        """Every key of the tenant, staged changes included, by key id."""
        found = dict(self._committed.get(tenant_id, {}))
        found.update(
            {key: state for (tenant, key), state in self._staged.items() if tenant == tenant_id}
        )
        return [found[key_id] for key_id in sorted(found)]

    def enrolled(self, tenant_id: str) -> bool:
        """Whether the tenant was ever granted a key (revoked ones count: no way back)."""
        if tenant_id in self._committed:
            return True
        return bool(self._staged) and any(tenant == tenant_id for tenant, _ in self._staged)

    def _now(self, record_timestamp_us: int) -> int:
        self._latest_us = max(self._latest_us, record_timestamp_us)
        return self._latest_us

    def _keyed_mac(
        self, tenant_id: str, key_id: bytes, key_text: str
    ) -> tuple[str, tuple[Any, Any]]:
        """(key id text, the key's ``keyed_sha256`` states for the prefix ``key_id + NUL``),
        derived once per granted key and cached: each command then costs two digest copies and
        its value, not the derivation and the key schedule."""
        if len(self._macs) >= SECRET_CACHE_MAX:
            self._macs.clear()
        secret = tenant_key_secret(self._master, tenant_id, key_text)
        cached = (key_text, keyed_sha256(secret, key_id + KEY_ID_SEPARATOR))
        self._macs[(tenant_id, key_id)] = cached
        return cached

    def verify(
        self, tenant_id: str, value: bytes, headers: Headers, record_timestamp_us: int
    ) -> str | Unauthenticated:
        """The actor of a command record (its key id, or "" unsigned), or why it may not act
        for ``tenant_id``. The mode is not ``off`` (then nothing is verified). On the path of
        every command: its steps are written out (one call less each)."""
        now_us = self._latest_us
        if record_timestamp_us > now_us:
            self._latest_us = now_us = record_timestamp_us
        if (  # the SDK's two headers, in its order, as bytes (signature_of, inline)
            type(headers) is list
            and len(headers) == SIGNED_HEADER_COUNT
            and headers[0][0] == KEY_ID_HEADER
            and headers[1][0] == SIGNATURE_HEADER
            and type(key_id := headers[0][1]) is bytes
            and type(mac := headers[1][1]) is bytes
        ):
            pass
        else:
            key_id, mac = signature_of(headers)
        if key_id is None or mac is None:
            if self.mode is SignatureMode.REQUIRED or self.enrolled(tenant_id):
                return _unauthenticated(
                    f"the command is not signed (tenant {tenant_id!r} requires signed commands)"
                )
            return UNSIGNED_ACTOR
        keyed = self._macs.get((tenant_id, key_id))
        key_text = keyed[0] if keyed is not None else _ascii(key_id)
        if key_text is None:
            return _unauthenticated("the key id header is not ASCII")
        state = self._staged.get((tenant_id, key_text)) if self._staged else None
        if state is None:
            keys = self._committed.get(tenant_id)
            state = None if keys is None else keys.get(key_text)
            if state is None:
                return _unauthenticated(f"key {key_text!r} is not granted for tenant {tenant_id!r}")
        revoked_at_us = state.revoked_at_us
        if revoked_at_us is not None and now_us >= revoked_at_us:
            return _unauthenticated(
                f"key {key_text!r} of tenant {tenant_id!r} is revoked since record time"
                f" {revoked_at_us} us (ledger.commands offset {state.revoked_offset})"
            )
        if keyed is None:  # derived only for a granted key: forged key ids cost no derivation
            keyed = self._keyed_mac(tenant_id, key_id, key_text)
        if not hmac.compare_digest(keyed_hexdigest(keyed[1], value), mac):
            return _unauthenticated(
                f"the signature does not match the record under key {key_text!r}"
            )
        return key_text

    def decide(
        self,
        command: SigningKeyCommand,
        value: bytes,
        headers: Headers,
        record_timestamp_us: int,
        offset: int,
    ) -> RegistryDecision:
        """Decide a GRANT or REVOKE at ``offset`` (signed with the operator key) and stage it."""
        now_us = self._now(record_timestamp_us)
        key_id, mac = signature_of(headers)
        operator = OPERATOR_KEY_ID.encode()
        if (
            key_id != operator
            or mac is None
            or not hmac.compare_digest(
                signature(self._operator_secret, operator, value).hex().encode(), mac
            )
        ):
            return RegistryDecision(
                RegistryChange.REJECTED,
                "tenant_id: unauthenticated: a signing-key command must be signed with the"
                " operator key",
                unauthenticated=True,
            )
        problem = _problem(command)
        if problem is not None:
            return RegistryDecision(RegistryChange.REJECTED, f"{problem[0]}: {problem[1]}")
        existing = self.key(command.tenant_id, command.key_id)
        if command.action is SigningKeyAction.GRANT:
            return self._grant(command, existing, now_us, offset)
        return self._revoke(command, existing, now_us, offset)

    def _grant(
        self, command: SigningKeyCommand, existing: SigningKeyState | None, now_us: int, offset: int
    ) -> RegistryDecision:
        if existing is not None and existing.revoked_at_us is not None:
            return RegistryDecision(
                RegistryChange.REJECTED,
                f"key_id: {command.key_id!r} was revoked; a key id is never granted twice",
            )
        if existing is not None:
            return RegistryDecision(
                RegistryChange.UNCHANGED,
                f"key {command.key_id!r} granted at offset {existing.granted_offset}",
            )
        state = SigningKeyState(
            tenant_id=command.tenant_id,
            key_id=command.key_id,
            granted_at_us=now_us,
            granted_offset=offset,
        )
        self._staged[(command.tenant_id, command.key_id)] = state
        return RegistryDecision(
            RegistryChange.CHANGED, f"key {command.key_id!r} granted at offset {offset}"
        )

    def _revoke(
        self, command: SigningKeyCommand, existing: SigningKeyState | None, now_us: int, offset: int
    ) -> RegistryDecision:
        if existing is None:
            return RegistryDecision(
                RegistryChange.REJECTED,
                f"key_id: {command.key_id!r} is not granted for tenant {command.tenant_id!r}",
            )
        revoked_at_us = now_us + command.overlap_ms * MICROSECONDS_PER_MILLISECOND
        if existing.revoked_at_us is not None and existing.revoked_at_us <= revoked_at_us:
            return RegistryDecision(
                RegistryChange.UNCHANGED,
                f"key {command.key_id!r} revoked from record time {existing.revoked_at_us} us"
                f" (offset {existing.revoked_offset})",
            )
        state = replace(existing, revoked_at_us=revoked_at_us, revoked_offset=offset)
        self._staged[(command.tenant_id, command.key_id)] = state
        return RegistryDecision(
            RegistryChange.CHANGED,
            f"key {command.key_id!r} revoked at offset {offset}: valid for commands before"
            f" record time {revoked_at_us} us",
        )

    def staged_records(self) -> list[tuple[bytes, bytes]]:
        """The ``ledger.balances`` records of the keys the open batch changed."""
        return [
            (signing_key_state_key(state.tenant_id, state.key_id), encode_signing_key_state(state))
            for state in self._staged.values()
        ]

    def commit(self) -> None:
        for (tenant_id, key_id), state in self._staged.items():
            self._committed.setdefault(tenant_id, {})[key_id] = state
        self._staged = {}
        self._committed_latest_us = self._latest_us

    def abort(self) -> None:
        self._staged = {}
        self._latest_us = self._committed_latest_us


def _problem(command: SigningKeyCommand) -> tuple[str, str] | None:
    tenant_problem = tenant_id_problem(command.tenant_id)
    if tenant_problem is not None:
        return "tenant_id", tenant_problem
    return signing_key_command_problem(command)
