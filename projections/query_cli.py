"""The projection's subcommands: ``project``, ``verify``, ``balance``, ``history``, ``transfer``.

``register(subparsers)`` adds them to the ``streamledger`` command line; ``main`` runs them on
their own (``python -m projections.query_cli``) with the same settings flags.
"""

from __future__ import annotations

import argparse
import errno
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from types import FrameType

from confluent_kafka import KafkaException

from kafka_adapter.admin import broker_count, kafka_error_text
from projections.metrics import ProjectionMetrics, VerifyMetrics
from projections.migrations import apply_migrations
from projections.queries import (
    HISTORY_LIMIT_MAX,
    Balance,
    LedgerReader,
    parse_cursor,
    parse_moment,
    reader_dsn,
)
from projections.rebuild import rebuild
from projections.settings import ProjectionSettings, build_projection_settings
from projections.sink import ProjectionSink, tune_interpreter
from projections.store import LIVE_SCHEMA
from projections.verify import verify
from streamledger.cli_parser import (
    Subparsers,
    add_declared_arguments,
    build_parser,
    given_settings,
    run_parsed,
    whole_number,
)
from streamledger.errors import InfraError, PortInUseError, SettingError, StreamLedgerError
from streamledger.metrics_endpoint import MetricsEndpoint
from streamledger.settings import Settings, parse_int_in_range

EXIT_OK = 0
EXIT_DIFFERENCES = 1
EXIT_NOT_FOUND = 3
VERIFY_EVERY_S_MAX = 86_400
PROJECT_PREFIX = "project_"  # the flags' namespace entries: project_<setting name>
PROJECT_LEFT_OUT = ("projection_name",)  # one projection today: not a flag
# verify first asks the broker for its metadata, so an unreachable Kafka is named within this
# instead of after the log reader's longer waits.
KAFKA_REACHABLE_TIMEOUT_S = 5.0


def register(subparsers: Subparsers) -> None:
    project = subparsers.add_parser("project", help="project ledger.events into PostgreSQL")
    project.add_argument("--rebuild", action="store_true", help="replay into a fresh schema, swap")
    project.add_argument(
        "--release-tenant",
        action="append",
        default=[],
        metavar="TENANT",
        help="with --rebuild: release a quarantined tenant (docs/runbook.md"
        "#streamledgertenantquarantined); repeatable",
    )
    add_declared_arguments(
        project, ProjectionSettings, dest_prefix=PROJECT_PREFIX, leave_out=PROJECT_LEFT_OUT
    )
    project.add_argument("--no-metrics", action="store_true", help="do not serve /metrics")
    add_metrics_port_argument(project)
    project.set_defaults(handler=run_project)

    check = subparsers.add_parser("verify", help="reconcile ledger.events with PostgreSQL")
    check.add_argument(
        "--every-s",
        type=whole_number,
        default=0,
        help="run again every this many seconds until SIGTERM (default 0: run once and exit)",
    )
    add_metrics_port_argument(check, default_text="off")
    check.set_defaults(handler=run_verify)

    balance = subparsers.add_parser("balance", help="an account's balance (now or as of a time)")
    add_read_arguments(balance, "account")
    balance.add_argument("--as-of", default=None, help="ISO 8601 time or microseconds")
    balance.set_defaults(handler=run_balance)

    history = subparsers.add_parser("history", help="an account's journal, newest first")
    add_read_arguments(history, "account")
    history.add_argument("--after", default=None, help="the cursor printed by the last page")
    history.add_argument("--limit", default="50", help=f"1..{HISTORY_LIMIT_MAX} (default 50)")
    history.set_defaults(handler=run_history)

    transfer = subparsers.add_parser("transfer", help="a transfer by id")
    add_read_arguments(transfer, "transfer_id")
    transfer.set_defaults(handler=run_transfer)


def add_metrics_port_argument(
    parser: argparse.ArgumentParser, default_text: str = "the metrics_port setting"
) -> None:
    parser.add_argument(
        "--metrics-port",
        type=whole_number,
        default=None,
        dest="service_metrics_port",
        help=f"port of /metrics, /healthz, /readyz on metrics_host (default: {default_text})",
    )


