"""``streamledger loadgen … --statement camt053|bai2 --statement-out FILE``: the bank's statement
of the load it sent (issue 20 §4, decision 0099).

The load generator (``producers``) may not import ``reconciliation`` (a sibling layer), and a
statement is the bank's view of *posted* movements, which exist only once the processors have
decided the commands. So the flag is composed here, one layer up: ``loadgen`` sends its workload
as always; then this waits until the processors' committed offsets reach the end of
``ledger.commands`` (bounded by ``--statement-wait-s``), and writes the synthetic statement of
the tenant's mirror account (default: the first tenant's ``funding`` account, which every
customer is funded from) with ``statements synthesize``'s writer and perturbation flags, seeded
by the load's ``--seed``. It prints what reconciliation must then find.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Final

from pipeline.status import commands_lag_source
from producers.cli import plan_from
from producers.loadgen import FUNDING_ACCOUNT
from reconciliation.cli import (
    SYNTHETIC_FORMATS,
    add_perturbation_arguments,
    perturbations_of,
    write_synthetic_statement,
)
from streamledger.cli_parser import EXIT_OK, CommandHandler, Subparsers
from streamledger.errors import InfraError, SettingError
from streamledger.settings import Settings

STATEMENT_TENANT_DEFAULT: Final = "tenant-0000"  # loadgen's first tenant
STATEMENT_WAIT_S_DEFAULT: Final = 300
STATEMENT_WAIT_S_MAX: Final = 3_600
LAG_POLL_S: Final = 0.5
PROGRESS_EVERY_S: Final = 5.0


def wait_seconds(text: str) -> int:
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= STATEMENT_WAIT_S_MAX):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a whole number in 1..{STATEMENT_WAIT_S_MAX}"
        )
    return int(text)


def register(subparsers: Subparsers) -> None:
    """Add the statement flags to ``loadgen`` (registered by ``producers.cli`` before this)."""
    loadgen = subparsers.choices["loadgen"]
    group = loadgen.add_argument_group(
        "bank statement (after the load: decision 0099, docs/reconciliation.md)"
    )
    group.add_argument(
        "--statement", choices=SYNTHETIC_FORMATS,
        help="after sending, wait for the processors and write a synthetic bank statement of"
        " --statement-account (camt053: one file; bai2: one file per day)",
    )  # fmt: skip
    group.add_argument("--statement-out", type=Path, metavar="FILE", help="the file to write")
    group.add_argument(
        "--statement-tenant", default=STATEMENT_TENANT_DEFAULT,
        help=f"the tenant of the statement (default {STATEMENT_TENANT_DEFAULT})",
    )  # fmt: skip
    group.add_argument(
        "--statement-account", default=FUNDING_ACCOUNT,
        help=f"the bank-mirror account (default {FUNDING_ACCOUNT})",
    )  # fmt: skip
    group.add_argument(
        "--statement-wait-s", type=wait_seconds, default=STATEMENT_WAIT_S_DEFAULT,
        help="seconds to wait for the processors to decide every command, 1.."
        f"{STATEMENT_WAIT_S_MAX} s (default {STATEMENT_WAIT_S_DEFAULT})",
    )  # fmt: skip
    add_perturbation_arguments(group)
    send: CommandHandler = loadgen.get_default("handler")

    def run(arguments: argparse.Namespace, settings: Settings) -> int:
        return run_loadgen_with_statement(send, arguments, settings)

    loadgen.set_defaults(handler=run)


def run_loadgen_with_statement(
    send: CommandHandler, arguments: argparse.Namespace, settings: Settings
) -> int:
    if arguments.statement is None:
        if arguments.statement_out is not None:
            raise SettingError("--statement-out needs --statement camt053 or bai2")
        return send(arguments, settings)
    if arguments.statement_out is None:
        raise SettingError("--statement needs --statement-out FILE")
    sent = send(arguments, settings)
    if sent != EXIT_OK:
        return sent
    wait_until_decided(settings, arguments.statement_wait_s, quiet=arguments.quiet)
    sys.stdout.write(
        write_synthetic_statement(
            settings,
            tenant_id=arguments.statement_tenant,
            account_id=arguments.statement_account,
            output=arguments.statement_out,
            statement_format=arguments.statement,
            seed=plan_from(arguments).seed,  # the load's seed (its default when not given)
            perturbed=perturbations_of(arguments),
        )
    )
    return EXIT_OK


def wait_until_decided(settings: Settings, wait_s: int, *, quiet: bool) -> None:
    """Until the processors' group has committed every record of ``ledger.commands`` (their
    events are then on ``ledger.events``: one transaction with the offsets), at most ``wait_s``."""
    read_lag = commands_lag_source(settings)
    started = time.monotonic()
    shown = started
    while (left := read_lag()) != 0:
        now = time.monotonic()
        if now - started > wait_s:
            raise InfraError(
                f"loadgen --statement: the processors have not decided every command after"
                f" {wait_s} s ({'?' if left is None else f'{left:,}'} left on ledger.commands):"
                " are they running (streamledger run)? Raise --statement-wait-s to wait longer"
            )
        if not quiet and now - shown >= PROGRESS_EVERY_S:
            shown = now
            sys.stderr.write(f"waiting for the processors: {left} commands left\n")
        time.sleep(LAG_POLL_S)
