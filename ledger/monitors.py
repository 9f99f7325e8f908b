"""Balance monitors: a condition on one balance of an account, and its edges (decision 0058).

A monitor watches one *field* of an account's balance (``MonitorField``), compares it with a
threshold in minor units (``MonitorOperator``) and remembers whether the condition ``holds``.
It is **edge-triggered**: a balance change produces a ``Crossing`` only when ``holds`` changes —
false -> true is a trigger, true -> false a clear — never one per change while it holds.

Everything here is pure and plainly typed: the values of a field over an event's counters
(``AccountBalance``, the counters after the whole event), the comparison, and the edges over
the monitors of one account. ``ledger.decider`` calls it for each account in each event's
``balances`` (the command's event and any expiry before it), in sequence order.

Field values are exact Python integers: a derived balance (``available`` of a credit-normal
account is ``credits_posted - debits_posted - debits_pending``) can leave the signed 64-bit
range, and the comparison must stay exact. ``saturated`` clamps a value for the wire.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from schemas.limits import MONITOR_FIELDS, MONITOR_OPERATORS
from schemas.model import INT64_MAX, INT64_MIN, AccountBalance


class MonitorField(enum.Enum):
    """Which balance a monitor watches; the values are the contract's strings."""

    DEBITS_POSTED = "debits_posted"
    CREDITS_POSTED = "credits_posted"
    DEBITS_PENDING = "debits_pending"
    CREDITS_PENDING = "credits_pending"
    POSTED = "posted"  # net posted on the normal side
    PENDING = "pending"  # net pending on the normal side
    AVAILABLE = "available"  # normal-side posted minus the other side's posted and pending


class MonitorOperator(enum.Enum):
    """How the field is compared with the threshold: ``field <operator> threshold``."""

    LESS = "<"
    LESS_OR_EQUAL = "<="
    GREATER = ">"
    GREATER_OR_EQUAL = ">="
    EQUAL = "=="


# the contract's strings (``schemas.limits``) are exactly these enums' values
assert tuple(field.value for field in MonitorField) == MONITOR_FIELDS
assert tuple(operator.value for operator in MonitorOperator) == MONITOR_OPERATORS


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorCondition:
    """``field operator threshold``, e.g. ``available < 10000``."""

    field: MonitorField
    operator: MonitorOperator
    threshold: int

    def __str__(self) -> str:
        return f"{self.field.value} {self.operator.value} {self.threshold}"


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchedMonitor:
    """One monitor of an account as the edge detector needs it: its id, condition and flag."""

    monitor_id: str
    condition: MonitorCondition
    holds: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Crossing:
    """A monitor's condition changed: ``holds`` True = triggered, False = cleared."""

    monitor_id: str
    holds: bool
    value: int  # the field's exact value after the change


def parse_condition(field: str, operator: str, threshold: int) -> MonitorCondition:
    """The condition from the contract's strings; ``ValueError`` names an unknown one (the
    contract's limits reject those before the core sees them)."""
    return MonitorCondition(
        field=MonitorField(field), operator=MonitorOperator(operator), threshold=threshold
    )


def is_credit_normal(
    *, debits_must_not_exceed_credits: bool, credits_must_not_exceed_debits: bool
) -> bool:
    """The projection's rule (``accounts.normal_side``): debit-normal only with
    ``credits_must_not_exceed_debits`` alone; every other account is credit-normal."""
    return not (credits_must_not_exceed_debits and not debits_must_not_exceed_credits)


def field_value(field: MonitorField, balance: AccountBalance, *, credit_normal: bool) -> int:
    """The exact value of ``field`` for an account's counters."""
    if field is MonitorField.DEBITS_POSTED:
        return balance.debits_posted
    if field is MonitorField.CREDITS_POSTED:
        return balance.credits_posted
    if field is MonitorField.DEBITS_PENDING:
        return balance.debits_pending
    if field is MonitorField.CREDITS_PENDING:
        return balance.credits_pending
    if field is MonitorField.POSTED:
        net = balance.credits_posted - balance.debits_posted
        return net if credit_normal else -net
    if field is MonitorField.PENDING:
        net = balance.credits_pending - balance.debits_pending
        return net if credit_normal else -net
    assert field is MonitorField.AVAILABLE
    if credit_normal:
        return balance.credits_posted - balance.debits_posted - balance.debits_pending
    return balance.debits_posted - balance.credits_posted - balance.credits_pending


def condition_holds(condition: MonitorCondition, value: int) -> bool:
    """Whether ``value <operator> threshold``."""
    operator, threshold = condition.operator, condition.threshold
    if operator is MonitorOperator.LESS:
        return value < threshold
    if operator is MonitorOperator.LESS_OR_EQUAL:
        return value <= threshold
    if operator is MonitorOperator.GREATER:
        return value > threshold
    if operator is MonitorOperator.GREATER_OR_EQUAL:
        return value >= threshold
    assert operator is MonitorOperator.EQUAL
    return value == threshold


def evaluate(
    condition: MonitorCondition, balance: AccountBalance, *, credit_normal: bool
) -> tuple[bool, int]:
    """(whether the condition holds, the field's value) for these counters."""
    value = field_value(condition.field, balance, credit_normal=credit_normal)
    return condition_holds(condition, value), value


def crossings(
    monitors: Sequence[WatchedMonitor], balance: AccountBalance, *, credit_normal: bool
) -> tuple[Crossing, ...]:
    """The edges one balance change causes on an account's monitors, in the given order (the
    caller passes them in creation order). A monitor whose condition still has the value of its
    ``holds`` flag causes nothing: edge-triggered, never one per change while it holds."""
    found: list[Crossing] = []
    for monitor in monitors:
        holds, value = evaluate(monitor.condition, balance, credit_normal=credit_normal)
        if holds != monitor.holds:
            found.append(Crossing(monitor_id=monitor.monitor_id, holds=holds, value=value))
    return tuple(found)


def saturated(value: int) -> int:
    """``value`` clamped to the signed 64-bit range (a notification's ``value`` on the wire)."""
    return INT64_MAX if value > INT64_MAX else INT64_MIN if value < INT64_MIN else value


def notification_id(tenant_id: str, sequence: int, monitor_id: str) -> str:
    """``{tenant}:{sequence}:{monitor_id}``: the event that caused the edge, and the monitor.
    One event moves each account once, so a monitor has at most one edge per sequence."""
    return f"{tenant_id}:{sequence}:{monitor_id}"
