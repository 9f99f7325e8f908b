"""The pure core of balance monitors (decision 0058): field values per normal side, operators,
edges only at crossings (Hypothesis over random balance sequences), ids and keys."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.monitors import (
    QUIET_HIGH,
    QUIET_LOW,
    AccountWatch,
    Crossing,
    MonitorCondition,
    MonitorField,
    MonitorOperator,
    WatchedMonitor,
    WatchEntry,
    condition_holds,
    crossings,
    evaluate,
    field_value,
    field_values,
    holds_at,
    is_credit_normal,
    notification_id,
    parse_condition,
    saturated,
    watch_entry,
)
from schemas.limits import MONITOR_FIELDS, MONITOR_OPERATORS
from schemas.model import INT64_MAX, INT64_MIN, AccountBalance

EXAMPLES = settings(max_examples=200, deadline=None, derandomize=True)


def counters(
    debits_posted: int = 0,
    credits_posted: int = 0,
    debits_pending: int = 0,
    credits_pending: int = 0,
) -> AccountBalance:
    return AccountBalance(
        account_id="alice",
        currency="USD",
        debits_posted=debits_posted,
        credits_posted=credits_posted,
        debits_pending=debits_pending,
        credits_pending=credits_pending,
    )


def watched(
    monitor_id: str, field: str, operator: str, threshold: int, *, holds: bool = False
) -> WatchedMonitor:
    return WatchedMonitor(
        monitor_id=monitor_id,
        condition=parse_condition(field, operator, threshold),
        holds=holds,
    )


def test_contract_strings() -> None:
    assert (
        MONITOR_FIELDS
        == tuple(field.value for field in MonitorField)
        == (
            "debits_posted",
            "credits_posted",
            "debits_pending",
            "credits_pending",
            "posted",
            "pending",
            "available",
        )
    )
    assert tuple(op.value for op in MonitorOperator) == MONITOR_OPERATORS
    assert MONITOR_OPERATORS == ("<", "<=", ">", ">=", "==")
    with pytest.raises(ValueError):
        parse_condition("balance", "<", 0)
    with pytest.raises(ValueError):
        parse_condition("available", "!=", 0)
    assert str(parse_condition("available", "<", 10_000)) == "available < 10000"


def test_normal_side_is_the_projections() -> None:
    def normal(debits_flag: bool, credits_flag: bool) -> bool:
        return is_credit_normal(
            debits_must_not_exceed_credits=debits_flag,
            credits_must_not_exceed_debits=credits_flag,
        )

    assert normal(False, False)
    assert normal(True, False)
    assert not normal(False, True)
    assert normal(True, True)  # the contract forbids both; the projection says credit


def test_field_values_credit_normal() -> None:
    balance = counters(
        debits_posted=300, credits_posted=1_000, debits_pending=200, credits_pending=50
    )
    expected = {
        MonitorField.DEBITS_POSTED: 300,
        MonitorField.CREDITS_POSTED: 1_000,
        MonitorField.DEBITS_PENDING: 200,
        MonitorField.CREDITS_PENDING: 50,
        MonitorField.POSTED: 700,
        MonitorField.PENDING: -150,
        MonitorField.AVAILABLE: 500,  # pending credits do not count until posted
    }
    for field, value in expected.items():
        assert field_value(field, balance, credit_normal=True) == value, field


def test_field_values_debit_normal() -> None:
    balance = counters(
        debits_posted=1_000, credits_posted=300, debits_pending=50, credits_pending=200
    )
    assert field_value(MonitorField.POSTED, balance, credit_normal=False) == 700
    assert field_value(MonitorField.PENDING, balance, credit_normal=False) == -150
    assert field_value(MonitorField.AVAILABLE, balance, credit_normal=False) == 500
    assert field_value(MonitorField.DEBITS_POSTED, balance, credit_normal=False) == 1_000


def test_derived_values_are_exact_and_saturate_for_the_wire() -> None:
    balance = counters(debits_posted=INT64_MAX, debits_pending=INT64_MAX)
    value = field_value(MonitorField.AVAILABLE, balance, credit_normal=True)
    assert value == -2 * INT64_MAX
    assert condition_holds(parse_condition("available", "<", INT64_MIN), value)
    assert saturated(value) == INT64_MIN
    assert saturated(-value) == INT64_MAX
    assert saturated(42) == 42


@pytest.mark.parametrize(
    ("operator", "results"),
    [
        ("<", (True, False, False)),
        ("<=", (True, True, False)),
        (">", (False, False, True)),
        (">=", (False, True, True)),
        ("==", (False, True, False)),
    ],
)
def test_operators(operator: str, results: tuple[bool, bool, bool]) -> None:
    condition = parse_condition("posted", operator, 100)
    assert tuple(condition_holds(condition, value) for value in (99, 100, 101)) == results


def test_edges_not_levels() -> None:
    """A low-balance monitor: one trigger when available drops below, none while it stays
    below, one clear when it rises again."""
    monitor = watched("low", "available", "<", 1_000)
    credits = (5_000, 900, 800, 700, 1_000, 1_200, 999)
    found: list[tuple[int, Crossing]] = []
    for index, credits_posted in enumerate(credits):
        for crossing in crossings(
            (monitor,), counters(credits_posted=credits_posted), credit_normal=True
        ):
            found.append((index, crossing))
            monitor = WatchedMonitor(
                monitor_id=monitor.monitor_id, condition=monitor.condition, holds=crossing.holds
            )
    assert found == [
        (1, Crossing(monitor_id="low", holds=True, value=900)),
        (4, Crossing(monitor_id="low", holds=False, value=1_000)),
        (6, Crossing(monitor_id="low", holds=True, value=999)),
    ]


def test_several_monitors_keep_their_order() -> None:
    monitors = (
        watched("b", "posted", ">=", 10),
        watched("a", "posted", ">=", 5),
        watched("c", "posted", "<", 0, holds=True),
    )
    found = crossings(monitors, counters(credits_posted=20), credit_normal=True)
    assert [(crossing.monitor_id, crossing.holds) for crossing in found] == [
        ("b", True),
        ("a", True),
        ("c", False),
    ]


def test_notification_id() -> None:
    assert notification_id("acme", 42, "low-cash") == "acme:42:low-cash"


# --------------------------------------------------------------------------- properties

amounts = st.integers(min_value=0, max_value=10_000)
balances = st.builds(counters, amounts, amounts, amounts, amounts)
conditions = st.builds(
    MonitorCondition,
    field=st.sampled_from(MonitorField),
    operator=st.sampled_from(MonitorOperator),
    threshold=st.integers(min_value=-10_000, max_value=10_000),
)


@EXAMPLES
@given(
    condition=conditions,
    credit_normal=st.booleans(),
    history=st.lists(balances, min_size=1, max_size=60),
)
def test_a_notification_exactly_at_each_crossing(
    condition: MonitorCondition, credit_normal: bool, history: list[AccountBalance]
) -> None:
    """Over a random sequence of balance changes, feeding each crossing's ``holds`` back (as
    the state does) gives a crossing exactly where the condition's truth differs from the
    previous change's, and the crossings alternate trigger/clear. The first change is the
    creation: an edge only if the condition holds (decision 0058)."""
    monitor = WatchedMonitor(monitor_id="m", condition=condition, holds=False)
    found: list[int] = []
    for index, balance in enumerate(history):
        for crossing in crossings((monitor,), balance, credit_normal=credit_normal):
            found.append(index)
            assert crossing.value == field_value(
                condition.field, balance, credit_normal=credit_normal
            )
            monitor = WatchedMonitor(monitor_id="m", condition=condition, holds=crossing.holds)
    truths = [evaluate(condition, balance, credit_normal=credit_normal)[0] for balance in history]
    expected = [
        index
        for index, truth in enumerate(truths)
        if truth != (truths[index - 1] if index > 0 else False)
    ]
    assert found == expected
    assert monitor.holds == truths[-1]


@EXAMPLES
@given(monitor_count=st.integers(min_value=0, max_value=16), balance=balances)
def test_no_change_no_crossing(monitor_count: int, balance: AccountBalance) -> None:
    """Monitors whose flag already matches the counters never fire, however many there are."""
    monitors = []
    for index in range(monitor_count):
        condition = parse_condition("available", "<", index * 500)
        holds, _ = evaluate(condition, balance, credit_normal=True)
        monitors.append(WatchedMonitor(monitor_id=f"m{index}", condition=condition, holds=holds))
    assert crossings(monitors, balance, credit_normal=True) == ()


@EXAMPLES
@given(condition=conditions, credit_normal=st.booleans(), balance=balances)
def test_the_hot_path_agrees_with_the_definition(
    condition: MonitorCondition, credit_normal: bool, balance: AccountBalance
) -> None:
    """``field_values``/``holds_at`` over a ``watch_entry`` (what ``watch`` runs) give what
    ``field_value``/``condition_holds`` define."""
    entry = watch_entry(
        "m", condition.field.value, condition.operator.value, condition.threshold, holds=False
    )
    _, field_index, operator_index, threshold, _ = entry
    value = field_values(balance, credit_normal=credit_normal)[field_index]
    assert value == field_value(condition.field, balance, credit_normal=credit_normal)
    assert holds_at(operator_index, value, threshold) == condition_holds(condition, value)


# --------------------------------------------------------------------------- the quick check
# ``AccountWatch.quiet`` (decision 0138): ``watch`` skips an account's monitors when it says no
# flag differs from its condition. It must never say so wrongly; inside the small-int range it
# is exact, so the per-monitor comparison runs only where an edge may be.

near_thresholds = st.integers(min_value=-40, max_value=40)
any_thresholds = st.one_of(
    near_thresholds,
    st.sampled_from((INT64_MIN, INT64_MIN + 1, INT64_MAX - 1, INT64_MAX, QUIET_LOW, QUIET_HIGH)),
)
entries = st.lists(
    st.builds(
        watch_entry,
        st.just("m"),
        st.sampled_from(MONITOR_FIELDS),
        st.sampled_from(MONITOR_OPERATORS),
        any_thresholds,
        holds=st.booleans(),
    ),
    max_size=16,
)
balance_entries = st.lists(
    st.builds(
        watch_entry,
        st.just("m"),
        st.sampled_from(MONITOR_FIELDS),
        st.sampled_from(MONITOR_OPERATORS),
        st.integers(min_value=-10_000, max_value=10_000),
        holds=st.booleans(),
    ),
    max_size=16,
)
near_values = st.integers(min_value=-45, max_value=45)
field_value_tuples = st.tuples(*[near_values] * len(MonitorField))
wide_value_tuples = st.tuples(
    *[st.one_of(near_values, st.integers(min_value=-(2**66), max_value=2**66))] * len(MonitorField)
)


def _every_flag_holds(entries: list[WatchEntry], values: tuple[int, ...]) -> bool:
    return all(
        holds_at(operator_index, values[field_index], threshold) == held
        for _, field_index, operator_index, threshold, held in entries
    )


@settings(max_examples=1_000, deadline=None, derandomize=True)
@given(entries=entries, values=field_value_tuples)
def test_quiet_is_exact_in_the_small_int_range(
    entries: list[WatchEntry], values: tuple[int, ...]
) -> None:
    """Quiet exactly when every monitor's condition at these values equals its flag."""
    assert AccountWatch(tuple(entries), credit_normal=True).quiet(values) == _every_flag_holds(
        entries, values
    )


