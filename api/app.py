"""The HTTP surface: Starlette routes over the gateway, the reader and the outcome cache.

Every request is authenticated by its bearer API key (the tenant comes from the key, never from
the body or the path); every error is an RFC 9457 problem (``api.problems``), including the
framework's own 404/405 and anything unexpected. Handlers are thin: parse → call → render.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import webhooks
from api.bodies import (
    Body,
    DeleteMonitorBody,
    MonitorBody,
    OpenAccountBody,
    PostPendingBody,
    TransactionBody,
    TransferBody,
    VoidPendingBody,
    check_limits,
    decode_body,
    to_command,
)
from api.event_stream import MEDIA_TYPE as EVENT_STREAM_MEDIA_TYPE
from api.event_stream import (
    STREAM_PARAMETERS,
    StreamCount,
    check_stream_room,
    event_stream,
    start_after,
)
from api.gateway import CommandGateway, Decided, now_us
from api.metrics import ApiMetrics
from api.openapi import build_openapi
from api.outcomes import OutcomeCache, OutcomeFeed
from api.problems import (
    BODY_TOO_LARGE,
    COMMAND_REJECTED,
    INVALID_PARAMETER,
    MISSING_IDEMPOTENCY_KEY,
    NOT_FOUND,
    PROBLEM_CONTENT_TYPE,
    SERVICE_UNAVAILABLE,
    UNAUTHORIZED,
    UNSUPPORTED_MEDIA_TYPE,
    ApiProblemError,
    kind_for_status,
)
from api.readiness import BrokerMetadata, CachedProbe
from api.reads import ApiReader
from api.reconciliation import (
    IMPORT_PARAMETERS,
    import_statement_file,
    list_refusals,
    list_results,
    request_match,
    request_unmatch,
)
from api.reports import (
    BALANCE_HISTORY_PARAMETERS,
    STATEMENT_PARAMETERS,
    TRIAL_BALANCE_PARAMETERS,
    balance_history_response,
    statement_response,
    trial_balance_response,
)
from api.searches import search_accounts, search_transactions, search_transfers
from api.settings import ApiSettings
from api.views import (
    balance_view,
    command_path,
    history_view,
    monitors_view,
    outcome_view,
    transaction_view,
    transfer_view,
)
from projections.queries import QueryError, parse_cursor, parse_moment
from schemas.limits import entity_id_problem, idempotency_key_problem
from schemas.model import OutcomeStatus
from streamledger.settings import Settings, parse_int_in_range

LOG = logging.getLogger("streamledger.api")
JSON: Final = "application/json"
JSON_CONTENT_TYPE_HEADER: Final = (b"content-type", JSON.encode())
OK: Final = 200
# RFC 6750: "Bearer" 1*SP b64token. Trailing SP/HTAB are HTTP's optional whitespace around a
# field value (RFC 9110 5.5), not part of the key: accepted. Anything else after the key — a
# second word, a no-break space, a vertical tab — is a malformed header: 401 (decision 0021).
BEARER_PATTERN: Final = re.compile(r"(?i:bearer) +([A-Za-z0-9._~+/-]+=*)[ \t]*")
RESPOND_ASYNC: Final = "respond-async"
DEFAULT_PAGE: Final = 100
UNMATCHED_ROUTE: Final = "other"
BALANCE_ROUTE: Final = "/v1/accounts/{account_id}/balance"
BALANCE_PATH: Final = re.compile(r"/v1/accounts/([^/]+)/balance")  # Starlette's {param} rule


@dataclass
class ApiServices:
    """Everything a handler needs, built in the lifespan and closed with it."""

    settings: Settings
    api: ApiSettings
    metrics: ApiMetrics
    cache: OutcomeCache
    reader: ApiReader | None = None
    feed: OutcomeFeed | None = None
    gateway: CommandGateway | None = None
    broker: CachedProbe | None = None  # readiness: the broker, asked now (api.readiness)
    database: CachedProbe | None = None  # readiness: PostgreSQL, asked now
    streams: StreamCount = field(default_factory=StreamCount)  # open /v1/events/stream

    def require_gateway(self) -> CommandGateway:
        if self.gateway is None:
            raise ApiProblemError(SERVICE_UNAVAILABLE, "the producer is not running")
        return self.gateway

    def require_reader(self) -> ApiReader:
        if self.reader is None:
            raise ApiProblemError(SERVICE_UNAVAILABLE, "the database pool is not open")
        return self.reader


def services_of(request: Request) -> ApiServices:
    services: ApiServices = request.app.state.services
    return services


# --------------------------------------------------------------------------- responses


def json_response(
    content: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(msgspec.json.encode(content), status, headers, media_type=JSON)


def problem_response(problem: ApiProblemError, instance: str | None = None) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if problem.kind is UNAUTHORIZED else None
    retry_after_ms = problem.extensions.get("retry_after_ms")
    if isinstance(retry_after_ms, int):  # a RATE_LIMITED reply (decision 0083): whole seconds
        headers = {"Retry-After": str(-(-retry_after_ms // 1000))}
    return Response(
        problem.body(instance), problem.kind.status, headers, media_type=PROBLEM_CONTENT_TYPE
    )


async def on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiProblemError)
    return problem_response(exc, request.url.path)


async def on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind = kind_for_status(exc.status_code)
    return problem_response(ApiProblemError(kind, str(exc.detail)), request.url.path)


async def on_unexpected(request: Request, exc: Exception) -> Response:
    LOG.exception("unexpected error on %s %s", request.method, request.url.path)
    problem = ApiProblemError(kind_for_status(500), "an unexpected error; it has been logged")
    return problem_response(problem, request.url.path)


# --------------------------------------------------------------------------- request parts


async def tenant_of(request: Request) -> str:
    """The tenant of the request's bearer API key, or 401."""
    match = BEARER_PATTERN.fullmatch(request.headers.get("authorization", ""))
    if match is None:
        raise ApiProblemError(UNAUTHORIZED, "send the API key as 'Authorization: Bearer <key>'")
    token = match.group(1)
    tenant_id = await services_of(request).require_reader().tenant_for_token(token)
    if tenant_id is None:
        raise ApiProblemError(UNAUTHORIZED, "the API key is unknown or revoked")
    return tenant_id


