"""Execution: the events an accepted command (or stream time) causes, built into a ``Draft``.

Every function here runs after the rules accepted the command, so a failed assumption is a bug
(an assertion or ``InvariantViolationError``), never a rejection. Counter changes come from
``ledger.effects``, the one definition of what each event does.
"""

from __future__ import annotations

from typing import Final

from ledger.draft import Draft, event_header
from ledger.effects import (
    CREATED_STATUS,
    FINAL_STATUS,
    counter_changes,
    move_counters,
    reversed_by,
    with_status,
)
from ledger.transactions import (
    execute_transaction,
    post_pending_transaction,
    release_transaction,
)
from schemas._generated_records import (
    new_account_opened_with_header,
    new_account_state,
    new_pending_expired_with_header,
    new_pending_posted_with_header,
    new_pending_voided_with_header,
    new_transfer_pending_with_header,
    new_transfer_posted_with_header,
    new_transfer_state,
)
from schemas.event_time import US_PER_S
from schemas.model import (
    AccountState,
    Command,
    CreateMonitor,
    DeleteMonitor,
    OpenAccount,
    PendingExpired,
    PendingVoided,
    PostPending,
    PostTransaction,
    Transfer,
    TransferPending,
    TransferPosted,
    TransferState,
    TransferStatus,
    VoidPending,
)
from streamledger.errors import InvariantViolationError

# Records made for every command are built with the typed builders (``new_*``, decision 0034):
# the classes' own keywords, checked by mypy, at about half the cost of calling the class.
_RELEASE_EVENT_TYPES: Final = {
    TransferStatus.EXPIRED: PendingExpired.__name__,
    TransferStatus.VOIDED: PendingVoided.__name__,
}


def expire_pendings(draft: Draft, stream_time_us: int) -> None:
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
        release = _release if draft.transfer(tenant_id, transfer_id) else release_transaction
        release(
            draft,
            tenant_id,
            transfer_id,
            cause=None,
            effective_at_us=max(deadline_us, draft.effective_floor_us(tenant_id)),
            status=TransferStatus.EXPIRED,
        )


def _release(
    draft: Draft,
    tenant_id: str,
    transfer_id: str,
    *,
    cause: VoidPending | None,
    effective_at_us: int,
    status: TransferStatus,
) -> None:
    """Void or expire a pending transfer: give its reservation back on both accounts.

    ``cause``: the ``VoidPending``, or ``None`` for an expiry (caused by time)."""
    transfer = draft.transfer(tenant_id, transfer_id)
    assert transfer is not None and transfer.status is TransferStatus.PENDING
    debit, credit = _accounts_of(draft, transfer)
    link = draft.next_link(tenant_id)
    event_type = _RELEASE_EVENT_TYPES[status]
    posted, pending = counter_changes(event_type, transfer.amount)
    debit, credit = move_counters(debit, credit, posted=posted, pending=pending, sequence=link[0])
    header = event_header(
        tenant_id, link, cause, effective_at_us, (debit, credit), actor=draft.actor
    )
    # two direct calls, not one through a variable: compiled, a call of a native function by its
    # name is a C call, through a variable a Python call with keywords (decision 0145)
    event: PendingExpired | PendingVoided = (
        new_pending_expired_with_header(
            header,
            transfer_id=transfer.transfer_id,
            debit_account_id=transfer.debit_account_id,
            credit_account_id=transfer.credit_account_id,
            amount=transfer.amount,
            currency=transfer.currency,
        )
        if status is TransferStatus.EXPIRED
        else new_pending_voided_with_header(
            header,
            transfer_id=transfer.transfer_id,
            debit_account_id=transfer.debit_account_id,
            credit_account_id=transfer.credit_account_id,
            amount=transfer.amount,
            currency=transfer.currency,
        )
    )
    draft.put_account(debit)
    draft.put_account(credit)
    draft.put_transfer(
        with_status(
            transfer, status=FINAL_STATUS[event_type], amount_posted=posted, sequence=link[0]
        )
    )
    draft.record(event)


def _accounts_of(draft: Draft, transfer: TransferState) -> tuple[AccountState, AccountState]:
    debit = draft.account(transfer.tenant_id, transfer.debit_account_id)
    credit = draft.account(transfer.tenant_id, transfer.credit_account_id)
    if debit is None or credit is None:
        raise InvariantViolationError(f"transfer {transfer.transfer_id}: its account is missing")
    return debit, credit


