"""The notify suite's webhook receiver, in a process of its own (``bench.notify_suite``).

    python -m bench.webhook_receiver --port-first 21700 --port-last 21799 --secret whsec_...

A minimal asyncio HTTP/1.1 server on 127.0.0.1 (the first free port of the range; its URL is
the first line on stdout): every ``POST`` is answered ``204`` at once on its keep-alive
connection, and its delivery id's first arrival instant (``time.time()``, the wall clock every
process on the machine shares) is noted; every ``SIGNATURE_SAMPLE_EVERY``-th signature is
checked. ``GET /_bench/arrivals?from=N`` answers the arrivals from the N-th on, in arrival
order, with the counters (JSON), so the suite mirrors them without sharing a GIL with the
receiver: in the suite's own process (``http.server``, one thread per connection) the receiver
had been the ceiling of one endpoint's in-order delivery (1.2k to 1.4k requests/s) and shared the
interpreter with the open-loop producer it was timing. It runs until stdin closes or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qs, urlsplit

from notifications.signing import DELIVERY_ID_HEADER, SIGNATURE_HEADER, signature_problem

HEADER_END: Final = b"\r\n\r\n"
HEADER_BYTES_MAX: Final = 64 * 1024
BODY_BYTES_MAX: Final = 16 * 1024 * 1024
SIGNATURE_SAMPLE_EVERY: Final = 100  # HMAC costs CPU: the suite checks every 100th
ARRIVALS_PATH: Final = "/_bench/arrivals"
NO_CONTENT: Final = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"
DELIVERY_ID_NAME: Final = DELIVERY_ID_HEADER.lower().encode()
SIGNATURE_NAME: Final = SIGNATURE_HEADER.lower().encode()


@dataclass
class Arrivals:
    """The first arrival instant per delivery id, in arrival order, and the counters."""

    secret: str
    order: list[tuple[str, float]] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    requests: int = 0
    bad_signatures: int = 0

    def note(self, delivery_id: str, header: str, body: bytes) -> None:
        at = time.time()
        self.requests += 1
        if delivery_id not in self.seen:
            self.seen.add(delivery_id)
            self.order.append((delivery_id, at))
        sampled = self.requests % SIGNATURE_SAMPLE_EVERY == 0
        if sampled and signature_problem(self.secret, header, body, now_s=int(at)) is not None:
            self.bad_signatures += 1

    def since(self, start: int) -> bytes:
        return json.dumps(
            {
                "arrivals": self.order[start:],
                "requests": self.requests,
                "bad_signatures": self.bad_signatures,
            }
        ).encode()


class ReceiverProtocol(asyncio.Protocol):
    """One connection: requests parsed from the buffer as they complete, answered in order."""

    def __init__(self, arrivals: Arrivals) -> None:
        self.arrivals = arrivals
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (answer := self._next_request()) is not None:
            assert self.transport is not None
            self.transport.write(answer)
        if len(self.buffer) > HEADER_BYTES_MAX + BODY_BYTES_MAX and self.transport is not None:
            self.transport.close()

    def _next_request(self) -> bytes | None:
        """The answer to the first complete request in the buffer (removed), or None."""
        end = self.buffer.find(HEADER_END)
        if end < 0:
            return None
        lines = bytes(self.buffer[:end]).split(b"\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get(b"content-length", b"0"))
        if len(self.buffer) < end + len(HEADER_END) + length:
            return None
        body = bytes(self.buffer[end + len(HEADER_END) : end + len(HEADER_END) + length])
        del self.buffer[: end + len(HEADER_END) + length]
        method, target = lines[0].split(b" ")[:2]
        if method == b"GET":
            return self._control(target.decode())
        self.arrivals.note(
            headers.get(DELIVERY_ID_NAME, b"").decode(),
            headers.get(SIGNATURE_NAME, b"").decode(),
            body,
        )
        return NO_CONTENT

    def _control(self, target: str) -> bytes:
        parts = urlsplit(target)
        if parts.path != ARRIVALS_PATH:
            return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
        start = int(parse_qs(parts.query).get("from", ["0"])[0])
        body = self.arrivals.since(start)
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
        return head.encode() + HEADER_END + body


async def serve(port_first: int, port_last: int, secret: str) -> None:
    loop = asyncio.get_running_loop()
    arrivals = Arrivals(secret)
    for port in range(port_first, port_last + 1):
        try:
            server = await loop.create_server(
                lambda: ReceiverProtocol(arrivals), "127.0.0.1", port, reuse_address=True
            )
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                continue
            raise
        break
    else:
        raise SystemExit(f"no free port in {port_first}..{port_last}")
    stopped = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    loop.add_reader(sys.stdin.fileno(), lambda: stopped.set() if not sys.stdin.read(1) else None)
    print(f"http://127.0.0.1:{port}/hooks", flush=True)
    async with server:
        await stopped.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.webhook_receiver")
    parser.add_argument("--port-first", type=int, required=True)
    parser.add_argument("--port-last", type=int, required=True)
    parser.add_argument("--secret", required=True)
    arguments = parser.parse_args(argv)
    asyncio.run(serve(arguments.port_first, arguments.port_last, arguments.secret))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
