"""Metadata search parameters (decision 0056): what is accepted, and a one-line 400 naming the
parameter for anything else; the statement holds one fixed fragment per given filter; a page's
``next`` link keeps the filters."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from api.problems import ApiProblemError
from api.searches import search_accounts, search_transfers
from projections.queries import QueryError
from projections.search import (
    SEARCH_PAGE_DEFAULT,
    SEARCH_PAGE_MAX,
    TRANSFER_COLUMNS,
    TransactionSearch,
    TransferSearch,
    page_of,
    parse_account_search,
    parse_transaction_search,
    parse_transfer_search,
    transfer_statement,
)


@pytest.mark.parametrize(
    ("parse", "search_class", "status", "after"),
    [
        (parse_transfer_search, TransferSearch, "posted", "t-1"),
        (parse_transaction_search, TransactionSearch, "voided", "fx-1"),
    ],
)
def test_a_full_search_is_parsed(
    parse: Callable[[list[tuple[str, str]]], object],
    search_class: type[object],
    status: str,
    after: str,
) -> None:
    search = parse(
        [
            ("metadata[order_id]", "A-17"),
            ("metadata[channel]", "web"),
            ("from", "2026-01-01T00:00:00Z"),
            ("to", "1767312000000000"),
            ("account", "cash"),
            ("status", status),
            ("limit", "50"),
            ("after", f"42:{after}"),
        ]
    )
    assert search == search_class(
        metadata=(("channel", "web"), ("order_id", "A-17")),  # type: ignore[call-arg]
        created_from=datetime(2026, 1, 1, tzinfo=UTC),
        created_to=datetime(2026, 1, 2, tzinfo=UTC),
        account="cash",
        status=status,
        limit=50,
        after=(42, after),
    )


def test_defaults_and_a_posting_cursor() -> None:
    search = parse_transfer_search([("after", "7:fx-1/0")])
    assert search.limit == SEARCH_PAGE_DEFAULT and search.after == (7, "fx-1/0")
    assert parse_account_search([("metadata[team]", ""), ("currency", "USD")]).metadata == (
        ("team", ""),
    )


@pytest.mark.parametrize(
    ("items", "field", "says"),
    [
        ([("metadata[order id]", "x")], "metadata[order id]", "the key must be"),
        ([("metadata[]", "x")], "metadata[]", "the key must be"),
        ([("metadata[a]", "x"), ("metadata[a]", "y")], "metadata[a]", "more than once"),
        ([("metadata[a]", "x\n")], "metadata[a]", "control character"),
        ([("metadata[a]", "x" * 513)], "metadata[a]", "longer than 512"),
        ([(f"metadata[k{i}]", "v") for i in range(17)], "metadata[k16]", "at most 16"),
        ([("metdata[a]", "x")], "metdata[a]", "unknown query parameter"),
        ([("limit", "0")], "limit", f"1..{SEARCH_PAGE_MAX}"),
        ([("limit", "1001")], "limit", f"1..{SEARCH_PAGE_MAX}"),
        ([("limit", "٣")], "limit", "whole number"),
        ([("limit", "1"), ("limit", "2")], "limit", "more than once"),
        ([("status", "done")], "status", "pending, posted, voided, expired"),
        ([("from", "yesterday")], "from", "neither RFC 3339"),
        ([("from", "2026-01-02"), ("to", "2026-01-01")], "to", "before from"),
        ([("account", "a b")], "account", "characters outside"),
        ([("after", "x:t-1")], "after", "not a cursor"),
        ([("after", "99999999999999999999:t")], "after", "not a cursor"),
        ([("after", "5:")], "after", "not a cursor"),
    ],
)
def test_bad_parameters_name_the_parameter(
    items: list[tuple[str, str]], field: str, says: str
) -> None:
    with pytest.raises(QueryError, match=says) as raised:
        parse_transfer_search(items)
    assert str(raised.value).startswith(field + ":")


def test_account_search_takes_only_its_parameters() -> None:
    with pytest.raises(QueryError, match=r"^status: unknown query parameter"):
        parse_account_search([("status", "posted")])
    with pytest.raises(QueryError, match="currency"):
        parse_account_search([("currency", "usd")])


def test_the_statement_has_one_fragment_per_given_filter() -> None:
    search = TransferSearch(
        metadata=(("channel", "web"), ("order_id", "A-17")), account="cash", after=(9, "t-3")
    )
    text, parameters = transfer_statement("acme", search)
    assert "FROM ledger.transfer_metadata AS m JOIN ledger.transfers AS t" in text
    assert text.count("@>") == 1  # the pairs after the first, on the row's JSONB
    where = text.split("WHERE", 1)[1]
    assert "created_at" not in where and "status =" not in where
    assert "(m.created_sequence, m.transfer_id) < (%s, %s)" in where
    assert parameters == (
        "acme",
        "channel",
        "web",
        '{"order_id":"A-17"}',
        "cash",
        "cash",
        9,
        "t-3",
        100,
    )
    plain, plain_parameters = transfer_statement("acme", TransferSearch(limit=5))
    assert "metadata" not in plain.split("FROM", 1)[1] and plain_parameters == ("acme", 5)
    assert plain.endswith("ORDER BY t.created_sequence DESC, t.transfer_id DESC LIMIT %s")


def test_a_full_page_has_a_cursor_of_its_last_row() -> None:
    names = [name.strip() for name in TRANSFER_COLUMNS.split(",")]
    row = [None] * len(names)
    row[names.index("transfer_id")], row[names.index("created_sequence")] = "t-9", 12
    assert page_of([row, row], TRANSFER_COLUMNS, 2).next_cursor == "12:t-9"
    assert page_of([row], TRANSFER_COLUMNS, 2).next_cursor is None


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
        asyncio.run(search_transfers(reader, "acme", [("metadata[a b]", "x")]))  # type: ignore[arg-type]
    problem = json.loads(raised.value.body(None))
    assert problem["status"] == 400 and problem["field"] == "metadata[a b]"
    assert "\n" not in problem["detail"] and problem["detail"].startswith("metadata[a b]:")
    assert reader.statements == [], "nothing is read for a bad request"


def test_the_next_link_keeps_the_filters() -> None:
    names = [name.strip() for name in TRANSFER_COLUMNS.split(",")]
    row = [None] * len(names)
    row[names.index("transfer_id")], row[names.index("created_sequence")] = "t-9", 12
    reader = RecordingReader([row])
    items = [("metadata[order_id]", "A 17"), ("limit", "1"), ("to", "2026-01-01")]
    response = asyncio.run(search_transfers(reader, "acme", items))  # type: ignore[arg-type]
    document = json.loads(response.body)
    assert document["next_cursor"] == "12:t-9"
    assert document["next"] == (
        "/v1/transfers?metadata%5Border_id%5D=A+17&to=2026-01-01&limit=1&after=12%3At-9"
    )
    accounts = asyncio.run(search_accounts(RecordingReader([]), "acme", []))  # type: ignore[arg-type]
    assert json.loads(accounts.body) == {"data": [], "next_cursor": None, "next": None}
