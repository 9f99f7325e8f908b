"""The reconciliation endpoints (issue 20): ``GET /v1/reconciliation``, ``POST /v1/statements``.

Parsing and SQL are ``reconciliation.result_search`` (pure); this module runs the statement with
the API's reader, under the request's API key binding (decision 0024: another tenant's rows are
never seen, whatever the filter), and renders a page. A bad parameter is a one-line 400 problem
naming it. The rows are the reconciliation projection's (migration 0012, decision 0074).

``POST /v1/statements?account=A[&format=camt053|camt054|bai2|csv][&bank_account=IBAN]``
imports the body, a statement file (XML without ``format=``: camt.053 or camt.054 by its
namespace), for the API key's tenant through the command line's importer
(``reconciliation.importer``, decision 0052): once per file (its SHA-256 is its idempotency key:
a retry answers 200 ``already_imported``), all or nothing (a malformed file is a 400 whose
``field`` names the element or line, nothing written). Decision 0075.

``POST /v1/reconciliation/matches`` and ``POST /v1/reconciliation/unmatches`` (JSON bodies) write
a ``ManualMatch`` / ``ManualUnmatch`` request for the API key's tenant through the command
line's checks (``reconciliation.manual_match``, ``reconciliation.unmatch``) and writer: 202 with
the request's position on ``ledger.statements``; the matcher decides it (decisions 0090, 0098).
The recorded actor is the body's ``actor`` and the API key's id.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Final
from urllib.parse import urlencode

import msgspec
from starlette.responses import Response

from api.bodies import field_of
from api.problems import (
    BODY_TOO_LARGE,
    COMMAND_REJECTED,
    INVALID_BODY,
    INVALID_PARAMETER,
    MALFORMED_JSON,
    SERVICE_UNAVAILABLE,
    UNSUPPORTED_MEDIA_TYPE,
    ApiProblemError,
    ProblemKind,
)
from api.reads import ApiReader
from reconciliation.camt054 import xml_format
from reconciliation.importer import (
    STATEMENT_BYTES_MAX,
    ImportReport,
    ImportStatus,
    import_statement,
    request_manual_match,
)
from reconciliation.manual_match import (
    RequestProblem,
    manual_match_request,
    manual_unmatch_problem,
)
from reconciliation.matching import ManualMatch, ManualUnmatch
from reconciliation.refusal_search import (
    parse_refusal_search,
    refusal_documents,
    refusal_statement,
)
from reconciliation.result_search import (
    ResultPage,
    SearchProblem,
    parse_result_search,
    result_page,
    result_statement,
)
from reconciliation.statement import StatementFormat
from reconciliation.unmatch import prepared_match, prepared_unmatch
from schemas.limits import entity_id_problem
from streamledger.errors import InfraError
from streamledger.settings import Settings

JSON: Final = "application/json"
RECONCILIATION_PATH: Final = "/v1/reconciliation"
REFUSALS_PATH: Final = "/v1/reconciliation/refusals"
IMPORT_PARAMETERS: Final = ("account", "format", "bank_account")
FORMATS: Final = {
    "camt053": StatementFormat.CAMT053,
    "camt054": StatementFormat.CAMT054,
    "bai2": StatementFormat.BAI2,
    "csv": StatementFormat.CSV,
}
# the format of a body sent without ``format=`` (BAI2 has no media type of its own)
FORMATS_BY_MEDIA_TYPE: Final = {
    "application/xml": StatementFormat.CAMT053,
    "text/xml": StatementFormat.CAMT053,
    "text/csv": StatementFormat.CSV,
}
BANK_ACCOUNT_LENGTH_MAX: Final = 64
# imports run on threads (Kafka reads and a transaction each); more at once are refused with 503
STATEMENT_IMPORTS_MAX: Final = 2
_imports = asyncio.BoundedSemaphore(STATEMENT_IMPORTS_MAX)
# a manual request writes one record (an unmatch first reads the tenant's results partition)
MANUAL_REQUESTS_MAX: Final = 2
_manual_requests = asyncio.BoundedSemaphore(MANUAL_REQUESTS_MAX)
API_KEY_ID_START: Final = len("slk_")
API_KEY_ID_END: Final = API_KEY_ID_START + 16


class ManualMatchBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/reconciliation/matches``: statement lines and ledger movements of a
    bank-mirror account, open or currently unmatched, matched by a person (decisions 0098,
    0106)."""

    account: str
    line_ids: list[str]
    movement_ids: list[str]
    actor: str
    note: str = ""


class ManualUnmatchBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/reconciliation/unmatches``: a person undoes a decided match or mismatch, named
    by its ``result_id`` (``GET /v1/reconciliation``), decision 0090."""

    account: str
    result_id: str
    actor: str
    note: str = ""


MANUAL_BODY_TYPES: Final = (ManualMatchBody, ManualUnmatchBody)


def page_document(items: Sequence[tuple[str, str]], page: ResultPage, limit: int) -> dict[str, Any]:
    next_url = None
    if page.next_cursor is not None:
        kept = [(name, value) for name, value in items if name not in ("after", "limit")]
        query = urlencode([*kept, ("limit", str(limit)), ("after", page.next_cursor)])
        next_url = f"{RECONCILIATION_PATH}?{query}"
    return {"data": list(page.rows), "next_cursor": page.next_cursor, "next": next_url}


async def list_refusals(
    reader: ApiReader, tenant_id: str, items: Sequence[tuple[str, str]]
) -> Response:
    """The tenant's refused manual requests in the order the matcher refused them, filtered by
    ``account`` and ``request_id`` (decision 0107)."""
    search = parse_refusal_search(items)
    if isinstance(search, SearchProblem):
        raise ApiProblemError(INVALID_PARAMETER, search.message, field=search.parameter)
    rows = await reader.read(tenant_id, *refusal_statement(tenant_id, search))
    document = refusal_documents(rows, search.limit)
    next_url = None
    if document["next_cursor"] is not None:
        kept = [(name, value) for name, value in items if name not in ("after", "limit")]
        query = urlencode([*kept, ("limit", str(search.limit)), ("after", document["next_cursor"])])
        next_url = f"{REFUSALS_PATH}?{query}"
    return Response(msgspec.json.encode({**document, "next": next_url}), 200, media_type=JSON)


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


def import_parameters(
    query: Mapping[str, str], media_type: str
) -> tuple[str, StatementFormat, str | None]:
    """(account, format, bank account) of an import, or a 400 naming the parameter."""
    account = query.get("account")
    if account is None:
        raise ApiProblemError(INVALID_PARAMETER, "account: required", field="account")
    if (problem := entity_id_problem(account)) is not None:
        raise ApiProblemError(INVALID_PARAMETER, f"account: {problem}", field="account")
    named = query.get("format")
    if named is not None and named not in FORMATS:
        raise ApiProblemError(
            INVALID_PARAMETER,
            f"format: {named[:16]!r} is not one of {', '.join(FORMATS)}",
            field="format",
        )
    statement_format = FORMATS[named] if named else FORMATS_BY_MEDIA_TYPE.get(media_type)
    if statement_format is None:
        raise ApiProblemError(
            UNSUPPORTED_MEDIA_TYPE,
            f"Content-Type is {media_type or 'missing'}: give format={','.join(FORMATS)}, or"
            f" send {' or '.join(FORMATS_BY_MEDIA_TYPE)}",
            field="format",
        )
    bank_account = query.get("bank_account")
    if bank_account is not None and not (
        0 < len(bank_account) <= BANK_ACCOUNT_LENGTH_MAX and bank_account.isprintable()
    ):
        raise ApiProblemError(
            INVALID_PARAMETER,
            f"bank_account: 1-{BANK_ACCOUNT_LENGTH_MAX} printable characters",
            field="bank_account",
        )
    return account, statement_format, bank_account


async def statement_body(chunks: Any, declared_length: str) -> bytes:
    """The statement file, refused with 413 past the importer's ``STATEMENT_BYTES_MAX``."""
    declared = declared_length.isascii() and declared_length.isdigit()
    if declared and int(declared_length) > STATEMENT_BYTES_MAX:
        raise ApiProblemError(
            BODY_TOO_LARGE, f"the body is {declared_length} bytes; at most {STATEMENT_BYTES_MAX}"
        )
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > STATEMENT_BYTES_MAX:
            raise ApiProblemError(BODY_TOO_LARGE, f"the body exceeds {STATEMENT_BYTES_MAX} bytes")
        parts.append(chunk)
    content = b"".join(parts)
    if not content.strip():
        raise ApiProblemError(INVALID_BODY, "the body is empty: send the statement file")
    return content


