"""A manual match of decided ``unmatched`` items (decision 0106): the matcher remembers the items
whose latest result is ``unmatched`` (bounded by ``decided_unmatched_max``, rebuilt from the
results on restore) and supersedes their results with a manual ``matched`` one."""

from __future__ import annotations

from dataclasses import replace

from reconciliation.matching import (
    MANUAL_UNMATCH_REASON,
    ManualMatch,
    ManualUnmatch,
    MatchingRules,
    MatchRule,
    Reconciler,
    ReconciliationResult,
    ReconciliationState,
)
from reconciliation.report import current_results, summarize
from tests.unit.test_reconciliation_matching import AT, DAY, line, movement, statement


def request(line_ids: tuple[str, ...], movement_ids: tuple[str, ...]) -> ManualMatch:
    return ManualMatch(
        tenant_id="acme",
        account_id="bank",
        line_ids=line_ids,
        movement_ids=movement_ids,
        actor="alice",
        note="found it: the bank took a fee",
        requested_at_us=AT,
    )


def both_unmatched(rules: MatchingRules) -> tuple[Reconciler, list[ReconciliationResult]]:
    """A line of 100.00 and a movement of 97.00 that no rule pairs: both end unmatched."""
    reconciler = Reconciler(rules)
    results = reconciler.add_statement(statement(DAY + 5), AT)
    results += reconciler.add_line(line("bank/l1", 100), 0, AT)
    results += reconciler.add_movement(movement("acme:1#0", 97), 0, AT)
    results += reconciler.advance_ledger_time("acme", AT + 5 * 86_400_000_000, AT)
    assert [(r.state, r.line_ids, r.movement_ids) for r in results] == [
        (ReconciliationState.UNMATCHED, ("bank/l1",), ()),
        (ReconciliationState.UNMATCHED, (), ("acme:1#0",)),
    ]
    assert reconciler.open_items == 0
    return reconciler, results


def restored(rules: MatchingRules, results: list[ReconciliationResult]) -> Reconciler:
    """What a restart rebuilds: the results read back in their order (the inputs add nothing
    to the index: items they name were decided)."""
    reconciler = Reconciler(rules)
    for result in results:
        reconciler.remember_decided(result)
    return reconciler


def test_a_manual_match_supersedes_two_unmatched_results() -> None:
    reconciler, results = both_unmatched(MatchingRules())
    assert len(reconciler.decided_unmatched) == 2
    decided = reconciler.add_manual_match(request(("bank/l1",), ("acme:1#0",)), AT + 1)
    assert isinstance(decided, list)
    (matched,) = decided
    assert (matched.state, matched.rule, matched.reason) == (
        ReconciliationState.MATCHED,
        MatchRule.MANUAL,
        "manual",
    )
    assert (matched.line_ids, matched.movement_ids) == (("bank/l1",), ("acme:1#0",))
    assert (matched.line_amount, matched.movement_amount) == (100, 97)
    assert len(reconciler.decided_unmatched) == 0
    again = reconciler.add_manual_match(request(("bank/l1",), ("acme:1#0",)), AT + 2)
    assert isinstance(again, str) and "unmatch first" in again
    history = [*results, matched]
    assert current_results(history) == [matched]  # every item in exactly one current state
    report = summarize(
        tenant_id="acme",
        account_id="bank",
        from_days=None,
        to_days=None,
        statements=[],
        lines=[line("bank/l1", 100)],
        results=history,
        ledger_balances=[],
    )
    assert report.lines_by_state == {"matched": 1}
    assert report.movements_by_state == {"matched": 1}


def test_an_unmatched_item_matched_with_an_open_one() -> None:
    reconciler, _ = both_unmatched(MatchingRules())
    reconciler.add_line(line("bank/l2", 3, day=DAY + 5), 1, AT)  # open: the ledger is at DAY+5
    assert reconciler.open_items == 1
    decided = reconciler.add_manual_match(request(("bank/l1", "bank/l2"), ("acme:1#0",)), AT)
    assert isinstance(decided, list)
    assert [(r.state, r.line_ids, r.line_amount, r.movement_amount) for r in decided] == [
        (ReconciliationState.MATCHED, ("bank/l1", "bank/l2"), 103, 97),
    ]
    assert reconciler.open_items == 0 and len(reconciler.decided_unmatched) == 0


