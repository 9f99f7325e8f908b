"""Webhook endpoints through the API: ``/v1/webhook-endpoints`` and their dead letters.

Every statement runs as ``streamledger_api`` under the request's API key binding (decision
0024): reads see only the key's tenant (row-level security), and writes are the SECURITY
DEFINER functions of migration 0007, which take the tenant from the bound key, never from the
request. The endpoint's secret is made here, stored, and shown in the creation's response only:
the role cannot read it back. ``app.py`` routes here with the tenant; this module checks the
input (a 400 naming the member or parameter), runs the statement and renders JSON.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlsplit

import msgspec
from starlette.responses import Response

from api.problems import (
    INVALID_BODY,
    INVALID_PARAMETER,
    MALFORMED_JSON,
    NOT_FOUND,
    ApiProblemError,
    ProblemKind,
)
from api.reads import ApiReader
from notifications.payloads import event_types_problem
from notifications.signing import new_secret
from notifications.store import (
    API_CREATE_ENDPOINT,
    API_DELETE_ENDPOINT,
    API_REPLAY_DEAD_LETTERS,
    API_SELECT_DEAD_LETTERS,
    API_SELECT_ENDPOINTS,
    API_SELECT_HEAD,
    ENDPOINTS_PER_TENANT_MAX,
)

JSON: Final = "application/json"
ENDPOINT_ID_PATTERN: Final = re.compile(r"^we_[0-9a-f]{16}$")
ENDPOINT_ID_BYTES: Final = 8
URL_LENGTH_MAX: Final = 2_048
DEAD_LETTERS_PAGE_MAX: Final = 1_000
DEAD_LETTERS_PAGE_DEFAULT: Final = 100
DEAD_LETTER_PARAMETERS: Final = ("after", "limit")
TOO_MANY_ENDPOINTS: Final = ProblemKind(
    "too-many-endpoints", 409, "The tenant has as many webhook endpoints as it may"
)


class WebhookEndpointBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/webhook-endpoints``: where to deliver, and which event types (``"*"``: all)."""

    url: str
    event_types: list[str]


DECODER: Final = msgspec.json.Decoder(WebhookEndpointBody)


def json_response(content: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(content), status, media_type=JSON)


def url_problem(url: str) -> str | None:
    if len(url) > URL_LENGTH_MAX:
        return f"at most {URL_LENGTH_MAX} characters"
    if not url.isascii() or any(character.isspace() for character in url):
        return "ASCII without spaces (percent-encode the rest)"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "an absolute http:// or https:// URL with a host"
    if parts.username or parts.password:
        return "no user or password in the URL"
    return None


def decode_endpoint_body(raw: bytes) -> WebhookEndpointBody:
    try:
        body = DECODER.decode(raw)
    except msgspec.ValidationError as exc:
        raise ApiProblemError(INVALID_BODY, str(exc)) from exc
    except (msgspec.DecodeError, ValueError) as exc:
        raise ApiProblemError(MALFORMED_JSON, str(exc)) from exc
    problem = url_problem(body.url)
    if problem is not None:
        raise ApiProblemError(INVALID_BODY, f"url: {problem}", field="url")
    problem = event_types_problem(body.event_types)
    if problem is not None:
        raise ApiProblemError(INVALID_BODY, f"event_types: {problem}", field="event_types")
    return body


def checked_endpoint_id(endpoint_id: str) -> str:
    if not ENDPOINT_ID_PATTERN.match(endpoint_id):
        raise ApiProblemError(
            INVALID_PARAMETER, "endpoint_id: expected we_ and 16 hex digits", field="endpoint_id"
        )
    return endpoint_id