def import_response(report: ImportReport) -> Response:
    rejected = report.rejected
    if rejected is not None:
        kind, field = (
            (INVALID_PARAMETER, "account")
            if rejected.location == "account"
            else (INVALID_BODY, rejected.location)
        )
        raise ApiProblemError(kind, report.summary(), field=field)
    document = {
        "status": report.status.value,
        "file_sha256": report.file_sha256,
        "lines_in_file": report.lines_in_file,
        "lines_new": report.lines_new,
    }
    status = 201 if report.status is ImportStatus.IMPORTED else 200
    return Response(msgspec.json.encode(document), status, media_type=JSON)


async def import_statement_file(
    settings: Settings,
    tenant_id: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    chunks: Any,
) -> Response:
    """Import the body for ``tenant_id``: 201 imported, 200 already imported, 400 refused."""
    media_type = headers.get("content-type", "").split(";")[0].strip().lower()
    account, statement_format, bank_account = import_parameters(query, media_type)
    if _imports.locked():
        raise ApiProblemError(
            SERVICE_UNAVAILABLE, f"{STATEMENT_IMPORTS_MAX} imports in flight: retry shortly"
        )
    async with _imports:
        content = await statement_body(chunks, headers.get("content-length", ""))
        if "format" not in query and statement_format is StatementFormat.CAMT053:
            statement_format = xml_format(content)  # an XML body: camt.053 or camt.054
        try:
            report = await asyncio.to_thread(
                import_statement,
                settings,
                tenant_id=tenant_id,
                account_id=account,
                content=content,
                statement_format=statement_format,
                bank_account=bank_account,
                imported_at_us=time.time_ns() // 1000,
            )
        except InfraError as exc:
            raise ApiProblemError(SERVICE_UNAVAILABLE, f"the import failed: {exc}") from exc
    return import_response(report)


def decode_manual_body(
    body_type: type[ManualMatchBody] | type[ManualUnmatchBody], raw: bytes
) -> ManualMatchBody | ManualUnmatchBody:
    try:
        decoded: ManualMatchBody | ManualUnmatchBody = msgspec.json.decode(raw, type=body_type)
    except msgspec.ValidationError as exc:
        message = str(exc)
        field = field_of(message)
        extensions = {} if field is None else {"field": field}
        raise ApiProblemError(INVALID_BODY, message, **extensions) from exc
    except (msgspec.DecodeError, ValueError) as exc:
        raise ApiProblemError(MALFORMED_JSON, str(exc)) from exc
    return decoded


def recorded_actor(actor: str, api_key_token: str) -> str:
    """Who asked, as the record keeps it: the person the body names and the API key's id (the
    token is ``slk_<key id>_<secret>``, already checked by the tenant lookup)."""
    return f"{actor} (API key {api_key_token[API_KEY_ID_START:API_KEY_ID_END]})"


def refused(problem: RequestProblem, kind: ProblemKind = INVALID_BODY) -> ApiProblemError:
    return ApiProblemError(kind, problem.message(), field=problem.parameter)


