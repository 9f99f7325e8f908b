"""The report subcommands: ``trial-balance`` and ``statement`` (issue 19).

``streamledger trial-balance TENANT [--as-of T] [--format json|csv]`` and
``streamledger statement TENANT ACCOUNT --from T --to T [--format json|csv|pdf] [--output F]``
and ``streamledger balance-history TENANT ACCOUNT --from T --to T --interval 1h|1d
[--format json|csv]`` (decision 0057) read as the operator's reader role (like ``balance``) and
print the report to stdout, or write it to ``--output``. A PDF is never written to a terminal. Bad
input is one line naming the flag; a trial balance that does not net to zero is one line and exit
status 1, never a table.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from projections.balance_history import (
    INTERVALS,
    balance_history_csv,
    balance_history_document,
    balance_history_steps,
)
from projections.queries import LedgerReader, QueryError, parse_moment, reader_dsn
from projections.report_formats import (
    FORMAT_CSV,
    FORMAT_JSON,
    FORMAT_PDF,
    statement_csv,
    statement_document,
    trial_balance_csv,
    trial_balance_document,
)
from projections.reports import run_report, statement_steps, trial_balance_steps
from projections.settings import build_projection_settings
from projections.statement_pdf import render_statement_pdf
from streamledger.cli_parser import Subparsers
from streamledger.errors import SettingError
from streamledger.settings import Settings

EXIT_OK = 0
EXIT_NOT_FOUND = 3


def register(subparsers: Subparsers) -> None:
    trial = subparsers.add_parser(
        "trial-balance", help="every account's balance and per-currency totals as of a time"
    )
    trial.add_argument("tenant")
    trial.add_argument("--as-of", default=None, help="ISO 8601 time or microseconds (default now)")
    trial.add_argument(
        "--format",
        choices=(FORMAT_JSON, FORMAT_CSV),
        default=FORMAT_JSON,
        help=f"output format (default {FORMAT_JSON})",
    )
    add_common_arguments(trial)
    trial.set_defaults(handler=run_trial_balance)

    statement = subparsers.add_parser(
        "statement", help="an account's statement for [--from, --to): balances and entries"
    )
    statement.add_argument("tenant")
    statement.add_argument("account")
    statement.add_argument("--from", dest="period_from", required=True, help="ISO 8601 or us")
    statement.add_argument("--to", dest="period_to", required=True, help="ISO 8601 or us")
    statement.add_argument(
        "--format",
        choices=(FORMAT_JSON, FORMAT_CSV, FORMAT_PDF),
        default=FORMAT_JSON,
        help=f"output format (default {FORMAT_JSON})",
    )
    add_common_arguments(statement)
    statement.set_defaults(handler=run_statement)

    history = subparsers.add_parser(
        "balance-history", help="an account's closing balance per hour or UTC day of [--from, --to)"
    )
    history.add_argument("tenant")
    history.add_argument("account")
    history.add_argument("--from", dest="period_from", required=True, help="a whole hour/day")
    history.add_argument("--to", dest="period_to", required=True, help="a whole hour/day")
    history.add_argument(
        "--interval",
        choices=tuple(INTERVALS),
        required=True,
        help="bucket length: 1h (whole hours) or 1d (whole UTC days)",
    )
    history.add_argument(
        "--format",
        choices=(FORMAT_JSON, FORMAT_CSV),
        default=FORMAT_JSON,
        help=f"output format (default {FORMAT_JSON})",
    )
    add_common_arguments(history)
    history.set_defaults(handler=run_balance_history)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", default=None, help="write here instead of stdout")
    parser.add_argument("--reader-url", default=None, help="the read role's postgresql:// URL")


def open_reader(arguments: argparse.Namespace, settings: Settings) -> LedgerReader:
    projection = build_projection_settings(settings, pool_size_max=1)
    return LedgerReader(reader_dsn(settings, arguments.reader_url), projection)


def emit(arguments: argparse.Namespace, content: bytes) -> None:
    """Write the report to ``--output`` or stdout (a PDF only where it is not a terminal)."""
    if arguments.output is not None:
        Path(arguments.output).write_bytes(content)
        return
    if arguments.format == FORMAT_PDF and sys.stdout.isatty():
        raise SettingError("--format pdf: name a file with --output or redirect stdout")
    sys.stdout.flush()
    sys.stdout.buffer.write(content)
    sys.stdout.buffer.flush()


def run_trial_balance(arguments: argparse.Namespace, settings: Settings) -> int:
    as_of = (
        datetime.now(UTC) if arguments.as_of is None else parse_moment(arguments.as_of, "--as-of")
    )
    with open_reader(arguments, settings) as reader:
        steps = trial_balance_steps(arguments.tenant, as_of)
        report = run_report(
            steps, lambda sql, parameters: reader.fetch(arguments.tenant, sql, parameters)
        )
    if arguments.format == FORMAT_CSV:
        emit(arguments, trial_balance_csv(report).encode())
    else:
        emit(arguments, msgspec.json.encode(trial_balance_document(report)) + b"\n")
    return EXIT_OK


def run_statement(arguments: argparse.Namespace, settings: Settings) -> int:
    period_from = parse_moment(arguments.period_from, "--from")
    period_to = parse_moment(arguments.period_to, "--to")
    if period_from >= period_to:
        raise SettingError(f"--from: {arguments.period_from!r} is not before --to")
    tenant, account = arguments.tenant, arguments.account
    with open_reader(arguments, settings) as reader:
        steps = statement_steps(tenant, account, period_from, period_to)
        statement = run_report(steps, lambda sql, parameters: reader.fetch(tenant, sql, parameters))
    if statement is None:
        print(f"no account {account!r} for tenant {tenant!r} before --to", file=sys.stderr)
        return EXIT_NOT_FOUND
    if arguments.format == FORMAT_PDF:
        emit(arguments, render_statement_pdf(statement))
    elif arguments.format == FORMAT_CSV:
        emit(arguments, statement_csv(statement).encode())
    else:
        emit(arguments, msgspec.json.encode(statement_document(statement)) + b"\n")
    return EXIT_OK


def run_balance_history(arguments: argparse.Namespace, settings: Settings) -> int:
    period = (
        parse_moment(arguments.period_from, "--from"),
        parse_moment(arguments.period_to, "--to"),
    )
    tenant, account = arguments.tenant, arguments.account
    try:
        steps = balance_history_steps(tenant, account, period, arguments.interval)
        with open_reader(arguments, settings) as reader:
            history = run_report(
                steps, lambda sql, parameters: reader.fetch(tenant, sql, parameters)
            )
    except QueryError as exc:  # names the parameter: the flag of the same name
        raise SettingError(f"--{exc}") from None
    if history is None:
        print(f"no account {account!r} for tenant {tenant!r} before --to", file=sys.stderr)
        return EXIT_NOT_FOUND
    if arguments.format == FORMAT_CSV:
        emit(arguments, balance_history_csv(history).encode())
    else:
        emit(arguments, msgspec.json.encode(balance_history_document(history)) + b"\n")
    return EXIT_OK
