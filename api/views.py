"""JSON shapes of what the API returns. Pure: values in, dicts out (msgspec encodes them).

Money stays an integer count of minor units (JSON numbers; clients in languages whose numbers
are doubles must parse them as 64-bit integers). Times are RFC 3339 in UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

from projections.queries import (
    Balance,
    Entry,
    HistoryPage,
    MonitorView,
    TransactionView,
    TransferView,
)
from schemas.event_time import to_datetime
from schemas.model import Outcome


def command_path(idempotency_key: str) -> str:
    return "/v1/commands/" + quote(idempotency_key, safe="")


def outcome_view(outcome: Outcome) -> dict[str, Any]:
    view: dict[str, Any] = {
        "idempotency_key": outcome.idempotency_key,
        "command_type": outcome.command_type,
        "status": outcome.status.value,
        "event_sequences": list(outcome.event_sequences),
        "decided_at": to_datetime(outcome.decided_at_us),
    }
    if outcome.reason is not None:
        view["reason"] = outcome.reason.value
        view["detail"] = outcome.detail
    return view


def balance_view(balance: Balance, as_of: datetime | None) -> dict[str, Any]:
    return {
        "account_id": balance.account_id,
        "currency": balance.currency,
        "normal_side": balance.normal_side,
        "debits_posted": balance.debits_posted,
        "credits_posted": balance.credits_posted,
        "debits_pending": balance.debits_pending,
        "credits_pending": balance.credits_pending,
        "available": balance.available,
        "last_sequence": balance.last_sequence,
        "effective_at": balance.effective_at,
        "as_of": as_of,
    }


def entry_view(entry: Entry) -> dict[str, Any]:
    return {
        "sequence": entry.sequence,
        "kind": entry.kind,
        "side": entry.side,
        "transfer_id": entry.transfer_id,
        "event_type": entry.event_type,
        "currency": entry.currency,
        "amount": entry.amount,
        "debits_posted_after": entry.debits_posted_after,
        "credits_posted_after": entry.credits_posted_after,
        "debits_pending_after": entry.debits_pending_after,
        "credits_pending_after": entry.credits_pending_after,
        "effective_at": entry.effective_at,
        "actor": entry.actor,
        "cursor": entry.cursor,
    }


def history_view(account_id: str, page: HistoryPage, limit: int) -> dict[str, Any]:
    next_url = None
    if page.next_cursor is not None:
        next_url = (
            f"/v1/accounts/{quote(account_id, safe='')}/entries"
            f"?limit={limit}&after={quote(page.next_cursor, safe='')}"
        )
    return {
        "account_id": account_id,
        "entries": [entry_view(entry) for entry in page.entries],
        "next_cursor": page.next_cursor,
        "next": next_url,
    }


def monitors_view(monitors: tuple[MonitorView, ...]) -> dict[str, Any]:
    """``GET /v1/monitors``: each monitor, its condition and whether it holds now (on the
    projected balance as of ``balance_sequence``; the edges are on ledger.notifications)."""
    return {
        "monitors": [
            {
                "monitor_id": monitor.monitor_id,
                "account_id": monitor.account_id,
                "currency": monitor.currency,
                "field": monitor.field,
                "operator": monitor.operator,
                "threshold": monitor.threshold,
                "metadata": monitor.metadata,
                "created_sequence": monitor.created_sequence,
                "created_at": monitor.created_at,
                "value": monitor.value,
                "holds": monitor.holds,
                "balance_sequence": monitor.balance_sequence,
            }
            for monitor in monitors
        ]
    }


def transaction_view(transaction: TransactionView) -> dict[str, Any]:
    """A multi-leg transaction and its postings (index from 0, command order)."""
    return {
        "transaction_id": transaction.transaction_id,
        "pending": transaction.pending,
        "status": transaction.status,
        "currencies": list(transaction.currencies),
        "reverses": transaction.reverses,
        "expires_at": transaction.expires_at,
        "created_sequence": transaction.created_sequence,
        "last_sequence": transaction.last_sequence,
        "created_at": transaction.created_at,
        "updated_at": transaction.updated_at,
        "created_by": transaction.created_by,
        "updated_by": transaction.updated_by,
        "postings": [
            {
                "index": posting.index,
                "debit_account_id": posting.debit_account_id,
                "credit_account_id": posting.credit_account_id,
                "currency": posting.currency,
                "amount": posting.amount,
                "amount_posted": posting.amount_posted,
                "amount_reversed": posting.amount_reversed,
            }
            for posting in transaction.postings
        ],
    }


def transfer_view(transfer: TransferView) -> dict[str, Any]:
    return {
        "transfer_id": transfer.transfer_id,
        "debit_account_id": transfer.debit_account_id,
        "credit_account_id": transfer.credit_account_id,
        "currency": transfer.currency,
        "amount": transfer.amount,
        "pending": transfer.pending,
        "status": transfer.status,
        "amount_posted": transfer.amount_posted,
        "amount_reversed": transfer.amount_reversed,
        "reverses": transfer.reverses,
        "expires_at": transfer.expires_at,
        "created_sequence": transfer.created_sequence,
        "last_sequence": transfer.last_sequence,
        "created_at": transfer.created_at,
        "updated_at": transfer.updated_at,
        "metadata": transfer.metadata,
        "created_by": transfer.created_by,
        "updated_by": transfer.updated_by,
    }
