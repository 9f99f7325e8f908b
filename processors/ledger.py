"""The pure ledger core: one partition's state, ``decide`` and the fold ``apply``.

No I/O, no clock, no randomness: time comes in as the command record's timestamp, ids derive from
(tenant, sequence). The transactional loop around it does all the talking to Kafka.

How the loop uses it (one partition, one batch at a time)::

    state = restore(records, outcomes, events, idempotency_retention_s=...)   # on assignment
    for command, timestamp_us in batch:
        decision = step(state, command, timestamp_us)     # decide + stage, never raises on input
        produce(decision.events); produce(decision.stored_outcome); reply(decision.outcome)
    tombstones = expired_outcomes(state, state.stream_time_us)
    state.forget_outcomes(tombstones)
    produce(state.staged_records())                        # ledger.balances
    commit the Kafka transaction, then state.commit()      # or: abort it, then state.abort()

Decisions are values
--------------------
``decide(state, command, record_timestamp_us)`` returns exactly one of

* ``Accepted(events, outcome, changes)`` — the command's events (preceded by any
  ``PendingExpired`` events stream time caused) and an accepted outcome to store;
* ``Rejected(events, outcome, changes)`` — a business rejection: ``outcome.reason`` is one
  ``RejectReason`` (the first that applies, in the enum's precedence order) and
  ``outcome.detail`` starts with the field it concerns (``"debit_account_id: ..."``). A rejection
  decided on the rules is stored under its key like an acceptance (a retry gets the same
  rejection). Two rejections are *replies only* (``changes is None``, nothing stored, stream time
  unchanged): ``IDEMPOTENCY_KEY_REUSED`` (the key already holds another command's outcome, which
  must not be overwritten) and ``INVALID_COMMAND`` on the scope fields ``tenant_id`` /
  ``idempotency_key`` or on a key that already holds an outcome;
* ``Duplicate(outcome)`` — the key holds a live outcome with the same fingerprint: the original
  outcome stands, no event, no change.

Exceptions are for bugs and corrupt state, never for bad input::

    StreamLedgerError (streamledger.errors)
    └── InvariantViolationError   debits != credits in an event, a counter outside int64, a gap
                                  or a broken link in a tenant's sequence/hash chain, an event the
                                  fold cannot apply, restored records that do not add up.
                                  The loop must stop; it never catches and skips this.

Time
----
*Stream time* is the highest timestamp among the partition's records that produced a stored
outcome or were ticks; it never goes back. A command is effective at its record timestamp, but
never before its tenant's last event (``TenantHead.last_effective_at_us``), so a tenant's
effective times never decrease whatever producers' clocks do. Before a stored decision or a
tick, pending transfers whose ``expires_at_us <= stream time`` expire, in (expires_at_us,
tenant_id, transfer_id) order, each **effective at its own deadline** — never at the time of the
record that happened to move stream time, so a tenant's events are a function of its own
commands and their timestamps. Tick records (``decide_tick``) move stream time on a partition
where nobody writes, so a deadline is met within a bounded delay. Replies (duplicates, key reuse)
leave stream time alone. ``restore`` recovers stream time as the largest ``decided_at_us`` of the
stored outcomes and ``last_effective_at_us`` of the heads. An outcome whose ``expires_at_us <=
stream time`` is treated as absent by ``decide`` whether or not its tombstone has been written,
so where batch boundaries fall never changes a decision.

State and batches
-----------------
``LedgerState`` is the one mutable object: plain dicts of frozen model records
(``AccountState``, ``TransferState``, ``TenantHead``, ``Outcome``) plus an undo log. ``stage``
writes a decision's changes and remembers the previous values; ``abort`` puts them back (cost:
the batch's size), ``commit`` forgets them. Reads are one dict lookup, which is what the hot loop
needs. ``decide`` only reads; everything it would change sits in a small per-decision draft.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from schemas.codec import decode_outcome, event_canonical_bytes, seal_event
from schemas.limits import first_violation
from schemas.model import (
    COMMAND_TYPES,
    GENESIS_HASH,
    HASH_BYTES,
    INT64_MAX,
    AccountBalance,
    AccountOpened,
    AccountState,
    Command,
    Event,
    OpenAccount,
    Outcome,
    OutcomeStatus,
    PendingExpired,
    PendingPosted,
    PendingVoided,
    PostPending,
    RejectReason,
    StateRecord,
    TenantHead,
    Transfer,
    TransferPending,
    TransferPosted,
    TransferState,
    TransferStatus,
    VoidPending,
    direct_slot_init,
    generated_function,
    record_builder,
)
from streamledger.errors import InvariantViolationError

US_PER_S: Final = 1_000_000
DEFAULT_IDEMPOTENCY_RETENTION_S: Final = 30 * 86_400
HASH_PLACEHOLDER: Final = bytes(HASH_BYTES)  # ``hash`` of an event being built (never hashed)
FIELD_FINGERPRINT_BYTES: Final = 8
COMMAND_TYPE_FIELD: Final = "command_type"  # named when a key is reused for another command type
SCOPE_FIELDS: Final = frozenset({"tenant_id", "idempotency_key"})
EXCLUDED_FROM_FINGERPRINT: Final = frozenset({"tenant_id", "idempotency_key", "submitted_at_us"})

_E = TypeVar("_E", bound=Event)
_ExpiryEntry = tuple[int, str, str]  # (expires_at_us, tenant_id, transfer_id or idempotency_key)
# An outcome as ledger.outcomes stores it, not decoded yet: (tenant_id, idempotency_key,
# decided_at_us, expires_at_us, encode_outcome bytes). ``restore`` keeps the bytes and decodes
# them the first time a command with that key arrives, or the outcome expires or is exported.
EncodedOutcome = tuple[str, str, int, int | None, bytes]
_Rejection = tuple[RejectReason, str]


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True, slots=True, kw_only=True)
class StateChanges:
    """What one stored decision changes: the new versions of the records, and stream time."""

    accounts: tuple[AccountState, ...]
    transfers: tuple[TransferState, ...]
    heads: tuple[TenantHead, ...]
    outcome: Outcome | None
    stream_time_us: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Accepted:
    events: tuple[Event, ...]  # in sequence order: PendingExpired first, then the command's
    outcome: Outcome
    changes: StateChanges
    encoded_events: tuple[bytes, ...] = ()  # encode_event(e) of each event, made while sealing

    @property
    def stored_outcome(self) -> Outcome | None:
        return self.changes.outcome


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejected:
    events: tuple[Event, ...]  # only PendingExpired events caused by stream time
    outcome: Outcome
    changes: StateChanges | None  # None: a reply only, nothing stored
    encoded_events: tuple[bytes, ...] = ()  # encode_event(e) of each event, made while sealing

    @property
    def stored_outcome(self) -> Outcome | None:
        return None if self.changes is None else self.changes.outcome


@dataclass(frozen=True, slots=True, kw_only=True)
class Duplicate:
    outcome: Outcome  # the original outcome stored under the key
    events: tuple[Event, ...] = ()
    changes: None = None
    encoded_events: tuple[bytes, ...] = ()

    @property
    def stored_outcome(self) -> Outcome | None:
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Ticked:
    """A tick's effect: the ``PendingExpired`` events its timestamp caused, nothing stored."""

    events: tuple[Event, ...]
    changes: StateChanges
    encoded_events: tuple[bytes, ...] = ()

    @property
    def stored_outcome(self) -> Outcome | None:
        return None


Decision = Accepted | Rejected | Duplicate
for _decision_type in (StateChanges, Accepted, Rejected, Duplicate, Ticked):
    direct_slot_init(_decision_type)

# Builders of the records ``decide`` makes for every command: equal to calling the class with the
# same keywords, a third cheaper (schemas.model.record_builder). The fold and restore, which are
# not per command, call the classes.
_new_account_state: Final = record_builder(AccountState)
_new_account_balance: Final = record_builder(AccountBalance)
_new_transfer_state: Final = record_builder(TransferState)
_new_tenant_head: Final = record_builder(TenantHead)
_new_outcome_record: Final = record_builder(Outcome)
_new_state_changes: Final = record_builder(StateChanges)
_new_accepted: Final = record_builder(Accepted)
_new_account_opened: Final = record_builder(AccountOpened)
_new_transfer_posted: Final = record_builder(TransferPosted)
_new_transfer_pending: Final = record_builder(TransferPending)
_new_pending_posted: Final = record_builder(PendingPosted)
_RELEASE_BUILDERS: Final[dict[TransferStatus, Callable[..., PendingExpired | PendingVoided]]] = {
    TransferStatus.EXPIRED: record_builder(PendingExpired),
    TransferStatus.VOIDED: record_builder(PendingVoided),
}