def idempotency_key_of(request: Request) -> str:
    key = request.headers.get("idempotency-key")
    if key is None:
        raise ApiProblemError(
            MISSING_IDEMPOTENCY_KEY, "send an Idempotency-Key header with every POST"
        )
    problem = idempotency_key_problem(key)
    if problem is not None:
        raise ApiProblemError(
            INVALID_PARAMETER, f"Idempotency-Key: {problem}", field="Idempotency-Key"
        )
    return key


async def body_of(request: Request, limit_bytes: int) -> bytes:
    """The raw body, refused with 413 past ``limit_bytes`` (declared or streamed)."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit_bytes:
        raise ApiProblemError(
            BODY_TOO_LARGE, f"the body is {declared} bytes; at most {limit_bytes}"
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit_bytes:
            raise ApiProblemError(BODY_TOO_LARGE, f"the body exceeds {limit_bytes} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if raw.strip() and content_type != JSON and not content_type.endswith("+json"):
        raise ApiProblemError(
            UNSUPPORTED_MEDIA_TYPE, f"Content-Type is {content_type or 'missing'}; send {JSON}"
        )
    return raw


def path_id(request: Request, name: str) -> str:
    value: str = request.path_params[name]
    problem = entity_id_problem(value)
    if problem is not None:
        raise ApiProblemError(INVALID_PARAMETER, f"{name}: {problem}", field=name)
    return value


def query_of(request: Request, *allowed: str) -> Mapping[str, str]:
    """The query parameters, each at most once and each one this route takes: a typo such as
    ``asof=`` is a 400 naming it, never silently the current balance."""
    if not request.scope.get("query_string"):
        return {}  # none given (most reads): not worth parsing
    seen: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        shown = name[:64]
        if name not in allowed:
            takes = ", ".join(allowed) if allowed else "no query parameters"
            raise ApiProblemError(
                INVALID_PARAMETER,
                f"{shown!r}: unknown query parameter (this route takes {takes})",
                field=shown,
            )
        if name in seen:
            raise ApiProblemError(INVALID_PARAMETER, f"{name}: given more than once", field=name)
        seen[name] = value
    return seen


def parse_as_of(text: str | None) -> datetime | None:
    """RFC 3339 (UTC without an offset) or microseconds since the epoch in ASCII digits."""
    if text is None:
        return None
    try:
        return parse_moment(text, "as_of")
    except QueryError as exc:
        raise ApiProblemError(INVALID_PARAMETER, str(exc), field="as_of") from None


def parse_limit(text: str | None, maximum: int) -> int:
    if text is None:
        return min(DEFAULT_PAGE, maximum)
    try:
        return parse_int_in_range(text, 1, maximum)
    except ValueError as exc:
        raise ApiProblemError(INVALID_PARAMETER, f"limit: {exc}", field="limit") from None


def parse_after(text: str | None) -> str | None:
    """The cursor of the previous page, checked before any database round trip."""
    if text is not None:
        try:
            parse_cursor(text, "after")
        except QueryError as exc:
            raise ApiProblemError(INVALID_PARAMETER, str(exc), field="after") from None
    return text


# --------------------------------------------------------------------------- commands


def resource_path(body: Body, transfer_id: str | None) -> str | None:
    if isinstance(body, OpenAccountBody):
        return f"/v1/accounts/{body.account_id}/balance"
    if isinstance(body, TransferBody):
        return f"/v1/transfers/{body.transfer_id}"
    if isinstance(body, TransactionBody):
        return f"/v1/transactions/{body.transaction_id}"
    if isinstance(body, MonitorBody | DeleteMonitorBody):
        return None  # no read of monitors yet (decision 0058): the status URL is the resource
    return f"/v1/transfers/{transfer_id}"


async def submit(
    request: Request, body_type: type[Body], transfer_id: str | None = None
) -> Response:
    services = services_of(request)
    tenant_id = await tenant_of(request)
    query_of(request)
    idempotency_key = idempotency_key_of(request)
    body = decode_body(body_type, await body_of(request, services.api.body_bytes_max))
    command = to_command(
        body,
        tenant_id=tenant_id,
        idempotency_key=idempotency_key,
        submitted_at_us=now_us(),
        transfer_id=transfer_id,
    )
    check_limits(command)
    wait = RESPOND_ASYNC not in request.headers.get("prefer", "").lower()
    try:
        result = await services.require_gateway().submit(command, wait=wait)
    except ApiProblemError as refusal:
        if refusal.kind.status == 409:
            services.metrics.submits.labels("key_reused").inc()
        raise
    status_url = command_path(idempotency_key)
    if not isinstance(result, Decided):
        services.metrics.submits.labels("pending").inc()
        headers = {"Location": status_url}
        if not wait:
            headers["Preference-Applied"] = RESPOND_ASYNC
        return json_response(
            {"status": "pending", "idempotency_key": idempotency_key, "status_url": status_url},
            202,
            headers,
        )
    outcome = result.outcome
    replayed = {"Idempotent-Replayed": "true"} if result.duplicate else {}
    services.metrics.submits.labels("duplicate" if result.duplicate else outcome.status.value).inc()
    if outcome.status is OutcomeStatus.REJECTED:
        assert outcome.reason is not None
        problem = ApiProblemError(
            COMMAND_REJECTED,
            outcome.detail,
            reason=outcome.reason.value,
            idempotency_key=idempotency_key,
            status_url=status_url,
        )
        response = problem_response(problem, request.url.path)
        response.headers.update(replayed)
        return response
    view = outcome_view(outcome)
    location = resource_path(body, transfer_id)
    view["resource"] = location
    view["status_url"] = status_url
    status = 200 if isinstance(body, DeleteMonitorBody) else 201  # a DELETE creates nothing
    return json_response(view, status, {"Location": location or status_url, **replayed})


async def open_account(request: Request) -> Response:
    return await submit(request, OpenAccountBody)


async def create_transfer(request: Request) -> Response:
    return await submit(request, TransferBody)


async def create_transaction(request: Request) -> Response:
    return await submit(request, TransactionBody)


async def create_monitor(request: Request) -> Response:
    return await submit(request, MonitorBody)


async def delete_monitor(request: Request) -> Response:
    return await submit(request, DeleteMonitorBody, path_id(request, "monitor_id"))


async def post_pending(request: Request) -> Response:
    return await submit(request, PostPendingBody, path_id(request, "transfer_id"))


async def void_pending(request: Request) -> Response:
    return await submit(request, VoidPendingBody, path_id(request, "transfer_id"))


# --------------------------------------------------------------------------- reads


async def get_balance(request: Request) -> Response:
    return Response(await balance_json(request), media_type=JSON)


async def balance_json(request: Request) -> bytes:
    """The balance read's 200 body (``get_balance``; ``BalanceReads`` sends it without a
    ``Response``); a 401, 400, 404 or 503 raises its ``ApiProblemError``."""
    services = services_of(request)
    tenant_id = await tenant_of(request)
    account_id = path_id(request, "account_id")
    as_of = parse_as_of(query_of(request, "as_of").get("as_of"))
    balance = await services.require_reader().balance(tenant_id, account_id, as_of=as_of)
    if balance is None:
        detail = f"no account {account_id!r}" + (
            "" if as_of is None else f" as of {as_of.isoformat()}"
        )
        raise ApiProblemError(NOT_FOUND, detail)
    encoded: bytes = msgspec.json.encode(balance_view(balance, as_of))
    return encoded


async def get_entries(request: Request) -> Response:
    services = services_of(request)
    tenant_id = await tenant_of(request)
    account_id = path_id(request, "account_id")
    query = query_of(request, "limit", "after")
    limit = parse_limit(query.get("limit"), services.api.history_page_max)
    after = parse_after(query.get("after"))
    page = await services.require_reader().history(tenant_id, account_id, after=after, limit=limit)
    return json_response(history_view(account_id, page, limit))


async def list_transfers(request: Request) -> Response:
    """``GET /v1/transfers?metadata[k]=v&from&to&account&status&limit&after`` (decision 0056)."""
    tenant_id = await tenant_of(request)
    reader = services_of(request).require_reader()
    return await search_transfers(reader, tenant_id, request.query_params.multi_items())


async def list_transactions(request: Request) -> Response:
    """``GET /v1/transactions?metadata[k]=v&from&to&account&status&limit&after`` (0077)."""
    tenant_id = await tenant_of(request)
    reader = services_of(request).require_reader()
    return await search_transactions(reader, tenant_id, request.query_params.multi_items())


async def list_reconciliation(request: Request) -> Response:
    """``GET /v1/reconciliation?account&state&limit&after`` (decision 0074)."""
    tenant_id = await tenant_of(request)
    reader = services_of(request).require_reader()
    return await list_results(reader, tenant_id, request.query_params.multi_items())


async def list_reconciliation_refusals(request: Request) -> Response:
    """``GET /v1/reconciliation/refusals?account&request_id&limit&after`` (decision 0107)."""
    tenant_id = await tenant_of(request)
    reader = services_of(request).require_reader()
    return await list_refusals(reader, tenant_id, request.query_params.multi_items())


async def post_statement(request: Request) -> Response:
    """``POST /v1/statements?account&format&bank_account``: a statement file (decision 0075)."""
    tenant_id = await tenant_of(request)
    query = query_of(request, *IMPORT_PARAMETERS)
    settings = services_of(request).settings
    return await import_statement_file(
        settings, tenant_id, query, request.headers, request.stream()
    )


async def post_manual_match(request: Request) -> Response:
    """``POST /v1/reconciliation/matches``: a ManualMatch request (decision 0098)."""
    services = services_of(request)
    tenant_id = await tenant_of(request)
    query_of(request)
    raw = await body_of(request, services.api.body_bytes_max)
    token = request.headers["authorization"].split()[-1]  # checked by tenant_of
    return await request_match(services.settings, tenant_id, token, raw)


async def post_manual_unmatch(request: Request) -> Response:
    """``POST /v1/reconciliation/unmatches``: a ManualUnmatch request (decision 0098)."""
    services = services_of(request)
    tenant_id = await tenant_of(request)
    query_of(request)
    raw = await body_of(request, services.api.body_bytes_max)
    token = request.headers["authorization"].split()[-1]  # checked by tenant_of
    return await request_unmatch(services.settings, tenant_id, token, raw)


async def list_accounts(request: Request) -> Response:
    """``GET /v1/accounts?metadata[k]=v&currency&limit&after`` (decision 0056)."""
    tenant_id = await tenant_of(request)
    reader = services_of(request).require_reader()
    return await search_accounts(reader, tenant_id, request.query_params.multi_items())


async def get_transfer(request: Request) -> Response:
    services = services_of(request)
    tenant_id = await tenant_of(request)
    transfer_id = path_id(request, "transfer_id")
    query_of(request)
    transfer = await services.require_reader().transfer(tenant_id, transfer_id)
    if transfer is None:
        raise ApiProblemError(NOT_FOUND, f"no transfer {transfer_id!r}")
    return json_response(transfer_view(transfer))


async def get_transaction(request: Request) -> Response:
    services = services_of(request)
    tenant_id = await tenant_of(request)
    transaction_id = path_id(request, "transaction_id")
    query_of(request)
    transaction = await services.require_reader().transaction(tenant_id, transaction_id)
    if transaction is None:
        raise ApiProblemError(NOT_FOUND, f"no transaction {transaction_id!r}")
    return json_response(transaction_view(transaction))


async def list_monitors(request: Request) -> Response:
    """``GET /v1/monitors``: the tenant's live balance monitors (decision 0058)."""
    services = services_of(request)
    tenant_id = await tenant_of(request)
    query_of(request)
    return json_response(monitors_view(await services.require_reader().monitors(tenant_id)))


