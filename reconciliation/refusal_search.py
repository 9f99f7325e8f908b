"""``GET /v1/reconciliation/refusals``: parsing its query and the SQL over
``reconciliation_refusals`` (migration 0016, decision 0107). Pure, as ``result_search``.

Parameters: ``account``, ``request_id`` (the 202's of ``POST /v1/reconciliation/matches`` or
``/unmatches``: the request's position on ``ledger.statements``), ``limit`` (1..
``RESULT_PAGE_MAX``) and ``after`` (the previous page's ``next_cursor``). Refusals come in the
order the matcher wrote them (their position on ``ledger.reconciliation``, the ``refusal_id``),
keyset-paginated. A request the matcher decided has no refusal: its result is on
``GET /v1/reconciliation``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from reconciliation.result_search import (
    PARAMETER_SHOWN_MAX,
    RESULT_PAGE_DEFAULT,
    SearchProblem,
    given_once,
    page_bounds,
)
from schemas.limits import entity_id_problem

PARAMETERS: Final = ("account", "request_id", "limit", "after")
REQUEST_ID_PATTERN: Final = re.compile(r"[0-9]{1,9}:[0-9]{1,19}")
SELECT_REFUSALS: Final = (
    "SELECT account_id, record_partition, record_offset, request_id, request_type, actor,"
    " line_ids, movement_ids, reason, refused_at FROM ledger.reconciliation_refusals AS r"
    " WHERE r.tenant_id = %s"
)
ACCOUNT_FILTER: Final = " AND r.account_id = %s"
REQUEST_FILTER: Final = " AND r.request_id = %s"
AFTER_FILTER: Final = " AND (r.record_partition, r.record_offset) > (%s, %s)"
ORDER_AND_LIMIT: Final = " ORDER BY r.record_partition, r.record_offset LIMIT %s"


@dataclass(frozen=True, slots=True, kw_only=True)
class RefusalSearch:
    account_id: str | None = None
    request_id: str | None = None
    limit: int = RESULT_PAGE_DEFAULT
    after: tuple[int, int] | None = None


def parse_refusal_search(items: Sequence[tuple[str, str]]) -> RefusalSearch | SearchProblem:
    """The query's parameters, each at most once and each one this route takes."""
    given = given_once(items, PARAMETERS)
    if isinstance(given, SearchProblem):
        return given
    account, request_id = given.get("account"), given.get("request_id")
    if account is not None and (problem := entity_id_problem(account)) is not None:
        return SearchProblem(parameter="account", message=f"account: {problem}")
    if request_id is not None and REQUEST_ID_PATTERN.fullmatch(request_id) is None:
        shown = request_id[:PARAMETER_SHOWN_MAX]
        return SearchProblem(
            parameter="request_id", message=f"request_id: {shown!r} is not PARTITION:OFFSET"
        )
    bounds = page_bounds(given)
    if isinstance(bounds, SearchProblem):
        return bounds
    limit, after = bounds
    return RefusalSearch(
        account_id=account,
        request_id=request_id,
        limit=limit,
        after=after,
    )


def refusal_statement(tenant_id: str, search: RefusalSearch) -> tuple[str, tuple[Any, ...]]:
    """One statement per combination of filters (migration 0016's key and request index)."""
    statement = SELECT_REFUSALS
    parameters: list[Any] = [tenant_id]
    if search.account_id is not None:
        statement += ACCOUNT_FILTER
        parameters.append(search.account_id)
    if search.request_id is not None:
        statement += REQUEST_FILTER
        parameters.append(search.request_id)
    if search.after is not None:
        statement += AFTER_FILTER
        parameters.extend(search.after)
    parameters.append(search.limit)
    return statement + ORDER_AND_LIMIT, tuple(parameters)


def refusal_documents(rows: Sequence[Sequence[Any]], limit: int) -> dict[str, Any]:
    """Rows as documents; a full page has a next cursor (its last row's ``refusal_id``)."""
    documents = [
        {
            "refusal_id": f"{partition}:{offset}",
            "account_id": account_id,
            "request_id": request_id,
            "request_type": request_type,
            "actor": actor,
            "line_ids": list(line_ids),
            "movement_ids": list(movement_ids),
            "reason": reason,
            "refused_at": refused_at,
        }
        for (
            account_id,
            partition,
            offset,
            request_id,
            request_type,
            actor,
            line_ids,
            movement_ids,
            reason,
            refused_at,
        ) in rows
    ]
    full = bool(documents) and len(documents) == limit
    return {"data": documents, "next_cursor": documents[-1]["refusal_id"] if full else None}