async def write_request(
    settings: Settings, prepare: Callable[[], ManualMatch | ManualUnmatch | RequestProblem]
) -> tuple[ManualMatch | ManualUnmatch, str]:
    """(the request ``prepare`` builds on a worker thread, its position on ``ledger.statements``),
    at most ``MANUAL_REQUESTS_MAX`` at once; a problem ``prepare`` finds in the results is a 422
    naming the parameter, nothing written."""
    if _manual_requests.locked():
        raise ApiProblemError(
            SERVICE_UNAVAILABLE, f"{MANUAL_REQUESTS_MAX} manual requests in flight: retry shortly"
        )
    async with _manual_requests:
        try:
            request = await asyncio.to_thread(prepare)
            if isinstance(request, RequestProblem):
                raise refused(request, COMMAND_REJECTED)
            position = await asyncio.to_thread(request_manual_match, settings, request)
        except InfraError as exc:
            raise ApiProblemError(SERVICE_UNAVAILABLE, f"the request failed: {exc}") from exc
    return request, position


def requested_response(request: ManualMatch | ManualUnmatch, position: str) -> Response:
    results = f"{RECONCILIATION_PATH}?{urlencode({'account': request.account_id})}"
    document: dict[str, Any] = {
        "status": "requested",
        "request_id": position,
        "account": request.account_id,
        "line_ids": list(request.line_ids),
        "movement_ids": list(request.movement_ids),
        "actor": request.actor,
        "note": request.note,
        "results": results,
    }
    if isinstance(request, ManualUnmatch):
        document["result_id"] = request.result_id
    encoded = msgspec.json.encode(document)
    return Response(encoded, 202, headers={"Location": results}, media_type=JSON)


async def request_match(
    settings: Settings, tenant_id: str, api_key_token: str, raw: bytes
) -> Response:
    """``POST /v1/reconciliation/matches``: 400 naming the member at fault, 422 naming an item a
    result matched or mismatched (undo it first), 202 once the ``ManualMatch`` is on the topic
    (the matcher decides it, or refuses it with a ``ManualRefusal``, decisions 0106, 0107)."""
    body = decode_manual_body(ManualMatchBody, raw)
    assert isinstance(body, ManualMatchBody)
    request = manual_match_request(
        tenant_id=tenant_id,
        account_id=body.account,
        line_ids=body.line_ids,
        movement_ids=body.movement_ids,
        actor=body.actor,
        note=body.note,
        requested_at_us=time.time_ns() // 1000,
    )
    if isinstance(request, RequestProblem):
        raise refused(request)
    recorded = replace(request, actor=recorded_actor(request.actor, api_key_token))
    written, position = await write_request(settings, lambda: prepared_match(settings, recorded))
    return requested_response(written, position)


async def request_unmatch(
    settings: Settings, tenant_id: str, api_key_token: str, raw: bytes
) -> Response:
    """``POST /v1/reconciliation/unmatches``: 400 for a malformed body, 422 when the result is
    not a current match or mismatch of the account, 202 once the ``ManualUnmatch`` is written."""
    body = decode_manual_body(ManualUnmatchBody, raw)
    assert isinstance(body, ManualUnmatchBody)
    problem = manual_unmatch_problem(body.account, body.result_id, body.actor, body.note)
    if problem is not None:
        raise refused(problem)

    def prepare() -> ManualUnmatch | RequestProblem:
        request = prepared_unmatch(
            settings,
            tenant_id=tenant_id,
            account_id=body.account,
            result_id=body.result_id,
            actor=body.actor,
            note=body.note,
            requested_at_us=time.time_ns() // 1000,
        )
        if isinstance(request, RequestProblem):
            return request
        return replace(request, actor=recorded_actor(request.actor, api_key_token))

    written, position = await write_request(settings, prepare)
    return requested_response(written, position)