def _open_account(draft: Draft, command: OpenAccount, effective_at_us: int) -> None:
    link = draft.next_link(command.tenant_id)
    account = new_account_state(
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
    header = event_header(
        command.tenant_id, link, command, effective_at_us, (account,), actor=draft.actor
    )
    event = new_account_opened_with_header(
        header,
        account_id=command.account_id,
        currency=command.currency,
        asset_scale=command.asset_scale,
        debits_must_not_exceed_credits=command.debits_must_not_exceed_credits,
        credits_must_not_exceed_debits=command.credits_must_not_exceed_debits,
        overdraft_limit=command.overdraft_limit,
    )
    draft.put_account(account)
    draft.record(event)


def _create_transfer(draft: Draft, command: Transfer, effective_at_us: int) -> None:
    tenant_id, amount = command.tenant_id, command.amount
    link = draft.next_link(tenant_id)
    sequence = link[0]
    debit = draft.account(tenant_id, command.debit_account_id)
    credit = draft.account(tenant_id, command.credit_account_id)
    assert debit is not None and credit is not None
    event_type = "TransferPending" if command.pending else "TransferPosted"
    posted, pending = counter_changes(event_type, amount)
    debit, credit = move_counters(debit, credit, posted=posted, pending=pending, sequence=sequence)
    timeout = command.pending_timeout_s
    expires_at_us = None if timeout is None else effective_at_us + timeout * US_PER_S
    transfer = new_transfer_state(
        tenant_id=tenant_id,
        transfer_id=command.transfer_id,
        debit_account_id=command.debit_account_id,
        credit_account_id=command.credit_account_id,
        currency=command.currency,
        amount=amount,
        status=CREATED_STATUS[event_type],
        amount_posted=posted,
        amount_reversed=0,
        reverses=command.reverses,
        expires_at_us=expires_at_us,
        last_sequence=sequence,
    )
    header = event_header(
        tenant_id, link, command, effective_at_us, (debit, credit), actor=draft.actor
    )
    event: TransferPending | TransferPosted = (
        new_transfer_pending_with_header(
            header,
            transfer_id=command.transfer_id,
            debit_account_id=command.debit_account_id,
            credit_account_id=command.credit_account_id,
            amount=amount,
            currency=command.currency,
            expires_at_us=expires_at_us,
        )
        if command.pending
        else new_transfer_posted_with_header(
            header,
            transfer_id=command.transfer_id,
            debit_account_id=command.debit_account_id,
            credit_account_id=command.credit_account_id,
            amount=amount,
            currency=command.currency,
            reverses=command.reverses,
        )
    )
    draft.put_account(debit)
    draft.put_account(credit)
    draft.put_transfer(transfer)
    if command.reverses is not None:
        original = draft.transfer(tenant_id, command.reverses)
        assert original is not None
        draft.put_transfer(reversed_by(original, amount, sequence))
    draft.record(event)


def _post_pending(draft: Draft, command: PostPending, effective_at_us: int) -> None:
    transfer = draft.transfer(command.tenant_id, command.transfer_id)
    assert transfer is not None and transfer.status is TransferStatus.PENDING
    amount = transfer.amount if command.amount is None else command.amount
    debit, credit = _accounts_of(draft, transfer)
    link = draft.next_link(command.tenant_id)
    posted, pending = counter_changes("PendingPosted", amount, transfer.amount)
    debit, credit = move_counters(debit, credit, posted=posted, pending=pending, sequence=link[0])
    header = event_header(
        command.tenant_id, link, command, effective_at_us, (debit, credit), actor=draft.actor
    )
    event = new_pending_posted_with_header(
        header,
        transfer_id=transfer.transfer_id,
        debit_account_id=transfer.debit_account_id,
        credit_account_id=transfer.credit_account_id,
        amount=amount,
        currency=transfer.currency,
        pending_amount=transfer.amount,
    )
    draft.put_account(debit)
    draft.put_account(credit)
    draft.put_transfer(
        with_status(
            transfer,
            status=FINAL_STATUS["PendingPosted"],
            amount_posted=posted,
            sequence=link[0],
        )
    )
    draft.record(event)


def execute(draft: Draft, command: Command, effective_at_us: int) -> None:
    """Build the events of an accepted command into ``draft`` (monitor commands:
    ``ledger.monitor_steps``)."""
    assert not isinstance(command, CreateMonitor | DeleteMonitor)
    if isinstance(command, OpenAccount):
        _open_account(draft, command, effective_at_us)
    elif isinstance(command, Transfer):
        _create_transfer(draft, command, effective_at_us)
    elif isinstance(command, PostTransaction):
        execute_transaction(draft, command, effective_at_us)
    elif draft.transfer(command.tenant_id, command.transfer_id) is None:
        _end_pending_transaction(draft, command, effective_at_us)
    elif isinstance(command, PostPending):
        _post_pending(draft, command, effective_at_us)
    else:
        _release(
            draft,
            command.tenant_id,
            command.transfer_id,
            cause=command,
            effective_at_us=effective_at_us,
            status=TransferStatus.VOIDED,
        )


def _end_pending_transaction(
    draft: Draft, command: PostPending | VoidPending, effective_at_us: int
) -> None:
    """PostPending/VoidPending naming a pending transaction (one id namespace, decision 0041)."""
    if isinstance(command, PostPending):
        post_pending_transaction(draft, command, effective_at_us)
        return
    release_transaction(
        draft,
        command.tenant_id,
        command.transfer_id,
        cause=command,
        effective_at_us=effective_at_us,
        status=TransferStatus.VOIDED,
    )
