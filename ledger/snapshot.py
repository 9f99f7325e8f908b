"""A partition's state as records, and back: ``export_records``, ``outcomes_of``, ``restore``.

``restore`` rebuilds one partition's ``LedgerState`` from what the partition adapter read back
(``processors.partition_ledger.restore_ledgers``): the latest ``ledger.balances`` records, the
stored outcomes (decoded, or still encoded: kept as bytes until a decision replaces them or they
expire, which keeps a restore of millions of keys fast and small, decision 0102) and a tail of
``ledger.events`` to fold.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from ledger.expiry import ExpiryEntry, ExpiryIndex, OutcomeExpiryIndex
from ledger.fold import apply
from ledger.invariants import assert_invariants, assert_not_after_heads
from ledger.monitors import (
    AccountWatch,
    WatchEntry,
    account_is_credit_normal,
    monitor_watch_entry,
)
from ledger.state import DEFAULT_IDEMPOTENCY_RETENTION_S, LedgerState, WireFormat
from schemas.keys import KEY_SEPARATOR, outcome_key, transfer_state_key
from schemas.model import (
    AccountState,
    Event,
    MonitorState,
    Outcome,
    StateRecord,
    TenantHead,
    TransferState,
    TransferStatus,
)

KEPT_FOREVER_US: Final = -(2**63)  # an encoded outcome's expires_at_us when it has none


@dataclass(frozen=True, slots=True)
class EncodedOutcomes:
    """Outcomes as ledger.outcomes stores them, not decoded (decision 0102): ``values`` maps
    each one's record key (``schemas.keys.outcome_key``) to its bytes, ``keys`` lists the same
    keys, and ``times`` holds for ``keys[i]`` its decided_at_us at ``2 * i`` and its
    expires_at_us at ``2 * i + 1`` (``KEPT_FOREVER_US``: no expiry). The times must be the ones
    inside the bytes; the partition adapter reads them from a record header."""

    values: dict[bytes, bytes]
    keys: list[bytes]
    times: array[int]


@dataclass(frozen=True, slots=True)
class EncodedTransfers:
    """Settled (not pending) transfers as ledger.balances stores them, not decoded (decision
    0102): ``values`` maps each one's record key (``schemas.keys.transfer_state_key``) to its
    bytes; ``last_sequences`` holds per tenant the highest ``last_sequence`` among them, which
    must not be past the tenant's head (the one invariant a settled transfer takes part in)."""

    values: dict[bytes, bytes]
    last_sequences: dict[str, int]


def export_records(state: LedgerState) -> Iterator[StateRecord]:
    """Every state record (heads, accounts, transfers), as ledger.balances would hold them."""
    yield from state._heads.values()
    yield from state._accounts.values()
    yield from state._transfers.values()
    decode_state = state.wire_format.decode_state
    for value in list(state._encoded_transfers.values()):
        assert decode_state is not None
        yield decode_state(value)
    yield from state._transactions.values()
    yield from state._monitors.values()


def outcomes_of(state: LedgerState) -> Iterator[Outcome]:
    """Every stored outcome, as ledger.outcomes would hold them (encoded ones decoded)."""
    for tenant_id, idempotency_key in list(state._outcomes):
        outcome = state.outcome(tenant_id, idempotency_key)
        assert outcome is not None
        yield outcome
    for record_key in list(state._encoded_outcomes):
        tenant_id, idempotency_key = record_key.decode().split(KEY_SEPARATOR, 1)
        outcome = state.outcome(tenant_id, idempotency_key)
        assert outcome is not None
        yield outcome


def restore(
    records: Iterable[StateRecord],
    outcomes: Iterable[Outcome],
    events: Iterable[Event] = (),
    *,
    wire_format: WireFormat,
    idempotency_retention_s: int = DEFAULT_IDEMPOTENCY_RETENTION_S,
    encoded_outcomes: EncodedOutcomes | None = None,
    encoded_transfers: EncodedTransfers | None = None,
) -> LedgerState:
    """Rebuild a partition's state from ledger.balances records and ledger.outcomes values (in
    offset order: a later record of a key wins), then fold the ledger.events tail past each
    tenant's head. Checks the invariants before returning a committed state.

    ``encoded_outcomes`` are more outcomes (after ``outcomes``: one of their keys wins), kept
    encoded until a decision replaces them or they expire; ``wire_format.decode_outcome`` reads
    them when asked. ``encoded_transfers`` are more transfers, settled, kept encoded until a
    decision changes them (``wire_format.decode_state`` reads them when asked)."""
    state = LedgerState(wire_format=wire_format, idempotency_retention_s=idempotency_retention_s)
    for record in records:
        if isinstance(record, AccountState):
            state._accounts[(record.tenant_id, record.account_id)] = record
        elif isinstance(record, TransferState):
            state._transfers[(record.tenant_id, record.transfer_id)] = record
        elif isinstance(record, TenantHead):
            state._heads[record.tenant_id] = record
        elif isinstance(record, MonitorState):
            state._monitors[(record.tenant_id, record.monitor_id)] = record
        else:
            state._transactions[(record.tenant_id, record.transaction_id)] = record
    if encoded_transfers is not None and encoded_transfers.values:
        _keep_encoded_transfers(state, encoded_transfers)
    _index_monitors(state)
    outcome_entries, stream_time_us = _restore_outcomes(state, outcomes)
    encoded_index = _restore_encoded_outcomes(state, encoded_outcomes)
    stream_time_us = max(stream_time_us, encoded_index[2])
    # every event is effective at or before the stream time that decided it; a tick that
    # expired nothing is not remembered, and needs not be (a later record is at least as late)
    for tenant_head in state._heads.values():
        stream_time_us = max(stream_time_us, tenant_head.last_effective_at_us)
    state._stream_time_us = stream_time_us
    state._pending_index = ExpiryIndex(
        [
            *(
                (transfer.expires_at_us, transfer.tenant_id, transfer.transfer_id)
                for transfer in state._transfers.values()
                if transfer.status is TransferStatus.PENDING and transfer.expires_at_us is not None
            ),
            *(
                (transaction.expires_at_us, transaction.tenant_id, transaction.transaction_id)
                for transaction in state._transactions.values()
                if transaction.status is TransferStatus.PENDING
                and transaction.expires_at_us is not None
            ),
        ]
    )
    heap_entries: list[ExpiryEntry] = [
        (expires_at_us, *key)
        for key, expires_at_us in outcome_entries.items()
        if expires_at_us is not None and key in state._outcomes
    ]
    state._outcome_index = OutcomeExpiryIndex(
        heap_entries,
        encoded=state._encoded_outcomes,
        encoded_expiries=encoded_index[0],
        encoded_keys=encoded_index[1],
    )
    for event in events:
        head = state._heads.get(event.tenant_id)
        if head is None or event.sequence > head.last_sequence:
            apply(state, event)
    state.commit()
    assert_invariants(state)
    if encoded_transfers is not None:
        assert_not_after_heads(state, encoded_transfers.last_sequences)
    return state


