"""The dispatcher's HTTP/1.1 client (decision 0066) against a real ``http.server`` on 127.0.0.1:
a 2xx, a non-2xx, a redirect not followed, keep-alive reuse, a receiver that closed the idle
connection, a large answer body, a hanging receiver (timeout) and a refused connection."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from notifications.transport import RESPONSE_BODY_BYTES_MAX, Answer, EndpointConnection

BODY = b'{"id":"acme:1"}'


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    peers: list[int] = []

    def handle(self) -> None:
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            return  # the client closed a connection it stopped reading: what it should do

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        Handler.peers.append(self.client_address[1])
        if self.path == "/hang":
            time.sleep(1.0)
        status = {"/ok": 204, "/fail": 500, "/moved": 302, "/big": 200}.get(self.path, 204)
        payload = b"x" * (RESPONSE_BODY_BYTES_MAX * 2) if self.path == "/big" else b""
        self.send_response(status)
        if self.path == "/moved":
            self.send_header("Location", "http://127.0.0.1:1/elsewhere")
        if self.path == "/close":
            self.send_header("Connection", "close")
            self.close_connection = True
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def base_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Handler.peers = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


CLOSE_CALLBACKS_S = 0.05


def post_all(
    url: str, count: int = 1, *, timeout_s: float = 5.0, tls: ssl.SSLContext | None = None
) -> list[Answer]:
    async def scenario() -> list[Answer]:
        connection = EndpointConnection(
            url, connect_timeout_s=1.0, timeout_s=timeout_s, user_agent="test", tls=tls
        )
        answers = [await connection.post(BODY, [("X-Test", "1")]) for _ in range(count)]
        connection.close()
        # a closed transport lets its socket go in a callback of the loop: let the loop run it
        # before asyncio.run ends it (else the garbage collector closes the socket, warning)
        await asyncio.sleep(CLOSE_CALLBACKS_S)
        return answers

    return asyncio.run(scenario())


def test_a_2xx_is_delivered_and_the_connection_is_kept(base_url: str) -> None:
    answers = post_all(f"{base_url}/ok", 3)
    assert all(answer == Answer(204, "2xx", None) for answer in answers)
    assert len(set(Handler.peers)) == 1  # one connection for the three requests


def test_a_500_and_a_redirect_are_failures_and_the_redirect_is_not_followed(
    base_url: str,
) -> None:
    assert post_all(f"{base_url}/fail") == [Answer(500, "5xx", "HTTP 500")]
    assert post_all(f"{base_url}/moved") == [Answer(302, "3xx", "HTTP 302")]
    assert len(Handler.peers) == 2


def test_connection_close_and_a_large_body_open_a_new_connection_next_time(
    base_url: str,
) -> None:
    assert [a.status for a in post_all(f"{base_url}/close", 2)] == [204, 204]
    assert [a.status for a in post_all(f"{base_url}/big", 2)] == [200, 200]
    assert len(set(Handler.peers)) == 4


def test_a_hanging_receiver_times_out_and_a_closed_port_fails_to_connect(base_url: str) -> None:
    [answer] = post_all(f"{base_url}/hang", timeout_s=0.2)
    assert answer.result == "timeout" and not answer.delivered
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: refused
        [refused] = post_all(f"http://127.0.0.1:{port}/ok")
    assert refused.result == "connection" and refused.problem is not None


@pytest.fixture
def tls_url(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An https receiver with a self-signed certificate for 127.0.0.1 (made by openssl)."""
    certificate, key = tmp_path / "receiver.pem", tmp_path / "receiver.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(certificate)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}", certificate
    server.shutdown()
    server.server_close()


# asyncio (3.11) leaves the socket of a failed TLS handshake to the garbage collector, which
# closes it with a ResourceWarning: not ours to close, and closed all the same.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_https_is_verified_and_delivers_to_a_trusted_receiver(
    tls_url: tuple[str, Path],
) -> None:
    url, certificate = tls_url
    [untrusted] = post_all(f"{url}/ok")  # the system's CAs do not know this certificate
    assert untrusted.result == "connection" and "CERTIFICATE_VERIFY_FAILED" in str(
        untrusted.problem
    )
    trusting = ssl.create_default_context(cafile=str(certificate))
    assert post_all(f"{url}/ok", 2, tls=trusting) == [Answer(204, "2xx", None)] * 2
