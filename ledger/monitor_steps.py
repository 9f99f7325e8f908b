"""Monitors inside a decision (decision 0058): the monitor commands' rules and events, and the
edges a decision's events cause.

* ``monitor_rejection`` — the rules of ``CreateMonitor``/``DeleteMonitor`` (after the contract's
  limits and idempotency): ``UNKNOWN_ACCOUNT``, ``MONITOR_EXISTS``, ``MONITOR_LIMIT_REACHED``,
  ``MONITOR_NOT_FOUND``, in the enum's order.
* ``execute_monitor_command`` — the accepted command's event (``MonitorCreated`` with the
  initial evaluation, or ``MonitorDeleted``), its state change, and the ``MonitorTriggered`` a
  creation emits when its condition already holds.
* ``watch`` — for each event that moves money, in sequence order, each account in its
  ``balances`` (the counters after the whole event), each of that account's monitors in creation
  order: a notification where the condition's truth differs from the monitor's ``holds`` flag,
  and the flag's new value. Edge-triggered: never one per event while it holds.

Notifications are values of the decision, produced by the partition adapter to
``ledger.notifications`` in the batch's transaction; the flags travel in ``StateChanges`` to
``ledger.balances``, so a restored owner continues from the committed flags.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from ledger._generated_records import new_state_changes
from ledger.decisions import Rejection, StateChanges
from ledger.draft import Draft, event_header
from ledger.effects import balance_of
from ledger.monitors import (
    AccountWatch,
    account_is_credit_normal,
    evaluate,
    field_values,
    notification_id,
    parse_condition,
    saturated,
)
from ledger.state import LedgerState
from schemas._generated_records import (
    new_monitor_cleared,
    new_monitor_created_with_header,
    new_monitor_deleted_with_header,
    new_monitor_state,
    new_monitor_triggered,
)
from schemas.limits import MONITORS_PER_ACCOUNT_MAX, MONITORS_PER_TENANT_MAX
from schemas.model import (
    AccountBalance,
    AccountState,
    CreateMonitor,
    DeleteMonitor,
    Event,
    MonitorCreated,
    MonitorDeleted,
    MonitorState,
    Notification,
    RejectReason,
)
from streamledger.errors import InvariantViolationError

MONITOR_EVENT_TYPES: Final = (MonitorCreated, MonitorDeleted)


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorChanges:
    """What a decision does to monitors: new versions, deletions, notifications in order."""

    monitors: tuple[MonitorState, ...] = ()
    deleted: tuple[tuple[str, str], ...] = ()  # (tenant_id, monitor_id)
    notifications: tuple[Notification, ...] = ()


NO_MONITOR_CHANGES: Final = MonitorChanges()


def monitor_rejection(draft: Draft, command: CreateMonitor | DeleteMonitor) -> Rejection | None:
    """The first monitor rule ``command`` breaks, in ``RejectReason`` order, or None."""
    state, tenant_id = draft.state, command.tenant_id
    if isinstance(command, DeleteMonitor):
        if state.monitor(tenant_id, command.monitor_id) is None:
            return RejectReason.MONITOR_NOT_FOUND, (
                f"monitor_id: the tenant has no monitor {command.monitor_id!r}"
            )
        return None
    if draft.account(tenant_id, command.account_id) is None:
        return RejectReason.UNKNOWN_ACCOUNT, f"account_id: no account {command.account_id!r}"
    if state.monitor(tenant_id, command.monitor_id) is not None:
        return RejectReason.MONITOR_EXISTS, f"monitor_id: {command.monitor_id!r} exists"
    if len(state.account_watch_entries(tenant_id, command.account_id)) >= MONITORS_PER_ACCOUNT_MAX:
        return RejectReason.MONITOR_LIMIT_REACHED, (
            f"account_id: account {command.account_id!r} has {MONITORS_PER_ACCOUNT_MAX}"
            " monitors (monitors_per_account_max)"
        )
    if state.tenant_monitor_count(tenant_id) >= MONITORS_PER_TENANT_MAX:
        return RejectReason.MONITOR_LIMIT_REACHED, (
            f"monitor_id: the tenant has {MONITORS_PER_TENANT_MAX} monitors"
            " (monitors_per_tenant_max)"
        )
    return None


def execute_monitor_command(
    draft: Draft, command: CreateMonitor | DeleteMonitor, effective_at_us: int
) -> MonitorChanges:
    """Record the accepted command's event in ``draft``; return its monitor changes."""
    tenant_id = command.tenant_id
    if isinstance(command, DeleteMonitor):
        monitor = draft.state.monitor(tenant_id, command.monitor_id)
        assert monitor is not None, "the rules let a DeleteMonitor of no monitor through"
        account = _account(draft, tenant_id, monitor.account_id)
        link = draft.next_link(tenant_id)
        header = event_header(
            tenant_id, link, command, effective_at_us, (account,), actor=draft.actor
        )
        draft.record(
            new_monitor_deleted_with_header(
                header, monitor_id=monitor.monitor_id, account_id=monitor.account_id
            )
        )
        return MonitorChanges(deleted=((tenant_id, monitor.monitor_id),))
    account = _account(draft, tenant_id, command.account_id)
    condition = parse_condition(command.field, command.operator, command.threshold)
    holds, value = evaluate(
        condition, balance_of(account), credit_normal=account_is_credit_normal(account)
    )
    link = draft.next_link(tenant_id)
    header = event_header(tenant_id, link, command, effective_at_us, (account,), actor=draft.actor)
    event = new_monitor_created_with_header(
        header,
        monitor_id=command.monitor_id,
        account_id=command.account_id,
        field=command.field,
        operator=command.operator,
        threshold=command.threshold,
        holds=holds,
    )
    draft.record(event)
    monitor = _created_monitor(event)
    # creation is an edge when the condition already holds (decision 0058)
    notifications = (_notification(monitor, event, account.currency, value),) if holds else ()
    return MonitorChanges(monitors=(monitor,), notifications=notifications)


