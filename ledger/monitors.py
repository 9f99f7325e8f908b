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
from typing import Final, final

from schemas.limits import MONITOR_FIELDS, MONITOR_OPERATORS
from schemas.model import INT64_MAX, INT64_MIN, AccountBalance, AccountState, MonitorState


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


def account_is_credit_normal(account: AccountState) -> bool:
    """``is_credit_normal`` of the account's two flags (they never change after OpenAccount)."""
    return is_credit_normal(
        debits_must_not_exceed_credits=account.debits_must_not_exceed_credits,
        credits_must_not_exceed_debits=account.credits_must_not_exceed_debits,
    )


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


# The quick check's open ends: mypyc's small-int range, so its comparisons stay unboxed. A value
# beyond them (counters past 2**62) fails the check and takes the exact comparison per monitor.
QUIET_LOW: Final = -(2**62)
QUIET_HIGH: Final = 2**62 - 1


@final
class AccountWatch:
    """An account's monitors as ``watch`` compares them: the ``WatchEntry`` of each, in
    creation order, and the quick check of the common case (decision 0138).

    Per field, the values at which no monitor of that field changes its flag form an interval
    (``<``, ``<=``, ``>``, ``>=`` each allow a half-line, ``==`` holding one value) less the
    thresholds of the ``==`` monitors that do not hold (``points``). ``quiet`` tests an event's
    seven field values against those seven intervals and the points: a handful of comparisons
    instead of one per monitor. It is never wrong when it says quiet (every entry's condition
    then equals its flag); when it says not quiet, ``watch`` compares every entry as before.

    ``credit_normal``: the account's normal side, which ``field_values`` needs. An account's
    flags never change after OpenAccount, so it is read once where the object is built, not
    looked up per event."""

    entries: tuple[WatchEntry, ...]
    points: tuple[tuple[int, int], ...]  # (field index, threshold) of an `==` not holding
    credit_normal: bool

    def __init__(self, entries: tuple[WatchEntry, ...], *, credit_normal: bool) -> None:
        self.entries = entries
        self.credit_normal = credit_normal
        lows = [QUIET_LOW] * len(MonitorField)
        highs = [QUIET_HIGH] * len(MonitorField)
        equal_thresholds: list[tuple[int, int]] = []
        for _, field_index, operator_index, threshold, held in entries:
            kept = kept_range(operator_index, threshold, held=held)
            if kept is None:  # `==` not holding: every value but the threshold keeps it
                equal_thresholds.append((field_index, threshold))
                continue
            low, high = kept
            lows[field_index] = max(lows[field_index], low)
            highs[field_index] = min(highs[field_index], high)
        self.points = tuple(
            (field_index, threshold)
            for field_index, threshold in equal_thresholds
            if lows[field_index] <= threshold <= highs[field_index]  # else outside anyway
        )
        self.low0, self.low1, self.low2, self.low3 = lows[0], lows[1], lows[2], lows[3]
        self.low4, self.low5, self.low6 = lows[4], lows[5], lows[6]
        self.high0, self.high1, self.high2, self.high3 = highs[0], highs[1], highs[2], highs[3]
        self.high4, self.high5, self.high6 = highs[4], highs[5], highs[6]

    def quiet(self, values: tuple[int, ...]) -> bool:
        """Whether no monitor's condition differs from its flag at these field values (in
        ``MonitorField`` order, ``field_values``). True is exact; False may be a value past
        ``QUIET_LOW``/``QUIET_HIGH`` on a side no monitor bounds."""
        value = values[0]
        if value < self.low0 or value > self.high0:
            return False
        value = values[1]
        if value < self.low1 or value > self.high1:
            return False
        value = values[2]
        if value < self.low2 or value > self.high2:
            return False
        value = values[3]
        if value < self.low3 or value > self.high3:
            return False
        value = values[4]
        if value < self.low4 or value > self.high4:
            return False
        value = values[5]
        if value < self.low5 or value > self.high5:
            return False
        value = values[6]
        if value < self.low6 or value > self.high6:
            return False
        # a plain loop: all() over a generator would cost a call per point in the hot path
        for field_index, threshold in self.points:  # noqa: SIM110
            if values[field_index] == threshold:
                return False
        return True


def kept_range(operator_index: int, threshold: int, *, held: bool) -> tuple[int, int] | None:
    """The values (low, high) at which a monitor's condition equals its flag ``held``, its open
    ends ``QUIET_LOW``/``QUIET_HIGH``; None for an ``==`` that does not hold (every value but
    ``threshold``, no interval)."""
    if operator_index == 0:  # value < threshold
        return (QUIET_LOW, threshold - 1) if held else (threshold, QUIET_HIGH)
    if operator_index == 1:  # value <= threshold
        return (QUIET_LOW, threshold) if held else (threshold + 1, QUIET_HIGH)
    if operator_index == 2:  # value > threshold
        return (threshold + 1, QUIET_HIGH) if held else (QUIET_LOW, threshold)
    if operator_index == 3:  # value >= threshold
        return (threshold, QUIET_HIGH) if held else (QUIET_LOW, threshold - 1)
    return (threshold, threshold) if held else None


NO_WATCH: Final = AccountWatch((), credit_normal=True)  # an account no monitor watches


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
