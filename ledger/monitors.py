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
from typing import Final

from schemas.limits import MONITOR_FIELDS, MONITOR_OPERATORS
from schemas.model import INT64_MAX, INT64_MIN, AccountBalance, MonitorState


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


# --------------------------------------------------------------------------- the hot path
#
# ``watch`` runs for every account of every event that has monitors: up to 16 comparisons per
# account. A monitor is kept there as a ``WatchEntry`` of small ints (its field's and operator's
# index in the enums' order), the account's seven field values are computed once per event, and
# ``holds_at`` compares: no enum lookup or object per comparison. ``field_value`` and
# ``condition_holds`` above stay the definition; tests compare the two with Hypothesis.

# (monitor_id, field index, operator index, threshold, holds): ``holds`` is the monitor's flag as
# committed or staged (``LedgerState`` keeps it equal to the MonitorState's)
WatchEntry = tuple[str, int, int, int, bool]
_FIELD_INDEX: Final[dict[str, int]] = {field.value: i for i, field in enumerate(MonitorField)}
_OPERATOR_INDEX: Final[dict[str, int]] = {op.value: i for i, op in enumerate(MonitorOperator)}


def watch_entry(
    monitor_id: str, field: str, operator: str, threshold: int, *, holds: bool
) -> WatchEntry:
    """A monitor as the hot path compares it (``KeyError`` for a field or operator outside
    the contract, which its limits reject before)."""
    return (monitor_id, _FIELD_INDEX[field], _OPERATOR_INDEX[operator], threshold, holds)


def monitor_watch_entry(monitor: MonitorState) -> WatchEntry:
    """``watch_entry`` of a monitor's state record."""
    return watch_entry(
        monitor.monitor_id,
        monitor.field,
        monitor.operator,
        monitor.threshold,
        holds=monitor.holds,
    )


def field_values(balance: AccountBalance, *, credit_normal: bool) -> tuple[int, ...]:
    """Every field's exact value, in ``MonitorField`` order (``field_value`` of each).

    Typed variable-length on purpose: ``watch`` indexes it by a monitor's field index, and
    mypyc keeps a fixed-length ``tuple[int, int, ...]`` unboxed, so each such index boxed all
    seven values into a new tuple again (1.8 µs per 16 monitors against 0.4, decision 0138)."""
    debits_posted, credits_posted = balance.debits_posted, balance.credits_posted
    debits_pending, credits_pending = balance.debits_pending, balance.credits_pending
    if credit_normal:
        posted = credits_posted - debits_posted
        pending = credits_pending - debits_pending
        available = posted - debits_pending
    else:
        posted = debits_posted - credits_posted
        pending = debits_pending - credits_pending
        available = posted - credits_pending
    return (
        debits_posted,
        credits_posted,
        debits_pending,
        credits_pending,
        posted,
        pending,
        available,
    )


def holds_at(operator_index: int, value: int, threshold: int) -> bool:
    """``condition_holds`` by the operator's index in ``MonitorOperator`` order."""
    if operator_index == 0:
        return value < threshold
    if operator_index == 1:
        return value <= threshold
    if operator_index == 2:
        return value > threshold
    if operator_index == 3:
        return value >= threshold
    return value == threshold


def saturated(value: int) -> int:
    """``value`` clamped to the signed 64-bit range (a notification's ``value`` on the wire)."""
    return INT64_MAX if value > INT64_MAX else INT64_MIN if value < INT64_MIN else value


def notification_id(tenant_id: str, sequence: int, monitor_id: str) -> str:
    """``{tenant}:{sequence}:{monitor_id}``: the event that caused the edge, and the monitor.
    One event moves each account once, so a monitor has at most one edge per sequence."""
    return f"{tenant_id}:{sequence}:{monitor_id}"
