"""The one HTTP endpoint every StreamLedger service serves: ``/metrics``, ``/healthz``, ``/readyz``.

- ``/metrics``: the service's own registry in the Prometheus text format;
- ``/healthz``: 200 while the process serves requests (liveness; a wedged loop is caught by the
  ``_ready`` gauge and the lag alerts, not by killing the process);
- ``/readyz``: 200 when the service says it is ready (processor: partitions assigned and
  restored; projection: partitions assigned and seeked to the offsets stored in PostgreSQL;
  verifier: a first run finished), else 503.

On ``host:port``: the services pass ``Settings.metrics_host`` (``STREAMLEDGER_METRICS_HOST``,
``--metrics-host``), loopback by default and ``0.0.0.0`` in a container so Prometheus in another
container can scrape it. In a daemon thread, one registry per service object so two services in
one Python process (tests, benchmarks) never share a metric. See ``docs/metrics.md``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

LISTEN_HOST = "127.0.0.1"  # the default of Settings.metrics_host
HTTP_THREAD_JOIN_S = 5.0

ReadinessCheck = Callable[[], bool]


class MetricsEndpoint:
    """``/metrics``, ``/healthz``, ``/readyz`` on ``host:port`` (port 0 = any free port)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        is_ready: ReadinessCheck,
        port: int,
        *,
        host: str = LISTEN_HOST,
    ) -> None:
        handler = _handler_for(registry, is_ready)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=HTTP_THREAD_JOIN_S)


def _handler_for(
    registry: CollectorRegistry, is_ready: ReadinessCheck
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._reply(200, b"ok\n", "text/plain")
            elif path == "/readyz":
                ready = is_ready()
                body = b"ready\n" if ready else b"not ready\n"
                self._reply(200 if ready else 503, body, "text/plain")
            else:
                self._reply(404, b"not found\n", "text/plain")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # scrapes are not worth a log line each

    return Handler
