"""What every part's ``cli`` module shares: exit codes, the parser with the settings flags,
argument types, and running a parsed subcommand.

This module sits low in the layers (it imports only ``streamledger.settings`` and
``streamledger.errors``), so each part's ``cli`` module can use it while ``streamledger.cli``,
the top, imports those modules directly.
"""

from __future__ import annotations

import argparse
import sys
from typing import Protocol, TypeAlias

from streamledger import __version__
from streamledger.errors import StreamLedgerError
from streamledger.settings import SETTING_SPECS, Settings, load_settings, parse_int_in_range

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
WHOLE_NUMBER_MAX = 10**18

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class CommandHandler(Protocol):
    def __call__(self, arguments: argparse.Namespace, settings: Settings) -> int: ...


class OneLineArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line naming the argument, never a traceback."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"streamledger: error: {message}\n")


def whole_number(text: str) -> int:
    """An argparse ``type``: ASCII digits only, so "--limit ٣" is refused rather than read as 3
    (``int()`` reads every script's digits); ranges are checked where the value is used."""
    try:
        return parse_int_in_range(text, 0, WHOLE_NUMBER_MAX)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> tuple[argparse.ArgumentParser, Subparsers]:
    """The ``streamledger`` parser with the shared settings flags and no subcommand yet."""
    parser = OneLineArgumentParser(
        prog="streamledger",
        description="A multi-tenant, double-entry payment ledger on Apache Kafka.",
    )
    parser.add_argument("--version", action="version", version=f"streamledger {__version__}")
    settings_group = parser.add_argument_group(
        "settings", "each flag overrides the STREAMLEDGER_<NAME> environment variable"
    )
    for spec in SETTING_SPECS:
        settings_group.add_argument(
            spec.flag,
            dest=f"setting_{spec.field}",
            metavar="VALUE",
            default=None,
            help=f"(env {spec.environment_variable})",
        )
    subparsers: Subparsers = parser.add_subparsers(
        dest="command",
        metavar="COMMAND",
        parser_class=OneLineArgumentParser,
    )
    return parser, subparsers


def run_parsed(parser: argparse.ArgumentParser, arguments: argparse.Namespace) -> int:
    """Build the one ``Settings`` object and run the chosen subcommand; any
    ``StreamLedgerError`` or ``OSError`` becomes a single line on stderr."""
    handler: CommandHandler | None = getattr(arguments, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    flags = {spec.field: getattr(arguments, f"setting_{spec.field}") for spec in SETTING_SPECS}
    try:
        settings = load_settings(flags=flags)
        return handler(arguments, settings)
    except StreamLedgerError as exc:
        print(f"streamledger: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as exc:
        # The last net for the file system and the network: one line, never a traceback. The
        # parts map the failures they expect to their own errors first, naming the setting.
        print(f"streamledger: error: {describe_os_error(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("streamledger: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def describe_os_error(exc: OSError) -> str:
    reason = exc.strerror or type(exc).__name__
    return f"{reason}: {exc.filename}" if exc.filename else reason