# --------------------------------------------------------------------------- fingerprints


def _fingerprint_fields(command_type: type[Command]) -> tuple[str, ...]:
    names = (field.name for field in dataclasses.fields(command_type))
    return tuple(name for name in names if name not in EXCLUDED_FROM_FINGERPRINT)


FINGERPRINT_FIELDS: Final[dict[type[Command], tuple[str, ...]]] = {
    command_type: _fingerprint_fields(command_type) for command_type in COMMAND_TYPES
}
_FINGERPRINT_FIELDS_BY_NAME: Final[dict[str, tuple[str, ...]]] = {
    command_type.__name__: names for command_type, names in FINGERPRINT_FIELDS.items()
}


def _encode_value(value: object) -> bytes:
    """An unambiguous byte encoding of a command field value (type tag + content)."""
    if type(value) is str:
        return b"S" + value.encode("utf-8", "surrogatepass")
    if value is None:
        return b"N"
    if value is True:
        return b"T"
    if value is False:
        return b"F"
    if type(value) is int:
        return b"I%d" % value
    if type(value) is tuple:
        parts = [_encode_value(item) for item in value]
        return b"L" + b"".join(len(part).to_bytes(4, "big") + part for part in parts)
    return b"R" + repr(value).encode("utf-8", "surrogatepass")  # a decoder bug; still stable


# Fields whose values repeat across commands: their (name, hash) pairs are computed once and
# shared by every outcome holding them (speed, and memory per million stored keys).
LOW_CARDINALITY_FIELDS: Final = frozenset(
    {
        "currency",
        "asset_scale",
        "debits_must_not_exceed_credits",
        "credits_must_not_exceed_debits",
        "overdraft_limit",
        "pending",
        "pending_timeout_s",
        # a tenant's accounts appear in transfer after transfer
        "debit_account_id",
        "credit_account_id",
    }
)
FIELD_FINGERPRINT_CACHE_SIZE_MAX: Final = 65_536
_field_fingerprint_cache: dict[tuple[str, type, object], bytes] = {}


def _field_fingerprint(value: object) -> bytes:
    # SHA-256 truncated: as strong per bit as BLAKE2b and, with SHA-NI, faster to call.
    return hashlib.sha256(_encode_value(value)).digest()[:FIELD_FINGERPRINT_BYTES]


def _shared_field_fingerprint(name: str, value: object) -> bytes:
    """The cached digest of a repeating value (a pure function; the cache is bounded)."""
    key = (name, type(value), value)
    digest = _field_fingerprint_cache.get(key)
    if digest is None:
        if len(_field_fingerprint_cache) >= FIELD_FINGERPRINT_CACHE_SIZE_MAX:
            _field_fingerprint_cache.clear()
        digest = _field_fingerprint_cache[key] = _field_fingerprint(value)
    return digest


def reference_command_fingerprint(command: Command) -> tuple[bytes, bytes]:
    """(SHA-256 over type + field hashes, the field hashes) of a command: the definition.

    The field hashes are one 8-byte SHA-256 prefix per ``FINGERPRINT_FIELDS[type(command)]``
    field, concatenated in that (declared) order: ``Outcome.field_fingerprints``.
    Fingerprinted: every field but tenant_id and idempotency_key (the key's scope) and
    submitted_at_us (a retry may be re-stamped); metadata is included.
    """
    digests = []
    cache = _field_fingerprint_cache
    for name in FINGERPRINT_FIELDS[type(command)]:
        value = getattr(command, name)
        if value is None or value == () or name in LOW_CARDINALITY_FIELDS:
            digest = cache.get((name, type(value), value))
            digests.append(digest if digest is not None else _shared_field_fingerprint(name, value))
        else:
            digests.append(_field_fingerprint(value))
    joined = b"".join(digests)
    overall = hashlib.sha256(type(command).__name__.encode() + b"\0" + joined).digest()
    return overall, joined


def _other_field_fingerprint(name: str, value: object) -> bytes:
    """A field hash as ``reference_command_fingerprint`` computes one that is not a string."""
    if value is None or value == () or name in LOW_CARDINALITY_FIELDS:
        return _shared_field_fingerprint(name, value)
    return _field_fingerprint(value)


def _string_field_fingerprint(value: str) -> bytes:
    return hashlib.sha256(b"S" + value.encode("utf-8", "surrogatepass")).digest()[
        :FIELD_FINGERPRINT_BYTES
    ]


def fingerprint_source(command_type: type[Command]) -> str:
    """The generated fingerprint function of one command type (shown by tests).

    ``reference_command_fingerprint`` without its per-field loop and ``getattr``: a string
    that changes from command to command is hashed inline; every other value goes through
    the reference's own choice of cache or hash, so the bytes are the same by construction.
    """
    digests = []
    for name in FINGERPRINT_FIELDS[command_type]:
        value = f"command.{name}"
        if name in LOW_CARDINALITY_FIELDS:
            cached = f"cache_get(({name!r}, type({value}), {value}))"
            digests.append(f"{cached} or other({name!r}, {value})")
        else:
            digests.append(f"string({value}) if type({value}) is str else other({name!r}, {value})")
    items = "".join(f"            {digest},\n" for digest in digests)
    return (
        "def fingerprint(command):\n"
        f"    joined = b''.join((\n{items}    ))\n"
        "    return sha256(type_prefix + joined).digest(), joined\n"
    )


def _generated_fingerprint(command_type: type[Command]) -> Callable[[Command], tuple[bytes, bytes]]:
    namespace: dict[str, Any] = {
        "cache_get": _field_fingerprint_cache.get,
        "other": _other_field_fingerprint,
        "string": _string_field_fingerprint,
        "sha256": hashlib.sha256,
        "type_prefix": command_type.__name__.encode() + b"\0",
    }
    source = fingerprint_source(command_type)
    function: Callable[[Command], tuple[bytes, bytes]] = generated_function(
        source, "fingerprint", namespace, f"fingerprint {command_type.__name__}"
    )
    return function


_FINGERPRINTS: Final = {
    command_type: _generated_fingerprint(command_type) for command_type in COMMAND_TYPES
}


def command_fingerprint(command: Command) -> tuple[bytes, bytes]:
    """(SHA-256 over type + field hashes, the field hashes) of a command.

    The field hashes are one 8-byte SHA-256 prefix per ``FINGERPRINT_FIELDS[type(command)]``
    field, concatenated in that (declared) order: ``Outcome.field_fingerprints``.
    Fingerprinted: every field but tenant_id and idempotency_key (the key's scope) and
    submitted_at_us (a retry may be re-stamped); metadata is included. Generated per type
    (``fingerprint_source``); ``reference_command_fingerprint`` is the definition.
    """
    return _FINGERPRINTS[type(command)](command)


def field_fingerprint_pairs(
    command_type: str, field_fingerprints: bytes
) -> tuple[tuple[str, bytes], ...]:
    """``Outcome.field_fingerprints`` as (field name, 8-byte hash) pairs, for reading."""
    names = _FINGERPRINT_FIELDS_BY_NAME.get(command_type, ())
    size = FIELD_FINGERPRINT_BYTES
    return tuple(
        (
            names[index] if index < len(names) else f"#{index}",
            field_fingerprints[start : start + size],
        )
        for index, start in enumerate(range(0, len(field_fingerprints), size))
    )


def first_differing_field(stored: Outcome, command: Command) -> str:
    """The first fingerprinted field in which ``command`` differs from the stored command."""
    if stored.command_type != type(command).__name__:
        return COMMAND_TYPE_FIELD
    _, field_fingerprints = command_fingerprint(command)
    old = stored.field_fingerprints
    names = FINGERPRINT_FIELDS[type(command)]
    size = FIELD_FINGERPRINT_BYTES
    for index, start in enumerate(range(0, min(len(old), len(field_fingerprints)), size)):
        if old[start : start + size] != field_fingerprints[start : start + size]:
            return names[index]
    shorter = min(len(old), len(field_fingerprints)) // size
    if len(old) != len(field_fingerprints) and shorter < len(names):
        return names[shorter]
    return COMMAND_TYPE_FIELD


# --------------------------------------------------------------------------- hashing


def event_hash(event: Event) -> bytes:
    """What ``event.hash`` must be: SHA-256(prev_hash || event_canonical_bytes(event)).

    The canonical bytes leave the ``hash`` field out (schemas.codec), so the hash covers
    everything else the event says, including the balances it left behind.
    """
    return hashlib.sha256(event.prev_hash + event_canonical_bytes(event)).digest()


