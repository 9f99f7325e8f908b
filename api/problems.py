"""RFC 9457 problem details, and the API's exception tree.

Every error response is ``application/problem+json``: ``type`` (a stable URI naming the kind,
relative to ``PROBLEM_BASE``), ``title`` (the kind in words), ``status``, ``detail`` (what was
wrong with *this* request, naming the field) and extension members (``field``, ``reason``,
``idempotency_key``) where they help a client act on it.

``ApiProblemError`` (in the tree drawn in ``streamledger.errors``) is an HTTP error response as a
value: raised in a handler, rendered by the app's exception handler; never a 500 for bad input.
No subclasses: its ``kind`` says which problem it is.

Outages (Kafka or PostgreSQL unreachable) are mapped to ``ApiProblemError(SERVICE_UNAVAILABLE)`` at
the adapter with ``raise ... from exc``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import msgspec

from streamledger.errors import StreamLedgerError

PROBLEM_BASE: Final = "https://streamledger.dev/problems/"
PROBLEM_CONTENT_TYPE: Final = "application/problem+json"


@dataclass(frozen=True, slots=True)
class ProblemKind:
    slug: str
    status: int
    title: str

    @property
    def type_uri(self) -> str:
        return PROBLEM_BASE + self.slug


MALFORMED_REQUEST: Final = ProblemKind(
    "malformed-request", 400, "The request is not valid HTTP/1.1"
)
MALFORMED_JSON: Final = ProblemKind("malformed-json", 400, "The body is not valid JSON")
INVALID_BODY: Final = ProblemKind("invalid-body", 400, "The body does not match the schema")
INVALID_PARAMETER: Final = ProblemKind("invalid-parameter", 400, "A parameter is malformed")
MISSING_IDEMPOTENCY_KEY: Final = ProblemKind(
    "missing-idempotency-key", 400, "The Idempotency-Key header is required"
)
UNAUTHORIZED: Final = ProblemKind("unauthorized", 401, "A valid API key is required")
NOT_FOUND: Final = ProblemKind("not-found", 404, "Not found")
METHOD_NOT_ALLOWED: Final = ProblemKind("method-not-allowed", 405, "Method not allowed")
IDEMPOTENCY_KEY_REUSED: Final = ProblemKind(
    "idempotency-key-reused", 409, "The idempotency key was used for another request"
)
BODY_TOO_LARGE: Final = ProblemKind("body-too-large", 413, "The body is too large")
UNSUPPORTED_MEDIA_TYPE: Final = ProblemKind(
    "unsupported-media-type", 415, "The body must be application/json"
)
INVALID_COMMAND: Final = ProblemKind(
    "invalid-command", 422, "The command breaks a limit of the contract"
)
COMMAND_REJECTED: Final = ProblemKind("command-rejected", 422, "The ledger rejected the command")
# The processor's per-tenant rate limit answered RATE_LIMITED (decision 0083): nothing was
# stored under the key; the response carries Retry-After (seconds) and retry_after_ms.
RATE_LIMITED: Final = ProblemKind("rate-limited", 429, "The tenant is over its command rate")
SERVICE_UNAVAILABLE: Final = ProblemKind(
    "service-unavailable", 503, "A backing service is unavailable"
)

PROBLEM_KINDS: Final = (
    MALFORMED_JSON,
    MALFORMED_REQUEST,
    INVALID_BODY,
    INVALID_PARAMETER,
    MISSING_IDEMPOTENCY_KEY,
    UNAUTHORIZED,
    NOT_FOUND,
    METHOD_NOT_ALLOWED,
    IDEMPOTENCY_KEY_REUSED,
    BODY_TOO_LARGE,
    UNSUPPORTED_MEDIA_TYPE,
    INVALID_COMMAND,
    COMMAND_REJECTED,
    RATE_LIMITED,
    SERVICE_UNAVAILABLE,
)
_BY_STATUS: Final = {kind.status: kind for kind in reversed(PROBLEM_KINDS)}


class ApiProblemError(StreamLedgerError):
    """An error response: its kind, what was wrong, and extension members."""

    def __init__(self, kind: ProblemKind, detail: str, **extensions: Any) -> None:
        super().__init__(f"{kind.slug}: {detail}")
        self.kind = kind
        self.detail = detail
        self.extensions = extensions

    def body(self, instance: str | None = None) -> bytes:
        document: dict[str, Any] = {
            "type": self.kind.type_uri,
            "title": self.kind.title,
            "status": self.kind.status,
            "detail": self.detail,
        }
        if instance is not None:
            document["instance"] = instance
        document.update(self.extensions)
        return msgspec.json.encode(document)


def kind_for_status(status: int) -> ProblemKind:
    """The problem kind of a status the framework raised on its own (404, 405, ...)."""
    return _BY_STATUS.get(status, ProblemKind(f"http-{status}", status, "HTTP error"))
