"""The report endpoints: ``GET /v1/trial-balance`` and ``GET /v1/accounts/{id}/statement``.

The reads are the projection's report steps (``projections.reports``), driven here with the
API's reader, so every statement runs under the request's API key binding (decision 0024): a key
of another tenant sees no account (404) and an empty trial balance. ``app.py`` routes to these
with the tenant and the checked query; this module parses the parameters (a bad one is a 400
problem naming it), runs the report and renders it as JSON, CSV or PDF.

A report that does not add up (a trial balance that does not net to zero, a statement whose
entries do not lead from the opening to the closing balance, a chain missing links) is a 500
problem saying so, logged as an error: never a document that looks fine.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

import msgspec
from starlette.responses import Response

from api.problems import INVALID_PARAMETER, NOT_FOUND, ApiProblemError, ProblemKind
from api.reads import ApiReader
from projections.balance_history import balance_history_document, balance_history_steps
from projections.queries import QueryError, parse_moment
from projections.report_formats import (
    FORMAT_CSV,
    FORMAT_JSON,
    FORMAT_PDF,
    statement_csv,
    statement_document,
    trial_balance_csv,
    trial_balance_document,
)
from projections.reports import (
    REPORT_QUERIES_MAX,
    ReportSteps,
    ReportT,
    statement_steps,
    trial_balance_steps,
)
from projections.statement_pdf import render_statement_pdf
from streamledger.errors import InvariantViolationError

LOG = logging.getLogger("streamledger.api.reports")
TRIAL_BALANCE_PARAMETERS: Final = ("as_of", "format")
STATEMENT_PARAMETERS: Final = ("from", "to", "format")
BALANCE_HISTORY_PARAMETERS: Final = ("from", "to", "interval")
MEDIA_TYPES: Final = {
    FORMAT_JSON: "application/json",
    FORMAT_CSV: "text/csv; charset=utf-8",
    FORMAT_PDF: "application/pdf",
}
REPORT_DOES_NOT_ADD_UP: Final = ProblemKind(
    "report-does-not-add-up", 500, "The ledger's figures do not add up"
)


async def run_report_async(
    steps: ReportSteps[ReportT], reader: ApiReader, tenant_id: str
) -> ReportT:
    """Drive a report's reads with the API's reader (``projections.reports.run_report``'s twin)."""
    try:
        query = next(steps)
        for _ in range(REPORT_QUERIES_MAX):
            try:
                query = steps.send(await reader.read(tenant_id, *query))
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
    except QueryError as exc:
        field = str(exc).split(":", 1)[0]
        raise ApiProblemError(INVALID_PARAMETER, str(exc), field=field) from None
    except InvariantViolationError as exc:
        LOG.error("report of tenant %r does not add up: %s", tenant_id, exc)
        raise ApiProblemError(REPORT_DOES_NOT_ADD_UP, str(exc)) from exc
    raise InvariantViolationError(f"a report ran more than {REPORT_QUERIES_MAX} statements")


def parse_moment_parameter(query: Mapping[str, str], name: str) -> datetime | None:
    text = query.get(name)
    if text is None:
        return None
    try:
        return parse_moment(text, name)
    except QueryError as exc:
        raise ApiProblemError(INVALID_PARAMETER, str(exc), field=name) from None


def required_moment(query: Mapping[str, str], name: str) -> datetime:
    moment = parse_moment_parameter(query, name)
    if moment is None:
        raise ApiProblemError(INVALID_PARAMETER, f"{name}: required", field=name)
    return moment


def parse_format(query: Mapping[str, str], allowed: tuple[str, ...]) -> str:
    chosen = query.get("format", FORMAT_JSON)
    if chosen not in allowed:
        raise ApiProblemError(
            INVALID_PARAMETER,
            f"format: {chosen[:32]!r} is not one of {', '.join(allowed)}",
            field="format",
        )
    return chosen


def rendered(content: bytes, chosen: str, file_name: str) -> Response:
    headers = {}
    if chosen != FORMAT_JSON:
        headers["Content-Disposition"] = f'attachment; filename="{quote(file_name)}.{chosen}"'
    return Response(content, 200, headers, media_type=MEDIA_TYPES[chosen])


async def trial_balance_response(
    reader: ApiReader, tenant_id: str, query: Mapping[str, str]
) -> Response:
    """The tenant's trial balance as of ``as_of`` (default: now), JSON or CSV."""
    as_of = parse_moment_parameter(query, "as_of") or datetime.now(UTC)
    chosen = parse_format(query, (FORMAT_JSON, FORMAT_CSV))
    report = await run_report_async(trial_balance_steps(tenant_id, as_of), reader, tenant_id)
    if chosen == FORMAT_CSV:
        content = trial_balance_csv(report).encode()
    else:
        content = msgspec.json.encode(trial_balance_document(report))
    return rendered(content, chosen, f"trial-balance-{tenant_id}")


async def statement_response(
    reader: ApiReader, tenant_id: str, account_id: str, query: Mapping[str, str]
) -> Response:
    """The statement of ``account_id`` for ``[from, to)``, JSON, CSV or PDF."""
    period_from = required_moment(query, "from")
    period_to = required_moment(query, "to")
    if period_from >= period_to:
        raise ApiProblemError(INVALID_PARAMETER, "from: is not before to", field="from")
    chosen = parse_format(query, (FORMAT_JSON, FORMAT_CSV, FORMAT_PDF))
    steps = statement_steps(tenant_id, account_id, period_from, period_to)
    statement = await run_report_async(steps, reader, tenant_id)
    if statement is None:
        raise ApiProblemError(NOT_FOUND, f"no account {account_id!r} before {query['to']}")
    content: Any
    if chosen == FORMAT_PDF:
        content = render_statement_pdf(statement)
    elif chosen == FORMAT_CSV:
        content = statement_csv(statement).encode()
    else:
        content = msgspec.json.encode(statement_document(statement))
    return rendered(content, chosen, f"statement-{account_id}")


async def balance_history_response(
    reader: ApiReader, tenant_id: str, account_id: str, query: Mapping[str, str]
) -> Response:
    """The closing balance of ``account_id`` per hour or day of ``[from, to)`` (decision 0057)."""
    period = (required_moment(query, "from"), required_moment(query, "to"))
    interval = query.get("interval")
    if interval is None:
        raise ApiProblemError(INVALID_PARAMETER, "interval: required (1h or 1d)", field="interval")
    steps = balance_history_steps(tenant_id, account_id, period, interval)
    history = await run_report_async(steps, reader, tenant_id)
    if history is None:
        raise ApiProblemError(NOT_FOUND, f"no account {account_id!r} before {query['to']}")
    return rendered(msgspec.json.encode(balance_history_document(history)), FORMAT_JSON, "")