@settings(max_examples=1_000, deadline=None, derandomize=True)
@given(entries=entries, values=wide_value_tuples)
def test_quiet_is_never_wrong(entries: list[WatchEntry], values: tuple[int, ...]) -> None:
    """Past the small-int range (counters near 2**63, derived values below -2**63) quiet may
    say no where no flag changes (the exact comparison then runs), never yes where one does."""
    if AccountWatch(tuple(entries), credit_normal=True).quiet(values):
        assert _every_flag_holds(entries, values)


@EXAMPLES
@given(entries=balance_entries, credit_normal=st.booleans(), balance=balances)
def test_quiet_over_an_events_counters(
    entries: list[WatchEntry], credit_normal: bool, balance: AccountBalance
) -> None:
    """What ``watch`` runs: ``field_values`` of an event's counters, then the quick check
    (exact: such counters are far inside the small-int range)."""
    values = field_values(balance, credit_normal=credit_normal)
    assert AccountWatch(tuple(entries), credit_normal=True).quiet(values) == _every_flag_holds(
        entries, values
    )


def test_quiet_examples() -> None:
    """A low-balance alarm not firing, one firing, and an `==` not holding."""
    low = watch_entry("low", "available", "<", 100, holds=False)
    values = (0, 500, 0, 0, 500, 0, 500)
    assert AccountWatch((low,), credit_normal=True).quiet(values)
    assert not AccountWatch((low,), credit_normal=True).quiet(
        (0, 99, 0, 0, 99, 0, 99)
    )  # it would trigger
    fired = watch_entry("low", "available", "<", 100, holds=True)
    assert AccountWatch((fired,), credit_normal=True).quiet((0, 99, 0, 0, 99, 0, 99))
    assert not AccountWatch((fired,), credit_normal=True).quiet(
        (0, 100, 0, 0, 100, 0, 100)
    )  # it would clear
    exact = watch_entry("exact", "posted", "==", 500, holds=False)
    assert not AccountWatch((exact,), credit_normal=True).quiet(values)
    assert AccountWatch((exact,), credit_normal=True).quiet((0, 501, 0, 0, 501, 0, 501))
    assert AccountWatch((), credit_normal=True).quiet(values)