def test_matched_items_and_unknown_ids_are_refused() -> None:
    reconciler, _ = both_unmatched(MatchingRules())
    reconciler.add_line(line("bank/l3", 50, day=DAY + 5), 1, AT)
    (match,) = reconciler.add_movement(movement("acme:2#0", 50, day=DAY + 5), 1, AT)
    assert match.state is ReconciliationState.MATCHED
    refused = reconciler.add_manual_match(request(("bank/l1",), ("acme:2#0",)), AT)
    assert isinstance(refused, str)
    assert "neither open nor unmatched: acme:2#0" in refused and "unmatch first" in refused
    unknown = reconciler.add_manual_match(request(("bank/l1",), ("acme:9#0",)), AT)
    assert isinstance(unknown, str) and "acme:9#0" in unknown
    assert len(reconciler.decided_unmatched) == 2  # nothing taken by a refusal


def test_a_group_a_person_unmatched_is_matched_again_only_whole() -> None:
    reconciler = Reconciler(MatchingRules())
    reconciler.add_statement(statement(DAY - 10), AT)
    reconciler.add_line(line("bank/l1", 100), 0, AT)
    reconciler.add_movement(movement("acme:1#0", 60), 0, AT)
    reconciler.add_movement(movement("acme:2#0", 35), 1, AT)  # no rule sums 95
    (match,) = reconciler.add_manual_match(request(("bank/l1",), ("acme:1#0", "acme:2#0")), AT)  # type: ignore[misc]
    unmatch = ManualUnmatch(
        tenant_id="acme",
        account_id="bank",
        result_id="0:1",
        line_ids=match.line_ids,
        movement_ids=match.movement_ids,
        line_amount=match.line_amount,
        movement_amount=match.movement_amount,
        actor="bob",
        note="wrong pair",
        requested_at_us=AT,
    )
    (undone,) = reconciler.add_manual_unmatch(unmatch, AT)  # type: ignore[misc]
    part_only = reconciler.add_manual_match(request(("bank/l1",), ("acme:1#0",)), AT)
    assert part_only == "unmatched together (acme:1#0, acme:2#0): name them all"
    decided = reconciler.add_manual_match(request(("bank/l1",), ("acme:2#0", "acme:1#0")), AT)
    assert isinstance(decided, list)
    assert (decided[0].movement_ids, decided[0].movement_amount) == (
        ("acme:1#0", "acme:2#0"),
        95,
    )
    history = [match, undone, decided[0]]
    assert current_results(history) == [decided[0]]
    assert len(restored(MatchingRules(), history).decided_unmatched) == 0
    # matched again, the same group may be unmatched again (live and after a restore)
    second = replace(unmatch, result_id="0:3", requested_at_us=AT + 1)
    after_restart = restored(MatchingRules(), history)
    for matcher in (reconciler, after_restart):
        (again,) = matcher.add_manual_unmatch(second, AT + 2)  # type: ignore[misc]
        assert again.reason == MANUAL_UNMATCH_REASON
        assert matcher.add_manual_unmatch(second, AT + 3) == "already unmatched (result 0:3)"


def test_a_restore_rebuilds_the_index_and_decides_the_same() -> None:
    rules = MatchingRules()
    live, results = both_unmatched(rules)
    after_restart = restored(rules, results)
    assert after_restart.decided_unmatched.parts == live.decided_unmatched.parts
    wanted = request(("bank/l1",), ("acme:1#0",))
    assert after_restart.add_manual_match(wanted, AT, restoring=True) == []  # replay: nothing
    decided = after_restart.add_manual_match(wanted, AT + 1)
    assert isinstance(decided, list) and decided == live.add_manual_match(wanted, AT + 1)
    assert decided[0].state is ReconciliationState.MATCHED
    # restarted again after the match: the index no longer holds the items, both refuse
    again = restored(rules, [*results, *decided])
    assert len(again.decided_unmatched) == 0
    assert isinstance(again.add_manual_match(wanted, AT + 2), str)
    assert isinstance(live.add_manual_match(wanted, AT + 2), str)


def test_past_the_limit_the_oldest_are_forgotten_loudly_and_the_same_after_a_restore() -> None:
    rules = replace(MatchingRules(), decided_unmatched_max=1)
    live, results = both_unmatched(rules)  # two items in, the limit is one
    assert len(live.decided_unmatched) == 1 and live.decided_unmatched.forgotten_items == 1
    refused = live.add_manual_match(request(("bank/l1",), ("acme:1#0",)), AT)
    assert isinstance(refused, str) and "decided_unmatched_max (1)" in refused
    after_restart = restored(rules, results)
    assert after_restart.decided_unmatched.parts == live.decided_unmatched.parts
    assert after_restart.decided_unmatched.forgotten_items == 1
