"""The matcher's results do not depend on the order its two topics are read in (issue 20,
decision 0089): the same ``ledger.events`` and ``ledger.statements`` records, each topic in its own
order, interleaved in any way, leave every line and movement in the same final state."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciliation.matching import (
    MICROSECONDS_PER_DAY,
    MatchingRules,
    MatchRule,
    Movement,
    Reconciler,
    ReconciliationResult,
    ReconciliationState,
)
from reconciliation.statement import Direction, Statement, StatementLine
from tests.unit.test_reconciliation_matching import DAY, line, movement, statement

AT = DAY * MICROSECONDS_PER_DAY
BASE_AMOUNT = 1 << 24  # every amount is BASE + a power of two of its own: no sum collides


@dataclass(frozen=True, slots=True)
class Event:
    """One ``ledger.events`` record: its movements on the account and its effective day."""

    movements: tuple[Movement, ...]
    day: int


Record = Event | StatementLine | Statement
FinalState = tuple[
    tuple[tuple[str, str | None, str, tuple[str, ...], tuple[str, ...], int, int], ...],
    tuple[str, ...],
    tuple[str, ...],
]


def feed(rules: MatchingRules, records: Sequence[tuple[int, Record]]) -> FinalState:
    """The matcher's dispatch (``Matcher._apply``) over ``(offset on its topic, record)``; the
    results without their time, and what is left open."""
    reconciler = Reconciler(rules)
    results: list[ReconciliationResult] = []
    for offset, record in records:
        if isinstance(record, Event):
            for item in record.movements:
                results += reconciler.add_movement(item, offset, AT)
            results += reconciler.advance_ledger_time("acme", record.day * MICROSECONDS_PER_DAY, AT)
        elif isinstance(record, StatementLine):
            results += reconciler.add_line(record, offset, AT)
        else:
            results += reconciler.add_statement(record, AT)
    decided = sorted(
        (
            result.state.value,
            None if result.rule is None else result.rule.value,
            result.reason,
            result.line_ids,
            result.movement_ids,
            result.line_amount,
            result.movement_amount,
        )
        for result in results
    )
    book = reconciler.books.get(("acme", "bank"))
    open_lines = () if book is None else tuple(sorted(book.lines.items))
    open_movements = () if book is None else tuple(sorted(book.movements.items))
    return tuple(decided), open_lines, open_movements


def interleave(
    events: Sequence[Record], statements: Sequence[Record], choices: Sequence[bool]
) -> list[tuple[int, Record]]:
    """Both topics merged, each in its own order with its own offsets: ``choices`` picks the
    topic read next (events when True) while both have records left."""
    merged: list[tuple[int, Record]] = []
    next_event = next_statement = 0
    for take_event in [*choices, *[True] * len(events), *[False] * len(statements)]:
        if take_event and next_event < len(events):
            merged.append((next_event, events[next_event]))
            next_event += 1
        elif not take_event and next_statement < len(statements):
            merged.append((next_statement, statements[next_statement]))
            next_statement += 1
    assert len(merged) == len(events) + len(statements)
    return merged


# --------------------------------------------------------------------------- the CI failure


def test_a_sum_match_does_not_depend_on_which_topic_is_read_first() -> None:
    """The system test's ledger and statement: t3 + t4 = the 100.00 line. Read the statement
    first, t3 used to close as ``not_on_statement`` before t4 arrived (the header covered it)."""
    rules = MatchingRules(date_window_days=1)
    events: list[Record] = [
        Event((movement("t1#0", 150_000, reference="INV-2026-0042"),), DAY),
        Event((movement("t2#0", 40_025, direction=Direction.DEBIT),), DAY),
        Event((movement("t3#0", 6_000),), DAY),
        Event((movement("t4#0", 4_000),), DAY),
        Event((movement("t5#0", 99_999),), DAY),
    ]
    statements: list[Record] = [
        line("l1", 150_000, reference="INV-2026-0042"),
        line("l2", 40_025, direction=Direction.DEBIT),
        line("l3", 10_000),
        line("l4", 7_777, day=DAY - 3),
        statement(DAY + 1),
    ]
    events_first = feed(rules, interleave(events, statements, [True] * len(events)))
    statements_first = feed(rules, interleave(events, statements, [False] * len(statements)))
    assert statements_first == events_first
    decided, open_lines, open_movements = events_first
    assert (open_lines, open_movements) == ((), ())
    assert (
        "matched",
        MatchRule.SUM.value,
        "matched",
        ("l3",),
        ("t3#0", "t4#0"),
        10_000,
        10_000,
    ) in (decided)
    assert [row[2] for row in decided if row[0] == ReconciliationState.UNMATCHED.value] == [
        "no_ledger_movement",
        "not_on_statement",
    ]


def test_a_movement_waits_for_the_ledger_while_a_larger_line_may_still_take_it() -> None:
    rules = MatchingRules(date_window_days=1)
    reconciler = Reconciler(rules)
    assert reconciler.add_line(line("l1", 100), 0, AT) == []
    assert reconciler.add_statement(statement(DAY + 1), AT) == []
    assert reconciler.add_movement(movement("e1#0", 60), 0, AT) == []  # 40 may still come
    assert reconciler.add_movement(movement("e2#0", 500), 1, AT) != []  # nothing larger: closed
    assert reconciler.advance_ledger_time("acme", AT, AT) == []
    assert reconciler.advance_ledger_time("acme", AT + 1 * MICROSECONDS_PER_DAY, AT) == []
    closed = reconciler.advance_ledger_time("acme", AT + 2 * MICROSECONDS_PER_DAY, AT)
    assert sorted((result.reason, result.line_ids, result.movement_ids) for result in closed) == [
        ("no_ledger_movement", ("l1",), ()),
        ("not_on_statement", (), ("e1#0",)),
    ]


def test_a_line_waits_for_the_statements_while_a_larger_movement_may_still_take_it() -> None:
    rules = MatchingRules(date_window_days=1)
    reconciler = Reconciler(rules)
    reconciler.add_statement(statement(DAY - 5), AT)  # a bank-mirror account
    assert reconciler.add_movement(movement("e1#0", 100), 0, AT) == []
    reconciler.advance_ledger_time("acme", AT + 2 * MICROSECONDS_PER_DAY, AT)
    assert reconciler.add_line(line("l1", 60), 0, AT) == []  # the 40 may be on this statement
    (result,) = reconciler.add_line(line("l2", 40), 1, AT)
    assert (result.rule, result.line_ids, result.movement_ids) == (
        MatchRule.SUM,
        ("l1", "l2"),
        ("e1#0",),
    )
    assert reconciler.add_movement(movement("e2#0", 100, day=DAY + 2), 1, AT) == []
    assert reconciler.add_line(line("l3", 70, day=DAY + 2), 2, AT) == []
    reconciler.advance_ledger_time("acme", AT + 4 * MICROSECONDS_PER_DAY, AT)
    assert reconciler.open_items == 2  # l3 waits for the statement covering e2's window
    closed = reconciler.add_statement(statement(DAY + 3), AT)
    assert sorted(result.reason for result in closed) == ["no_ledger_movement", "not_on_statement"]


def test_a_match_lets_the_items_its_partner_held_open_close() -> None:
    rules = MatchingRules(date_window_days=1)
    reconciler = Reconciler(rules)
    reconciler.add_line(line("l1", 100), 0, AT)
    reconciler.add_statement(statement(DAY + 1), AT)
    assert reconciler.add_movement(movement("e1#0", 60), 0, AT) == []  # held open by l1
    matched, closed = reconciler.add_movement(movement("e2#0", 100), 1, AT)
    assert (matched.line_ids, matched.movement_ids) == (("l1",), ("e2#0",))
    assert (closed.reason, closed.movement_ids) == ("not_on_statement", ("e1#0",))


# --------------------------------------------------------------------------- the property

KINDS = ("keep", "keep", "reference", "split", "missing", "extra", "amount", "late")


@st.composite
def two_topics(draw: st.DrawFn) -> tuple[MatchingRules, list[Record], list[Record]]:
    """A random account: payments each booked by the ledger and the bank with one perturbation
    (none, missing on the statement, extra on it, a different amount, booked after the window,
    one line for two movements); the events in ledger time, the lines in statements of
    consecutive periods, each line before its statement's header."""
    window = draw(st.integers(0, 2))
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=7))
    unit = iter(range(1, 20))
    movements: list[Movement] = []
    lines: list[StatementLine] = []
    for index, kind in enumerate(kinds):
        day = DAY + draw(st.integers(0, 5))
        direction = draw(st.sampled_from(Direction))
        reference = f"R{index}" if kind in ("reference", "amount") else None
        amounts = [BASE_AMOUNT + (1 << next(unit)) for _ in range(2 if kind == "split" else 1)]
        if kind != "extra":
            movements += [
                movement(f"p{index}.{part}#0", amount, day=day, direction=direction)
                for part, amount in enumerate(amounts)
            ]
            movements[-1] = replace(movements[-1], external_reference=reference)
        if kind != "missing":
            shift = window + draw(st.integers(1, 3)) if kind == "late" else 0
            offset = draw(st.integers(-window, window)) if kind != "late" else shift
            lines.append(
                line(
                    f"l{index}",
                    sum(amounts) + (1 if kind == "amount" else 0),
                    day=day + offset,
                    direction=direction,
                    reference=reference,
                )
            )
    movements.sort(key=lambda item: item.date_days)  # a tenant's ledger time never goes back
    events: list[Record] = [Event((item,), item.date_days) for item in movements]
    if draw(st.booleans()):
        events.append(Event((), DAY + 30))  # the ledger moves on past every window
    statements: list[Record] = []
    first = min([item.booking_date_days for item in lines], default=DAY)
    last = max([item.booking_date_days for item in lines], default=DAY) + draw(st.integers(0, 4))
    cuts = sorted(draw(st.lists(st.integers(first, last), max_size=3, unique=True)))
    start = first
    for end in [*cuts, last]:
        if end < start:
            continue
        period = [item for item in lines if start <= item.booking_date_days <= end]
        statements += draw(st.permutations(period))
        statements.append(statement(end))
        start = end + 1
    rules = MatchingRules(date_window_days=window, movement_retention_days=60)
    return rules, events, statements


@settings(max_examples=300, deadline=None, derandomize=True)
@given(topics=two_topics(), choices=st.lists(st.booleans(), max_size=40))
def test_any_interleaving_of_the_two_topics_gives_the_same_final_states(
    topics: tuple[MatchingRules, list[Record], list[Record]], choices: list[bool]
) -> None:
    rules, events, statements = topics
    reference = feed(rules, interleave(events, statements, [True] * len(events)))
    assert feed(rules, interleave(events, statements, choices)) == reference
    assert feed(rules, interleave(events, statements, [False] * len(statements))) == reference
