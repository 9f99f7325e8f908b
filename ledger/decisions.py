"""What ``decide`` returns: decisions as values, and the state changes they carry.

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

Each decision carries the ``notifications`` of balance monitors its events caused
(``ledger.monitor_steps``, decision 0058), for ``ledger.notifications``.

``decide_tick`` returns ``Ticked``: the ``PendingExpired`` events a tick record's timestamp
caused. Each decision also carries ``encoded_events``: the bytes of each event, made by the
state's ``WireFormat`` while the event was hashed (the core never encodes on its own).
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.model import (
    AccountState,
    Event,
    MonitorState,
    Notification,
    Outcome,
    RejectReason,
    TenantHead,
    TransactionState,
    TransferState,
)

Rejection = tuple[RejectReason, str]  # (reason, detail starting with the field it concerns)


@dataclass(frozen=True, slots=True, kw_only=True)
class StateChanges:
    """What one stored decision changes: the new versions of the records, and stream time."""

    accounts: tuple[AccountState, ...]
    transfers: tuple[TransferState, ...]
    heads: tuple[TenantHead, ...]
    outcome: Outcome | None
    stream_time_us: int
    transactions: tuple[TransactionState, ...] = ()  # multi-leg transactions (issue 16)
    monitors: tuple[MonitorState, ...] = ()  # new versions of balance monitors (decision 0058)
    deleted_monitors: tuple[tuple[str, str], ...] = ()  # (tenant_id, monitor_id), tombstoned


@dataclass(frozen=True, slots=True, kw_only=True)
class Accepted:
    events: tuple[Event, ...]  # in sequence order: PendingExpired first, then the command's
    outcome: Outcome
    changes: StateChanges
    encoded_events: tuple[bytes, ...] = ()  # the bytes of each event, made while sealing
    notifications: tuple[Notification, ...] = ()  # monitor edges, in sequence order

    @property
    def stored_outcome(self) -> Outcome | None:
        return self.changes.outcome


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejected:
    events: tuple[Event, ...]  # only PendingExpired events caused by stream time
    outcome: Outcome
    changes: StateChanges | None  # None: a reply only, nothing stored
    encoded_events: tuple[bytes, ...] = ()  # the bytes of each event, made while sealing
    notifications: tuple[Notification, ...] = ()  # monitor edges, in sequence order

    @property
    def stored_outcome(self) -> Outcome | None:
        return None if self.changes is None else self.changes.outcome


@dataclass(frozen=True, slots=True, kw_only=True)
class Duplicate:
    outcome: Outcome  # the original outcome stored under the key
    events: tuple[Event, ...] = ()
    changes: None = None
    encoded_events: tuple[bytes, ...] = ()
    notifications: tuple[Notification, ...] = ()

    @property
    def stored_outcome(self) -> Outcome | None:
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Ticked:
    """A tick's effect: the ``PendingExpired`` events its timestamp caused, nothing stored."""

    events: tuple[Event, ...]
    changes: StateChanges
    encoded_events: tuple[bytes, ...] = ()
    notifications: tuple[Notification, ...] = ()  # monitor edges the expiries caused

    @property
    def stored_outcome(self) -> Outcome | None:
        return None


Decision = Accepted | Rejected | Duplicate
