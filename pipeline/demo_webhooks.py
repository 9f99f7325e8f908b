"""The demo's webhooks (issue 18 §6): a local receiver, subscribed through the API, a low-balance
monitor on a busy account, a few live transfers, and each delivery it received — the transfers
and the monitor's notifications — printed with its signature checked.

The receiver is a small ``http.server`` on 127.0.0.1 (a port the system picks) in a thread of
the demo; the dispatcher is the pipeline's own ``streamledger notify`` (``RunSettings.notifiers``).
The endpoint is created after the workload, so it gets the events committed after its creation:
the ``TRANSFERS`` posted here through the API, whatever the workload's size (a bounded wait).
The monitor (``POST /v1/monitors``, decision 0058) watches the credited account's posted balance
with a threshold ``MONITOR_MARGIN_MINOR`` beyond its balance now: it holds at creation
(``monitor.triggered``), and the transfers move the balance across it (``monitor.cleared``);
both are delivered to the receiver as webhooks (decision 0068). The monitor and the endpoint are
deleted afterwards.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from notifications.signing import (
    DELIVERY_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    signature_problem,
)

TRANSFERS = 3  # posted through the API once the endpoint exists (100, 200, 300 minor units)
MONITOR_KINDS = ("monitor.triggered", "monitor.cleared")
EVENT_TYPES = ("TransferPosted", *MONITOR_KINDS)
MONITOR_MARGIN_MINOR = 150  # crossed by the second transfer
NOTIFICATIONS = 2  # triggered at the monitor's creation, cleared by the second transfer
DELIVERY_TIMEOUT_S = 30.0  # the dispatcher sees a new endpoint within its refresh (1 s)
REQUEST_TIMEOUT_S = 10.0
BODY_BYTES_MAX = 1_000_000
POLL_S = 0.1


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class DemoReceiver:
    """What the receiver got, in arrival order."""

    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def distinct(self) -> list[Received]:
        """The first arrival of each delivery id (a receiver deduplicates by it)."""
        seen: set[str] = set()
        kept = []
        for item in self.snapshot():
            delivery_id = item.headers.get(DELIVERY_ID_HEADER.lower(), "")
            if delivery_id not in seen:
                seen.add(delivery_id)
                kept.append(item)
        return kept


def handler_for(receiver: DemoReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = min(int(self.headers.get("content-length", "0")), BODY_BYTES_MAX)
            headers = {name.lower(): value for name, value in self.headers.items()}
            item = Received(headers, self.rfile.read(length))
            with receiver.lock:
                receiver.received.append(item)
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


@contextmanager
def running_receiver() -> Iterator[tuple[DemoReceiver, str]]:
    receiver = DemoReceiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(receiver))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="demo-receiver", daemon=True).start()
    try:
        yield receiver, f"http://127.0.0.1:{server.server_address[1]}/ledger-hooks"
    finally:
        server.shutdown()
        server.server_close()


def webhook_lines(
    base_url: str, token: str, *, currency: str, debit: str, credit: str
) -> tuple[bool, list[str]]:
    """Subscribe a local receiver, post ``TRANSFERS`` transfers, print what it received."""
    headers = {"Authorization": f"Bearer {token}"}
    with (
        running_receiver() as (receiver, url),
        httpx.Client(base_url=base_url, headers=headers, timeout=REQUEST_TIMEOUT_S) as client,
    ):
        response = client.post(
            "/v1/webhook-endpoints", json={"url": url, "event_types": list(EVENT_TYPES)}
        )
        if response.status_code != 201:
            return False, [f"  subscribing failed: {response.status_code} {response.text}"]
        endpoint: dict[str, Any] = response.json()
        lines = [
            f"  POST /v1/webhook-endpoints  ->  201  {endpoint['id']}"
            f" (event types {', '.join(EVENT_TYPES)}; receiver {url}; secret shown once)"
        ]
        monitor_id, line = create_monitor(client, credit)
        lines.append(line)
        posted = post_transfers(client, currency=currency, debit=debit, credit=credit)
        if monitor_id is None or posted is not None:
            return False, [*lines, *([posted] if posted else [])]
        received = wait_for_deliveries(receiver)
        transfers = [item for item in received if kind_of(item) not in MONITOR_KINDS]
        notified = [item for item in received if kind_of(item) in MONITOR_KINDS]
        ok, checked = checked_lines(transfers, endpoint["secret"])
        notified_ok, noted = notification_lines(notified, endpoint["secret"])
        client.delete(f"/v1/webhook-endpoints/{endpoint['id']}")  # tidy: 16 per tenant at most
        client.delete(f"/v1/monitors/{monitor_id}", headers={"Idempotency-Key": monitor_id})
    summary = f"  {len(transfers)} of {TRANSFERS} deliveries received, signatures checked:"
    notes = (
        f"  {len(notified)} of {NOTIFICATIONS} monitor notifications received, signatures checked:"
    )
    ok = ok and notified_ok and len(transfers) == TRANSFERS and len(notified) == NOTIFICATIONS
    return ok, [*lines, summary, *checked, notes, *noted]


def kind_of(item: Received) -> str:
    return item.headers.get(EVENT_TYPE_HEADER.lower(), "")


def create_monitor(client: httpx.Client, account_id: str) -> tuple[str | None, str]:
    """A low-balance monitor on ``account_id``'s posted balance, ``MONITOR_MARGIN_MINOR`` beyond
    it now (in the direction the demo's credits move it): the monitor id, or None, and a line."""
    response = client.get(f"/v1/accounts/{account_id}/balance")
    if response.status_code != 200:
        return None, f"  GET the balance failed: {response.status_code} {response.text}"
    balance: dict[str, Any] = response.json()
    posted = balance["credits_posted"] - balance["debits_posted"]
    credit_normal = balance["normal_side"] == "credit"
    if not credit_normal:
        posted = -posted  # credits lower a debit-normal account's posted balance
    operator, threshold = ("<", posted + MONITOR_MARGIN_MINOR)
    if not credit_normal:
        operator, threshold = (">", posted - MONITOR_MARGIN_MINOR)
    monitor_id = f"low-balance-{uuid.uuid4().hex[:8]}"
    body = {
        "monitor_id": monitor_id,
        "account_id": account_id,
        "field": "posted",
        "operator": operator,
        "threshold": threshold,
    }
    response = client.post("/v1/monitors", json=body, headers={"Idempotency-Key": monitor_id})
    if response.status_code != 201:
        return None, f"  POST /v1/monitors failed: {response.status_code} {response.text}"
    return monitor_id, (
        f"  POST /v1/monitors  ->  201  {monitor_id}: {account_id} posted {operator} {threshold}"
        f" (posted is {posted} now: it holds, so it triggers at once; the transfers clear it)"
    )


def post_transfers(client: httpx.Client, *, currency: str, debit: str, credit: str) -> str | None:
    """Post the demo's transfers; None, or what went wrong (one line)."""
    for index in range(TRANSFERS):
        transfer_id = f"webhook-demo-{uuid.uuid4().hex[:8]}"
        body = {
            "transfer_id": transfer_id,
            "debit_account_id": debit,
            "credit_account_id": credit,
            "amount": 100 * (index + 1),
            "currency": currency,
        }
        response = client.post("/v1/transfers", json=body, headers={"Idempotency-Key": transfer_id})
        if response.status_code != 201:
            return f"  POST /v1/transfers failed: {response.status_code} {response.text}"
    return None


def wait_for_deliveries(receiver: DemoReceiver) -> list[Received]:
    deadline = time.monotonic() + DELIVERY_TIMEOUT_S
    expected = TRANSFERS + NOTIFICATIONS
    while len(receiver.distinct()) < expected and time.monotonic() < deadline:
        time.sleep(POLL_S)
    return receiver.distinct()


def checked_lines(received: list[Received], secret: str) -> tuple[bool, list[str]]:
    """One line per delivery: id, type, sequence, transfer, and its signature's check."""

    def describe(item: Received, document: dict[str, Any], data: dict[str, Any]) -> str:
        return (
            f"{item.headers.get(EVENT_TYPE_HEADER.lower())}  sequence {document['sequence']}"
            f"  transfer {data.get('transfer_id')}  amount {data.get('amount')}"
        )

    return signed_lines(received, secret, describe)


def notification_lines(received: list[Received], secret: str) -> tuple[bool, list[str]]:
    """One line per monitor notification: id, kind, causing sequence, value, signature."""

    def describe(item: Received, document: dict[str, Any], data: dict[str, Any]) -> str:
        return (
            f"{kind_of(item)}  sequence {document['sequence']}  {data.get('account_id')}"
            f" {data.get('field')} {data.get('value')} {data.get('operator')}"
            f" {data.get('threshold')}"
        )

    return signed_lines(received, secret, describe)


def signed_lines(
    received: list[Received],
    secret: str,
    describe: Callable[[Received, dict[str, Any], dict[str, Any]], str],
) -> tuple[bool, list[str]]:
    """One line per delivery (its id, ``describe``'s text, its signature's check) and whether
    every signature verified."""
    lines = []
    ok = True
    for item in received:
        problem = signature_problem(
            secret, item.headers.get(SIGNATURE_HEADER.lower(), ""), item.body,
            now_s=int(time.time()),
        )  # fmt: skip
        ok = ok and problem is None
        document = json.loads(item.body)
        text = describe(item, document, document.get("data", {}))
        lines.append(
            f"    {item.headers.get(DELIVERY_ID_HEADER.lower())}  {text}"
            f"  signature: {'ok' if problem is None else 'BAD: ' + problem}"
        )
    return ok, lines