def timestamp(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


async def create_endpoint(reader: ApiReader, tenant_id: str, raw: bytes) -> Response:
    """201 with the endpoint and its secret (the only time it is shown)."""
    body = decode_endpoint_body(raw)
    head = await reader.read(tenant_id, API_SELECT_HEAD, (tenant_id,))
    starts_after = int(head[0][0]) if head else 0
    endpoint_id = "we_" + secrets.token_hex(ENDPOINT_ID_BYTES)
    secret = new_secret()
    parameters = (endpoint_id, body.url, body.event_types, secret, starts_after)
    rows = await reader.write(
        tenant_id, API_CREATE_ENDPOINT, (*parameters, ENDPOINTS_PER_TENANT_MAX)
    )
    if rows[0][0] == "too_many":
        raise ApiProblemError(
            TOO_MANY_ENDPOINTS, f"at most {ENDPOINTS_PER_TENANT_MAX} endpoints per tenant"
        )
    view = {
        "id": endpoint_id,
        "url": body.url,
        "event_types": body.event_types,
        "enabled": True,
        "starts_after_sequence": starts_after,
        "secret": secret,
    }
    return json_response(view, 201)


async def list_endpoints(reader: ApiReader, tenant_id: str) -> Response:
    rows = await reader.read(tenant_id, API_SELECT_ENDPOINTS, (tenant_id,))
    endpoints = [
        {
            "id": row[0],
            "url": row[1],
            "event_types": list(row[2]),
            "enabled": row[3],
            "disabled_reason": row[4],
            "starts_after_sequence": row[5],
            "created_at": timestamp(row[6]),
        }
        for row in rows
    ]
    return json_response({"endpoints": endpoints})


async def delete_endpoint(reader: ApiReader, tenant_id: str, endpoint_id: str) -> Response:
    rows = await reader.write(tenant_id, API_DELETE_ENDPOINT, (checked_endpoint_id(endpoint_id),))
    if not rows[0][0]:
        raise ApiProblemError(NOT_FOUND, f"no webhook endpoint {endpoint_id!r}")
    return Response(status_code=204)


def page_parameters(query: Mapping[str, str]) -> tuple[int, int]:
    after_text = query.get("after", "0")
    limit_text = query.get("limit", str(DEAD_LETTERS_PAGE_DEFAULT))
    if not (after_text.isascii() and after_text.isdigit() and len(after_text) <= 18):
        raise ApiProblemError(INVALID_PARAMETER, "after: a sequence number", field="after")
    if not (limit_text.isascii() and limit_text.isdigit() and len(limit_text) <= 6):
        raise ApiProblemError(INVALID_PARAMETER, "limit: a whole number", field="limit")
    limit = int(limit_text)
    if not 1 <= limit <= DEAD_LETTERS_PAGE_MAX:
        raise ApiProblemError(
            INVALID_PARAMETER,
            f"limit: {limit} is outside 1..{DEAD_LETTERS_PAGE_MAX}",
            field="limit",
        )
    return int(after_text), limit


async def list_dead_letters(
    reader: ApiReader, tenant_id: str, endpoint_id: str, query: Mapping[str, str]
) -> Response:
    """The endpoint's dead letters (and replayed ones still pending), in sequence order."""
    checked_endpoint_id(endpoint_id)
    after, limit = page_parameters(query)
    found = await reader.read(tenant_id, API_SELECT_ENDPOINTS, (tenant_id,))
    if not any(row[0] == endpoint_id for row in found):
        raise ApiProblemError(NOT_FOUND, f"no webhook endpoint {endpoint_id!r}")
    parameters = (tenant_id, endpoint_id, after, limit)
    rows = await reader.read(tenant_id, API_SELECT_DEAD_LETTERS, parameters)
    letters = [
        {
            "sequence": row[0],
            "id": row[1],
            "type": row[2],
            "status": row[3],
            "attempts": row[4],
            "last_error": row[5],
            "updated_at": timestamp(row[6]),
        }
        for row in rows
    ]
    after_next = letters[-1]["sequence"] if len(letters) == limit else None
    return json_response({"dead_letters": letters, "next_after": after_next})


async def replay_dead_letters(reader: ApiReader, tenant_id: str, endpoint_id: str) -> Response:
    """202: the endpoint is enabled again and its dead letters are queued, in order."""
    rows = await reader.write(
        tenant_id, API_REPLAY_DEAD_LETTERS, (checked_endpoint_id(endpoint_id),)
    )
    if rows[0][0] is None:
        raise ApiProblemError(NOT_FOUND, f"no webhook endpoint {endpoint_id!r}")
    return json_response({"endpoint_id": endpoint_id, "enabled": True, "queued": rows[0][0]}, 202)
