"""A manual request the matcher refuses is answered by a ``ManualRefusal`` record on
``ledger.reconciliation`` (decision 0107): encoded with the reconciliation contract, projected
into its own table, listed by the report, and passed over by the folds of item states."""

from __future__ import annotations

from reconciliation.manual_refusal import ManualRefusal, manual_refusal
from reconciliation.projection import rows_of
from reconciliation.records import decode, encode
from reconciliation.report import current_results, render, summarize
from tests.unit.test_reconciliation_matching import AT

REFUSAL = manual_refusal(
    "ManualMatch",
    ("acme", "bank", "alice (API key 3f2a)", ("bank/ref/BK-1",), ("acme:99#0",)),
    request_id="0:41",
    reason="neither open nor unmatched: acme:99#0",
    refused_at_us=AT,
)


def test_a_refusal_round_trips_and_is_projected_as_a_refusal_row() -> None:
    value = encode(REFUSAL)
    assert value[:10].hex() == "c301a317ef7afa57ee8c"
    assert decode(value) == REFUSAL
    rows = rows_of([(value, 3, 17)])
    assert (rows.results, rows.statements, rows.lines) == ([], [], [])
    (row,) = rows.refusals
    assert row[:7] == ("acme", "bank", 3, 17, "0:41", "ManualMatch", "alice (API key 3f2a)")
    assert row[7:10] == (["bank/ref/BK-1"], ["acme:99#0"], "neither open nor unmatched: acme:99#0")
    assert rows.by_table()["reconciliation_refusals"] == 1


def test_the_report_lists_refusals_and_counts_no_item_by_them() -> None:
    report = summarize(
        tenant_id="acme",
        account_id="bank",
        from_days=None,
        to_days=None,
        statements=[],
        lines=[],
        results=[],
        ledger_balances=[],
        refusals=[REFUSAL],
    )
    assert sum(report.lines_by_state.values()) == 0  # a refusal decides no item
    text = render(report)
    assert "manual requests refused by the matcher: 1" in text
    assert "request 0:41 (ManualMatch by alice (API key 3f2a)): neither open nor unmatched" in text
    assert current_results([]) == []


def test_an_unknown_request_type_is_a_bug() -> None:
    try:
        ManualRefusal(
            tenant_id="acme",
            account_id="bank",
            request_id="0:1",
            request_type="Statement",
            actor="a",
            line_ids=(),
            movement_ids=(),
            reason="r",
            refused_at_us=0,
        )
    except AssertionError:
        return
    raise AssertionError("a refusal of a Statement was built")


def test_the_refusal_search_parses_and_builds_one_statement() -> None:
    from reconciliation.refusal_search import (
        RefusalSearch,
        parse_refusal_search,
        refusal_documents,
        refusal_statement,
    )
    from reconciliation.result_search import SearchProblem

    search = parse_refusal_search([("account", "bank"), ("request_id", "0:41"), ("limit", "1")])
    assert search == RefusalSearch(account_id="bank", request_id="0:41", limit=1)
    statement, parameters = refusal_statement("acme", search)
    assert "r.account_id = %s AND r.request_id = %s" in statement
    assert parameters == ("acme", "bank", "0:41", 1)
    for items, parameter in (
        ([("request_id", "41")], "request_id"),
        ([("state", "x")], "state"),
        ([("limit", "0")], "limit"),
        ([("after", "x")], "after"),
        ([("account", "a"), ("account", "b")], "account"),
    ):
        problem = parse_refusal_search(items)
        assert isinstance(problem, SearchProblem) and problem.parameter == parameter, items
    row = ("bank", 3, 17, "0:41", "ManualMatch", "bob", ["bank/x"], [], "why", "t")
    document = refusal_documents([row], 1)
    assert document["next_cursor"] == "3:17"
    assert document["data"][0]["refusal_id"] == "3:17"
    assert document["data"][0]["request_id"] == "0:41"
    assert refusal_documents([row], 2)["next_cursor"] is None
