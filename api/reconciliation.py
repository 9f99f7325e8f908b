"""The reconciliation endpoints (issue 20): ``GET /v1/reconciliation``.

Parsing and SQL are ``reconciliation.result_search`` (pure); this module runs the statement with
the API's reader, under the request's API key binding (decision 0024: another tenant's rows are
never seen, whatever the filter), and renders a page. A bad parameter is a one-line 400 problem
naming it. The rows are the reconciliation projection's (migration 0012, decision 0074).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final
from urllib.parse import urlencode

import msgspec
from starlette.responses import Response

from api.problems import INVALID_PARAMETER, ApiProblemError
from api.reads import ApiReader
from reconciliation.result_search import (
    ResultPage,
    SearchProblem,
    parse_result_search,
    result_page,
    result_statement,
)

JSON: Final = "application/json"
RECONCILIATION_PATH: Final = "/v1/reconciliation"


def page_document(items: Sequence[tuple[str, str]], page: ResultPage, limit: int) -> dict[str, Any]:
    next_url = None
    if page.next_cursor is not None:
        kept = [(name, value) for name, value in items if name not in ("after", "limit")]
        query = urlencode([*kept, ("limit", str(limit)), ("after", page.next_cursor)])
        next_url = f"{RECONCILIATION_PATH}?{query}"
    return {"data": list(page.rows), "next_cursor": page.next_cursor, "next": next_url}


async def list_results(
    reader: ApiReader, tenant_id: str, items: Sequence[tuple[str, str]]
) -> Response:
    """The tenant's reconciliation results in the order they were decided, filtered by
    ``account`` and ``state``."""
    search = parse_result_search(items)
    if isinstance(search, SearchProblem):
        raise ApiProblemError(INVALID_PARAMETER, search.message, field=search.parameter)
    rows = await reader.read(tenant_id, *result_statement(tenant_id, search))
    document = page_document(items, result_page(rows, search.limit), search.limit)
    return Response(msgspec.json.encode(document), 200, media_type=JSON)