def serve_metrics(
    settings: Settings, port: int, metrics: ProjectionMetrics | VerifyMetrics
) -> MetricsEndpoint:
    """The endpoint on ``settings.metrics_host``:``port``, started; ``PortInUseError`` naming the
    port and how to choose another when something (e.g. ``streamledger run``) holds it."""
    if not 0 <= port <= 65535:
        raise SettingError(f"--metrics-port: {port} is outside 0..65535")
    try:
        endpoint = MetricsEndpoint(
            metrics.registry, lambda: metrics.ready, port, host=settings.metrics_host
        )
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise InfraError(
                f"cannot serve metrics on {settings.metrics_host}:{port}: {exc.strerror}"
            ) from exc
        raise PortInUseError(
            f"metrics port {settings.metrics_host}:{port} is in use (is `streamledger run`"
            " running?); choose another with --metrics-port, or --no-metrics"
            " [setting metrics_port: STREAMLEDGER_METRICS_PORT / --metrics-port]"
        ) from exc
    endpoint.start()
    return endpoint


def add_read_arguments(parser: argparse.ArgumentParser, second: str) -> None:
    parser.add_argument("tenant", help="the tenant id")
    parser.add_argument(second, help=f"the {second.replace('_', ' ')}")
    parser.add_argument("--reader-url", default=None, help="the read role's postgresql:// URL")


def parse_time(text: str) -> datetime:
    """ISO 8601 (UTC when no offset is given) or microseconds since the epoch (ASCII digits)."""
    return parse_moment(text, "--as-of")


def parse_limit(text: str) -> int:
    try:
        return parse_int_in_range(text, 1, HISTORY_LIMIT_MAX)
    except ValueError as exc:
        raise SettingError(f"--limit: {exc}") from None


def stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop


def run_project(arguments: argparse.Namespace, settings: Settings) -> int:
    given = given_settings(
        arguments, ProjectionSettings, dest_prefix=PROJECT_PREFIX, leave_out=PROJECT_LEFT_OUT
    )
    consumer_group = given.pop("consumer_group")
    projection = build_projection_settings(
        settings,
        consumer_group=None if consumer_group is None else str(consumer_group),
        limits=given,
    )
    metrics = ProjectionMetrics()
    if not arguments.no_metrics:
        port = arguments.service_metrics_port
        serve_metrics(settings, settings.metrics_port if port is None else port, metrics)
    if arguments.release_tenant and not arguments.rebuild:
        raise SettingError("--release-tenant takes effect in a rebuild: add --rebuild")
    stop = stop_on_signals()
    tune_interpreter()  # a sink's batches, live or rebuilding
    if arguments.rebuild:
        report = rebuild(
            settings,
            projection,
            metrics=metrics,
            stop=stop,
            release_tenants=arguments.release_tenant,
        )
        print(f"rebuilt {report.events} events into {report.generation} in {report.seconds:.1f} s;")
        print(f"swapped in as {LIVE_SCHEMA}")
        for line in report.quarantined:
            print(line)
        return EXIT_OK
    apply_migrations(settings, schema=LIVE_SCHEMA)
    sink = ProjectionSink(settings, projection, metrics=metrics)
    try:
        sink.run(stop)
    finally:
        sink.close()
    return EXIT_OK


def run_verify(arguments: argparse.Namespace, settings: Settings) -> int:
    """Verify once (exit 1 on differences), or every ``--every-s`` seconds until SIGTERM.

    With ``--metrics-port`` the results are served as ``streamledger_verify_*`` metrics for as
    long as the command runs, so a periodic verifier is scraped like any other service."""
    if not 0 <= arguments.every_s <= VERIFY_EVERY_S_MAX:
        raise SettingError(f"--every-s: {arguments.every_s} is outside 0..{VERIFY_EVERY_S_MAX}")
    metrics = VerifyMetrics()
    endpoint = None
    if arguments.service_metrics_port is not None:
        endpoint = serve_metrics(settings, arguments.service_metrics_port, metrics)
    stop = stop_on_signals()
    try:
        ok = verify_once(settings, metrics, tolerate_errors=arguments.every_s > 0)
        while arguments.every_s and not stop.wait(arguments.every_s):
            ok = verify_once(settings, metrics, tolerate_errors=True)
    finally:
        if endpoint is not None:
            endpoint.stop()
    return EXIT_OK if ok else EXIT_DIFFERENCES