def _seal(event: _E) -> tuple[_E, bytes]:
    """Set the hash of an event just built with ``hash=HASH_PLACEHOLDER``; return it with its
    ``encode_event`` bytes.

    The canonical bytes do not cover ``hash``, so the event is built once with a placeholder and
    the digest is written into it before the object leaves the core: the one place the core
    writes to a frozen record, and only to one nobody else has seen yet (half the cost of
    building the event twice on the hot path). ``seal_event`` encodes it once: the canonical
    bytes are the encoding without its last 32 bytes, so the hash and the record to produce come
    from the same encode.
    """
    assert event.hash is HASH_PLACEHOLDER
    digest, encoded = seal_event(event)
    object.__setattr__(event, "hash", digest)
    return event, encoded


# --------------------------------------------------------------------------- expiry index


def _heap_prefix(heap: list[_ExpiryEntry], until_us: int) -> Iterator[_ExpiryEntry]:
    """Entries of a binary min-heap with expires_at <= until_us, without popping (O(found))."""
    size = len(heap)
    stack = [0] if size else []
    while stack:
        position = stack.pop()
        entry = heap[position]
        if entry[0] <= until_us:
            yield entry
            stack.extend(child for child in (2 * position + 1, 2 * position + 2) if child < size)


class _ExpiryIndex:
    """Min-heaps of (expires_at_us, tenant_id, name) with lazy deletion.

    An entry is live while the record it names still carries that expiry; dead entries are
    dropped when they reach the top at commit. Entries of the open batch sit in a separate heap
    so an abort simply clears it.
    """

    __slots__ = ("committed", "pruned", "staged")

    def __init__(self, entries: Iterable[_ExpiryEntry] = ()) -> None:
        self.committed: list[_ExpiryEntry] = list(entries)
        heapq.heapify(self.committed)
        self.staged: list[_ExpiryEntry] = []
        self.pruned: list[_ExpiryEntry] = []  # popped from committed in the open batch

    def push(self, entry: _ExpiryEntry) -> None:
        heapq.heappush(self.staged, entry)

    def any_due(self, until_us: int) -> bool:
        return bool(
            (self.committed and self.committed[0][0] <= until_us)
            or (self.staged and self.staged[0][0] <= until_us)
        )

    def due(self, until_us: int, is_live: Callable[[_ExpiryEntry], bool]) -> list[_ExpiryEntry]:
        """Live entries with expires_at <= until_us, sorted, without duplicates."""
        found = set(_heap_prefix(self.committed, until_us))
        found.update(_heap_prefix(self.staged, until_us))
        return sorted(entry for entry in found if is_live(entry))

    def prune(self, is_live: Callable[[_ExpiryEntry], bool]) -> None:
        """Drop dead entries from the tops of both heaps, so ``any_due``/``due`` do not walk
        over transfers the open batch already ended (O(1) when the top is live).

        A dead staged entry stays dead (a transfer never returns to pending); a committed one
        may come back to life if the batch aborts, so it is kept in ``pruned`` until then.
        """
        staged, committed = self.staged, self.committed
        while staged and not is_live(staged[0]):
            heapq.heappop(staged)
        while committed and not is_live(committed[0]):
            self.pruned.append(heapq.heappop(committed))

    def commit(self, is_live: Callable[[_ExpiryEntry], bool]) -> None:
        for entry in self.staged:
            heapq.heappush(self.committed, entry)
        self.staged.clear()
        self.pruned.clear()
        while self.committed and not is_live(self.committed[0]):
            heapq.heappop(self.committed)

    def abort(self) -> None:
        self.staged.clear()
        for entry in self.pruned:
            heapq.heappush(self.committed, entry)
        self.pruned.clear()


# --------------------------------------------------------------------------- state


class LedgerState:
    """The state of one partition: records by key, expiry indexes, stream time, an undo log.

    Keys start with the tenant: accounts and transfers by (tenant_id, id), outcomes by
    (tenant_id, idempotency_key), heads by tenant_id. Records are frozen; the dicts change only
    through ``stage``/``apply``/``forget_outcomes`` (undoable) and ``abort``/``commit``.
    """

    __slots__ = (
        "_accounts",
        "_batch_start_stream_time_us",
        "_heads",
        "_outcome_index",
        "_outcomes",
        "_pending_index",
        "_stream_time_us",
        "_touched",
        "_transfers",
        "_undo",
        "idempotency_retention_us",
    )

    def __init__(self, *, idempotency_retention_s: int = DEFAULT_IDEMPOTENCY_RETENTION_S) -> None:
        if type(idempotency_retention_s) is not int or idempotency_retention_s < 0:
            raise ValueError("idempotency_retention_s must be an int >= 0 (0 = forever)")
        self.idempotency_retention_us = idempotency_retention_s * US_PER_S
        self._accounts: dict[tuple[str, str], AccountState] = {}
        self._transfers: dict[tuple[str, str], TransferState] = {}
        # an outcome restored from ledger.outcomes stays bytes until first read (_stored_outcome)
        self._outcomes: dict[tuple[str, str], Outcome | bytes] = {}
        self._heads: dict[str, TenantHead] = {}
        self._stream_time_us = 0
        self._batch_start_stream_time_us = 0
        self._pending_index = _ExpiryIndex()
        self._outcome_index = _ExpiryIndex()
        self._undo: list[tuple[dict[Any, Any], Any, Any]] = []
        self._touched: dict[tuple[str, str, str], None] = {}

    # ---- reads
    @property
    def stream_time_us(self) -> int:
        return self._stream_time_us

    def account(self, tenant_id: str, account_id: str) -> AccountState | None:
        return self._accounts.get((tenant_id, account_id))

    def transfer(self, tenant_id: str, transfer_id: str) -> TransferState | None:
        return self._transfers.get((tenant_id, transfer_id))

    def outcome(self, tenant_id: str, idempotency_key: str) -> Outcome | None:
        return self._stored_outcome((tenant_id, idempotency_key))

    def _stored_outcome(self, key: tuple[str, str]) -> Outcome | None:
        """The outcome under ``key``, decoding (once) one that restore kept as bytes. Replacing
        the bytes by the equal decoded value is not a state change: no undo entry."""
        stored = self._outcomes.get(key)
        if stored is None or type(stored) is Outcome:
            return stored
        assert isinstance(stored, bytes)
        outcome = decode_outcome(stored)
        if (outcome.tenant_id, outcome.idempotency_key) != key:
            raise InvariantViolationError(f"the outcome stored under {key} names another key")
        self._outcomes[key] = outcome
        return outcome

    def head(self, tenant_id: str) -> TenantHead | None:
        return self._heads.get(tenant_id)

    @property
    def outcome_count(self) -> int:
        return len(self._outcomes)

    @property
    def has_staged_changes(self) -> bool:
        return bool(self._undo) or self._stream_time_us != self._batch_start_stream_time_us

    # ---- staged writes
    def _put(self, table: dict[Any, Any], key: Any, value: Any) -> None:
        self._undo.append((table, key, table.get(key)))
        table[key] = value

    def stage(self, changes: StateChanges | None) -> None:
        """Write one decision's changes into the open batch (undone by ``abort``)."""
        if changes is None:
            return
        undo, touched = self._undo.append, self._touched
        accounts, transfers, heads = self._accounts, self._transfers, self._heads
        for account in changes.accounts:
            key = (account.tenant_id, account.account_id)
            undo((accounts, key, accounts.get(key)))  # what _put does, without the call
            accounts[key] = account
            touched[("account", *key)] = None
        for transfer in changes.transfers:
            key = (transfer.tenant_id, transfer.transfer_id)
            previous = transfers.get(key)
            undo((transfers, key, previous))
            transfers[key] = transfer
            touched[("transfer", *key)] = None
            is_pending = transfer.status is TransferStatus.PENDING
            if previous is None and is_pending and transfer.expires_at_us:
                self._pending_index.push((transfer.expires_at_us, *key))
        for head in changes.heads:
            undo((heads, head.tenant_id, heads.get(head.tenant_id)))
            heads[head.tenant_id] = head
            touched[("head", head.tenant_id, "")] = None
        outcome = changes.outcome
        if outcome is not None:
            self._put(self._outcomes, (outcome.tenant_id, outcome.idempotency_key), outcome)
            if outcome.expires_at_us is not None:
                self._outcome_index.push(
                    (outcome.expires_at_us, outcome.tenant_id, outcome.idempotency_key)
                )
        self._stream_time_us = max(self._stream_time_us, changes.stream_time_us)
        if changes.transfers:
            self._pending_index.prune(self._pending_is_live)

    def forget_outcomes(self, outcomes: Iterable[Outcome]) -> None:
        """Drop expired outcomes (their tombstones go to ledger.outcomes in the same batch)."""
        for outcome in outcomes:
            key = (outcome.tenant_id, outcome.idempotency_key)
            if self._outcomes.get(key) is outcome:
                self._undo.append((self._outcomes, key, outcome))
                del self._outcomes[key]

    def staged_records(self) -> tuple[StateRecord, ...]:
        """The current version of every record the open batch changed (for ledger.balances)."""
        records: list[StateRecord] = []
        for kind, tenant_id, name in self._touched:
            if kind == "account":
                records.append(self._accounts[(tenant_id, name)])
            elif kind == "transfer":
                records.append(self._transfers[(tenant_id, name)])
            else:
                records.append(self._heads[tenant_id])
        return tuple(records)

    def commit(self) -> None:
        """The batch's transaction committed: its changes become the base."""
        self._undo.clear()
        self._touched.clear()
        self._batch_start_stream_time_us = self._stream_time_us
        self._pending_index.commit(self._pending_is_live)
        self._outcome_index.commit(self._outcome_is_live)

    def abort(self) -> None:
        """The batch's transaction aborted: put every staged change back."""
        for table, key, previous in reversed(self._undo):
            if previous is None:
                del table[key]
            else:
                table[key] = previous
        self._undo.clear()
        self._touched.clear()
        self._stream_time_us = self._batch_start_stream_time_us
        self._pending_index.abort()
        self._outcome_index.abort()

    # ---- expiry liveness
    def _pending_is_live(self, entry: _ExpiryEntry) -> bool:
        transfer = self._transfers.get((entry[1], entry[2]))
        return (
            transfer is not None
            and transfer.status is TransferStatus.PENDING
            and transfer.expires_at_us == entry[0]
        )

    def _outcome_is_live(self, entry: _ExpiryEntry) -> bool:
        outcome = self._outcomes.get((entry[1], entry[2]))
        if type(outcome) is bytes:
            return True  # restored, never replaced: its only index entry is restore's own
        return outcome is not None and outcome.expires_at_us == entry[0]  # type: ignore[union-attr]