def watch(state: LedgerState, events: Sequence[Event]) -> MonitorChanges:
    """The edges ``events`` (in sequence order) cause on the partition's monitors."""
    if not state._account_monitors:
        return NO_MONITOR_CHANGES
    account_monitors = state._account_monitors
    changed: dict[tuple[str, str], MonitorState] = {}
    notifications: list[Notification] = []
    for event in events:
        if isinstance(event, MONITOR_EVENT_TYPES):
            continue  # they move no money
        tenant_id = event.tenant_id
        for balance in event.balances:
            watched = account_monitors.get((tenant_id, balance.account_id))
            if watched is not None:
                _watch_account(
                    state,
                    event,
                    balance,
                    watched,
                    changed=changed,
                    notifications=notifications,
                )
    if not changed:
        return NO_MONITOR_CHANGES
    return MonitorChanges(monitors=tuple(changed.values()), notifications=tuple(notifications))


def _watch_account(
    state: LedgerState,
    event: Event,
    balance: AccountBalance,
    watched: AccountWatch,
    *,
    changed: dict[tuple[str, str], MonitorState],
    notifications: list[Notification],
) -> None:
    """One account's monitors against its counters after ``event``."""
    tenant_id = event.tenant_id
    values = field_values(balance, credit_normal=watched.credit_normal)
    if not changed and watched.quiet(values):
        return  # the common case: every flag is what its condition says (decision 0138)
    for monitor_id, field_index, operator_index, threshold, held in watched.entries:
        value = values[field_index]
        # holds_at, inlined: this runs up to 16 times per account per event
        if operator_index == 0:
            holds = value < threshold
        elif operator_index == 1:
            holds = value <= threshold
        elif operator_index == 2:
            holds = value > threshold
        elif operator_index == 3:
            holds = value >= threshold
        else:
            holds = value == threshold
        if holds == held and not changed:
            continue  # the common case: no edge, and no earlier edge in this decision
        key = (tenant_id, monitor_id)
        earlier = changed.get(key)  # an edge earlier in this decision moved the flag
        if holds == (held if earlier is None else earlier.holds):
            continue
        monitor = earlier or state._monitors[key]
        monitor = new_monitor_state(
            tenant_id=tenant_id,
            monitor_id=monitor_id,
            account_id=monitor.account_id,
            field=monitor.field,
            operator=monitor.operator,
            threshold=monitor.threshold,
            metadata=monitor.metadata,
            holds=holds,
            created_sequence=monitor.created_sequence,
            last_sequence=event.sequence,
        )
        changed[key] = monitor
        notifications.append(_notification(monitor, event, balance.currency, value))


