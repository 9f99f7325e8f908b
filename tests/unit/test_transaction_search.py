"""Metadata search of multi-leg transactions (decision 0077): the transfers' parameters, a
one-line 400 naming a bad one, one fixed fragment per given filter on the transaction's row and
its ``transaction_metadata`` index (migration 0013), pages keyed by (created_sequence,
transaction_id); the OpenAPI document lists the endpoint."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from api.openapi import build_openapi
from api.problems import ApiProblemError
from api.searches import search_transactions
from projections.queries import QueryError
from projections.search import (
    TRANSACTION_COLUMNS,
    TransactionSearch,
    bounds_statement,
    page_of,
    parse_transaction_search,
    sequence_bounds,
    transaction_statement,
)


@pytest.mark.parametrize(
    ("items", "field"),
    [
        ([("metadata[a b]", "x")], "metadata[a b]"),
        ([("currency", "USD")], "currency"),
        ([("status", "done")], "status"),
        ([("to", "soon")], "to"),
        ([("from", "2026-01-02"), ("to", "2026-01-01")], "to"),
        ([("account", "a/0")], "account"),
        ([("limit", "1001")], "limit"),
        ([("after", "1")], "after"),
    ],
)
def test_bad_parameters_name_the_parameter(items: list[tuple[str, str]], field: str) -> None:
    with pytest.raises(QueryError) as raised:
        parse_transaction_search(items)
    assert str(raised.value).startswith(field + ":")


def test_the_statement_has_one_fragment_per_given_filter() -> None:
    search = TransactionSearch(
        metadata=(("channel", "web"), ("order_id", "A-17")),
        created_to=datetime(2026, 1, 2, tzinfo=UTC),
        account="cash",
        after=(9, "x-3"),
    )
    text, parameters = transaction_statement("acme", search)
    assert "FROM ledger.transaction_metadata AS m JOIN ledger.transactions AS x" in text
    assert text.count("@>") == 1 and "x.metadata @>" in text
    where = text.split("WHERE", 1)[1]
    assert "x.created_at < %s" in where and "x.created_at >=" not in where
    assert "x.status" not in where
    assert "i < x.posting_count" in where  # account: on any posting
    assert "(m.created_sequence, m.transaction_id) < (%s, %s)" in where
    assert "created_sequence >=" not in where  # no bounds given
    assert parameters == (
        "acme",
        *("channel", "web", '{"order_id":"A-17"}'),
        datetime(2026, 1, 2, tzinfo=UTC),
        *("cash", "cash", 9, "x-3", 100),
    )
    # with the period's sequence bounds: a range of the index right after its (key, value)
    bounded, bounded_parameters = transaction_statement("acme", search, (3, 40))
    assert "m.value = %s AND x.metadata @> %s::jsonb AND m.created_sequence >= %s" in bounded
    assert " AND m.created_sequence < %s AND x.created_at < %s" in bounded
    assert bounded_parameters[:6] == ("acme", "channel", "web", '{"order_id":"A-17"}', 3, 40)


def test_the_period_bounds_statement() -> None:
    assert bounds_statement("acme", TransactionSearch()) is None
    moment = datetime(2026, 1, 2, tzinfo=UTC)
    to_only = bounds_statement("acme", TransactionSearch(created_to=moment))
    assert to_only is not None and to_only[0].startswith("SELECT 0, coalesce((SELECT c.sequence")
    assert to_only[1] == ("acme", moment)
    both = bounds_statement("acme", TransactionSearch(created_from=moment, created_to=moment))
    assert both is not None and both[0].startswith("SELECT (SELECT CASE WHEN min(f.sequence) = 1")
    assert both[1] == ("acme", moment, "acme", "acme", moment)
    assert sequence_bounds([(4, 9)]) == (4, 9)
    plain, plain_parameters = transaction_statement("acme", TransactionSearch(limit=5))
    assert "metadata" not in plain.split("FROM", 1)[1] and plain_parameters == ("acme", 5)
    assert plain.endswith("ORDER BY x.created_sequence DESC, x.transaction_id DESC LIMIT %s")


def transaction_row(transaction_id: str, sequence: int) -> list[Any]:
    names = [name.strip() for name in TRANSACTION_COLUMNS.split(",")]
    row: list[Any] = [None] * len(names)
    row[names.index("transaction_id")], row[names.index("created_sequence")] = (
        transaction_id,
        sequence,
    )
    return row


def test_a_full_page_has_a_cursor_of_its_last_row() -> None:
    row = transaction_row("x-9", 12)
    assert page_of([row, row], TRANSACTION_COLUMNS, 2).next_cursor == "12:x-9"
    assert page_of([row], TRANSACTION_COLUMNS, 2).next_cursor is None


class RecordingReader:
    def __init__(self, rows: list[Any]) -> None:
        self.rows = rows
        self.statements: list[tuple[str, str, tuple[Any, ...]]] = []

    async def read(self, tenant_id: str, statement: str, parameters: tuple[Any, ...]) -> Any:
        self.statements.append((tenant_id, statement, parameters))
        if statement.startswith("SELECT 0, ") or statement.startswith("SELECT (SELECT CASE"):
            return [(0, 2**63 - 1)]  # the period's sequence bounds (decision 0077)
        return self.rows


def test_the_api_answers_a_bad_parameter_with_a_one_line_problem() -> None:
    reader = RecordingReader([])
    with pytest.raises(ApiProblemError) as raised:
        asyncio.run(search_transactions(reader, "acme", [("status", "done")]))  # type: ignore[arg-type]
    problem = json.loads(raised.value.body(None))
    assert problem["status"] == 400 and problem["field"] == "status"
    assert "\n" not in problem["detail"] and problem["detail"].startswith("status:")
    assert reader.statements == [], "nothing is read for a bad request"


def test_the_next_link_keeps_the_filters() -> None:
    reader = RecordingReader([transaction_row("x-9", 12)])
    items = [("metadata[order_id]", "A 17"), ("limit", "1"), ("to", "2026-01-01")]
    response = asyncio.run(search_transactions(reader, "acme", items))  # type: ignore[arg-type]
    document = json.loads(response.body)
    assert document["data"][0]["transaction_id"] == "x-9"
    assert document["next"] == (
        "/v1/transactions?metadata%5Border_id%5D=A+17&to=2026-01-01&limit=1&after=12%3Ax-9"
    )


def test_openapi_lists_the_search_beside_the_submission() -> None:
    operations = build_openapi()["paths"]["/v1/transactions"]
    assert set(operations) == {"get", "post"}
    names = {parameter["name"] for parameter in operations["get"]["parameters"]}
    assert names == {"metadata", "from", "to", "account", "status", "limit", "after"}