# --------------------------------------------------------------------------- decision draft


class _Draft:
    """The records one decision changes, read through to the state. Never shared."""

    __slots__ = ("accounts", "encoded_events", "events", "heads", "state", "transfers")

    def __init__(self, state: LedgerState) -> None:
        self.state = state
        self.accounts: dict[tuple[str, str], AccountState] = {}
        self.transfers: dict[tuple[str, str], TransferState] = {}
        self.heads: dict[str, TenantHead] = {}
        self.events: list[Event] = []
        self.encoded_events: list[bytes] = []

    def account(self, tenant_id: str, account_id: str) -> AccountState | None:
        key = (tenant_id, account_id)
        found = self.accounts.get(key)
        return found if found is not None else self.state._accounts.get(key)

    def transfer(self, tenant_id: str, transfer_id: str) -> TransferState | None:
        key = (tenant_id, transfer_id)
        found = self.transfers.get(key)
        return found if found is not None else self.state._transfers.get(key)

    def next_link(self, tenant_id: str) -> tuple[int, bytes]:
        """(the tenant's next sequence, the hash it chains from)."""
        head = self.heads.get(tenant_id) or self.state._heads.get(tenant_id)
        if head is None:
            return 1, GENESIS_HASH
        return head.last_sequence + 1, head.last_hash

    def effective_floor_us(self, tenant_id: str) -> int:
        """The effective time of the tenant's last event: no later event is effective earlier."""
        head = self.heads.get(tenant_id) or self.state._heads.get(tenant_id)
        return 0 if head is None else head.last_effective_at_us

    def put_account(self, account: AccountState) -> None:
        self.accounts[(account.tenant_id, account.account_id)] = account

    def put_transfer(self, transfer: TransferState) -> None:
        self.transfers[(transfer.tenant_id, transfer.transfer_id)] = transfer

    def record(self, sealed: tuple[Event, bytes]) -> None:
        """A sealed event of this decision: it moves its tenant's head."""
        event, encoded = sealed
        self.heads[event.tenant_id] = _new_tenant_head(
            tenant_id=event.tenant_id,
            last_sequence=event.sequence,
            last_hash=event.hash,
            last_effective_at_us=event.effective_at_us,
        )
        self.events.append(event)
        self.encoded_events.append(encoded)

    def changes(self, outcome: Outcome | None, stream_time_us: int) -> StateChanges:
        return _new_state_changes(
            accounts=tuple(self.accounts.values()),
            transfers=tuple(self.transfers.values()),
            heads=tuple(self.heads.values()),
            outcome=outcome,
            stream_time_us=stream_time_us,
        )


# --------------------------------------------------------------------------- money movement


def _check_counters(account: AccountState) -> None:
    """Every counter in [0, INT64_MAX], and posted + pending per side too (so posting never
    overflows)."""
    debits = (account.debits_posted, account.debits_pending)
    credits = (account.credits_posted, account.credits_pending)
    if (
        debits[0] < 0
        or debits[1] < 0
        or credits[0] < 0
        or credits[1] < 0
        or debits[0] + debits[1] > INT64_MAX
        or credits[0] + credits[1] > INT64_MAX
    ):
        raise InvariantViolationError(
            f"account {account.tenant_id}/{account.account_id}: counters outside int64 "
            f"(debits {debits}, credits {credits})"
        )


def _move(
    debit: AccountState, credit: AccountState, *, posted: int, pending: int, sequence: int
) -> tuple[AccountState, AccountState]:
    """Add ``posted`` to both posted counters and ``pending`` (may be < 0) to both pending ones.

    The same amounts on both sides is what makes debits equal credits in every event.
    """
    new_debit = _with_counters(
        debit,
        debits_posted=debit.debits_posted + posted,
        credits_posted=debit.credits_posted,
        debits_pending=debit.debits_pending + pending,
        credits_pending=debit.credits_pending,
        sequence=sequence,
    )
    new_credit = _with_counters(
        credit,
        debits_posted=credit.debits_posted,
        credits_posted=credit.credits_posted + posted,
        debits_pending=credit.debits_pending,
        credits_pending=credit.credits_pending + pending,
        sequence=sequence,
    )
    _check_counters(new_debit)
    _check_counters(new_credit)
    return new_debit, new_credit


def _with_counters(
    account: AccountState,
    *,
    debits_posted: int,
    credits_posted: int,
    debits_pending: int,
    credits_pending: int,
    sequence: int,
) -> AccountState:
    # Built field by field: dataclasses.replace costs several times more on this hot path.
    return _new_account_state(
        tenant_id=account.tenant_id,
        account_id=account.account_id,
        currency=account.currency,
        asset_scale=account.asset_scale,
        debits_must_not_exceed_credits=account.debits_must_not_exceed_credits,
        credits_must_not_exceed_debits=account.credits_must_not_exceed_debits,
        overdraft_limit=account.overdraft_limit,
        debits_posted=debits_posted,
        credits_posted=credits_posted,
        debits_pending=debits_pending,
        credits_pending=credits_pending,
        last_sequence=sequence,
    )


def _balance(account: AccountState) -> AccountBalance:
    return _new_account_balance(
        account_id=account.account_id,
        currency=account.currency,
        debits_posted=account.debits_posted,
        credits_posted=account.credits_posted,
        debits_pending=account.debits_pending,
        credits_pending=account.credits_pending,
    )


def _header(
    tenant_id: str,
    link: tuple[int, bytes],
    idempotency_key: str | None,
    effective_at_us: int,
    accounts: tuple[AccountState, ...],
) -> dict[str, Any]:
    sequence, prev_hash = link
    return {
        "tenant_id": tenant_id,
        "sequence": sequence,
        "event_id": f"{tenant_id}:{sequence}",
        "idempotency_key": idempotency_key,
        "effective_at_us": effective_at_us,
        "balances": tuple([_balance(account) for account in accounts]),
        "prev_hash": prev_hash,
        "hash": HASH_PLACEHOLDER,
    }


def _transfer_record(
    transfer: TransferState, *, status: TransferStatus, amount_posted: int, sequence: int
) -> TransferState:
    # spelled out rather than dataclasses.replace: this runs for every pending transfer's end
    return _new_transfer_state(
        tenant_id=transfer.tenant_id,
        transfer_id=transfer.transfer_id,
        debit_account_id=transfer.debit_account_id,
        credit_account_id=transfer.credit_account_id,
        currency=transfer.currency,
        amount=transfer.amount,
        status=status,
        amount_posted=amount_posted,
        amount_reversed=transfer.amount_reversed,
        reverses=transfer.reverses,
        expires_at_us=transfer.expires_at_us,
        last_sequence=sequence,
    )


