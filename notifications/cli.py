"""``streamledger notify`` (the webhook dispatcher) and ``streamledger webhooks verify``."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from typing import TYPE_CHECKING, Final

import psycopg

from notifications.dispatcher import Dispatcher
from notifications.metrics import NotifyMetrics
from notifications.settings import NotifySettings, build_notify_settings
from notifications.signing import signature_problem
from notifications.store import CONNECT_TIMEOUT_S, SELECT_STORED_DELIVERY
from streamledger.cli_parser import add_declared_arguments, given_settings
from streamledger.errors import InfraError
from streamledger.metrics_endpoint import MetricsEndpoint
from streamledger.setting_fields import declarations
from streamledger.settings import Settings

if TYPE_CHECKING:
    from streamledger.cli_parser import Subparsers

LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DEST_PREFIX: Final = "notify_"
EXIT_OK: Final = 0
EXIT_BAD_SIGNATURE: Final = 1


def register(subparsers: Subparsers) -> None:
    notify = subparsers.add_parser(
        "notify",
        help="deliver ledger events to tenants' webhook endpoints (signed, in order, retried)",
        description=(
            "Read ledger.events and ledger.notifications (read_committed, its own consumer"
            " group) and POST each event (balance-monitor notification) to the endpoints of its"
            " tenant that subscribed to its type (kind), in sequence order, signed"
            " (StreamLedger-Signature); committed only after a 2xx."
        ),
    )
    add_declared_arguments(notify, NotifySettings, dest_prefix=DEST_PREFIX)
    notify.add_argument("--no-metrics", action="store_true", help="do not serve /metrics")
    notify.set_defaults(handler=run_notify)

    webhooks = subparsers.add_parser("webhooks", help="webhook deliveries (operator tools)")
    commands = webhooks.add_subparsers(dest="webhooks_command", metavar="COMMAND", required=True)
    verify = commands.add_parser(
        "verify",
        help="check the signature of one stored delivery against its endpoint's secret",
        description="Exit 0 when the stored signature signs the stored body, else 1.",
    )
    verify.add_argument("tenant", help="the tenant id")
    verify.add_argument("endpoint_id", help="the endpoint id (we_...)")
    verify.add_argument(
        "delivery",
        help="the event's tenant sequence, or a delivery id (a monitor notification's:"
        " TENANT:SEQUENCE:MONITOR_ID)",
    )
    verify.set_defaults(handler=run_verify)


def run_notify(arguments: argparse.Namespace, settings: Settings) -> int:
    given = given_settings(arguments, declarations(NotifySettings), dest_prefix=DEST_PREFIX)
    notify = build_notify_settings(settings, given)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    metrics = NotifyMetrics()
    server = None
    if not arguments.no_metrics:
        server = MetricsEndpoint(
            metrics.registry, lambda: metrics.ready, settings.metrics_port,
            host=settings.metrics_host,
        )  # fmt: skip
        server.start()
    logging.getLogger("streamledger.notify").info(
        "dispatcher starting (group %s)", notify.consumer_group
    )
    dispatcher = Dispatcher(settings, notify, metrics)
    # the start-up objects (modules, settings, clients) out of the cyclic collector's reach:
    # a full collection then walks only what deliveries made (as the API does, decision 0078)
    gc.collect()
    gc.freeze()
    try:
        asyncio.run(serve(dispatcher))
    finally:
        if server is not None:
            server.stop()
    return EXIT_OK


async def serve(dispatcher: Dispatcher) -> None:
    """Run until SIGTERM or SIGINT; then commit what was delivered and stop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    await dispatcher.run(stop)


def run_verify(arguments: argparse.Namespace, settings: Settings) -> int:
    delivery = str(arguments.delivery)
    # An event's delivery id is {tenant}:{sequence} (decision 0038), a notification's its id.
    delivery_id = f"{arguments.tenant}:{delivery}" if delivery.isdigit() else delivery
    key = (arguments.tenant, arguments.endpoint_id, delivery_id)
    try:
        with psycopg.connect(settings.database_dsn, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            row = conn.execute(SELECT_STORED_DELIVERY, key).fetchone()
    except psycopg.Error as exc:
        raise InfraError(f"reading the delivery failed: {' '.join(str(exc).split())}") from exc
    if row is None:
        raise InfraError(
            f"no stored delivery {delivery_id} to endpoint"
            f" {arguments.endpoint_id} of tenant {arguments.tenant}"
        )
    body, header, status, secret = bytes(row[0]), row[1], row[2], row[3]
    if header is None:
        print(f"delivery {delivery_id} ({status}) was never sent: nothing to verify")
        return EXIT_BAD_SIGNATURE
    problem = signature_problem(secret, header, body, now_s=0, tolerance_s=0)
    if problem is not None:
        print(f"signature FAILED: {problem}")
        return EXIT_BAD_SIGNATURE
    print(f"signature ok: {header.split(',')[0]} ({status}, {len(body)} bytes)")
    return EXIT_OK
