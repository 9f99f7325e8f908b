"""What every part's ``cli`` module shares: exit codes, the parser with the settings flags,
argument types, and running a parsed subcommand.

Every settings flag derives from its declaration (``streamledger.setting_fields``, decision
0035): ``add_declared_arguments`` adds a settings class's flags with their help text (what, unit,
bounds, default), ``given_settings`` reads back the ones given; the ranges are checked when the
settings object is built, so a bad value is ``setting NAME (--flag): VALUE is outside MIN..MAX``.

This module sits low in the layers (it imports only ``streamledger.settings``,
``streamledger.setting_fields`` and ``streamledger.errors``), so each part's ``cli`` module can
use it while ``streamledger.cli``, the top, imports those modules directly.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Collection
from functools import partial
from typing import Protocol, TypeAlias

from streamledger import __version__
from streamledger.errors import StreamLedgerError
from streamledger.setting_fields import (
    Declaration,
    declarations,
    parse_decimal,
    parse_int_in_range,
)
from streamledger.settings import SETTING_SPECS, Settings, load_settings

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


def decimal_number(text: str) -> float:
    """An argparse ``type``: ASCII digits with an optional fraction ("0.5"); no sign, exponent,
    "nan" or "inf" (``float()`` takes all of those, and every script's digits)."""
    try:
        return parse_decimal(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def argument_type(declaration: Declaration) -> Callable[[str], object]:
    """How a flag's text is read: the number's form only, for limits (the range is checked
    when the settings are built, naming the setting); as given, for text settings."""
    if not declaration.is_limit:
        return str
    if declaration.named_values:
        return partial(named_or_whole_number, declaration)
    return decimal_number if declaration.decimal else whole_number


def named_or_whole_number(declaration: Declaration, text: str) -> int:
    """An argparse ``type`` for a limit with ``named_values``: a word of them, or digits."""
    value = declaration.named_value(text)
    return whole_number(text) if value is None else value


def add_declared_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    settings_class: type,
    *,
    dest_prefix: str,
    leave_out: Collection[str] = (),
) -> tuple[Declaration, ...]:
    """One flag per declared setting of ``settings_class`` (default ``None`` = not given, stored
    as ``dest_prefix + name``); returns the declarations it added."""
    added = flagged(settings_class, leave_out)
    for declaration in added:
        parser.add_argument(
            declaration.flag,
            type=argument_type(declaration),
            default=None,
            dest=dest_prefix + declaration.name,
            metavar=metavar(declaration),
            help=declaration.help_text(),
        )
    return added


def metavar(declaration: Declaration) -> str:
    if not declaration.is_limit:
        return "TEXT"
    if declaration.named_values:
        return "|".join(("N", *(word for word, _ in declaration.named_values)))
    if not declaration.decimal:
        return "N"
    return "SECONDS" if declaration.unit == "s" else "NUMBER"


def flagged(settings_class: type, leave_out: Collection[str]) -> tuple[Declaration, ...]:
    return tuple(
        declaration
        for declaration in declarations(settings_class)
        if declaration.name not in leave_out
    )


def given_settings(
    arguments: argparse.Namespace,
    settings: type | tuple[Declaration, ...],
    *,
    dest_prefix: str,
    leave_out: Collection[str] = (),
) -> dict[str, object | None]:
    """The values of ``add_declared_arguments``'s flags (same class, prefix and ``leave_out``;
    or the declarations it returned) by setting name, ``None`` for a flag not given."""
    added = settings if isinstance(settings, tuple) else flagged(settings, leave_out)
    return {
        declaration.name: getattr(arguments, dest_prefix + declaration.name)
        for declaration in added
        if declaration.name not in leave_out
    }


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
        # Read as text: ``load_settings`` parses flags and variables alike, naming the source.
        settings_group.add_argument(
            spec.flag,
            dest=f"setting_{spec.name}",
            metavar="VALUE",
            default=None,
            help=spec.help_text(),
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
    flags = {spec.name: getattr(arguments, f"setting_{spec.name}") for spec in SETTING_SPECS}
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