# --------------------------------------------------------------------------- pending expiry


def _expire_pendings(draft: _Draft, stream_time_us: int) -> None:
    """Expire every live pending transfer with expires_at <= stream time, in index order.

    An expiry is effective **at its deadline**, not at the time of the record that moved stream
    time past it, so a tenant's history does not depend on when its partition neighbours (or
    tick records) happen to arrive. Stream time only moves forward and every deadline up to it
    has already fired, so a deadline is never before its tenant's last event; the ``max`` keeps
    that true by construction (decision 0026)."""
    state = draft.state
    if not state._pending_index.any_due(stream_time_us):
        return
    for deadline_us, tenant_id, transfer_id in state._pending_index.due(
        stream_time_us, state._pending_is_live
    ):
        _release(
            draft,
            tenant_id,
            transfer_id,
            idempotency_key=None,
            effective_at_us=max(deadline_us, draft.effective_floor_us(tenant_id)),
            status=TransferStatus.EXPIRED,
        )


def _release(
    draft: _Draft,
    tenant_id: str,
    transfer_id: str,
    *,
    idempotency_key: str | None,
    effective_at_us: int,
    status: TransferStatus,
) -> None:
    """Void or expire a pending transfer: give its reservation back on both accounts."""
    transfer = draft.transfer(tenant_id, transfer_id)
    assert transfer is not None and transfer.status is TransferStatus.PENDING
    debit, credit = _accounts_of(draft, transfer)
    link = draft.next_link(tenant_id)
    debit, credit = _move(debit, credit, posted=0, pending=-transfer.amount, sequence=link[0])
    sealed = _seal(
        _RELEASE_BUILDERS[status](
            **_header(tenant_id, link, idempotency_key, effective_at_us, (debit, credit)),
            **_transfer_fields(transfer, transfer.amount),
        )
    )
    draft.put_account(debit)
    draft.put_account(credit)
    draft.put_transfer(_transfer_record(transfer, status=status, amount_posted=0, sequence=link[0]))
    draft.record(sealed)


def _accounts_of(draft: _Draft, transfer: TransferState) -> tuple[AccountState, AccountState]:
    debit = draft.account(transfer.tenant_id, transfer.debit_account_id)
    credit = draft.account(transfer.tenant_id, transfer.credit_account_id)
    if debit is None or credit is None:
        raise InvariantViolationError(f"transfer {transfer.transfer_id}: its account is missing")
    return debit, credit


def _transfer_fields(transfer: TransferState, amount: int) -> dict[str, Any]:
    return {
        "transfer_id": transfer.transfer_id,
        "debit_account_id": transfer.debit_account_id,
        "credit_account_id": transfer.credit_account_id,
        "amount": amount,
        "currency": transfer.currency,
    }


# --------------------------------------------------------------------------- validation


def _is_amount(value: object) -> bool:
    return type(value) is int and 0 < value <= INT64_MAX


def _account_violation(command: OpenAccount) -> tuple[str, str] | None:
    if command.debits_must_not_exceed_credits and command.credits_must_not_exceed_debits:
        return "credits_must_not_exceed_debits", "an account takes at most one balance flag"
    limit = command.overdraft_limit
    if limit is None:
        return None
    if not (command.debits_must_not_exceed_credits or command.credits_must_not_exceed_debits):
        return "overdraft_limit", "needs one of the two balance flags"
    if type(limit) is not int or not 0 <= limit <= INT64_MAX:
        return "overdraft_limit", "must be an integer in [0, 2**63 - 1]"
    return None


def _transfer_violation(command: Transfer) -> tuple[str, str] | None:
    if not _is_amount(command.amount):
        return "amount", "must be an integer of minor units in [1, 2**63 - 1]"
    timeout = command.pending_timeout_s
    if timeout is not None and not command.pending:
        return "pending_timeout_s", "only a pending transfer has a timeout"
    if timeout is not None and not _is_amount(timeout):
        return "pending_timeout_s", "must be a positive integer of seconds"
    if command.reverses is not None and command.pending:
        return "reverses", "a reversal is posted at once, never pending"
    return None


def _post_pending_violation(command: PostPending) -> tuple[str, str] | None:
    if command.amount is None or _is_amount(command.amount):
        return None
    return "amount", "must be None (the full amount) or an integer in [1, 2**63 - 1]"


# The contract checks the rules below rely on, whatever schemas.limits checks (by exact type:
# first_violation already rejects anything that is not exactly a command type).
_CORE_CHECKS: Final[dict[type[Any], Callable[[Any], tuple[str, str] | None]]] = {
    OpenAccount: _account_violation,
    Transfer: _transfer_violation,
    PostPending: _post_pending_violation,
}


def command_violation(command: Command) -> tuple[str, str] | None:
    """(field, reason) of the first contract violation (schemas.limits), or None.

    The core's own checks run after the contract's and repeat the few the rules rely on, so a
    change of the limits can never let an amount the rules cannot handle through.
    """
    violation = first_violation(command)
    if violation is not None:
        return violation
    core_check = _CORE_CHECKS.get(type(command))
    return None if core_check is None else core_check(command)


# --------------------------------------------------------------------------- rules


def _transfer_rejection(draft: _Draft, command: Transfer) -> _Rejection | None:
    """The first rule a Transfer breaks, in RejectReason order."""
    tenant_id = command.tenant_id
    if draft.transfer(tenant_id, command.transfer_id) is not None:
        return RejectReason.TRANSFER_EXISTS, f"transfer_id: {command.transfer_id!r} exists"
    debit = draft.account(tenant_id, command.debit_account_id)
    credit = draft.account(tenant_id, command.credit_account_id)
    if debit is None:
        return _unknown_account("debit_account_id", command.debit_account_id)
    if credit is None:
        return _unknown_account("credit_account_id", command.credit_account_id)
    if debit.currency != command.currency:
        return _currency_mismatch("debit_account_id", debit, command.currency)
    if credit.currency != command.currency:
        return _currency_mismatch("credit_account_id", credit, command.currency)
    if command.debit_account_id == command.credit_account_id:
        return RejectReason.SAME_ACCOUNT, "credit_account_id: equals debit_account_id"
    if command.reverses is not None:
        found = _reversal_rejection(draft, command)
        if found is not None:
            return found
    return _funds_rejection(debit, credit, command)


def _unknown_account(field: str, account_id: str) -> _Rejection:
    return RejectReason.UNKNOWN_ACCOUNT, f"{field}: no account {account_id!r}"


def _currency_mismatch(field: str, account: AccountState, currency: str) -> _Rejection:
    return RejectReason.CURRENCY_MISMATCH, (
        f"{field}: account {account.account_id!r} holds {account.currency}, "
        f"the transfer is in {currency}"
    )


def _reversal_rejection(draft: _Draft, command: Transfer) -> _Rejection | None:
    assert command.reverses is not None
    original = draft.transfer(command.tenant_id, command.reverses)
    if original is None:
        return RejectReason.REVERSAL_TARGET_NOT_FOUND, f"reverses: no transfer {command.reverses!r}"
    if original.status is not TransferStatus.POSTED:
        return RejectReason.REVERSAL_MISMATCH, (
            f"reverses: transfer {original.transfer_id!r} is {original.status.value}, not posted"
        )
    if (command.debit_account_id, command.credit_account_id) != (
        original.credit_account_id,
        original.debit_account_id,
    ):
        return RejectReason.REVERSAL_MISMATCH, (
            f"reverses: a reversal of {original.transfer_id!r} debits "
            f"{original.credit_account_id!r} and credits {original.debit_account_id!r}"
        )
    if original.amount_reversed + command.amount > original.amount_posted:
        return RejectReason.REVERSAL_EXCEEDS_ORIGINAL, (
            f"amount: {original.transfer_id!r} has "
            f"{original.amount_posted - original.amount_reversed} left to reverse"
        )
    return None


def _funds_rejection(
    debit: AccountState, credit: AccountState, command: Transfer
) -> _Rejection | None:
    """Flags and overdraft limits (pending counts against them), then int64 overflow."""
    amount = command.amount
    debit_total = debit.debits_posted + debit.debits_pending + amount
    credit_total = credit.credits_posted + credit.credits_pending + amount
    if debit.debits_must_not_exceed_credits and debit_total > debit.credits_posted + (
        debit.overdraft_limit or 0
    ):
        return RejectReason.INSUFFICIENT_FUNDS, (
            f"debit_account_id: account {debit.account_id!r} would exceed its credits"
        )
    if credit.credits_must_not_exceed_debits and credit_total > credit.debits_posted + (
        credit.overdraft_limit or 0
    ):
        return RejectReason.LIMIT_EXCEEDED, (
            f"credit_account_id: account {credit.account_id!r} would exceed its debits"
        )
    if debit_total > INT64_MAX:
        return _overflow("debit_account_id", debit)
    if credit_total > INT64_MAX:
        return _overflow("credit_account_id", credit)
    return None


