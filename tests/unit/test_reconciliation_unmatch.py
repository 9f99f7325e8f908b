"""A manual unmatch (issue 20 §3, decision 0090): an audited request answered by an ``unmatched``
result that supersedes the undone match; refused while an item is open or when repeated."""

from __future__ import annotations

from reconciliation.matching import (
    MANUAL_UNMATCH_REASON,
    ManualUnmatch,
    MatchingRules,
    MatchRule,
    Reconciler,
    ReconciliationResult,
    ReconciliationState,
)
from reconciliation.records import decode, encode
from reconciliation.report import current_results, summarize
from reconciliation.unmatch import unmatch_request
from tests.unit.test_reconciliation_matching import AT, line, movement, statement


def decided_match() -> tuple[Reconciler, ReconciliationResult]:
    reconciler = Reconciler(MatchingRules())
    reconciler.add_statement(statement(0), AT)
    reconciler.add_line(line("l1", 100), 0, AT)
    (matched,) = reconciler.add_movement(movement("e:1#0", 100), 0, AT)
    return reconciler, matched


def request_for(results: list[tuple[int, ReconciliationResult]], result_id: str) -> ManualUnmatch:
    request = unmatch_request(
        results,
        tenant_id="acme",
        account_id="bank",
        result_id=result_id,
        actor="alice",
        note="the bank booked another payment",
        requested_at_us=AT,
    )
    assert isinstance(request, ManualUnmatch), request
    return request


def test_an_unmatch_supersedes_the_match_once() -> None:
    reconciler, matched = decided_match()
    request = request_for([(7, matched)], "0:7")
    assert decode(encode(request)) == request
    (result,) = reconciler.add_manual_unmatch(request, AT + 1)  # type: ignore[misc]
    assert (result.state, result.rule, result.reason) == (
        ReconciliationState.UNMATCHED,
        MatchRule.MANUAL,
        MANUAL_UNMATCH_REASON,
    )
    assert (result.line_ids, result.movement_ids, result.line_amount, result.movement_amount) == (
        ("l1",),
        ("e:1#0",),
        100,
        100,
    )
    assert reconciler.add_manual_unmatch(request, AT + 2) == "already unmatched (result 0:7)"
    assert reconciler.open_items == 0  # the items stay decided: no rule pairs them again

    restored = Reconciler(MatchingRules())  # after a restart: rebuilt from the results
    restored.remember_decided(matched)
    restored.remember_decided(result)
    assert restored.add_manual_unmatch(request, AT, restoring=True) == []
    assert restored.add_manual_unmatch(request, AT + 2) == "already unmatched (result 0:7)"


def test_an_unmatch_of_open_items_or_of_nothing_is_refused() -> None:
    reconciler = Reconciler(MatchingRules())
    reconciler.add_statement(statement(0), AT)
    reconciler.add_line(line("l1", 100), 0, AT)
    _, matched = decided_match()
    request = request_for([(3, matched)], "0:3")
    assert reconciler.add_manual_unmatch(request, AT) == "not decided yet: l1"
    empty = ManualUnmatch(**{**request_fields(request), "line_ids": (), "movement_ids": ()})
    assert reconciler.add_manual_unmatch(empty, AT) == (
        "a manual unmatch needs the items of a decided result"
    )


def request_fields(request: ManualUnmatch) -> dict[str, object]:
    return {name: getattr(request, name) for name in ManualUnmatch.__dataclass_fields__}


def test_the_command_checks_the_result_is_a_current_match_of_the_account() -> None:
    _, matched = decided_match()
    unmatched = ReconciliationResult(
        **{
            **{name: getattr(matched, name) for name in ReconciliationResult.__dataclass_fields__},
            "state": ReconciliationState.UNMATCHED,
            "rule": MatchRule.MANUAL,
            "reason": MANUAL_UNMATCH_REASON,
        }
    )
    results = [(4, matched), (9, unmatched)]

    def refusal(result_id: str, account_id: str = "bank") -> object:
        return unmatch_request(
            results,
            tenant_id="acme",
            account_id=account_id,
            result_id=result_id,
            actor="a",
            note="",
            requested_at_us=AT,
        )

    assert refusal("0:5") == "no result 0:5 of account 'bank'"
    assert refusal("0:4", "cash") == "no result 0:4 of account 'cash'"
    assert refusal("0:4") == "result 0:4 was superseded by a later result (manual_unmatch)"
    assert refusal("0:9") == "result 0:9 is unmatched: only a match or mismatch is undone"
    assert isinstance(unmatch_request(results[:1], tenant_id="acme", account_id="bank",
                                      result_id="0:4", actor="a", note="",
                                      requested_at_us=AT), ManualUnmatch)  # fmt: skip


def test_the_report_counts_the_latest_result_of_each_item() -> None:
    reconciler, matched = decided_match()
    (result,) = reconciler.add_manual_unmatch(request_for([(1, matched)], "0:1"), AT)  # type: ignore[misc]
    assert current_results([matched, result]) == [result]
    report = summarize(
        tenant_id="acme",
        account_id="bank",
        from_days=None,
        to_days=None,
        statements=[],
        lines=[line("l1", 100)],
        results=[matched, result],
        ledger_balances=[],
    )
    assert report.lines_by_state == {"unmatched": 1}
    assert report.movements_by_state == {"unmatched": 1}
