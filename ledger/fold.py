"""The fold: ``apply(state, event)`` folds one event of ``ledger.events`` into a state.

What each event does to balances and to its transfer's status comes from ``ledger.effects``
(the definition the projection's planner uses too). The fold also verifies what a verifier of
``ledger.events`` must: the gapless sequence, the hash chain, debits equal to credits, and that
the balances the event carries are the fold's. A failure is an ``InvariantViolationError``.
"""

from __future__ import annotations

from ledger._generated_records import new_state_changes
from ledger.effects import (
    amount_posted_after,
    balance_of,
    counter_changes,
    move_counters,
    next_status,
    reversed_by,
    reversible,
    with_status,
)
from ledger.monitor_steps import fold_monitor_event, watch
from ledger.state import LedgerState
from ledger.transactions import fold_transaction
from schemas._generated_records import new_account_state, new_tenant_head, new_transfer_state
from schemas.model import (
    GENESIS_HASH,
    INT64_MAX,
    AccountOpened,
    AccountState,
    Event,
    MonitorCreated,
    MonitorDeleted,
    PendingExpired,
    PendingPosted,
    PendingVoided,
    TransactionState,
    TransferPending,
    TransferPosted,
    TransferState,
)
from streamledger.errors import InvariantViolationError

_TransferEvent = TransferPosted | TransferPending | PendingPosted | PendingVoided | PendingExpired


def _fold_error(event: Event, problem: str) -> InvariantViolationError:
    return InvariantViolationError(f"event {event.event_id}: {problem}")


def _check_link(state: LedgerState, event: Event) -> None:
    """The event continues its tenant's gapless sequence and hash chain."""
    head = state.head(event.tenant_id)
    sequence, prev_hash = (
        (1, GENESIS_HASH) if head is None else (head.last_sequence + 1, head.last_hash)
    )
    if event.sequence != sequence:
        raise _fold_error(event, f"sequence {event.sequence}, expected {sequence} (a gap)")
    if event.event_id != f"{event.tenant_id}:{event.sequence}":
        raise _fold_error(event, "event_id is not tenant_id:sequence")
    if event.prev_hash != prev_hash:
        raise _fold_error(event, "prev_hash does not match the tenant's last hash")
    if event.hash != state.wire_format.seal(event)[0]:
        raise _fold_error(event, "hash does not match the event's content")
    if head is not None and event.effective_at_us < head.last_effective_at_us:
        raise _fold_error(event, "effective before the tenant's previous event")