def verify_once(settings: Settings, metrics: VerifyMetrics, *, tolerate_errors: bool) -> bool:
    """One run, printed and recorded. A periodic verifier outlives an outage (recorded as
    ``result="error"``); a one-off run lets the error reach the command line."""
    group = f"{settings.topic_prefix}streamledger-verify"
    started = time.monotonic()
    try:
        broker_count(settings, timeout_s=KAFKA_REACHABLE_TIMEOUT_S)
        try:
            report = verify(settings, group=group)
        except KafkaException as exc:
            raise InfraError(f"verify: Kafka failed: {kafka_error_text(exc)}") from exc
    except StreamLedgerError as exc:
        metrics.record(
            result="error", differences=0, duration_s=time.monotonic() - started, now_s=time.time()
        )
        if not tolerate_errors:
            raise
        print(f"verify: error: {exc}", file=sys.stderr)
        return False
    differences = len(report.log_problems) + sum(len(a.problems) for a in report.audits.values())
    metrics.record(
        result="ok" if report.ok else "differences",
        differences=differences,
        duration_s=time.monotonic() - started,
        now_s=time.time(),
    )
    for line in report.lines():
        print(line)
    print("verify: ok" if report.ok else "verify: DIFFERENCES FOUND", flush=True)
    return report.ok


def open_reader(arguments: argparse.Namespace, settings: Settings) -> LedgerReader:
    projection = build_projection_settings(settings, pool_size_max=1)
    return LedgerReader(reader_dsn(settings, arguments.reader_url), projection)


def describe_balance(balance: Balance) -> str:
    return (
        f"{balance.tenant_id}/{balance.account_id} {balance.currency}"
        f" debits_posted={balance.debits_posted} credits_posted={balance.credits_posted}"
        f" debits_pending={balance.debits_pending} credits_pending={balance.credits_pending}"
        f" available={balance.available} ({balance.normal_side}-normal)"
        f" as of sequence {balance.last_sequence} at {balance.effective_at.isoformat()}"
    )


def run_balance(arguments: argparse.Namespace, settings: Settings) -> int:
    as_of = None if arguments.as_of is None else parse_time(arguments.as_of)
    with open_reader(arguments, settings) as reader:
        balance = reader.balance(arguments.tenant, arguments.account, as_of=as_of)
    if balance is None:
        print(f"no account {arguments.account!r} for tenant {arguments.tenant!r}", file=sys.stderr)
        return EXIT_NOT_FOUND
    print(describe_balance(balance))
    return EXIT_OK


def run_history(arguments: argparse.Namespace, settings: Settings) -> int:
    limit = parse_limit(arguments.limit)
    if arguments.after is not None:
        parse_cursor(arguments.after, "--after")  # named here, before connecting
    with open_reader(arguments, settings) as reader:
        page = reader.history(
            arguments.tenant, arguments.account, after=arguments.after, limit=limit
        )
    for entry in page.entries:
        print(
            f"{entry.sequence:>10} {entry.effective_at.isoformat()} {entry.event_type:<15}"
            f" {entry.kind:<8} {entry.side:<6} {entry.amount:>20} {entry.currency}"
            f" transfer={entry.transfer_id} actor={entry.actor or '-'}"
        )
    print(f"next cursor: {page.next_cursor}" if page.next_cursor else "end of history")
    return EXIT_OK


def run_transfer(arguments: argparse.Namespace, settings: Settings) -> int:
    with open_reader(arguments, settings) as reader:
        view = reader.transfer(arguments.tenant, arguments.transfer_id)
    if view is None:
        print(
            f"no transfer {arguments.transfer_id!r} for tenant {arguments.tenant!r}",
            file=sys.stderr,
        )
        return EXIT_NOT_FOUND
    print(
        f"{view.tenant_id}/{view.transfer_id} {view.status} {view.amount} {view.currency}"
        f" debit={view.debit_account_id} credit={view.credit_account_id}"
        f" posted={view.amount_posted} reversed={view.amount_reversed}"
        f" reverses={view.reverses} pending={view.pending}"
        f" created_by={view.created_by or '-'} updated_by={view.updated_by or '-'}"
    )
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the projection's commands alone (``python -m projections.query_cli``), with the
    shared settings flags, exactly as ``streamledger.cli.main`` runs them."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    parser, subparsers = build_parser()
    register(subparsers)
    return run_parsed(parser, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