def _overflow(field: str, account: AccountState) -> _Rejection:
    return RejectReason.OVERFLOW, f"{field}: account {account.account_id!r} would overflow"


def _pending_rejection(draft: _Draft, command: PostPending | VoidPending) -> _Rejection | None:
    transfer = draft.transfer(command.tenant_id, command.transfer_id)
    if transfer is None:
        return RejectReason.PENDING_NOT_FOUND, f"transfer_id: no transfer {command.transfer_id!r}"
    if transfer.status is TransferStatus.EXPIRED:
        return RejectReason.PENDING_EXPIRED, f"transfer_id: {command.transfer_id!r} has expired"
    if transfer.status is not TransferStatus.PENDING:
        return RejectReason.PENDING_ALREADY_FINAL, (
            f"transfer_id: {command.transfer_id!r} is already {transfer.status.value}"
        )
    amount = command.amount if isinstance(command, PostPending) else None
    if amount is not None and amount > transfer.amount:
        return RejectReason.AMOUNT_EXCEEDS_PENDING, (
            f"amount: {amount} exceeds the pending amount {transfer.amount}"
        )
    return None


def _rule_rejection(draft: _Draft, command: Command, effective_at_us: int) -> _Rejection | None:
    if isinstance(command, OpenAccount):
        if draft.account(command.tenant_id, command.account_id) is not None:
            return RejectReason.ACCOUNT_EXISTS, f"account_id: {command.account_id!r} exists"
        return None
    if isinstance(command, Transfer):
        found = _transfer_rejection(draft, command)
        timeout = command.pending_timeout_s
        if (
            found is None
            and timeout is not None
            and effective_at_us + timeout * US_PER_S > INT64_MAX
        ):
            return RejectReason.OVERFLOW, "pending_timeout_s: the expiry time would overflow"
        return found
    return _pending_rejection(draft, command)


# --------------------------------------------------------------------------- execution


def _open_account(draft: _Draft, command: OpenAccount, effective_at_us: int) -> None:
    link = draft.next_link(command.tenant_id)
    account = _new_account_state(
        tenant_id=command.tenant_id,
        account_id=command.account_id,
        currency=command.currency,
        asset_scale=command.asset_scale,
        debits_must_not_exceed_credits=command.debits_must_not_exceed_credits,
        credits_must_not_exceed_debits=command.credits_must_not_exceed_debits,
        overdraft_limit=command.overdraft_limit,
        debits_posted=0,
        credits_posted=0,
        debits_pending=0,
        credits_pending=0,
        last_sequence=link[0],
    )
    header = _header(command.tenant_id, link, command.idempotency_key, effective_at_us, (account,))
    sealed = _seal(
        _new_account_opened(
            **header,
            account_id=command.account_id,
            currency=command.currency,
            asset_scale=command.asset_scale,
            debits_must_not_exceed_credits=command.debits_must_not_exceed_credits,
            credits_must_not_exceed_debits=command.credits_must_not_exceed_debits,
            overdraft_limit=command.overdraft_limit,
        )
    )
    draft.put_account(account)
    draft.record(sealed)


def _create_transfer(draft: _Draft, command: Transfer, effective_at_us: int) -> None:
    tenant_id, amount = command.tenant_id, command.amount
    link = draft.next_link(tenant_id)
    sequence = link[0]
    debit = draft.account(tenant_id, command.debit_account_id)
    credit = draft.account(tenant_id, command.credit_account_id)
    assert debit is not None and credit is not None
    posted, pending = (0, amount) if command.pending else (amount, 0)
    debit, credit = _move(debit, credit, posted=posted, pending=pending, sequence=sequence)
    timeout = command.pending_timeout_s
    expires_at_us = None if timeout is None else effective_at_us + timeout * US_PER_S
    transfer = _new_transfer_state(
        tenant_id=tenant_id,
        transfer_id=command.transfer_id,
        debit_account_id=command.debit_account_id,
        credit_account_id=command.credit_account_id,
        currency=command.currency,
        amount=amount,
        status=TransferStatus.PENDING if command.pending else TransferStatus.POSTED,
        amount_posted=posted,
        amount_reversed=0,
        reverses=command.reverses,
        expires_at_us=expires_at_us,
        last_sequence=sequence,
    )
    header = _header(tenant_id, link, command.idempotency_key, effective_at_us, (debit, credit))
    fields = _transfer_fields(transfer, amount)
    sealed: tuple[Event, bytes] = _seal(
        _new_transfer_pending(**header, **fields, expires_at_us=expires_at_us)
        if command.pending
        else _new_transfer_posted(**header, **fields, reverses=command.reverses)
    )
    draft.put_account(debit)
    draft.put_account(credit)
    draft.put_transfer(transfer)
    if command.reverses is not None:
        original = draft.transfer(tenant_id, command.reverses)
        assert original is not None
        draft.put_transfer(_reversed_by(original, amount, sequence))
    draft.record(sealed)


def _reversed_by(original: TransferState, amount: int, sequence: int) -> TransferState:
    reversed_total = original.amount_reversed + amount
    if reversed_total > original.amount_posted:
        raise InvariantViolationError(f"transfer {original.transfer_id}: reversed beyond posted")
    return dataclasses.replace(original, amount_reversed=reversed_total, last_sequence=sequence)


def _post_pending(draft: _Draft, command: PostPending, effective_at_us: int) -> None:
    transfer = draft.transfer(command.tenant_id, command.transfer_id)
    assert transfer is not None and transfer.status is TransferStatus.PENDING
    amount = transfer.amount if command.amount is None else command.amount
    debit, credit = _accounts_of(draft, transfer)
    link = draft.next_link(command.tenant_id)
    debit, credit = _move(debit, credit, posted=amount, pending=-transfer.amount, sequence=link[0])
    fields = _header(
        command.tenant_id, link, command.idempotency_key, effective_at_us, (debit, credit)
    )
    sealed = _seal(
        _new_pending_posted(
            **fields, **_transfer_fields(transfer, amount), pending_amount=transfer.amount
        )
    )
    draft.put_account(debit)
    draft.put_account(credit)
    draft.put_transfer(
        _transfer_record(
            transfer, status=TransferStatus.POSTED, amount_posted=amount, sequence=link[0]
        )
    )
    draft.record(sealed)


def _execute(draft: _Draft, command: Command, effective_at_us: int) -> None:
    if isinstance(command, OpenAccount):
        _open_account(draft, command, effective_at_us)
    elif isinstance(command, Transfer):
        _create_transfer(draft, command, effective_at_us)
    elif isinstance(command, PostPending):
        _post_pending(draft, command, effective_at_us)
    else:
        _release(
            draft,
            command.tenant_id,
            command.transfer_id,
            idempotency_key=command.idempotency_key,
            effective_at_us=effective_at_us,
            status=TransferStatus.VOIDED,
        )


# --------------------------------------------------------------------------- decide


def _new_outcome(
    state: LedgerState,
    command: Command,
    fingerprint: tuple[bytes, bytes],
    decided_at_us: int,
    *,
    sequences: tuple[int, ...] = (),
    rejection: _Rejection | None = None,
) -> Outcome:
    retention_us = state.idempotency_retention_us
    expires_at_us = None if retention_us == 0 else min(decided_at_us + retention_us, INT64_MAX)
    return _new_outcome_record(
        tenant_id=command.tenant_id,
        idempotency_key=command.idempotency_key,
        command_type=type(command).__name__,
        fingerprint=fingerprint[0],
        field_fingerprints=fingerprint[1],
        status=OutcomeStatus.ACCEPTED if rejection is None else OutcomeStatus.REJECTED,
        event_sequences=sequences,
        reason=None if rejection is None else rejection[0],
        detail="" if rejection is None else rejection[1],
        decided_at_us=decided_at_us,
        expires_at_us=expires_at_us,
    )


def _invalid(violation: tuple[str, str]) -> _Rejection:
    return RejectReason.INVALID_COMMAND, f"{violation[0]}: {violation[1]}"