def _keep_encoded_transfers(state: LedgerState, encoded: EncodedTransfers) -> None:
    """Keep the settled transfers encoded in ``state`` (a decoded one of the same key is
    dropped: the records come from one compacted topic, so there is none)."""
    if state.wire_format.decode_state is None:
        raise ValueError("transfers kept encoded need wire_format.decode_state")
    state._encoded_transfers.update(encoded.values)
    for tenant_id, transfer_id in list(state._transfers):
        if transfer_state_key(tenant_id, transfer_id) in state._encoded_transfers:
            del state._transfers[(tenant_id, transfer_id)]


def _index_monitors(state: LedgerState) -> None:
    """Each account's monitor ids in creation order (``created_sequence``: the order the live
    state appended them in, so a restored owner evaluates them in the same order) and the
    count per tenant."""
    ordered = sorted(
        state._monitors.values(), key=lambda monitor: (monitor.tenant_id, monitor.created_sequence)
    )
    entries: dict[tuple[str, str], list[WatchEntry]] = {}
    for monitor in ordered:
        entries.setdefault((monitor.tenant_id, monitor.account_id), []).append(
            monitor_watch_entry(monitor)
        )
        counts = state._tenant_monitor_counts
        counts[monitor.tenant_id] = counts.get(monitor.tenant_id, 0) + 1
    for account_key, account_entries in entries.items():
        account = state._accounts.get(account_key)
        # a monitor without its account fails the invariants at the end of the restore
        credit_normal = account is None or account_is_credit_normal(account)
        state._account_monitors[account_key] = AccountWatch(
            tuple(account_entries), credit_normal=credit_normal
        )


def _restore_outcomes(
    state: LedgerState, outcomes: Iterable[Outcome]
) -> tuple[dict[tuple[str, str], int | None], int]:
    """Put the outcomes into ``state``; return their expiry per key and the latest decision."""
    stream_time_us = 0
    outcome_entries: dict[tuple[str, str], int | None] = {}
    for outcome in outcomes:
        key = (outcome.tenant_id, outcome.idempotency_key)
        state._outcomes[key] = outcome
        outcome_entries[key] = outcome.expires_at_us
        stream_time_us = max(stream_time_us, outcome.decided_at_us)
    return outcome_entries, stream_time_us


def _restore_encoded_outcomes(
    state: LedgerState, encoded: EncodedOutcomes | None
) -> tuple[array[int], list[bytes], int]:
    """Keep ``encoded`` in ``state`` (a decoded outcome of the same key is dropped: the later
    one wins); return their expiries in ascending order, the record key of each, and the latest
    decision. One pass over the keys."""
    expiries: array[int] = array("q")
    keys: list[bytes] = []
    if encoded is None or not encoded.keys:
        return expiries, keys, 0
    record_keys, times = encoded.keys, encoded.times
    if len(times) != 2 * len(record_keys) or len(encoded.values) != len(record_keys):
        raise ValueError("encoded outcomes: keys, values and times do not match")
    values = state._encoded_outcomes
    values.update(encoded.values)
    for tenant_id, idempotency_key in list(state._outcomes):
        if outcome_key(tenant_id, idempotency_key) in values:
            del state._outcomes[(tenant_id, idempotency_key)]
    # the times as a list and the expiries gathered in one (an array's item and append are
    # generic calls compiled, a list's are not: 0.28 -> 0.15 s per million keys, decision 0129)
    integers: list[int] = times.tolist()
    kept: list[int] = []
    latest_us, ordered, previous_us = 0, True, KEPT_FOREVER_US
    for position in range(len(record_keys)):
        decided_at_us, expires_at_us = integers[2 * position], integers[2 * position + 1]
        latest_us = max(latest_us, decided_at_us)
        if expires_at_us != KEPT_FOREVER_US:
            if expires_at_us < previous_us:
                ordered = False
            previous_us = expires_at_us
            kept.append(expires_at_us)
            keys.append(record_keys[position])
    if not ordered:  # records are in decision order, so this is rare (a changed retention)
        order = sorted(range(len(keys)), key=kept.__getitem__)
        kept = [kept[position] for position in order]
        keys = [keys[position] for position in order]
    return array("q", kept), keys, latest_us
