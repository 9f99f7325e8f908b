"""The ``streamledger`` command line.

Each part of the system registers its own subcommands (``register(subparsers)`` in its ``cli``
module); this module imports those modules directly (so mypy and the import contracts see every
edge), and ``streamledger.cli_parser`` parses the shared settings flags, builds the one
``Settings`` object and turns any ``StreamLedgerError`` into a single line on stderr.

The benchmarks are not a subcommand: the product does not depend on ``bench`` (it is not even
installed with it); they run as ``python -m bench`` / ``make bench`` (decision 0029).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Final

import ledger
from api import cli as api_cli
from infra import cli as infra_cli
from infra import database_cli as infra_database_cli
from infra import principals_cli as infra_principals_cli
from notifications import cli as notifications_cli
from pipeline import cli as pipeline_cli
from pipeline import loadgen_statement as pipeline_loadgen_statement
from processors import cli as processors_cli
from producers import cli as producers_cli
from projections import query_cli as projections_query_cli
from projections import report_cli as projections_report_cli
from reconciliation import cli as reconciliation_cli
from schemas import codec, limits
from schemas.generated_code import generated_names, generated_source
from streamledger.cli_parser import EXIT_FAILURE, EXIT_OK, Subparsers, build_parser, run_parsed
from streamledger.settings import Settings

# The modules that generate functions at run time (at import): all of them are listed.
GENERATING_MODULES: Final = (codec, limits, ledger.fingerprints)


def register_debug(subparsers: Subparsers) -> None:
    """``streamledger debug generated [NAME]``: the functions generated at run time (decision
    0034), listed, or the source of one (what its tracebacks' ``<generated NAME>`` lines are)."""
    debug = subparsers.add_parser("debug", help="inspect the running code (generated functions)")
    parts = debug.add_subparsers(dest="debug_command", metavar="PART", required=True)
    generated = parts.add_parser(
        "generated",
        help="list the functions generated at run time, or print the source of one",
        description="Without NAME: one name per line. With NAME: that function's source.",
    )
    generated.add_argument(
        "name", nargs="?", metavar="NAME", help="a listed name, e.g. schemas.codec.encode.Transfer"
    )
    generated.set_defaults(handler=show_generated)


def show_generated(arguments: argparse.Namespace, settings: Settings) -> int:
    if arguments.name is None:
        sys.stdout.write("".join(f"{name}\n" for name in generated_names()))
        return EXIT_OK
    source = generated_source(arguments.name)
    if source is None:
        sys.stderr.write(
            f"streamledger: no generated function {arguments.name!r}"
            " (streamledger debug generated lists them)\n"
        )
        return EXIT_FAILURE
    sys.stdout.write(source)
    return EXIT_OK


# The parts that contribute subcommands, in the order ``--help`` lists them. Each sets
# ``handler=`` (a ``streamledger.cli_parser.CommandHandler``) on its subparsers.
COMMAND_REGISTRARS: tuple[Callable[[Subparsers], None], ...] = (
    infra_cli.register,
    producers_cli.register,
    pipeline_loadgen_statement.register,  # loadgen --statement (composes reconciliation)
    processors_cli.register,
    infra_database_cli.register,
    infra_principals_cli.register,
    projections_query_cli.register,
    projections_report_cli.register,
    api_cli.register,
    notifications_cli.register,
    reconciliation_cli.register,
    pipeline_cli.register,
    register_debug,
)


def build_full_parser() -> argparse.ArgumentParser:
    parser, subparsers = build_parser()
    for register in COMMAND_REGISTRARS:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_full_parser()
    return run_parsed(parser, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