def _against_stored(
    state: LedgerState,
    stored: Outcome,
    command: Command,
    fingerprint: tuple[bytes, bytes],
    *,
    violation: tuple[str, str] | None,
    record_timestamp_us: int,
) -> Decision:
    """The key holds a live outcome: a duplicate, or a reply-only rejection."""
    if stored.fingerprint == fingerprint[0] and stored.command_type == type(command).__name__:
        return Duplicate(outcome=stored)
    if violation is not None:
        rejection = _invalid(violation)
    else:
        field = first_differing_field(stored, command)
        rejection = (
            RejectReason.IDEMPOTENCY_KEY_REUSED,
            (f"{field}: differs from the command first decided under this idempotency key"),
        )
    outcome = _new_outcome(state, command, fingerprint, record_timestamp_us, rejection=rejection)
    return Rejected(events=(), outcome=outcome, changes=None)


def decide(state: LedgerState, command: Command, record_timestamp_us: int) -> Decision:
    """Decide one command at the given record timestamp. Reads ``state``, never changes it."""
    stream_time_us = max(state._stream_time_us, record_timestamp_us)
    violation = command_violation(command)
    fingerprint = command_fingerprint(command)
    if violation is not None and violation[0] in SCOPE_FIELDS:
        outcome = _new_outcome(
            state, command, fingerprint, record_timestamp_us, rejection=_invalid(violation)
        )
        return Rejected(events=(), outcome=outcome, changes=None)
    stored = state._stored_outcome((command.tenant_id, command.idempotency_key))
    if stored is not None and (
        stored.expires_at_us is None or stored.expires_at_us > stream_time_us
    ):
        return _against_stored(
            state,
            stored,
            command,
            fingerprint,
            violation=violation,
            record_timestamp_us=record_timestamp_us,
        )
    draft = _Draft(state)
    _expire_pendings(draft, stream_time_us)
    expired_count = len(draft.events)
    # never before the tenant's last event (a producer whose clock is behind, or two producers
    # of one tenant whose batches interleave): time is monotonic per tenant (decision 0026)
    effective_at_us = max(record_timestamp_us, draft.effective_floor_us(command.tenant_id))
    rejection = (
        _invalid(violation)
        if violation is not None
        else _rule_rejection(draft, command, effective_at_us)
    )
    if rejection is not None:
        outcome = _new_outcome(state, command, fingerprint, effective_at_us, rejection=rejection)
        changes = draft.changes(outcome, stream_time_us)
        return Rejected(
            events=tuple(draft.events),
            outcome=outcome,
            changes=changes,
            encoded_events=tuple(draft.encoded_events),
        )
    _execute(draft, command, effective_at_us)
    sequences = tuple(event.sequence for event in draft.events[expired_count:])
    outcome = _new_outcome(state, command, fingerprint, effective_at_us, sequences=sequences)
    changes = draft.changes(outcome, stream_time_us)
    return _new_accepted(
        events=tuple(draft.events),
        outcome=outcome,
        changes=changes,
        encoded_events=tuple(draft.encoded_events),
    )


def step(state: LedgerState, command: Command, record_timestamp_us: int) -> Decision:
    """Decide one command and stage its changes into the open batch."""
    decision = decide(state, command, record_timestamp_us)
    state.stage(decision.changes)
    return decision


def decide_tick(state: LedgerState, record_timestamp_us: int) -> Ticked:
    """A tick record (no command, see ``processors.ticks``): stream time moves to its timestamp
    and every pending transfer due by then expires, effective at its deadline. Reads ``state``.

    Ticks are records of the command log, so a replay expires the same transfers at the same
    point of the log: the log still decides everything."""
    stream_time_us = max(state._stream_time_us, record_timestamp_us)
    draft = _Draft(state)
    _expire_pendings(draft, stream_time_us)
    return Ticked(
        events=tuple(draft.events),
        changes=draft.changes(None, stream_time_us),
        encoded_events=tuple(draft.encoded_events),
    )


def step_tick(state: LedgerState, record_timestamp_us: int) -> Ticked:
    """Decide one tick and stage its changes into the open batch."""
    decision = decide_tick(state, record_timestamp_us)
    state.stage(decision.changes)
    return decision


def next_deadline_us(state: LedgerState) -> int | None:
    """The earliest deadline of a live pending transfer (committed or staged), or None: when a
    tick would expire something. Prunes ended transfers off the top of the index first."""
    index = state._pending_index
    index.prune(state._pending_is_live)
    tops = [heap[0][0] for heap in (index.committed, index.staged) if heap]
    return min(tops) if tops else None


# --------------------------------------------------------------------------- the fold


def _fold_error(event: Event, problem: str) -> InvariantViolationError:
    return InvariantViolationError(f"event {event.event_id}: {problem}")


def _check_link(state: LedgerState, event: Event) -> None:
    """The event continues its tenant's gapless sequence and hash chain."""
    head = state._heads.get(event.tenant_id)
    sequence, prev_hash = (
        (1, GENESIS_HASH) if head is None else (head.last_sequence + 1, head.last_hash)
    )
    if event.sequence != sequence:
        raise _fold_error(event, f"sequence {event.sequence}, expected {sequence} (a gap)")
    if event.event_id != f"{event.tenant_id}:{event.sequence}":
        raise _fold_error(event, "event_id is not tenant_id:sequence")
    if event.prev_hash != prev_hash:
        raise _fold_error(event, "prev_hash does not match the tenant's last hash")
    if event.hash != event_hash(event):
        raise _fold_error(event, "hash does not match the event's content")
    if head is not None and event.effective_at_us < head.last_effective_at_us:
        raise _fold_error(event, "effective before the tenant's previous event")


def _fold_opened(state: LedgerState, event: AccountOpened) -> AccountState:
    if state.account(event.tenant_id, event.account_id) is not None:
        raise _fold_error(event, f"account {event.account_id!r} opened twice")
    return AccountState(
        tenant_id=event.tenant_id,
        account_id=event.account_id,
        currency=event.currency,
        asset_scale=event.asset_scale,
        debits_must_not_exceed_credits=event.debits_must_not_exceed_credits,
        credits_must_not_exceed_debits=event.credits_must_not_exceed_debits,
        overdraft_limit=event.overdraft_limit,
        debits_posted=0,
        credits_posted=0,
        debits_pending=0,
        credits_pending=0,
        last_sequence=event.sequence,
    )


_TransferEvent = TransferPosted | TransferPending | PendingPosted | PendingVoided | PendingExpired


def _fold_accounts(state: LedgerState, event: _TransferEvent) -> tuple[AccountState, AccountState]:
    debit = state.account(event.tenant_id, event.debit_account_id)
    credit = state.account(event.tenant_id, event.credit_account_id)
    if debit is None or credit is None or debit is credit:
        raise _fold_error(event, "needs two different, existing accounts")
    if not debit.currency == credit.currency == event.currency:
        raise _fold_error(event, "currency differs from its accounts'")
    if not 0 < event.amount <= INT64_MAX:
        raise _fold_error(event, f"amount {event.amount} out of range")
    return debit, credit


def _fold_new_transfer(
    state: LedgerState, event: TransferPosted | TransferPending
) -> tuple[list[AccountState], list[TransferState]]:
    if state.transfer(event.tenant_id, event.transfer_id) is not None:
        raise _fold_error(event, f"transfer {event.transfer_id!r} created twice")
    debit, credit = _fold_accounts(state, event)
    pending = isinstance(event, TransferPending)
    posted_amount, pending_amount = (0, event.amount) if pending else (event.amount, 0)
    accounts = _move(
        debit, credit, posted=posted_amount, pending=pending_amount, sequence=event.sequence
    )
    reverses = None if isinstance(event, TransferPending) else event.reverses
    transfer = TransferState(
        tenant_id=event.tenant_id,
        transfer_id=event.transfer_id,
        debit_account_id=event.debit_account_id,
        credit_account_id=event.credit_account_id,
        currency=event.currency,
        amount=event.amount,
        status=TransferStatus.PENDING if pending else TransferStatus.POSTED,
        amount_posted=posted_amount,
        amount_reversed=0,
        reverses=reverses,
        expires_at_us=event.expires_at_us if isinstance(event, TransferPending) else None,
        last_sequence=event.sequence,
    )
    transfers = [transfer]
    if reverses is not None:
        original = state.transfer(event.tenant_id, reverses)
        if original is None or original.status is not TransferStatus.POSTED:
            raise _fold_error(event, f"reverses {reverses!r}, which is not a posted transfer")
        transfers.append(_reversed_by(original, event.amount, event.sequence))
    return list(accounts), transfers


