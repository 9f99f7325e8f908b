"""``streamledger verify``'s notification check (``projections.verify_notifications``): its own
recomputation from the events agrees with the processor's core on random monitor histories, and
a missing, extra or altered notification is named."""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import given

from projections.verify_notifications import NAMED_MAX, NotificationAudit
from schemas.model import Event, MonitorCleared, MonitorTriggered, Notification
from tests.unit.ledger_builders import Ledger, transfer
from tests.unit.test_monitor_decisions import (
    EXAMPLES,
    _commands,
    create_monitor,
    customer_book,
    operations,
)


def run(commands: list[Any]) -> tuple[list[Event], list[Notification]]:
    book = Ledger()
    events: list[Event] = []
    notifications: list[Notification] = []
    for command in commands:
        decision = book.run(command)
        events.extend(decision.events)
        notifications.extend(decision.notifications)
    return events, notifications


def audited(events: list[Event], written: list[Notification]) -> list[str]:
    audit = NotificationAudit("acme")
    for event in events:
        audit.observe(event)
    audit.compare(written)
    return audit.problems


@EXAMPLES
@given(operations)
def test_the_recomputation_agrees_with_the_processor(ops: list[tuple[Any, ...]]) -> None:
    events, notifications = run(_commands(ops))
    assert audited(events, notifications) == []


def low_balance_history() -> tuple[list[Event], list[Notification]]:
    book = customer_book()
    events = list(book.events)
    notifications: list[Notification] = []
    for command in (
        transfer("fund", "cash", "alice", 5_000),
        create_monitor("low", "alice", "available", "<", 1_000),
        transfer("spend", "alice", "bob", 4_500),  # 500 < 1,000: triggered
        transfer("refill", "cash", "alice", 2_000),  # 2,500: cleared
    ):
        decision = book.run(command)
        events.extend(decision.events)
        notifications.extend(decision.notifications)
    return events, notifications


def test_a_missing_an_extra_and_an_altered_notification_are_named() -> None:
    events, notifications = low_balance_history()
    assert [type(n) for n in notifications] == [MonitorTriggered, MonitorCleared]
    triggered, cleared = notifications
    assert audited(events, notifications) == []
    (missing,) = audited(events, [triggered])
    assert f"notification {cleared.notification_id} is missing" in missing
    stray = dataclasses.replace(cleared, notification_id="acme:99:low", sequence=99)
    (extra,) = audited(events, [*notifications, stray])
    assert "notification acme:99:low is in the topic, the log has none" in extra
    (altered,) = audited(events, [dataclasses.replace(triggered, value=1), cleared])
    assert f"notification {triggered.notification_id}: value differ" in altered


def test_differences_past_the_named_ones_are_counted() -> None:
    events, notifications = low_balance_history()
    strays = [
        dataclasses.replace(notifications[0], notification_id=f"acme:{100 + n}:low")
        for n in range(NAMED_MAX + 3)
    ]
    problems = audited(events, [*notifications, *strays])
    assert len(problems) == NAMED_MAX + 1
    assert problems[-1] == "notifications: 3 more difference(s) not named"
