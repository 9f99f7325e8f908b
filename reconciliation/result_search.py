"""``GET /v1/reconciliation``: parsing its query and the SQL over ``reconciliation_results``.

Pure: the query parameters in, a frozen ``ResultSearch`` (or a ``SearchProblem`` naming the
parameter) out, and the statement with its parameters; the API (``api.reconciliation``) runs it
as the API key's tenant, so row-level security applies as to every read (migration 0012).

Parameters: ``account`` (the bank-mirror account), ``state`` (``matched``, ``mismatched``,
``unmatched``), ``limit`` (1..``RESULT_PAGE_MAX``, default ``RESULT_PAGE_DEFAULT``) and
``after`` (the ``next_cursor`` of the previous page). Results come in the order the matcher
decided them (their position on ``ledger.reconciliation``, ``"{partition}:{offset}"``, which is
each result's ``result_id``): keyset pagination, so a result decided while a client pages is
seen on a later page, never twice.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from reconciliation.matching import ReconciliationState
from schemas.limits import entity_id_problem

RESULT_PAGE_DEFAULT: Final = 100
RESULT_PAGE_MAX: Final = 1_000  # rows per page: bounds one statement's work and one response
PARAMETERS: Final = ("account", "state", "limit", "after")
STATES: Final = tuple(state.value for state in ReconciliationState)
PARAMETER_SHOWN_MAX: Final = 64
CURSOR_PATTERN: Final = re.compile(r"([0-9]{1,9}):([0-9]{1,19})")
OFFSET_MAX: Final = 2**63 - 1
PARTITION_MAX: Final = 2**31 - 1

RESULT_COLUMNS: Final = (
    "account_id, record_partition, record_offset, state, rule, reason, line_ids, movement_ids,"
    " line_amount, movement_amount, decided_at"
)
SELECT_RESULTS: Final = (
    f"SELECT {RESULT_COLUMNS} FROM ledger.reconciliation_results AS r WHERE r.tenant_id = %s"
)
ACCOUNT_FILTER: Final = " AND r.account_id = %s"
STATE_FILTER: Final = " AND r.state = %s"
AFTER_FILTER: Final = " AND (r.record_partition, r.record_offset) > (%s, %s)"
ORDER_AND_LIMIT: Final = " ORDER BY r.record_partition, r.record_offset LIMIT %s"


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchProblem:
    """A bad query parameter: the API answers 400 naming ``parameter``."""

    parameter: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ResultSearch:
    account_id: str | None = None
    state: ReconciliationState | None = None
    limit: int = RESULT_PAGE_DEFAULT
    after: tuple[int, int] | None = None  # (partition, offset) of the previous page's last row


@dataclass(frozen=True, slots=True)
class ResultPage:
    rows: tuple[dict[str, Any], ...]
    next_cursor: str | None


def parse_result_search(items: Sequence[tuple[str, str]]) -> ResultSearch | SearchProblem:
    """The query's parameters, each at most once and each one this route takes."""
    given = given_once(items, PARAMETERS)
    return given if isinstance(given, SearchProblem) else _checked(given)


def given_once(
    items: Sequence[tuple[str, str]], parameters: Sequence[str]
) -> dict[str, str] | SearchProblem:
    """A route's query parameters by name: each one of ``parameters``, each at most once."""
    given: dict[str, str] = {}
    for name, value in items:
        shown = name[:PARAMETER_SHOWN_MAX]
        if name not in parameters:
            return SearchProblem(
                parameter=shown,
                message=f"{shown!r}: unknown query parameter (this route takes"
                f" {', '.join(parameters)})",
            )
        if name in given:
            return SearchProblem(parameter=name, message=f"{name}: given more than once")
        given[name] = value
    return given


def page_bounds(given: dict[str, str]) -> tuple[int, tuple[int, int] | None] | SearchProblem:
    """``limit`` (1..``RESULT_PAGE_MAX``, default ``RESULT_PAGE_DEFAULT``) and ``after`` (the
    ``(partition, offset)`` of a previous page's ``next_cursor``) of a keyset-paginated list."""
    limit = given.get("limit", str(RESULT_PAGE_DEFAULT))
    digits = limit.isascii() and limit.isdigit() and len(limit) <= len(str(RESULT_PAGE_MAX))
    if not digits or not 1 <= int(limit) <= RESULT_PAGE_MAX:
        return SearchProblem(
            parameter="limit",
            message=f"limit: {limit[:16]!r} is not a whole number in 1..{RESULT_PAGE_MAX}",
        )
    after = given.get("after")
    if after is None:
        return int(limit), None
    cursor = CURSOR_PATTERN.fullmatch(after)
    if cursor is None or int(cursor.group(1)) > PARTITION_MAX or int(cursor.group(2)) > OFFSET_MAX:
        return SearchProblem(
            parameter="after",
            message=f"after: {after[:PARAMETER_SHOWN_MAX]!r} is not a cursor of this list",
        )
    return int(limit), (int(cursor.group(1)), int(cursor.group(2)))


def _checked(given: dict[str, str]) -> ResultSearch | SearchProblem:
    account = given.get("account")
    if account is not None and (problem := entity_id_problem(account)) is not None:
        return SearchProblem(parameter="account", message=f"account: {problem}")
    state = given.get("state")
    if state is not None and state not in STATES:
        return SearchProblem(
            parameter="state",
            message=f"state: {state[:PARAMETER_SHOWN_MAX]!r} is not one of {', '.join(STATES)}",
        )
    bounds = page_bounds(given)
    if isinstance(bounds, SearchProblem):
        return bounds
    limit, after = bounds
    return ResultSearch(
        account_id=account,
        state=None if state is None else ReconciliationState(state),
        limit=limit,
        after=after,
    )


def result_statement(tenant_id: str, search: ResultSearch) -> tuple[str, tuple[Any, ...]]:
    """One statement per combination of filters (each fragment only when its parameter is
    given), so the planner sees a plain index range: migration 0012's indexes."""
    statement = SELECT_RESULTS
    parameters: list[Any] = [tenant_id]
    if search.account_id is not None:
        statement += ACCOUNT_FILTER
        parameters.append(search.account_id)
    if search.state is not None:
        statement += STATE_FILTER
        parameters.append(search.state.value)
    if search.after is not None:
        statement += AFTER_FILTER
        parameters.extend(search.after)
    parameters.append(search.limit)
    return statement + ORDER_AND_LIMIT, tuple(parameters)


def result_page(rows: Sequence[Sequence[Any]], limit: int) -> ResultPage:
    """Rows as documents; a full page has a next cursor (its last row's ``result_id``)."""
    documents = tuple(
        {
            "result_id": f"{partition}:{offset}",
            "account_id": account_id,
            "state": state,
            "rule": rule,
            "reason": reason,
            "line_ids": list(line_ids),
            "movement_ids": list(movement_ids),
            "line_amount": line_amount,
            "movement_amount": movement_amount,
            "difference": line_amount - movement_amount,
            "decided_at": decided_at,
        }
        for (
            account_id,
            partition,
            offset,
            state,
            rule,
            reason,
            line_ids,
            movement_ids,
            line_amount,
            movement_amount,
            decided_at,
        ) in rows
    )
    next_cursor = None
    if documents and len(documents) == limit:
        next_cursor = str(documents[-1]["result_id"])
    return ResultPage(documents, next_cursor)