def _fold_pending_end(
    state: LedgerState, event: PendingPosted | PendingVoided | PendingExpired
) -> tuple[list[AccountState], list[TransferState]]:
    pending = state.transfer(event.tenant_id, event.transfer_id)
    if pending is None or pending.status is not TransferStatus.PENDING:
        raise _fold_error(event, f"transfer {event.transfer_id!r} is not pending")
    if (pending.debit_account_id, pending.credit_account_id) != (
        event.debit_account_id,
        event.credit_account_id,
    ):
        raise _fold_error(event, "accounts differ from the pending transfer's")
    debit, credit = _fold_accounts(state, event)
    if isinstance(event, PendingPosted):
        if event.pending_amount != pending.amount or event.amount > pending.amount:
            raise _fold_error(event, "amounts do not match the pending transfer")
        status, posted_amount = TransferStatus.POSTED, event.amount
    else:
        if event.amount != pending.amount:
            raise _fold_error(event, "released amount differs from the pending amount")
        expired = isinstance(event, PendingExpired)
        if expired and (
            pending.expires_at_us is None or pending.expires_at_us > event.effective_at_us
        ):
            raise _fold_error(event, "expired before its expiry time")
        status = TransferStatus.EXPIRED if expired else TransferStatus.VOIDED
        posted_amount = 0
    accounts = _move(
        debit, credit, posted=posted_amount, pending=-pending.amount, sequence=event.sequence
    )
    transfer = _transfer_record(
        pending, status=status, amount_posted=posted_amount, sequence=event.sequence
    )
    return list(accounts), [transfer]


def apply(state: LedgerState, event: Event) -> LedgerState:
    """Fold one event into ``state`` (staged, like a decision) and return it.

    Verifies what a verifier of ``ledger.events`` must: the gapless sequence, the hash chain,
    debits equal to credits, and that the balances the event carries are the fold's.
    """
    _check_link(state, event)
    if isinstance(event, AccountOpened):
        accounts: list[AccountState] = [_fold_opened(state, event)]
        transfers: list[TransferState] = []
    elif isinstance(event, TransferPosted | TransferPending):
        accounts, transfers = _fold_new_transfer(state, event)
    else:
        accounts, transfers = _fold_pending_end(state, event)
    if tuple(_balance(account) for account in accounts) != event.balances:
        raise _fold_error(event, "the balances it carries are not the fold's")
    head = TenantHead(
        tenant_id=event.tenant_id,
        last_sequence=event.sequence,
        last_hash=event.hash,
        last_effective_at_us=event.effective_at_us,
    )
    state.stage(
        StateChanges(
            accounts=tuple(accounts),
            transfers=tuple(transfers),
            heads=(head,),
            outcome=None,
            stream_time_us=max(state._stream_time_us, event.effective_at_us),
        )
    )
    return state


# --------------------------------------------------------------------------- retention


def expired_outcomes(
    state: LedgerState, stream_time_us: int, *, limit: int | None = None
) -> tuple[Outcome, ...]:
    """Stored outcomes with ``expires_at_us <= stream_time_us``, in (expires_at, tenant, key)
    order, at most ``limit``: the tombstones to write. Pure; ``forget_outcomes`` drops them."""
    index = state._outcome_index
    if not index.any_due(stream_time_us):
        return ()
    entries = index.due(stream_time_us, state._outcome_is_live)
    if limit is not None:
        entries = entries[:limit]
    found = tuple(state._stored_outcome((tenant_id, key)) for _, tenant_id, key in entries)
    assert all(
        outcome is not None and outcome.expires_at_us == entry[0]
        for outcome, entry in zip(found, entries, strict=True)
    )
    return found  # type: ignore[return-value]


# --------------------------------------------------------------------------- export / restore


def export_records(state: LedgerState) -> Iterator[StateRecord]:
    """Every state record (heads, accounts, transfers), as ledger.balances would hold them."""
    yield from state._heads.values()
    yield from state._accounts.values()
    yield from state._transfers.values()


def outcomes_of(state: LedgerState) -> Iterator[Outcome]:
    """Every stored outcome, as ledger.outcomes would hold them."""
    for stored in state._outcomes.values():
        yield decode_outcome(stored) if type(stored) is bytes else stored  # type: ignore[misc]


def restore(
    records: Iterable[StateRecord],
    outcomes: Iterable[Outcome],
    events: Iterable[Event] = (),
    *,
    idempotency_retention_s: int = DEFAULT_IDEMPOTENCY_RETENTION_S,
    encoded_outcomes: Iterable[EncodedOutcome] = (),
) -> LedgerState:
    """Rebuild a partition's state from ledger.balances records and ledger.outcomes values (in
    offset order: a later record of a key wins), then fold the ledger.events tail past each
    tenant's head. Checks the invariants before returning a committed state.

    ``encoded_outcomes`` are more outcomes (after ``outcomes``), kept encoded until first use;
    their times must be the ones inside the bytes (checked when they are decoded)."""
    state = LedgerState(idempotency_retention_s=idempotency_retention_s)
    for record in records:
        if isinstance(record, AccountState):
            state._accounts[(record.tenant_id, record.account_id)] = record
        elif isinstance(record, TransferState):
            state._transfers[(record.tenant_id, record.transfer_id)] = record
        else:
            state._heads[record.tenant_id] = record
    stream_time_us = 0
    outcome_entries: dict[tuple[str, str], int | None] = {}
    for outcome in outcomes:
        key = (outcome.tenant_id, outcome.idempotency_key)
        state._outcomes[key] = outcome
        outcome_entries[key] = outcome.expires_at_us
        stream_time_us = max(stream_time_us, outcome.decided_at_us)
    for tenant_id, idempotency_key, decided_at_us, expires_at_us, value in encoded_outcomes:
        key = (tenant_id, idempotency_key)
        state._outcomes[key] = value
        outcome_entries[key] = expires_at_us
        stream_time_us = max(stream_time_us, decided_at_us)
    # every event is effective at or before the stream time that decided it; a tick that
    # expired nothing is not remembered, and needs not be (a later record is at least as late)
    for tenant_head in state._heads.values():
        stream_time_us = max(stream_time_us, tenant_head.last_effective_at_us)
    state._stream_time_us = stream_time_us
    state._pending_index = _ExpiryIndex(
        (transfer.expires_at_us, transfer.tenant_id, transfer.transfer_id)
        for transfer in state._transfers.values()
        if transfer.status is TransferStatus.PENDING and transfer.expires_at_us is not None
    )
    state._outcome_index = _ExpiryIndex(
        (expires_at_us, *key)
        for key, expires_at_us in outcome_entries.items()
        if expires_at_us is not None
    )
    for event in events:
        head = state._heads.get(event.tenant_id)
        if head is None or event.sequence > head.last_sequence:
            apply(state, event)
    state.commit()
    assert_invariants(state)
    return state


def assert_invariants(state: LedgerState) -> None:
    """Full check (O(state)): per tenant and currency debits equal credits (posted and pending),
    counters within int64, pending counters equal the open pending transfers, and no record
    newer than its tenant's head. Raises InvariantViolationError."""
    sums: dict[tuple[str, str], list[int]] = {}
    for account in state._accounts.values():
        _check_counters(account)
        _check_not_after_head(state, account.tenant_id, account.last_sequence, account.account_id)
        total = sums.setdefault((account.tenant_id, account.currency), [0, 0, 0, 0])
        total[0] += account.debits_posted - account.credits_posted
        total[1] += account.debits_pending - account.credits_pending
    for (tenant_id, currency), (posted, pending) in (
        (key, value[:2]) for key, value in sums.items()
    ):
        if posted or pending:
            raise InvariantViolationError(
                f"tenant {tenant_id} {currency}: balances sum to {posted} posted, {pending} pending"
            )
    reserved: dict[tuple[str, str], list[int]] = {}
    for transfer in state._transfers.values():
        _check_not_after_head(
            state, transfer.tenant_id, transfer.last_sequence, transfer.transfer_id
        )
        if transfer.status is TransferStatus.PENDING:
            reserved.setdefault((transfer.tenant_id, transfer.debit_account_id), [0, 0])[0] += (
                transfer.amount
            )
            reserved.setdefault((transfer.tenant_id, transfer.credit_account_id), [0, 0])[1] += (
                transfer.amount
            )
    for key, account in state._accounts.items():
        debits, credits = reserved.get(key, (0, 0))
        if (account.debits_pending, account.credits_pending) != (debits, credits):
            raise InvariantViolationError(
                f"account {key[0]}/{key[1]}: pending counters differ from its pending transfers"
            )


def _check_not_after_head(state: LedgerState, tenant_id: str, sequence: int, name: str) -> None:
    head = state._heads.get(tenant_id)
    if head is None or sequence > head.last_sequence:
        raise InvariantViolationError(f"{tenant_id}/{name}: sequence {sequence} is past the head")