async def get_command(request: Request) -> Response:
    services = services_of(request)
    tenant_id = await tenant_of(request)
    key: str = request.path_params["idempotency_key"]
    query_of(request)
    if idempotency_key_problem(key) is not None:
        raise ApiProblemError(
            INVALID_PARAMETER,
            f"idempotency_key: {idempotency_key_problem(key)}",
            field="idempotency_key",
        )
    outcome = services.cache.get((tenant_id, key))
    if outcome is None:
        raise ApiProblemError(NOT_FOUND, f"no outcome for idempotency key {key!r} (yet)")
    return json_response(outcome_view(outcome))


async def get_trial_balance(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    query = query_of(request, *TRIAL_BALANCE_PARAMETERS)
    reader = services_of(request).require_reader()
    return await trial_balance_response(reader, tenant_id, query)


async def get_statement(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    account_id = path_id(request, "account_id")
    query = query_of(request, *STATEMENT_PARAMETERS)
    reader = services_of(request).require_reader()
    return await statement_response(reader, tenant_id, account_id, query)


async def get_balance_history(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    account_id = path_id(request, "account_id")
    query = query_of(request, *BALANCE_HISTORY_PARAMETERS)
    reader = services_of(request).require_reader()
    return await balance_history_response(reader, tenant_id, account_id, query)


# --------------------------------------------------------------------------- notifications


async def create_webhook_endpoint(request: Request) -> Response:
    services = services_of(request)
    tenant_id = await tenant_of(request)
    query_of(request)
    raw = await body_of(request, services.api.body_bytes_max)
    return await webhooks.create_endpoint(services.require_reader(), tenant_id, raw)


async def list_webhook_endpoints(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    query_of(request)
    return await webhooks.list_endpoints(services_of(request).require_reader(), tenant_id)


async def delete_webhook_endpoint(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    query_of(request)
    reader = services_of(request).require_reader()
    return await webhooks.delete_endpoint(reader, tenant_id, request.path_params["endpoint_id"])


async def list_dead_letters(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    query = query_of(request, *webhooks.DEAD_LETTER_PARAMETERS)
    reader = services_of(request).require_reader()
    endpoint_id = request.path_params["endpoint_id"]
    return await webhooks.list_dead_letters(reader, tenant_id, endpoint_id, query)


async def replay_dead_letters(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    query_of(request)
    reader = services_of(request).require_reader()
    endpoint_id = request.path_params["endpoint_id"]
    return await webhooks.replay_dead_letters(reader, tenant_id, endpoint_id)


async def stream_events(request: Request) -> Response:
    """Server-Sent Events of the key's tenant, resumable (``api.event_stream``)."""
    services = services_of(request)
    tenant_id = await tenant_of(request)
    after = start_after(request.headers, query_of(request, *STREAM_PARAMETERS))
    reader = services.require_reader()
    check_stream_room(services.streams)
    return StreamingResponse(
        event_stream(reader, tenant_id, after, services.streams),
        media_type=EVENT_STREAM_MEDIA_TYPE,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


# --------------------------------------------------------------------------- operations


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    """200 when the database answers, the broker answers with a leader for every partition of
    ``ledger.commands`` and the outcome feed has caught up — each asked now (bounded, briefly
    cached: ``api.readiness``); else 503 with what is wrong under ``problems``."""
    services = services_of(request)
    problems = await readiness_problems(services)
    checks = {name: name not in problems for name in ("database", "producer", "outcomes")}
    ready = not problems
    body: dict[str, Any] = {"ready": ready, "checks": checks}
    if problems:
        body["problems"] = problems
    return json_response(body, 200 if ready else 503)


async def readiness_problems(services: ApiServices) -> dict[str, str]:
    """What is not ready, by check name; the database and the broker are asked concurrently."""
    database, producer = await asyncio.gather(
        database_problem(services.database), broker_problem(services.gateway, services.broker)
    )
    problems = {"database": database, "producer": producer}
    feed = services.feed
    if feed is None or not feed.caught_up or feed.failure is not None:
        problems["outcomes"] = outcome_feed_problem(feed)
    return {name: problem for name, problem in problems.items() if problem is not None}


async def database_problem(database: CachedProbe | None) -> str | None:
    if database is None:
        return "the database pool is not open"
    return (await database.check()).problem


async def broker_problem(gateway: CommandGateway | None, broker: CachedProbe | None) -> str | None:
    if gateway is None or broker is None or not gateway.running:
        return "the producer is not running"
    result = await broker.check()
    if result.ok:
        return None
    last_error = f" (last client error: {gateway.broker_error})" if gateway.broker_error else ""
    return f"{result.problem}{last_error}"


def outcome_feed_problem(feed: OutcomeFeed | None) -> str:
    if feed is None:
        return "the outcome feed is not running"
    if feed.failure is not None:
        return f"the outcome feed failed: {feed.failure}"
    return "ledger.outcomes not read to its end yet"


async def metrics(request: Request) -> Response:
    services = services_of(request)
    services.metrics.outcomes_cached.set(len(services.cache))
    services.metrics.outcomes_evicted.set(services.cache.evicted)
    if services.gateway is not None:
        services.metrics.submits_waiting.set(services.gateway.in_flight)
    return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def openapi(request: Request) -> Response:
    document: bytes = request.app.state.openapi
    return Response(document, media_type=JSON)


ROUTES: Final = [
    Route("/v1/accounts", open_account, methods=["POST"]),
    Route("/v1/transfers", create_transfer, methods=["POST"]),
    Route("/v1/transactions", create_transaction, methods=["POST"]),
    Route("/v1/transfers/{transfer_id}/post", post_pending, methods=["POST"]),
    Route("/v1/transfers/{transfer_id}/void", void_pending, methods=["POST"]),
    Route("/v1/monitors", create_monitor, methods=["POST"]),
    Route("/v1/monitors", list_monitors, methods=["GET"]),
    Route("/v1/monitors/{monitor_id}", delete_monitor, methods=["DELETE"]),
    Route("/v1/accounts", list_accounts, methods=["GET"]),
    Route("/v1/transfers", list_transfers, methods=["GET"]),
    Route("/v1/reconciliation", list_reconciliation, methods=["GET"]),
    Route("/v1/statements", post_statement, methods=["POST"]),
    Route("/v1/reconciliation/refusals", list_reconciliation_refusals, methods=["GET"]),
    Route("/v1/reconciliation/matches", post_manual_match, methods=["POST"]),
    Route("/v1/reconciliation/unmatches", post_manual_unmatch, methods=["POST"]),
    Route("/v1/transactions", list_transactions, methods=["GET"]),
    Route(BALANCE_ROUTE, get_balance, methods=["GET"]),  # served by BalanceReads first
    Route("/v1/accounts/{account_id}/entries", get_entries, methods=["GET"]),
    Route("/v1/transfers/{transfer_id}", get_transfer, methods=["GET"]),
    Route("/v1/transactions/{transaction_id}", get_transaction, methods=["GET"]),
    Route("/v1/accounts/{account_id}/statement", get_statement, methods=["GET"]),
    Route("/v1/accounts/{account_id}/balance-history", get_balance_history, methods=["GET"]),
    Route("/v1/trial-balance", get_trial_balance, methods=["GET"]),
    Route("/v1/commands/{idempotency_key:path}", get_command, methods=["GET"]),
    Route("/v1/webhook-endpoints", create_webhook_endpoint, methods=["POST"]),
    Route("/v1/webhook-endpoints", list_webhook_endpoints, methods=["GET"]),
    Route("/v1/webhook-endpoints/{endpoint_id}", delete_webhook_endpoint, methods=["DELETE"]),
    Route("/v1/webhook-endpoints/{endpoint_id}/dead-letters", list_dead_letters, methods=["GET"]),
    Route(
        "/v1/webhook-endpoints/{endpoint_id}/dead-letters/replay",
        replay_dead_letters,
        methods=["POST"],
    ),
    Route("/v1/events/stream", stream_events, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
]


# --------------------------------------------------------------------------- metrics middleware


def route_template(scope: Scope) -> str:
    """The template of the route that served the request. Starlette's router leaves the route
    it matched in the scope, so routing is not done twice per request (it was ~10 % of a
    balance read's CPU); a route that matched the path but not the method (405) is unmatched."""
    route = scope.get("route")
    if isinstance(route, Route) and (route.methods is None or scope["method"] in route.methods):
        return route.path
    return UNMATCHED_ROUTE


class RequestMetrics:
    """Counts and times every HTTP request by method, route template and status."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            seconds = time.perf_counter() - started
            self.metrics.observe(scope["method"], route_template(scope), status, seconds)


class BalanceReads:
    """The balance read without the router and the per-route wrappers: ``GET
    /v1/accounts/{account_id}/balance`` is the API's hot path, and Starlette's routing (a regex
    per route in order), its exception middleware and the route's request/response wrappers
    were ~50 of the ~320 µs of CPU the app spent per balance read (bench/README.md, "API
    balance read against pgbench"). The same handler (``get_balance``), the same problem
    responses (``on_problem``; ``on_unexpected``, which logs the error once), the same metrics;
    every other request, and any path this pattern does not match, goes on to the app."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = None
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("root_path"):
            match = BALANCE_PATH.fullmatch(scope["path"])
        if match is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        scope["path_params"] = {"account_id": match.group(1)}
        request = Request(scope, receive)
        try:
            body = await balance_json(request)
        except ApiProblemError as exc:
            response = await on_problem(request, exc)
        except Exception as exc:  # noqa: BLE001 - answered as the app's handler answers it
            response = await on_unexpected(request, exc)
        else:
            await send_json(send, body)
            self.metrics.observe("GET", BALANCE_ROUTE, OK, time.perf_counter() - started)
            return
        await response(scope, receive, send)
        self.metrics.observe(
            "GET", BALANCE_ROUTE, response.status_code, time.perf_counter() - started
        )


async def send_json(send: Send, body: bytes) -> None:
    """A 200 of ``body`` as ``Response(body, media_type=JSON)`` sends it (the same two messages
    and headers, pinned by tests/unit/test_api_balance_reads.py) without building the response
    object and its header list per read."""
    headers = [(b"content-length", str(len(body)).encode()), JSON_CONTENT_TYPE_HEADER]
    await send({"type": "http.response.start", "status": OK, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# --------------------------------------------------------------------------- the app


Starter = Callable[[ApiServices], Awaitable[None]]


async def start_services(services: ApiServices) -> None:
    """Open the pool, start the outcome feed and the producer (the real backing services)."""
    services.reader = ApiReader(services.api, registry=services.metrics.registry)
    await services.reader.open()
    services.database = CachedProbe(
        functools.partial(services.reader.ping, services.api.readiness_timeout_s),
        cache_s=services.api.readiness_cache_s,
    )
    services.feed = OutcomeFeed(services.settings, services.cache)
    services.feed.start()
    services.gateway = CommandGateway(services.settings, services.api, services.cache)
    services.broker = CachedProbe(
        BrokerMetadata(services.settings, timeout_s=services.api.readiness_timeout_s).ask,
        cache_s=services.api.readiness_cache_s,
    )
    caught_up = await asyncio.to_thread(
        services.feed.wait_caught_up, services.api.outcome_catch_up_timeout_s
    )
    if not caught_up:
        LOG.warning("ledger.outcomes not read to its end yet; /readyz says so until it is")


async def stop_services(services: ApiServices) -> None:
    if services.gateway is not None:
        await asyncio.to_thread(services.gateway.close)
    if services.feed is not None:
        await asyncio.to_thread(services.feed.stop)
    if services.reader is not None:
        await services.reader.close()


def create_app(
    settings: Settings, api: ApiSettings, *, start: Starter = start_services
) -> Starlette:
    services = ApiServices(
        settings=settings,
        api=api,
        metrics=ApiMetrics(),
        cache=OutcomeCache(entries_max=api.outcome_cache_entries_max),
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            await start(services)
            yield
        finally:
            await stop_services(services)  # also what a failed start had already opened

    app = Starlette(
        routes=ROUTES,
        lifespan=lifespan,
        middleware=[
            Middleware(BalanceReads, metrics=services.metrics),
            Middleware(RequestMetrics, metrics=services.metrics),
        ],
        exception_handlers={
            ApiProblemError: on_problem,
            HTTPException: on_http_exception,
            Exception: on_unexpected,
        },
    )
    app.state.services = services
    app.state.openapi = msgspec.json.encode(build_openapi())
    return app
