"""The OpenAPI 3.1 document of the API, built once from the request body types.

Request schemas come from the msgspec body types (``api.bodies``), so the document and the
decoder cannot disagree; responses are described by shape, errors by the RFC 9457 schema.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from api.bodies import (
    BODY_TYPES,
    DeleteMonitorBody,
    MonitorBody,
    OpenAccountBody,
    PostPendingBody,
    TransactionBody,
    TransferBody,
    VoidPendingBody,
)
from api.problems import PROBLEM_CONTENT_TYPE, PROBLEM_KINDS
from api.reconciliation import MANUAL_BODY_TYPES, ManualMatchBody, ManualUnmatchBody
from api.webhooks import TOO_MANY_ENDPOINTS, WebhookEndpointBody

REF: Final = "#/components/schemas/{name}"
PROBLEM_SCHEMA: Final = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {
            "type": "string",
            "format": "uri",
            "enum": [k.type_uri for k in (*PROBLEM_KINDS, TOO_MANY_ENDPOINTS)],
        },
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "field": {"type": "string", "description": "the member or parameter at fault"},
        "reason": {"type": "string", "description": "the ledger's RejectReason (422)"},
        "idempotency_key": {"type": "string"},
    },
}
IDEMPOTENCY_KEY_HEADER: Final = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": True,
    "description": "1-255 visible ASCII characters, scoped to the tenant; a retry reuses it",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}
PREFER_HEADER: Final = {
    "name": "Prefer",
    "in": "header",
    "required": False,
    "description": "respond-async: answer 202 once the broker has the command, without waiting",
    "schema": {"type": "string"},
}


def _problems(*statuses: int) -> dict[str, Any]:
    content = {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": REF.format(name="Problem")}}}
    return {
        str(status): {"description": "problem details", "content": content} for status in statuses
    }


def _path_parameter(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _submit(body: type[msgspec.Struct], summary: str, path_parameter: str | None) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [IDEMPOTENCY_KEY_HEADER, PREFER_HEADER]
    if path_parameter is not None:
        parameters.append(_path_parameter(path_parameter))
    return {
        "post": {
            "summary": summary,
            "security": [{"bearer": []}],
            "parameters": parameters,
            "requestBody": {
                "required": path_parameter is None,
                "content": {
                    "application/json": {"schema": {"$ref": REF.format(name=body.__name__)}}
                },
            },
            "responses": {
                "201": {"description": "accepted: the outcome (a retry returns the original)"},
                "202": {"description": "sent; no outcome yet: poll the Location (status URL)"},
                **_problems(400, 401, 409, 413, 415, 422, 503),
            },
        }
    }


def _read(summary: str, parameters: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "security": [{"bearer": []}],
            "parameters": parameters,
            "responses": {"200": {"description": "found"}, **_problems(400, 401, 404, 503)},
        }
    }


def _query(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "string"},
    }


def _operation(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "security": [{"bearer": []}], "responses": responses, **extra}


def _notification_paths() -> dict[str, Any]:
    """The webhook endpoints and the live stream (``api.webhooks``, ``api.event_stream``)."""
    endpoint = _path_parameter("endpoint_id")
    body = {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": REF.format(name="WebhookEndpointBody")}}
        },
    }
    stream = {"text/event-stream": {"schema": {"type": "string"}}}
    last_event_id = {
        "name": "Last-Event-ID",
        "in": "header",
        "required": False,
        "description": "resume after this tenant sequence",
        "schema": {"type": "string"},
    }
    return {
        "/v1/webhook-endpoints": {
            "post": _operation(
                "subscribe a URL to event types; the answer holds the secret (shown once)",
                {"201": {"description": "created"}, **_problems(400, 401, 409, 413, 415, 503)},
                requestBody=body,
            ),
            "get": _operation("the tenant's webhook endpoints", {"200": {"description": "listed"}}),
        },
        "/v1/webhook-endpoints/{endpoint_id}": {
            "delete": _operation(
                "unsubscribe",
                {"204": {"description": "deleted"}, **_problems(400, 401, 404, 503)},
                parameters=[endpoint],
            )
        },
        "/v1/webhook-endpoints/{endpoint_id}/dead-letters": _read(
            "deliveries that failed for good (and replayed ones still pending), in order",
            [endpoint, _query("after", "sequence of the last page"), _query("limit", "page size")],
        ),
        "/v1/webhook-endpoints/{endpoint_id}/dead-letters/replay": {
            "post": _operation(
                "enable the endpoint again and deliver its dead letters, in order",
                {"202": {"description": "queued"}, **_problems(400, 401, 404, 503)},
                parameters=[endpoint],
            )
        },
        "/v1/events/stream": {
            "get": _operation(
                "the tenant's events as Server-Sent Events (id = tenant sequence), resumable",
                {"200": {"description": "a stream", "content": stream}, **_problems(400, 401)},
                parameters=[last_event_id, _query("after", "resume after this sequence")],
            )
        },
    }


METADATA_FILTERS: Final = {
    "name": "metadata",
    "in": "query",
    "required": False,
    "style": "deepObject",
    "explode": True,
    "description": "metadata[<key>]=<value>, up to 16; every one must match",
    "schema": {"type": "object", "additionalProperties": {"type": "string"}},
}
PAGE_PARAMETERS: Final = (
    {**_query("limit", "page size, 1..1000 (default 100)")},
    {**_query("after", "next_cursor of the last page")},
)
# GET /v1/transfers and GET /v1/transactions (decisions 0056, 0077)
MOVEMENT_SEARCH_PARAMETERS: Final = [
    METADATA_FILTERS,
    _query("from", "created at or after: RFC 3339 or microseconds"),
    _query("to", "created before (the point in time): RFC 3339 or microseconds"),
    _query("account", "an account on either side"),
    _query("status", "pending, posted, voided or expired"),
    *PAGE_PARAMETERS,
]


def _manual_request(body: type[msgspec.Struct], summary: str) -> dict[str, Any]:
    content = {"application/json": {"schema": {"$ref": REF.format(name=body.__name__)}}}
    return {
        "post": _operation(
            summary,
            {
                "202": {
                    "description": "requested: the record's position on ledger.statements"
                    " (request_id); the matcher's result appears on GET /v1/reconciliation"
                },
                **_problems(400, 401, 413, 415, 422, 503),
            },
            requestBody={"required": True, "content": content},
        )
    }


def _manual_reconciliation_paths() -> dict[str, Any]:
    """Manual match and unmatch: audited requests the matcher decides (decisions 0090, 0098)."""
    return {
        "/v1/reconciliation/matches": _manual_request(
            ManualMatchBody,
            "match statement lines with ledger movements of a bank-mirror account by hand, open"
            " or currently unmatched: a ManualMatch record the matcher decides (rule manual,"
            " superseding the items' unmatched results) or refuses with a ManualRefusal record"
            " on GET /v1/reconciliation (decisions 0098, 0106, 0107); 422 when an item is"
            " matched or mismatched (unmatch it first)",
        ),
        "/v1/reconciliation/unmatches": _manual_request(
            ManualUnmatchBody,
            "undo a current match or mismatch (its result_id) by hand: a ManualUnmatch record;"
            " the matcher answers with an unmatched result (reason manual_unmatch) that"
            " supersedes it (decisions 0090, 0098); 422 when the result is not undoable",
        ),
    }


def build_openapi() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(
        (*BODY_TYPES, WebhookEndpointBody, *MANUAL_BODY_TYPES), ref_template=REF
    )
    components["Problem"] = PROBLEM_SCHEMA
    account = _path_parameter("account_id")
    return {
        "openapi": "3.1.0",
        "info": {"title": "StreamLedger API", "version": "1"},
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            "/v1/accounts": {
                **_submit(OpenAccountBody, "open an account", None),
                **_read(
                    "search accounts by metadata, newest first (keyset pagination, decision 0056)",
                    [METADATA_FILTERS, _query("currency", "asset code"), *PAGE_PARAMETERS],
                ),
            },
            "/v1/transfers": {
                **_submit(TransferBody, "create a posted or pending transfer", None),
                **_read(
                    "search transfers (a transaction's postings too) by metadata, creation time"
                    " [from, to), account and status, newest first (decision 0056)",
                    MOVEMENT_SEARCH_PARAMETERS,
                ),
            },
            "/v1/transactions": {
                **_submit(
                    TransactionBody,
                    "post a multi-leg transaction: 1..64 postings, all or nothing (fees, payouts,"
                    " FX)",
                    None,
                ),
                **_read(
                    "search multi-leg transactions by metadata, creation time [from, to), account"
                    " (either side of any posting) and status, newest first (decision 0077)",
                    MOVEMENT_SEARCH_PARAMETERS,
                ),
            },
            "/v1/transfers/{transfer_id}/post": _submit(
                PostPendingBody, "post a pending transfer (in full or in part)", "transfer_id"
            ),
            "/v1/transfers/{transfer_id}/void": _submit(
                VoidPendingBody, "void a pending transfer", "transfer_id"
            ),
            "/v1/accounts/{account_id}/balance": _read(
                "an account's balance, now or as of a time",
                [account, _query("as_of", "RFC 3339 time or microseconds since the epoch")],
            ),
            "/v1/accounts/{account_id}/entries": _read(
                "an account's journal, newest first (keyset pagination)",
                [
                    account,
                    _query("limit", "page size"),
                    _query("after", "next_cursor of the last page"),
                ],
            ),
            "/v1/accounts/{account_id}/statement": _read(
                "an account's statement for [from, to): balances, entries, last event's hash",
                [
                    account,
                    {
                        **_query("from", "RFC 3339 time or microseconds (inclusive)"),
                        "required": True,
                    },
                    {**_query("to", "RFC 3339 time or microseconds (exclusive)"), "required": True},
                    _query("format", "json (default), csv or pdf"),
                ],
            ),
            "/v1/accounts/{account_id}/balance-history": _read(
                "the closing balance per hour or UTC day of [from, to), each with the last"
                " event's (sequence, hash) (decision 0057)",
                [
                    account,
                    {**_query("from", "a whole hour (1h) or UTC day (1d)"), "required": True},
                    {**_query("to", "a whole hour (1h) or UTC day (1d)"), "required": True},
                    {**_query("interval", "1h or 1d"), "required": True},
                ],
            ),
            "/v1/trial-balance": _read(
                "every account's balance and per-currency totals as of a time (inclusive)",
                [
                    _query("as_of", "RFC 3339 time or microseconds (default: now)"),
                    _query("format", "json (default) or csv"),
                ],
            ),
            "/v1/transfers/{transfer_id}": _read("a transfer", [_path_parameter("transfer_id")]),
            "/v1/transactions/{transaction_id}": _read(
                "a multi-leg transaction and its postings", [_path_parameter("transaction_id")]
            ),
            "/v1/commands/{idempotency_key}": _read(
                "the outcome of the command sent with this idempotency key",
                [_path_parameter("idempotency_key")],
            ),
            **_notification_paths(),
            "/v1/statements": {
                "post": _operation(
                    "import a bank statement file (camt.053, camt.054, BAI2, CSV) for a bank-mirror"
                    " account: once per file, all or nothing (decision 0075)",
                    {
                        "201": {"description": "imported: lines_in_file, lines_new, file_sha256"},
                        "200": {"description": "already_imported: this file was imported before"},
                        **_problems(400, 401, 413, 415, 503),
                    },
                    parameters=[
                        {**_query("account", "the ledger's bank-mirror account"), "required": True},
                        _query(
                            "format",
                            "camt053, camt054, bai2 or csv (default from the Content-Type; XML:"
                            " camt.053 or camt.054 by its namespace)",
                        ),
                        _query("bank_account", "the account to take from a multi-account file"),
                    ],
                    requestBody={
                        "required": True,
                        "content": {
                            media: {"schema": {"type": "string"}}
                            for media in ("application/xml", "text/csv", "application/octet-stream")
                        },
                    },
                )
            },
            "/v1/reconciliation": _read(
                "the tenant's reconciliation results (matched, mismatched, unmatched) in the"
                " order the matcher decided them (keyset pagination, decision 0074)",
                [
                    _query("account", "the bank-mirror account"),
                    _query("state", "matched, mismatched or unmatched"),
                    *PAGE_PARAMETERS,
                ],
            ),
            "/v1/reconciliation/refusals": _read(
                "the manual requests the matcher refused (ManualRefusal records: the request's"
                " request_id, type, actor, items and the matcher's reason), in the order it"
                " refused them (keyset pagination, decision 0107)",
                [
                    _query("account", "the bank-mirror account"),
                    _query("request_id", "a request's PARTITION:OFFSET (the 202's request_id)"),
                    *PAGE_PARAMETERS,
                ],
            ),
            **_manual_reconciliation_paths(),
            "/v1/monitors": {
                **_submit(
                    MonitorBody,
                    "create a balance monitor: MonitorTriggered/MonitorCleared on"
                    " ledger.notifications when its condition becomes true/false (decision 0058)",
                    None,
                ),
                **_read("the tenant's live balance monitors and whether each holds now", []),
            },
            "/v1/monitors/{monitor_id}": {
                "delete": {
                    **_submit(DeleteMonitorBody, "delete a balance monitor", "monitor_id")["post"],
                    "responses": {
                        "200": {"description": "deleted: the outcome (a retry returns it again)"},
                        "202": {"description": "sent; no outcome yet: poll the Location"},
                        **_problems(400, 401, 409, 413, 415, 422, 503),
                    },
                }
            },
        },
    }
