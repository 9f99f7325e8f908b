"""The matcher's memory of line ids is bounded (issue 20): a line written twice is decided once
while its booking date is within ``line_identity_days`` of the tenant's ledger day; older ids are
forgotten. A re-imported file never reaches the matcher: the importer refuses it by its hash and
writes each line identity once (decision 0052)."""

from __future__ import annotations

from dataclasses import replace

from reconciliation.matching import MICROSECONDS_PER_DAY, MatchingRules, Reconciler
from reconciliation.metrics import ReconcilerMetrics
from tests.unit.test_reconciliation_matching import AT, DAY, line, movement, statement


def test_line_ids_are_remembered_for_the_named_days_then_forgotten() -> None:
    reconciler = Reconciler(MatchingRules(date_window_days=1, line_identity_days=10))
    reconciler.add_statement(statement(DAY - 1), AT)
    reconciler.advance_ledger_time("acme", AT, AT)
    assert reconciler.add_line(line("l1", 100), 0, AT) == []
    assert reconciler.add_line(line("l1", 100), 1, AT) == []  # the same line again: ignored
    assert reconciler.add_line(replace(line("l2", 7), tenant_id="globex"), 2, AT) == []
    assert reconciler.open_items == 2
    (matched,) = reconciler.add_movement(movement("e1#0", 100), 0, AT)
    assert matched.line_ids == ("l1",)
    assert reconciler.add_line(line("l1", 100), 3, AT) == []  # decided lines are remembered too
    assert set(reconciler.seen_line_ids) == {("acme", "l1"), ("globex", "l2")}

    reconciler.advance_ledger_time("acme", (DAY + 10) * MICROSECONDS_PER_DAY, AT)
    assert ("acme", "l1") in reconciler.seen_line_ids  # exactly 10 days behind: kept
    reconciler.advance_ledger_time("acme", (DAY + 11) * MICROSECONDS_PER_DAY, AT)
    assert set(reconciler.seen_line_ids) == {("globex", "l2")}  # another tenant's ledger time
    assert reconciler.seen_line_days == {"acme": {}, "globex": {DAY: ["l2"]}}


def test_a_line_older_than_the_memory_is_decided_but_not_remembered() -> None:
    reconciler = Reconciler(MatchingRules(date_window_days=1, line_identity_days=10))
    reconciler.add_statement(statement(DAY + 20), AT)
    reconciler.advance_ledger_time("acme", (DAY + 20) * MICROSECONDS_PER_DAY, AT)
    (closed,) = reconciler.add_line(line("old", 5), 0, AT)
    assert (closed.reason, closed.line_ids) == ("no_ledger_movement", ("old",))
    assert reconciler.seen_line_ids == {}
    metrics = ReconcilerMetrics()
    reconciler.add_line(line("new", 5, day=DAY + 20), 1, AT)
    metrics.observe([reconciler])
    assert metrics.remembered_line_ids._value.get() == 1
