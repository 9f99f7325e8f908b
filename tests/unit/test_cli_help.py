"""Every flag of every subcommand says what it does, and a numeric limit says its unit or bounds
(issue 15 §6, decision 0035). The settings flags derive this text from their declarations
(``streamledger.setting_fields``); hand-written flags must write it."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator

import pytest

from streamledger.cli import build_full_parser
from streamledger.setting_fields import Declaration, declarations
from streamledger.settings import Settings

# A name ending in one of these is a number with a unit or a bound; its help must show it.
UNIT_OR_BOUND_BY_SUFFIX: dict[str, re.Pattern[str]] = {
    "_ms": re.compile(r"\bms\b|millisecond"),
    "_us": re.compile(r"\bus\b|microsecond"),
    "_s": re.compile(r"\bs\b|second"),
    "_mb": re.compile(r"\bMiB\b|\bMB\b"),
    "_bytes": re.compile(r"\bbytes?\b"),
    "_port": re.compile(r"\bport\b"),
    "_max": re.compile(r"\d\.\.\d|\bno limit\b|\bat most\b"),
    "_min": re.compile(r"\d\.\.\d|\bat least\b"),
    "_share": re.compile(r"\d\.\.\d|\bfraction\b"),
}
BOUNDS = re.compile(r"-?\d+(?:\.\d+)?\.\.-?\d+(?:\.\d+)?")


def subcommand_parsers(
    parser: argparse.ArgumentParser, path: str = "streamledger"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """``parser`` and every subcommand's parser below it, with the command line that reaches it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from subcommand_parsers(child, f"{path} {name}")


def options() -> Iterator[tuple[str, argparse.Action]]:
    for path, parser in subcommand_parsers(build_full_parser()):
        for action in parser._actions:
            if action.option_strings and not isinstance(action, argparse._HelpAction):
                yield f"{path} {action.option_strings[-1]}", action


OPTIONS = dict(options())


def test_the_walk_sees_every_part_of_the_command_line() -> None:
    commands = {name.rsplit(" ", 1)[0] for name in OPTIONS}
    for expected in ("streamledger", "streamledger process", "streamledger api"):
        assert expected in commands
    assert "streamledger loadgen --seed" in OPTIONS
    assert "streamledger run --stall-timeout-s" in OPTIONS
    assert len(OPTIONS) > 100


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_every_option_says_what_it_does(name: str) -> None:
    help_text = OPTIONS[name].help
    assert help_text and help_text.strip() and help_text != argparse.SUPPRESS, name


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_a_number_with_a_unit_in_its_name_shows_the_unit_or_bound(name: str) -> None:
    flag = name.rsplit(" ", 1)[1].removeprefix("--").replace("-", "_")
    help_text = OPTIONS[name].help or ""
    for suffix, pattern in UNIT_OR_BOUND_BY_SUFFIX.items():
        if flag.endswith(suffix):
            assert pattern.search(help_text), f"{name}: {help_text!r} does not show {suffix}"


def declared_classes() -> list[type]:
    from api.settings import ApiSettings
    from pipeline.supervisor import RunSettings
    from processors.processor_settings import ProcessorSettings
    from projections.settings import ProjectionSettings

    return [Settings, ProcessorSettings, ApiSettings, ProjectionSettings, RunSettings]


@pytest.mark.parametrize("settings_class", declared_classes(), ids=lambda cls: cls.__name__)
def test_every_declared_limit_shows_its_unit_bounds_and_default(settings_class: type) -> None:
    declared: tuple[Declaration, ...] = declarations(settings_class)
    assert declared
    for declaration in declared:
        help_text = declaration.help_text()
        assert declaration.help.strip(), declaration.name
        if declaration.is_limit:
            assert declaration.unit, declaration.name
            assert BOUNDS.search(help_text), help_text
        if declaration.default_text:  # worked out when read (e.g. kafka_security, "now")
            assert f"default {declaration.default_text}" in help_text, help_text
        elif declaration.has_default and declaration.default not in ("", None):
            assert f"default {declaration.shown(declaration.default)}" in help_text
