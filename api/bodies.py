"""Request bodies: strict JSON schemas (msgspec) and their translation into commands. Pure.

Strict means: a body is a JSON object with exactly the documented members; an unknown member,
a missing required one, or a value of the wrong JSON type is refused, naming the member. Money
is a JSON integer count of minor units: ``1.0``, ``1e2``, ``"100"`` and ``"1.50"`` are all refused
(msgspec's strict mode never converts between types). The contract's limits (lengths, character
sets, ranges) are then checked by ``schemas.limits.first_violation`` — the same check the SDK
and the ledger core run — so the API, the SDK and the processor refuse the same commands.
"""

from __future__ import annotations

import re
from typing import Any, Final

import msgspec

from api.problems import INVALID_BODY, INVALID_COMMAND, MALFORMED_JSON, ApiProblemError
from schemas.limits import first_violation
from schemas.model import (
    Command,
    CreateMonitor,
    DeleteMonitor,
    OpenAccount,
    Posting,
    PostPending,
    PostTransaction,
    Transfer,
    VoidPending,
)

FIELD_IN_MESSAGE: Final = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
UNKNOWN_FIELD: Final = re.compile(r"unknown field `(?P<name>[^`]*)`")
MISSING_FIELD: Final = re.compile(r"missing required field `(?P<name>[^`]*)`")


class OpenAccountBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/accounts``."""

    account_id: str
    currency: str
    asset_scale: int
    debits_must_not_exceed_credits: bool = False
    credits_must_not_exceed_debits: bool = False
    overdraft_limit: int | None = None
    metadata: dict[str, str] = {}


class TransferBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/transfers``."""

    transfer_id: str
    debit_account_id: str
    credit_account_id: str
    amount: int
    currency: str
    pending: bool = False
    pending_timeout_s: int | None = None
    reverses: str | None = None
    metadata: dict[str, str] = {}


class PostPendingBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/transfers/{transfer_id}/post``: omit ``amount`` to post the full amount."""

    amount: int | None = None
    metadata: dict[str, str] = {}


class VoidPendingBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/transfers/{transfer_id}/void``."""

    metadata: dict[str, str] = {}


class PostingBody(msgspec.Struct, forbid_unknown_fields=True):
    """One posting of ``POST /v1/transactions``: ``amount`` from the debit to the credit account."""

    debit_account_id: str
    credit_account_id: str
    amount: int
    currency: str


class TransactionBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/transactions``: 1..64 postings, all or nothing (a problem names
    ``postings[3].amount``). A pending one is posted or voided through
    ``/v1/transfers/{transaction_id}/post`` and ``/void`` (one id namespace, decision 0041)."""

    transaction_id: str
    postings: list[PostingBody]
    pending: bool = False
    pending_timeout_s: int | None = None
    reverses: str | None = None
    metadata: dict[str, str] = {}


class MonitorBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/monitors``: a balance monitor (decision 0058); ``field`` is one of
    debits_posted, credits_posted, debits_pending, credits_pending, posted, pending, available;
    ``operator`` one of <, <=, >, >=, ==; ``threshold`` in minor units (may be negative)."""

    monitor_id: str
    account_id: str
    field: str
    operator: str
    threshold: int
    metadata: dict[str, str] = {}


class DeleteMonitorBody(msgspec.Struct, forbid_unknown_fields=True):
    """``DELETE /v1/monitors/{monitor_id}``: no body needed."""

    metadata: dict[str, str] = {}


Body = (
    OpenAccountBody
    | TransferBody
    | PostPendingBody
    | VoidPendingBody
    | TransactionBody
    | MonitorBody
    | DeleteMonitorBody
)
BODY_TYPES: Final[tuple[type[Body], ...]] = (
    OpenAccountBody,
    TransferBody,
    PostPendingBody,
    VoidPendingBody,
    TransactionBody,
    MonitorBody,
    DeleteMonitorBody,
)
_DECODERS: Final[dict[type[Body], msgspec.json.Decoder[Any]]] = {
    body_type: msgspec.json.Decoder(body_type) for body_type in BODY_TYPES
}
EMPTY_BODY_ALLOWED: Final = frozenset({PostPendingBody, VoidPendingBody, DeleteMonitorBody})


