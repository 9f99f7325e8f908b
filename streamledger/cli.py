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

from api import cli as api_cli
from infra import cli as infra_cli
from infra import database_cli as infra_database_cli
from pipeline import cli as pipeline_cli
from processors import cli as processors_cli
from producers import cli as producers_cli
from projections import query_cli as projections_query_cli
from projections import report_cli as projections_report_cli
from streamledger.cli_parser import Subparsers, build_parser, run_parsed

# The parts that contribute subcommands, in the order ``--help`` lists them. Each sets
# ``handler=`` (a ``streamledger.cli_parser.CommandHandler``) on its subparsers.
COMMAND_REGISTRARS: tuple[Callable[[Subparsers], None], ...] = (
    infra_cli.register,
    producers_cli.register,
    processors_cli.register,
    infra_database_cli.register,
    projections_query_cli.register,
    projections_report_cli.register,
    api_cli.register,
    pipeline_cli.register,
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
