"""The supervisor's scrape never raises: a child killed mid-answer reads as no answer."""

from __future__ import annotations

import socket
import threading

from pipeline.metrics_scrape import scrape

WHOLE = b"streamledger_x_total 2.0\nstreamledger_x_total 3.0\n"


def serve_once(response: bytes) -> tuple[str, threading.Thread]:
    """A one-shot HTTP server on 127.0.0.1 that sends ``response`` and closes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def answer() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(response)
        listener.close()

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}/metrics", thread


def test_a_whole_answer_is_summed() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(WHOLE)
    url, thread = serve_once(head + WHOLE)
    assert scrape(url, timeout_s=5) == {"streamledger_x_total": 5.0}
    thread.join(5)


def test_a_body_cut_short_reads_as_no_answer() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 17187\r\n\r\n"
    url, thread = serve_once(head + WHOLE[:10])
    assert scrape(url, timeout_s=5) is None  # IncompleteRead, not a crash of the supervisor
    thread.join(5)


def test_garbage_reads_as_no_answer() -> None:
    body = b"not { prometheus"
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
    url, thread = serve_once(head + body)
    assert scrape(url, timeout_s=5) is None
    thread.join(5)
