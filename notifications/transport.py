"""One HTTP/1.1 connection to one endpoint, on asyncio streams and ``h11`` (decision 0066).

An endpoint's deliveries are strictly sequential on one connection, so the client needs no
pool, no HTTP/2, no redirects, no cookies and no response body: one request, its status, the
connection kept for the next one. ``httpx.AsyncClient`` cost ~2.7 ms of CPU per request on the
bench machine, a lean ``h11`` exchange ~0.25 ms (``bench/README.md``): the client was what
capped one endpoint's rate.

What a delivery needs from it, kept from decision 0038:

- ``connect_timeout_s`` for the connection, ``timeout_s`` for the whole attempt;
- redirects are never followed: a 3xx is an answer like any other non-2xx;
- a receiver's body cannot fill our memory: up to ``RESPONSE_BODY_BYTES_MAX`` is read and
  dropped to keep the connection; beyond, the connection is closed;
- any failure (timeout, refused, reset, malformed answer) closes the connection; the next
  attempt opens a new one. An idle connection the receiver closed is noticed before reuse.

Failures are values (``Answer``), not exceptions: a receiver that fails is the normal case here.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import h11

RESPONSE_BODY_BYTES_MAX: Final = 65_536
READ_CHUNK_BYTES: Final = 65_536
PROBLEM_TEXT_MAX: Final = 200
DEFAULT_PORTS: Final = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Answer:
    """One attempt's result: ``result`` is the attempts metric's label."""

    status: int | None  # None: no HTTP answer
    result: str  # "2xx" .. "5xx", "timeout", "connection"
    problem: str | None  # None on a 2xx, else one line

    @property
    def delivered(self) -> bool:
        return self.problem is None


def answer_for(status: int) -> Answer:
    result = f"{min(max(status // 100, 2), 5)}xx"
    return Answer(status, result, None if 200 <= status < 300 else f"HTTP {status}")


class EndpointConnection:
    """The connection of one endpoint's worker (not shared: one task uses it at a time)."""

    def __init__(
        self,
        url: str,
        *,
        connect_timeout_s: float,
        timeout_s: float,
        user_agent: str,
        tls: ssl.SSLContext | None = None,  # https: default, the system's trusted CAs
    ) -> None:
        parts = urlsplit(url)
        assert parts.scheme in DEFAULT_PORTS and parts.hostname, f"not an endpoint URL: {url}"
        self.host = parts.hostname
        self.port = parts.port or DEFAULT_PORTS[parts.scheme]
        self.tls = None
        if parts.scheme == "https":
            self.tls = tls if tls is not None else ssl.create_default_context()
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.host_header = parts.netloc.rsplit("@", 1)[-1]
        self.connect_timeout_s = connect_timeout_s
        self.timeout_s = timeout_s
        self.user_agent = user_agent
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.protocol = h11.Connection(h11.CLIENT)

    async def post(self, body: bytes, headers: Sequence[tuple[str, str]]) -> Answer:
        """One POST: its answer, or why there was none (the connection is then closed)."""
        try:
            async with asyncio.timeout(self.timeout_s):
                return answer_for(await self.exchange(body, headers))
        except TimeoutError:
            self.close()
            return Answer(None, "timeout", "no answer within the timeout")
        except (OSError, EOFError, h11.ProtocolError, ssl.SSLError) as exc:
            self.close()
            text = " ".join(str(exc).split())[:PROBLEM_TEXT_MAX]
            return Answer(None, "connection", f"connection failed: {type(exc).__name__}: {text}")

    async def exchange(self, body: bytes, headers: Sequence[tuple[str, str]]) -> int:
        reader, writer = await self.ready_connection()
        request = h11.Request(
            method="POST",
            target=self.target,
            headers=[
                ("Host", self.host_header),
                ("User-Agent", self.user_agent),
                ("Content-Length", str(len(body))),
                *headers,
            ],
        )
        protocol = self.protocol
        writer.write(
            protocol.send(request)
            + (protocol.send(h11.Data(data=body)) or b"")
            + (protocol.send(h11.EndOfMessage()) or b"")
        )
        await writer.drain()
        return await self.read_answer(reader)

    async def read_answer(self, reader: asyncio.StreamReader) -> int:
        """The response's status; its body is read and dropped (bounded)."""
        protocol = self.protocol
        status: int | None = None
        body_bytes = 0
        while True:
            event = protocol.next_event()
            if event is h11.NEED_DATA:
                protocol.receive_data(await reader.read(READ_CHUNK_BYTES))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body_bytes += len(event.data)
                if body_bytes > RESPONSE_BODY_BYTES_MAX and status is not None:
                    self.close()  # not worth reading: a new connection is cheaper
                    return status
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise EOFError("the receiver closed the connection without an answer")
        assert status is not None, "h11 ended a message that had no response"
        if protocol.our_state is h11.DONE and protocol.their_state is h11.DONE:
            protocol.start_next_cycle()  # keep-alive: the next request reuses it
        else:
            self.close()  # "Connection: close" or an unusual state: start afresh next time
        return status

    async def ready_connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = self.reader, self.writer
        if reader is not None and writer is not None:
            if not reader.at_eof() and not writer.is_closing():
                return reader, writer
            self.close()  # the receiver closed it while it was idle
        async with asyncio.timeout(self.connect_timeout_s):
            reader, writer = await asyncio.open_connection(
                self.host, self.port, ssl=self.tls,
                server_hostname=self.host if self.tls is not None else None,
            )  # fmt: skip
        self.reader, self.writer = reader, writer
        self.protocol = h11.Connection(h11.CLIENT)
        return reader, writer

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None
        self.protocol = h11.Connection(h11.CLIENT)
