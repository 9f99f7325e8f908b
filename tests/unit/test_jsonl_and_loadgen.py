"""The JSON-lines format and the seeded load generator (both pure)."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given

from producers.cli import parse_lines
from producers.errors import CommandFormatError
from producers.jsonl import command_from_line, command_to_line
from producers.loadgen import LoadPlan, generate, opening_count, poison_records
from schemas import codec
from schemas.limits import first_violation
from schemas.model import Command, OpenAccount, Transfer
from tests.unit.contract_strategies import commands

HEADER = '"tenant_id": "a", "idempotency_key": "k", "transfer_id": "t"'
VOID = '{"type": "VoidPending", ' + HEADER
POST = '{"type": "PostPending", ' + HEADER
EXAMPLE = Path(__file__).parents[2] / "producers" / "examples" / "commands.jsonl"


@given(commands)
def test_json_lines_round_trip(command: Command) -> None:
    assert command_from_line(command_to_line(command), default_submitted_at_us=0) == command


def test_example_file_is_valid() -> None:
    lines = EXAMPLE.read_text().splitlines()
    parsed = [command_from_line(line, default_submitted_at_us=7) for line in lines]
    assert all(first_violation(command) is None for command in parsed)
    assert parsed[0].submitted_at_us == 7
    assert parsed[5].submitted_at_us == 1_700_000_000_000_000


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("not json", "line"),
        ("[1]", "line"),
        ('{"type": "Nope"}', "type"),
        ('{"type": "VoidPending", "tenant_id": "a", "idempotency_key": "k"}', "transfer_id"),
        (
            VOID + ', "x": 1}',
            "x",
        ),
        (
            POST + ', "amount": 1.5}',
            "amount",
        ),
        (
            POST + ', "amount": "5"}',
            "amount",
        ),
        (
            '{"type": "VoidPending", "tenant_id": 5, "idempotency_key": "k", "transfer_id": "t"}',
            "tenant_id",
        ),
        (
            VOID + ', "metadata": {"a": 1}}',
            "metadata",
        ),
    ],
)
def test_format_errors_name_the_member(line: str, field: str) -> None:
    with pytest.raises(CommandFormatError) as caught:
        command_from_line(line, default_submitted_at_us=0)
    assert caught.value.field == field


def test_parse_lines_reports_line_numbers() -> None:
    good = EXAMPLE.read_text().splitlines()[0]
    errors = io.StringIO()
    text = [good, "", "# comment", "oops", good.replace('"cash"', '"c a s h"'), good]
    results = list(parse_lines(text, 0, errors))
    assert [(number, command is None) for number, command in results] == [
        (1, False),
        (4, True),
        (5, True),
        (6, False),
    ]
    report = errors.getvalue().splitlines()
    assert report[0].startswith("line 4: line: not JSON")
    assert report[1].startswith("line 5: account_id:")


PLAN = LoadPlan(seed=42, tenants=3, accounts_per_tenant=5, commands=3_000)


def test_loadgen_is_deterministic_by_seed() -> None:
    first = [codec.encode_command(item.command) for item in generate(PLAN)]
    second = [codec.encode_command(item.command) for item in generate(PLAN)]
    other = [
        codec.encode_command(item.command)
        for item in generate(LoadPlan(seed=43, tenants=3, accounts_per_tenant=5, commands=3_000))
    ]
    assert first == second
    assert first != other
    assert len(first) == opening_count(PLAN) + PLAN.commands


def test_loadgen_opens_accounts_first_and_mixes_every_intent() -> None:
    generated = list(generate(PLAN))
    opening = generated[: opening_count(PLAN)]
    assert all(item.intent in ("open_account", "fund") for item in opening)
    assert isinstance(opening[0].command, OpenAccount)
    intents = Counter(item.intent for item in generated[opening_count(PLAN) :])
    for intent in (
        "transfer", "pending", "expiring", "post_pending", "void_pending", "reversal",
        "duplicate", "key_reuse", "overdraft", "unknown_account",
    ):  # fmt: skip
        assert intents[intent] > 0, intent
    assert all(first_violation(item.command) is None for item in generated)


def test_loadgen_duplicates_and_reuses_keys_as_intended() -> None:
    generated = list(generate(PLAN))
    seen: dict[tuple[str, str], Command] = {}
    for item in generated:
        key = (item.command.tenant_id, item.command.idempotency_key)
        if item.intent == "duplicate":
            assert seen[key] == item.command
        elif item.intent == "key_reuse":
            assert seen[key] != item.command
            assert isinstance(item.command, Transfer)
        else:
            assert key not in seen
            seen[key] = item.command


def test_loadgen_plan_checks_shares() -> None:
    with pytest.raises(ValueError, match="shares"):
        LoadPlan(duplicate_share=0.9, pending_share=0.5)


def test_poison_records_do_not_decode() -> None:
    sample = codec.encode_command(next(generate(PLAN)).command)
    records = poison_records(1, 9, ("t1", "t2"), sample)
    assert [kind for _, _, kind in records][:3] == ["garbage", "unknown_fingerprint", "truncated"]
    expected = {
        "garbage": codec.WrongMarkerError,
        "unknown_fingerprint": codec.UnknownFingerprintError,
        "truncated": codec.TruncatedError,
    }
    for _, value, kind in records:
        with pytest.raises(expected[kind]):
            codec.decode_command(value)
    assert records == poison_records(1, 9, ("t1", "t2"), sample)
