"""A partition's state as records, and back: ``export_records``, ``outcomes_of``, ``restore``.

``restore`` rebuilds one partition's ``LedgerState`` from what the partition adapter read back
(``processors.partition_ledger.restore_ledger``): the latest ``ledger.balances`` records, the
stored outcomes (decoded, or still encoded: kept as bytes until a decision replaces them or they
expire, which keeps a restore of millions of keys fast) and a tail of ``ledger.events`` to fold.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ledger.expiry import ExpiryIndex
from ledger.fold import apply
from ledger.invariants import assert_invariants
from ledger.monitors import monitor_watch_entry
from ledger.state import DEFAULT_IDEMPOTENCY_RETENTION_S, LedgerState, WireFormat
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

# An outcome as ledger.outcomes stores it, not decoded: (tenant_id, idempotency_key,
# decided_at_us, expires_at_us, the encoded outcome). The times must be the ones inside the
# bytes; the partition adapter reads them from a record header.
EncodedOutcome = tuple[str, str, int, int | None, bytes]


def export_records(state: LedgerState) -> Iterator[StateRecord]:
    """Every state record (heads, accounts, transfers), as ledger.balances would hold them."""
    yield from state._heads.values()
    yield from state._accounts.values()
    yield from state._transfers.values()
    yield from state._transactions.values()
    yield from state._monitors.values()


def outcomes_of(state: LedgerState) -> Iterator[Outcome]:
    """Every stored outcome, as ledger.outcomes would hold them (encoded ones decoded)."""
    for tenant_id, idempotency_key in list(state._outcomes):
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
    encoded_outcomes: Iterable[EncodedOutcome] = (),
) -> LedgerState:
    """Rebuild a partition's state from ledger.balances records and ledger.outcomes values (in
    offset order: a later record of a key wins), then fold the ledger.events tail past each
    tenant's head. Checks the invariants before returning a committed state.

    ``encoded_outcomes`` are more outcomes (after ``outcomes``), kept encoded until a decision
    replaces them or they expire; ``wire_format.decode_outcome`` reads them when asked."""
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
    _index_monitors(state)
    outcome_entries, stream_time_us = _restore_outcomes(state, outcomes, encoded_outcomes)
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
    state._outcome_index = ExpiryIndex(
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


def _index_monitors(state: LedgerState) -> None:
    """Each account's monitor ids in creation order (``created_sequence``: the order the live
    state appended them in, so a restored owner evaluates them in the same order) and the
    count per tenant."""
    ordered = sorted(
        state._monitors.values(), key=lambda monitor: (monitor.tenant_id, monitor.created_sequence)
    )
    for monitor in ordered:
        account_key = (monitor.tenant_id, monitor.account_id)
        entry = monitor_watch_entry(monitor)
        state._account_monitors[account_key] = (
            *state._account_monitors.get(account_key, ()),
            entry,
        )
        counts = state._tenant_monitor_counts
        counts[monitor.tenant_id] = counts.get(monitor.tenant_id, 0) + 1


def _restore_outcomes(
    state: LedgerState, outcomes: Iterable[Outcome], encoded_outcomes: Iterable[EncodedOutcome]
) -> tuple[dict[tuple[str, str], int | None], int]:
    """Put the outcomes into ``state``; return their expiry per key and the latest decision."""
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
    return outcome_entries, stream_time_us
