"""``streamledger verify``: every balance-monitor notification recomputed from ``ledger.events``.

Like the rest of verify, a **second, independent implementation** (STYLE.md rule 13): the rules
of docs/contract.md ("Notifications") written here again, sharing no code with the processor's
``ledger.monitors``/``ledger.monitor_steps``. Per tenant, over its chain in sequence order:

- ``AccountOpened`` gives the account's normal side (debit only with
  ``credits_must_not_exceed_debits`` alone) and currency;
- ``MonitorCreated`` adds a monitor (creation order = sequence order) whose ``holds`` is the
  condition on the event's counters — checked here — and a ``MonitorTriggered`` at its sequence
  when it holds; ``MonitorDeleted`` removes it and writes nothing;
- any other event: for each account in its ``balances`` (the counters after the whole event), for
  each of that account's monitors in creation order, a notification where the condition's truth
  differs from the monitor's ``holds`` (triggered when it became true), and ``holds`` flips.

Each expected notification (its id ``{tenant}:{sequence}:{monitor_id}``, kind, value saturated to
64 bits, condition, currency, causing event's hash and time, the monitor's metadata) is compared
with what ``ledger.notifications`` holds (read_committed): missing, extra and different ones are
named, ``NAMED_MAX`` per tenant, the rest counted. Pure but for the reading in ``verify``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from schemas.model import (
    AccountOpened,
    Event,
    MonitorCleared,
    MonitorCreated,
    MonitorDeleted,
    MonitorTriggered,
    Notification,
)

NAMED_MAX: Final = 5  # differences named per tenant; the rest are counted
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
TRIGGERED: Final = "MonitorTriggered"
CLEARED: Final = "MonitorCleared"
# what a notification says, beside its id: (kind, monitor, account, currency, field, operator,
# threshold, value, sequence, event hash, effective time, metadata)
Facts = tuple[str, str, str, str, str, str, int, int, int, bytes, int, tuple[tuple[str, str], ...]]
FACT_NAMES: Final = (
    "type", "monitor_id", "account_id", "currency", "field", "operator", "threshold", "value",
    "sequence", "event_hash", "effective_at_us", "metadata",
)  # fmt: skip


@dataclass(slots=True)
class Watched:
    """A live monitor as this check folds it."""

    account_id: str
    field: str
    operator: str
    threshold: int
    metadata: tuple[tuple[str, str], ...]
    holds: bool


def field_value(field_name: str, counters: tuple[int, int, int, int], *, credit: bool) -> int:
    """The contract's table: the four counters, or posted / pending / available on the
    account's normal side (``counters`` = debits_posted, credits_posted, debits_pending,
    credits_pending)."""
    debits_posted, credits_posted, debits_pending, credits_pending = counters
    plain = {
        "debits_posted": debits_posted,
        "credits_posted": credits_posted,
        "debits_pending": debits_pending,
        "credits_pending": credits_pending,
    }
    if field_name in plain:
        return plain[field_name]
    posted = credits_posted - debits_posted if credit else debits_posted - credits_posted
    if field_name == "posted":
        return posted
    if field_name == "pending":
        return credits_pending - debits_pending if credit else debits_pending - credits_pending
    assert field_name == "available", field_name
    return posted - (debits_pending if credit else credits_pending)


def holds(operator: str, value: int, threshold: int) -> bool:
    comparisons = {
        "<": value < threshold,
        "<=": value <= threshold,
        ">": value > threshold,
        ">=": value >= threshold,
        "==": value == threshold,
    }
    return comparisons[operator]


@dataclass(slots=True)
class NotificationAudit:
    """One tenant's expected notifications, folded from its chain (``observe``, in order)."""

    tenant_id: str
    credit_normal: dict[str, bool] = field(default_factory=dict)
    currencies: dict[str, str] = field(default_factory=dict)
    monitors: dict[str, Watched] = field(default_factory=dict)
    by_account: dict[str, dict[str, Watched]] = field(default_factory=dict)  # creation order
    expected: dict[str, Facts] = field(default_factory=dict)  # notification id -> facts
    problems: list[str] = field(default_factory=list)

    def observe(self, event: Event) -> None:
        if isinstance(event, AccountOpened):
            self.credit_normal[event.account_id] = not (
                event.credits_must_not_exceed_debits and not event.debits_must_not_exceed_credits
            )
            self.currencies[event.account_id] = event.currency
        elif isinstance(event, MonitorCreated):
            self.create(event)
        elif isinstance(event, MonitorDeleted):
            deleted = self.monitors.pop(event.monitor_id, None)
            if deleted is not None:
                del self.by_account[deleted.account_id][event.monitor_id]
        else:
            for balance in event.balances:
                counters = (
                    balance.debits_posted,
                    balance.credits_posted,
                    balance.debits_pending,
                    balance.credits_pending,
                )
                watched = self.by_account.get(balance.account_id, {})
                for monitor_id, monitor in watched.items():
                    self.evaluate(event, monitor_id, monitor, counters)

    def create(self, event: MonitorCreated) -> None:
        monitor = Watched(
            event.account_id, event.field, event.operator, event.threshold,
            tuple(sorted(event.metadata)), holds=False,
        )  # fmt: skip
        self.monitors[event.monitor_id] = monitor
        self.by_account.setdefault(event.account_id, {})[event.monitor_id] = monitor
        balance = event.balances[0]
        counters = (
            balance.debits_posted,
            balance.credits_posted,
            balance.debits_pending,
            balance.credits_pending,
        )
        self.evaluate(event, event.monitor_id, monitor, counters)
        if monitor.holds != event.holds:
            self.problems.append(
                f"notifications: MonitorCreated {event.monitor_id!r} at sequence "
                f"{event.sequence} says holds={event.holds}; its condition on the event's "
                f"counters is {monitor.holds}"
            )

    def evaluate(
        self,
        event: Event,
        monitor_id: str,
        monitor: Watched,
        counters: tuple[int, int, int, int],
    ) -> None:
        credit = self.credit_normal.get(monitor.account_id, True)
        value = field_value(monitor.field, counters, credit=credit)
        now = holds(monitor.operator, value, monitor.threshold)
        if now == monitor.holds:
            return
        monitor.holds = now
        notification_id = f"{self.tenant_id}:{event.sequence}:{monitor_id}"
        self.expected[notification_id] = (
            TRIGGERED if now else CLEARED, monitor_id, monitor.account_id,
            self.currencies.get(monitor.account_id, ""), monitor.field, monitor.operator,
            monitor.threshold, min(max(value, INT64_MIN), INT64_MAX), event.sequence,
            event.hash, event.effective_at_us, monitor.metadata,
        )  # fmt: skip

    def compare(self, written: Iterable[Notification]) -> None:
        """The notifications ``ledger.notifications`` holds for this tenant against the fold."""
        actual = {notification.notification_id: facts_of(notification) for notification in written}
        differences: list[str] = []
        for notification_id in sorted(self.expected.keys() - actual.keys()):
            differences.append(f"notification {notification_id} is missing from the topic")
        for notification_id in sorted(actual.keys() - self.expected.keys()):
            differences.append(f"notification {notification_id} is in the topic, the log has none")
        for notification_id in sorted(self.expected.keys() & actual.keys()):
            want, got = self.expected[notification_id], actual[notification_id]
            changed = [name for name, a, b in zip(FACT_NAMES, want, got, strict=True) if a != b]
            if changed:
                differences.append(
                    f"notification {notification_id}: {', '.join(changed)} differ from the log's"
                )
        self.problems.extend(f"notifications: {line}" for line in differences[:NAMED_MAX])
        if len(differences) > NAMED_MAX:
            self.problems.append(
                f"notifications: {len(differences) - NAMED_MAX} more difference(s) not named"
            )


def facts_of(notification: Notification) -> Facts:
    kind = TRIGGERED if isinstance(notification, MonitorTriggered) else CLEARED
    assert isinstance(notification, MonitorTriggered | MonitorCleared)
    return (
        kind, notification.monitor_id, notification.account_id, notification.currency,
        notification.field, notification.operator, notification.threshold, notification.value,
        notification.sequence, notification.event_hash, notification.effective_at_us,
        tuple(sorted(notification.metadata)),
    )  # fmt: skip
