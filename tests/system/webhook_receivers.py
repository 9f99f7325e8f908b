"""Real HTTP receivers on 127.0.0.1 for the notification tests: a small ``http.server`` in a
thread per receiver, in the notification tests' port range (37000-37999).

Each receiver listens on its own path (``/hooks/<random>``): a port freed by an earlier test is
soon taken again, and an endpoint that test left subscribed may still get a delivery (at least
once: one in flight when its dispatcher stopped is sent again by the next). A request to any
other path is answered 404 and not recorded, so a receiver sees only its own endpoint's
deliveries.

A receiver records every request to its path (headers, raw body, when) and answers by its
``mode``:
``ok`` (204), ``fail`` (500), ``hang`` (sleeps ``hang_s`` before answering) or ``close``
(drops the connection without an answer). The mode can change while it runs.
"""

from __future__ import annotations

import errno
import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PORT_FIRST = 37_000
PORT_LAST = 37_999
BODY_BYTES_MAX = 1_000_000


@dataclass(frozen=True, slots=True)
class Received:
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic()

    @property
    def document(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.body)
        return loaded

    @property
    def delivery_id(self) -> str:
        return self.headers["streamledger-delivery-id"]


@dataclass
class Receiver:
    mode: str = "ok"
    hang_s: float = 30.0
    delay_s: float = 0.0  # an "ok" receiver that takes its time
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None
    path: str = field(default_factory=lambda: f"/hooks/{uuid.uuid4().hex}")

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}{self.path}"

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def answered(self) -> list[Received]:
        """What was received while the mode was ``ok`` (what the dispatcher saw a 2xx for, or
        a 2xx lost to a crash)."""
        return [item for item in self.snapshot() if item.headers.get("x-answered") == "ok"]

    def wait_for(self, count: int, timeout_s: float, *, distinct: bool = True) -> list[Received]:
        deadline = time.monotonic() + timeout_s
        while True:
            items = self.snapshot()
            seen = {item.delivery_id for item in items} if distinct else items
            if len(seen) >= count:
                return items
            assert time.monotonic() < deadline, f"{len(seen)} of {count} deliveries arrived"
            time.sleep(0.05)


def handler_for(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(min(length, BODY_BYTES_MAX))
            if self.path != receiver.path:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            mode = receiver.mode
            headers = {name.lower(): value for name, value in self.headers.items()}
            headers["x-answered"] = mode
            with receiver.lock:
                receiver.received.append(Received(headers, body, time.monotonic()))
            if mode == "close":
                self.close_connection = True
                self.connection.close()
                return
            if mode == "hang":
                time.sleep(receiver.hang_s)
            elif receiver.delay_s:
                time.sleep(receiver.delay_s)
            status = 204 if mode in ("ok", "hang") else 500
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


def start_receiver(
    mode: str = "ok", *, port_first: int = PORT_FIRST, port_last: int = PORT_LAST
) -> Receiver:
    """A receiver on the first free port of ``port_first``..``port_last``."""
    receiver = Receiver(mode=mode)
    for port in range(port_first, port_last + 1):
        try:
            server = ThreadingHTTPServer(("127.0.0.1", port), handler_for(receiver))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                continue
            raise
        server.daemon_threads = True
        receiver.server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return receiver
    raise AssertionError(f"no free port in {port_first}..{port_last}")


def free_port_in_range() -> int:
    """A port of 37000-37999 free now (for a dispatcher's /metrics)."""
    for port in range(PORT_LAST, PORT_FIRST - 1, -1):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port in {PORT_FIRST}..{PORT_LAST}")


def stop_receiver(receiver: Receiver) -> None:
    if receiver.server is not None:
        receiver.server.shutdown()
        receiver.server.server_close()
