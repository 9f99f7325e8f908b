"""``GET /v1/reconciliation``'s query (pure): each bad parameter is named, each filter adds its
one SQL fragment, a full page carries the cursor of its last row."""

from __future__ import annotations

import datetime

import pytest

from reconciliation.matching import ReconciliationState
from reconciliation.result_search import (
    RESULT_PAGE_DEFAULT,
    RESULT_PAGE_MAX,
    ResultSearch,
    SearchProblem,
    parse_result_search,
    result_page,
    result_statement,
)


def test_defaults_and_every_filter() -> None:
    assert parse_result_search([]) == ResultSearch(limit=RESULT_PAGE_DEFAULT)
    assert parse_result_search(
        [("account", "bank"), ("state", "unmatched"), ("limit", "1000"), ("after", "2:17")]
    ) == ResultSearch(
        account_id="bank",
        state=ReconciliationState.UNMATCHED,
        limit=RESULT_PAGE_MAX,
        after=(2, 17),
    )


@pytest.mark.parametrize(
    ("items", "parameter"),
    [
        ([("acount", "bank")], "acount"),
        ([("account", "bank"), ("account", "cash")], "account"),
        ([("account", "")], "account"),
        ([("state", "open")], "state"),
        ([("state", "MATCHED")], "state"),
        ([("limit", "0")], "limit"),
        ([("limit", "1001")], "limit"),
        ([("limit", "-1")], "limit"),
        ([("limit", "\uff11")], "limit"),  # a fullwidth digit one
        ([("after", "x")], "after"),
        ([("after", "1:")], "after"),
        ([("after", "1:99999999999999999999")], "after"),
    ],
)
def test_a_bad_parameter_is_named(items: list[tuple[str, str]], parameter: str) -> None:
    problem = parse_result_search(items)
    assert isinstance(problem, SearchProblem)
    assert problem.parameter == parameter and problem.message.startswith(
        (f"{parameter}:", f"{parameter!r}:")
    )


def test_each_filter_is_one_fragment_with_its_parameters() -> None:
    statement, parameters = result_statement("acme", ResultSearch(limit=5))
    assert parameters == ("acme", 5) and "account_id = %s" not in statement
    search = ResultSearch(
        account_id="bank", state=ReconciliationState.MATCHED, limit=2, after=(0, 9)
    )
    statement, parameters = result_statement("acme", search)
    assert parameters == ("acme", "bank", "matched", 0, 9, 2)
    assert statement.count("%s") == len(parameters)
    assert statement.endswith("ORDER BY r.record_partition, r.record_offset LIMIT %s")


def test_a_full_page_has_the_cursor_of_its_last_row() -> None:
    at = datetime.datetime(2026, 12, 6, tzinfo=datetime.UTC)
    row = ("bank", 1, 40, "mismatched", "external_reference", "amount_differs", ["l"], ["m"],
           1_000, 990, at)  # fmt: skip
    page = result_page([row], 1)
    assert page.next_cursor == "1:40"
    (document,) = page.rows
    assert (document["result_id"], document["difference"]) == ("1:40", 10)
    assert result_page([row], 2).next_cursor is None
