"""``GET /v1/events/stream``: the caller's tenant's events as Server-Sent Events, resumable.

Read from the projection in PostgreSQL (decision 0039), as ``streamledger_api`` under the
request's API key binding (decision 0024): row-level security shows the key's tenant only, so
another tenant's events cannot leak through a bug in this module. Every event has a row in
``event_chain`` (sequence, hash, effective time; gapless per tenant, written in one transaction
with the event's other rows), its entries in ``entries`` and, for ``AccountOpened``, the account
in ``accounts``; one statement reads a page of sequences with all three.

Each SSE message: ``id: <tenant sequence>``, ``event: <event type>``, ``data: <JSON>``. A client
that reconnects sends ``Last-Event-ID`` (browsers' EventSource do) — or ``?after=N`` — and the
stream resumes at the next sequence: no gap, no repeat. A comment line keeps idle connections
open through proxies; a stream ends after ``STREAM_DURATION_S_MAX`` (the client reconnects and
resumes), and at most ``STREAMS_MAX`` run at once per API process (then 503).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from api.problems import INVALID_PARAMETER, SERVICE_UNAVAILABLE, ApiProblemError
from api.reads import ApiReader

MEDIA_TYPE: Final = "text/event-stream"
STREAM_PARAMETERS: Final = ("after",)
POLL_INTERVAL_S: Final = 0.25  # how often an idle stream asks PostgreSQL for new events
KEEPALIVE_INTERVAL_S: Final = 15.0  # a comment line on an idle stream
STREAM_DURATION_S_MAX: Final = 3_600.0  # then the stream ends; the client resumes
STREAMS_MAX: Final = 1_000  # concurrent streams per API process
PAGE_EVENTS_MAX: Final = 500  # events read per statement
RECONNECT_MS: Final = 1_000  # the SSE retry: field
SEQUENCE_DIGITS_MAX: Final = 18
TRANSACTION_EVENT_PREFIX: Final = "Transaction"  # the multi-leg event types (issue 16)
ACTOR_COLUMN: Final = 16  # c.actor, the last column of SELECT_EVENTS (contract v1.7)

SELECT_EVENTS: Final = """
SELECT c.sequence, c.hash, c.effective_at, a.account_id, a.currency,
       e.event_type, e.transfer_id, e.account_id, e.kind, e.side, e.amount, e.currency,
       e.debits_posted_after, e.credits_posted_after, e.debits_pending_after,
       e.credits_pending_after, c.actor
FROM ledger.event_chain AS c
LEFT JOIN ledger.accounts AS a ON a.tenant_id = c.tenant_id AND a.opened_sequence = c.sequence
LEFT JOIN ledger.entries AS e ON e.tenant_id = c.tenant_id AND e.sequence = c.sequence
WHERE c.tenant_id = %s AND c.sequence > %s AND c.sequence <= %s
ORDER BY c.sequence, e.side DESC, e.kind, e.transfer_id
"""


@dataclass(slots=True)
class StreamCount:
    """Streams open in this process (event loop only)."""

    open: int = 0


@dataclass(slots=True)
class StreamedEvent:
    sequence: int
    hash: bytes
    effective_at: datetime
    type: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    actor: str = ""  # who issued the event's command (contract v1.7, decision 0093)


def start_after(headers: Mapping[str, str], query: Mapping[str, str]) -> int:
    """The sequence to resume after: ``Last-Event-ID`` (what EventSource sends), else ``after``,
    else 0 (the tenant's whole history)."""
    text = headers.get("last-event-id", query.get("after", "0")).strip()
    if not (text.isascii() and text.isdigit() and len(text) <= SEQUENCE_DIGITS_MAX):
        raise ApiProblemError(
            INVALID_PARAMETER,
            "Last-Event-ID / after: a tenant sequence number (ASCII digits)",
            field="Last-Event-ID",
        )
    return int(text)


def events_of(rows: list[Any]) -> list[StreamedEvent]:
    """Rows of ``SELECT_EVENTS`` (one per entry, or one per event without entries) grouped."""
    events: list[StreamedEvent] = []
    for row in rows:
        sequence, chain_hash, effective_at, opened_account, opened_currency = row[:5]
        if not events or events[-1].sequence != sequence:
            actor = row[ACTOR_COLUMN]
            events.append(StreamedEvent(sequence, bytes(chain_hash), effective_at, actor=actor))
        event = events[-1]
        if opened_account is not None:
            event.type = "AccountOpened"
            event.data = {"account_id": opened_account, "currency": opened_currency}
        elif row[5] is not None:
            add_entry(event, row[5:])
    return events


def add_entry(event: StreamedEvent, entry: tuple[Any, ...]) -> None:
    event_type, transfer_id, account_id, kind, side, amount, currency = entry[:7]
    event.type = event_type
    if event_type.startswith(TRANSACTION_EVENT_PREFIX):  # postings' rows: {transaction_id}/{i}
        event.data.setdefault("transaction_id", transfer_id.rpartition("/")[0])
    else:
        event.data.setdefault("transfer_id", transfer_id)
    event.data.setdefault("entries", []).append(
        {
            "account_id": account_id,
            "transfer_id": transfer_id,  # a multi-leg transaction's: {transaction_id}/{i}
            "side": side,
            "kind": kind,
            "amount": amount,
            "currency": currency,
            "debits_posted_after": entry[7],
            "credits_posted_after": entry[8],
            "debits_pending_after": entry[9],
            "credits_pending_after": entry[10],
        }
    )


def sse_message(tenant_id: str, event: StreamedEvent) -> bytes:
    document = {
        "id": f"{tenant_id}:{event.sequence}",
        "type": event.type or "unknown",
        "tenant_id": tenant_id,
        "sequence": event.sequence,
        "effective_at": event.effective_at.isoformat().replace("+00:00", "Z"),
        "hash": event.hash.hex(),
        "actor": event.actor,
        "data": event.data,
    }
    data = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    return f"id: {event.sequence}\nevent: {document['type']}\ndata: {data}\n\n".encode()


def check_stream_room(count: StreamCount) -> None:
    """503 when ``STREAMS_MAX`` streams are open (the stream counts itself once it runs)."""
    if count.open >= STREAMS_MAX:
        raise ApiProblemError(SERVICE_UNAVAILABLE, f"{STREAMS_MAX} event streams are open")


async def event_stream(
    reader: ApiReader,
    tenant_id: str,
    after: int,
    count: StreamCount,
    *,
    poll_interval_s: float = POLL_INTERVAL_S,
    duration_s_max: float = STREAM_DURATION_S_MAX,
) -> AsyncIterator[bytes]:
    """The stream's bytes, from the event after ``after``."""
    count.open += 1
    try:
        yield f"retry: {RECONNECT_MS}\n\n".encode()
        started = last_sent = time.monotonic()
        while time.monotonic() - started < duration_s_max:
            parameters = (tenant_id, after, after + PAGE_EVENTS_MAX)
            events = events_of(await reader.read(tenant_id, SELECT_EVENTS, parameters))
            for event in events:
                yield sse_message(tenant_id, event)
                after = event.sequence
            if events:
                last_sent = time.monotonic()
                continue
            if time.monotonic() - last_sent >= KEEPALIVE_INTERVAL_S:
                yield b": keep-alive\n\n"
                last_sent = time.monotonic()
            await asyncio.sleep(poll_interval_s)
    finally:
        count.open -= 1