def _notification(monitor: MonitorState, event: Event, currency: str, value: int) -> Notification:
    """``MonitorTriggered`` (the monitor's new ``holds`` is true) or ``MonitorCleared``."""
    build = new_monitor_triggered if monitor.holds else new_monitor_cleared
    return build(
        tenant_id=monitor.tenant_id,
        notification_id=notification_id(monitor.tenant_id, event.sequence, monitor.monitor_id),
        monitor_id=monitor.monitor_id,
        account_id=monitor.account_id,
        currency=currency,
        field=monitor.field,
        operator=monitor.operator,
        threshold=monitor.threshold,
        value=saturated(value),
        sequence=event.sequence,
        event_hash=event.hash,
        effective_at_us=event.effective_at_us,
        metadata=monitor.metadata,
    )


def with_monitor_changes(changes: StateChanges, monitor_changes: MonitorChanges) -> StateChanges:
    """``changes`` plus the monitors' (the same object when there are none)."""
    if not monitor_changes.monitors and not monitor_changes.deleted:
        return changes
    return new_state_changes(
        accounts=changes.accounts,
        transfers=changes.transfers,
        heads=changes.heads,
        outcome=changes.outcome,
        stream_time_us=changes.stream_time_us,
        transactions=changes.transactions,
        monitors=changes.monitors + monitor_changes.monitors,
        deleted_monitors=changes.deleted_monitors + monitor_changes.deleted,
    )


def merged(first: MonitorChanges, second: MonitorChanges) -> MonitorChanges:
    """Two monitor changes in order (a later version of a monitor wins)."""
    if first is NO_MONITOR_CHANGES:
        return second
    if second is NO_MONITOR_CHANGES:
        return first
    latest = {(monitor.tenant_id, monitor.monitor_id): monitor for monitor in first.monitors}
    latest.update({(monitor.tenant_id, monitor.monitor_id): monitor for monitor in second.monitors})
    return MonitorChanges(
        monitors=tuple(latest.values()),
        deleted=first.deleted + second.deleted,
        notifications=first.notifications + second.notifications,
    )


def _account(draft: Draft, tenant_id: str, account_id: str) -> AccountState:
    account = draft.account(tenant_id, account_id)
    assert account is not None, "a monitor names an account the rules did not find"
    return account


def fold_monitor_event(
    state: LedgerState, event: MonitorCreated | MonitorDeleted
) -> MonitorChanges:
    """What a logged monitor event does to the state, verified (``ledger.fold.apply``): its
    account exists and its ``balances`` are that account's counters; a creation's ``holds`` is
    the condition on them; a deletion names a live monitor of that account."""
    tenant_id = event.tenant_id
    account = state.account(tenant_id, event.account_id)
    if account is None or event.balances != (balance_of(account),):
        raise InvariantViolationError(
            f"event {event.event_id}: the monitored account's counters are not the fold's"
        )
    existing = state.monitor(tenant_id, event.monitor_id)
    if isinstance(event, MonitorDeleted):
        if existing is None or existing.account_id != event.account_id:
            raise InvariantViolationError(f"event {event.event_id}: no such monitor to delete")
        return MonitorChanges(deleted=((tenant_id, event.monitor_id),))
    condition = parse_condition(event.field, event.operator, event.threshold)
    holds, _ = evaluate(
        condition, event.balances[0], credit_normal=account_is_credit_normal(account)
    )
    if existing is not None or holds != event.holds:
        raise InvariantViolationError(
            f"event {event.event_id}: the monitor exists, or holds is not its condition"
        )
    return MonitorChanges(monitors=(_created_monitor(event),))


def _created_monitor(event: MonitorCreated) -> MonitorState:
    """The state a ``MonitorCreated`` leaves: the same when decided and when folded."""
    return new_monitor_state(
        tenant_id=event.tenant_id,
        monitor_id=event.monitor_id,
        account_id=event.account_id,
        field=event.field,
        operator=event.operator,
        threshold=event.threshold,
        metadata=event.metadata,
        holds=event.holds,
        created_sequence=event.sequence,
        last_sequence=event.sequence,
    )
