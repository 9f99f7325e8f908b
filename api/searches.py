"""The search endpoints: ``GET /v1/transfers``, ``GET /v1/transactions`` and ``GET /v1/accounts``
(issue 19 §3, decisions 0056 and 0077).

Parsing and SQL are ``projections.search`` (pure); this module runs the statement with the API's
reader, under the request's API key binding (decision 0024: another tenant's rows are never
seen, whatever the filter), and renders a page. A bad parameter is a one-line 400 problem naming
it. A page holds at most ``SEARCH_PAGE_MAX`` rows; ``next`` is the URL of the next one (the same
filters, ``after`` = this page's ``next_cursor``), ``null`` after the last.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final
from urllib.parse import urlencode

import msgspec
from starlette.responses import Response

from api.problems import INVALID_PARAMETER, ApiProblemError
from api.reads import ApiReader
from projections.queries import QueryError
from projections.search import (
    ACCOUNT_COLUMNS,
    TRANSACTION_COLUMNS,
    TRANSFER_COLUMNS,
    SearchPage,
    SequenceBounds,
    TransactionSearch,
    TransferSearch,
    account_statement,
    bounds_statement,
    page_of,
    parse_account_search,
    parse_transaction_search,
    parse_transfer_search,
    sequence_bounds,
    transaction_statement,
    transfer_statement,
)

JSON: Final = "application/json"
TRANSFERS_PATH: Final = "/v1/transfers"
ACCOUNTS_PATH: Final = "/v1/accounts"
TRANSACTIONS_PATH: Final = "/v1/transactions"


def parsed(parse: Any, items: Sequence[tuple[str, str]]) -> Any:
    try:
        return parse(items)
    except QueryError as exc:
        field = str(exc).split(":", 1)[0]
        raise ApiProblemError(INVALID_PARAMETER, str(exc), field=field) from None


def page_document(
    path: str, items: Sequence[tuple[str, str]], page: SearchPage, limit: int
) -> dict[str, Any]:
    next_url = None
    if page.next_cursor is not None:
        kept = [(name, value) for name, value in items if name not in ("after", "limit")]
        query = urlencode([*kept, ("limit", str(limit)), ("after", page.next_cursor)])
        next_url = f"{path}?{query}"
    return {"data": list(page.rows), "next_cursor": page.next_cursor, "next": next_url}


async def period_bounds(
    reader: ApiReader, tenant_id: str, search: TransferSearch | TransactionSearch
) -> SequenceBounds | None:
    """The creation sequences of the search's period (``from``/``to``), read first so the page's
    scan starts and stops there (decision 0077); None without a period."""
    statement = bounds_statement(tenant_id, search)
    if statement is None:
        return None
    return sequence_bounds(await reader.read(tenant_id, *statement))


async def search_transfers(
    reader: ApiReader, tenant_id: str, items: Sequence[tuple[str, str]]
) -> Response:
    """Transfers of the tenant matching every filter, newest first (decision 0056)."""
    search = parsed(parse_transfer_search, items)
    bounds = await period_bounds(reader, tenant_id, search)
    rows = await reader.read(tenant_id, *transfer_statement(tenant_id, search, bounds))
    page = page_of(rows, TRANSFER_COLUMNS, search.limit)
    document = page_document(TRANSFERS_PATH, items, page, search.limit)
    return Response(msgspec.json.encode(document), 200, media_type=JSON)


async def search_transactions(
    reader: ApiReader, tenant_id: str, items: Sequence[tuple[str, str]]
) -> Response:
    """Multi-leg transactions of the tenant matching every filter, newest first (decision
    0077)."""
    search = parsed(parse_transaction_search, items)
    bounds = await period_bounds(reader, tenant_id, search)
    rows = await reader.read(tenant_id, *transaction_statement(tenant_id, search, bounds))
    page = page_of(rows, TRANSACTION_COLUMNS, search.limit)
    document = page_document(TRANSACTIONS_PATH, items, page, search.limit)
    return Response(msgspec.json.encode(document), 200, media_type=JSON)


async def search_accounts(
    reader: ApiReader, tenant_id: str, items: Sequence[tuple[str, str]]
) -> Response:
    """Accounts of the tenant matching every filter, newest first (decision 0056)."""
    search = parsed(parse_account_search, items)
    rows = await reader.read(tenant_id, *account_statement(tenant_id, search))
    page = page_of(rows, ACCOUNT_COLUMNS, search.limit)
    document = page_document(ACCOUNTS_PATH, items, page, search.limit)
    return Response(msgspec.json.encode(document), 200, media_type=JSON)
