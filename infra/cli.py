"""Subcommands: ``infra install | up | down | status | reset | smoke``, ``topics apply``.

(``streamledger demo``, the main job, lives in ``pipeline.cli``.)
"""

from __future__ import annotations

import argparse
import time

from infra import roundtrip, stack, topics
from infra.service import ServiceReport
from kafka_adapter.admin import ADMIN_REQUEST_TIMEOUT_S
from streamledger.cli_parser import EXIT_FAILURE, EXIT_OK, Subparsers
from streamledger.errors import SettingError
from streamledger.settings import Settings

TIMEOUT_S_MAX = 3600.0


def register(subparsers: Subparsers) -> None:
    infra = subparsers.add_parser("infra", help="the local Kafka + PostgreSQL stack")
    infra_commands = infra.add_subparsers(dest="infra_command", metavar="ACTION", required=True)
    for name, handler, help_text in (
        ("install", run_install, "install Kafka jars (Maven) and PostgreSQL server binaries"),
        ("up", run_up, "start Kafka and PostgreSQL, apply topics and migrations (idempotent)"),
        ("down", run_down, "stop Kafka and PostgreSQL"),
        ("status", run_status, "show each service and the topics"),
        ("reset", run_reset, "stop the stack and delete its local data"),
        ("promote", run_promote, "fence the PostgreSQL primary and promote the hot standby"),
    ):
        parser = infra_commands.add_parser(name, help=help_text)
        parser.set_defaults(handler=handler)
        if name == "up":
            parser.add_argument(
                "--postgres-standby",
                action="store_true",
                help="also start a PostgreSQL hot standby (streaming replication) on"
                " postgres_standby_port (decision 0037)",
            )

    topics_parser = subparsers.add_parser("topics", help="the ledger topics, as code")
    topics_commands = topics_parser.add_subparsers(
        dest="topics_command", metavar="ACTION", required=True
    )
    apply_parser = topics_commands.add_parser(
        "apply", help="create missing topics, correct config drift, refuse partition changes"
    )
    apply_parser.add_argument(
        "--check", action="store_true", help="only report what apply would do; exit 1 on drift"
    )
    apply_parser.add_argument(
        "--timeout-s",
        default=str(ADMIN_REQUEST_TIMEOUT_S),
        metavar="SECONDS",
        help=f"how long to wait for the cluster, in s (default {ADMIN_REQUEST_TIMEOUT_S:g})",
    )
    apply_parser.set_defaults(handler=run_topics_apply)

    smoke = infra_commands.add_parser(
        "smoke", help="start the stack and prove a transactional produce/consume round trip"
    )
    smoke.set_defaults(handler=run_smoke)


def prepare_home(settings: Settings) -> None:
    """Create the stack's home, or fail in one line naming the setting (``/proc/...``, a read-only
    or full file system) before any service is touched."""
    try:
        settings.home.mkdir(parents=True, exist_ok=True)
        probe = settings.home / ".write-check"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise SettingError(
            f"setting home: cannot use {settings.home}: {exc.strerror or exc}"
            " [set STREAMLEDGER_HOME or --home]"
        ) from None


def print_services(reports: list[ServiceReport]) -> None:
    for report in reports:
        print(report.line())


def run_install(arguments: argparse.Namespace, settings: Settings) -> int:
    prepare_home(settings)
    for line in stack.install(settings):
        print(line)
    return EXIT_OK


def run_up(arguments: argparse.Namespace, settings: Settings) -> int:
    prepare_home(settings)
    started = time.monotonic()
    print_services(stack.up(settings, with_standby=arguments.postgres_standby))
    print(f"stack up in {time.monotonic() - started:.1f} s (home {settings.home})")
    return EXIT_OK


def run_down(arguments: argparse.Namespace, settings: Settings) -> int:
    prepare_home(settings)
    for line in stack.down(settings):
        print(line)
    return EXIT_OK


def run_status(arguments: argparse.Namespace, settings: Settings) -> int:
    for line in stack.status(settings).lines():
        print(line)
    return EXIT_OK


def run_promote(arguments: argparse.Namespace, settings: Settings) -> int:
    prepare_home(settings)
    for line in stack.promote(settings):
        print(line)
    return EXIT_OK


def run_reset(arguments: argparse.Namespace, settings: Settings) -> int:
    prepare_home(settings)
    for line in stack.reset(settings):
        print(line)
    return EXIT_OK


def parse_timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= TIMEOUT_S_MAX:
        raise SettingError(
            f"--timeout-s: {text!r} is not a number of seconds in (0, {TIMEOUT_S_MAX:g}]"
        )
    return value


def run_topics_apply(arguments: argparse.Namespace, settings: Settings) -> int:
    timeout_s = parse_timeout(arguments.timeout_s)
    if arguments.check:
        report = topics.check(settings, timeout_s=timeout_s)
    else:
        report = topics.apply(settings, timeout_s=timeout_s)
    for line in report.lines():
        print(line)
    return EXIT_FAILURE if arguments.check and not report.in_sync else EXIT_OK


def run_smoke(arguments: argparse.Namespace, settings: Settings) -> int:
    prepare_home(settings)
    print_services(stack.up(settings))
    for line in roundtrip.prove_round_trip(settings).lines():
        print(line)
    return EXIT_OK