def decode_body(body_type: type[Body], raw: bytes) -> Body:
    """Decode ``raw`` strictly into ``body_type``, or raise a 400 ``ApiProblemError`` naming why."""
    if not raw.strip() and body_type in EMPTY_BODY_ALLOWED:
        raw = b"{}"
    try:
        decoded: Body = _DECODERS[body_type].decode(raw)
    except msgspec.ValidationError as exc:
        message = str(exc)
        field = field_of(message)
        extensions = {} if field is None else {"field": field}
        raise ApiProblemError(INVALID_BODY, message, **extensions) from exc
    except (msgspec.DecodeError, ValueError) as exc:  # ValueError: e.g. an integer too long
        raise ApiProblemError(MALFORMED_JSON, str(exc)) from exc
    return decoded


def field_of(message: str) -> str | None:
    """The member a msgspec validation message is about (``amount``, ``metadata.note``)."""
    for pattern in (UNKNOWN_FIELD, MISSING_FIELD):
        match = pattern.search(message)
        if match is not None:
            at = FIELD_IN_MESSAGE.search(message)
            prefix = at.group("path") + "." if at is not None and at.group("path") else ""
            return prefix + match.group("name")
    at = FIELD_IN_MESSAGE.search(message)
    return at.group("path") or None if at is not None else None


def _metadata(metadata: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(metadata.items()))


def to_command(
    body: Body,
    *,
    tenant_id: str,
    idempotency_key: str,
    submitted_at_us: int,
    transfer_id: str | None = None,
) -> Command:
    """The command a body asks for; the tenant and key come from the request, never the body."""
    header = {
        "tenant_id": tenant_id,
        "idempotency_key": idempotency_key,
        "submitted_at_us": submitted_at_us,
        "metadata": _metadata(body.metadata),
    }
    command: Command
    if isinstance(body, OpenAccountBody):
        command = OpenAccount(
            **header,  # type: ignore[arg-type]
            account_id=body.account_id,
            currency=body.currency,
            asset_scale=body.asset_scale,
            debits_must_not_exceed_credits=body.debits_must_not_exceed_credits,
            credits_must_not_exceed_debits=body.credits_must_not_exceed_debits,
            overdraft_limit=body.overdraft_limit,
        )
    elif isinstance(body, TransferBody):
        command = Transfer(
            **header,  # type: ignore[arg-type]
            transfer_id=body.transfer_id,
            debit_account_id=body.debit_account_id,
            credit_account_id=body.credit_account_id,
            amount=body.amount,
            currency=body.currency,
            pending=body.pending,
            pending_timeout_s=body.pending_timeout_s,
            reverses=body.reverses,
        )
    elif isinstance(body, TransactionBody):
        command = _transaction(body, header)
    elif isinstance(body, MonitorBody):
        command = CreateMonitor(
            **header,  # type: ignore[arg-type]
            monitor_id=body.monitor_id,
            account_id=body.account_id,
            field=body.field,
            operator=body.operator,
            threshold=body.threshold,
        )
    elif isinstance(body, DeleteMonitorBody):
        assert transfer_id is not None  # the monitor id from the path
        command = DeleteMonitor(**header, monitor_id=transfer_id)  # type: ignore[arg-type]
    elif isinstance(body, PostPendingBody):
        assert transfer_id is not None
        command = PostPending(**header, transfer_id=transfer_id, amount=body.amount)  # type: ignore[arg-type]
    else:
        assert transfer_id is not None
        command = VoidPending(**header, transfer_id=transfer_id)  # type: ignore[arg-type]
    return command


def _transaction(body: TransactionBody, header: dict[str, Any]) -> PostTransaction:
    postings = tuple(
        Posting(
            debit_account_id=posting.debit_account_id,
            credit_account_id=posting.credit_account_id,
            amount=posting.amount,
            currency=posting.currency,
        )
        for posting in body.postings
    )
    return PostTransaction(
        **header,
        transaction_id=body.transaction_id,
        postings=postings,
        pending=body.pending,
        pending_timeout_s=body.pending_timeout_s,
        reverses=body.reverses,
    )


def check_limits(command: Command) -> None:
    """Raise a 422 ``ApiProblemError`` naming the first limit ``command`` breaks."""
    violation = first_violation(command)
    if violation is not None:
        field, reason = violation
        raise ApiProblemError(INVALID_COMMAND, f"{field}: {reason}", field=field)