def _fold_opened(state: LedgerState, event: AccountOpened) -> AccountState:
    if state.account(event.tenant_id, event.account_id) is not None:
        raise _fold_error(event, f"account {event.account_id!r} opened twice")
    return new_account_state(
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


def _moved(
    event: _TransferEvent,
    accounts: tuple[AccountState, AccountState],
    pending_amount: int | None = None,
) -> list[AccountState]:
    """Both accounts after the event's postings (``ledger.effects.counter_changes``)."""
    debit, credit = accounts
    posted, pending = counter_changes(type(event).__name__, event.amount, pending_amount)
    return list(
        move_counters(debit, credit, posted=posted, pending=pending, sequence=event.sequence)
    )


def _fold_new_transfer(
    state: LedgerState, event: TransferPosted | TransferPending
) -> tuple[list[AccountState], list[TransferState]]:
    existing = state.transfer(event.tenant_id, event.transfer_id)
    status = next_status(type(event).__name__, None if existing is None else existing.status)
    if status is None:
        raise _fold_error(event, f"transfer {event.transfer_id!r} created twice")
    accounts = _moved(event, _fold_accounts(state, event))
    reverses = None if isinstance(event, TransferPending) else event.reverses
    transfer = new_transfer_state(
        tenant_id=event.tenant_id,
        transfer_id=event.transfer_id,
        debit_account_id=event.debit_account_id,
        credit_account_id=event.credit_account_id,
        currency=event.currency,
        amount=event.amount,
        status=status,
        amount_posted=amount_posted_after(type(event).__name__, event.amount),
        amount_reversed=0,
        reverses=reverses,
        expires_at_us=event.expires_at_us if isinstance(event, TransferPending) else None,
        last_sequence=event.sequence,
    )
    transfers = [transfer]
    if reverses is not None:
        original = state.transfer(event.tenant_id, reverses)
        if original is None or not reversible(original.status):
            raise _fold_error(event, f"reverses {reverses!r}, which is not a posted transfer")
        transfers.append(reversed_by(original, event.amount, event.sequence))
    return accounts, transfers


def _fold_pending_end(
    state: LedgerState, event: PendingPosted | PendingVoided | PendingExpired
) -> tuple[list[AccountState], list[TransferState]]:
    pending = state.transfer(event.tenant_id, event.transfer_id)
    event_type = type(event).__name__
    status = None if pending is None else next_status(event_type, pending.status)
    if pending is None or status is None:
        raise _fold_error(event, f"transfer {event.transfer_id!r} is not pending")
    if (pending.debit_account_id, pending.credit_account_id) != (
        event.debit_account_id,
        event.credit_account_id,
    ):
        raise _fold_error(event, "accounts differ from the pending transfer's")
    debit_and_credit = _fold_accounts(state, event)
    if isinstance(event, PendingPosted):
        if event.pending_amount != pending.amount or event.amount > pending.amount:
            raise _fold_error(event, "amounts do not match the pending transfer")
    elif event.amount != pending.amount:
        raise _fold_error(event, "released amount differs from the pending amount")
    elif isinstance(event, PendingExpired) and (
        pending.expires_at_us is None or pending.expires_at_us > event.effective_at_us
    ):
        raise _fold_error(event, "expired before its expiry time")
    accounts = _moved(event, debit_and_credit, pending.amount)
    transfer = with_status(
        pending,
        status=status,
        amount_posted=amount_posted_after(event_type, event.amount),
        sequence=event.sequence,
    )
    return accounts, [transfer]


def apply(state: LedgerState, event: Event) -> LedgerState:
    """Fold one event into ``state`` (staged, like a decision: ``commit``/``abort`` end it) and
    return it. Raises ``InvariantViolationError`` if the event does not continue the state."""
    _check_link(state, event)
    transactions: list[TransactionState] = []
    accounts: list[AccountState] = []
    transfers: list[TransferState] = []
    if isinstance(event, MonitorCreated | MonitorDeleted):
        monitor_changes = fold_monitor_event(state, event)
    elif isinstance(event, AccountOpened):
        accounts = [_fold_opened(state, event)]
    elif isinstance(event, TransferPosted | TransferPending):
        accounts, transfers = _fold_new_transfer(state, event)
    elif isinstance(event, PendingPosted | PendingVoided | PendingExpired):
        accounts, transfers = _fold_pending_end(state, event)
    else:
        accounts, transactions = fold_transaction(state, event)
        transfers = []
    if not isinstance(event, MonitorCreated | MonitorDeleted):
        if tuple(balance_of(account) for account in accounts) != event.balances:
            raise _fold_error(event, "the balances it carries are not the fold's")
        monitor_changes = watch(state, (event,))  # the edges (their notifications are logged)
    head = new_tenant_head(
        tenant_id=event.tenant_id,
        last_sequence=event.sequence,
        last_hash=event.hash,
        last_effective_at_us=event.effective_at_us,
    )
    state.stage(
        new_state_changes(
            accounts=tuple(accounts),
            transfers=tuple(transfers),
            heads=(head,),
            outcome=None,
            stream_time_us=max(state.stream_time_us, event.effective_at_us),
            transactions=tuple(transactions),
            monitors=monitor_changes.monitors,
            deleted_monitors=monitor_changes.deleted,
        )
    )
    return state
