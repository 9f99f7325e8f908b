"""Multi-leg transactions at the producing edge (issue 16 phase 4): the JSON-lines example file
of ``docs/producing.md`` parses, passes the limits and is accepted by the core as written; the
load generator's fee splits, payouts and FX conversions are seeded and accepted as intended, and
its default mix sends none (decision 0045)."""

from __future__ import annotations

import dataclasses
import io
from decimal import Decimal
from pathlib import Path

import pytest

import ledger
from processors.partition_ledger import WIRE_FORMAT
from producers.cli import parse_lines
from producers.loadgen import (
    PAYOUT_SELLERS_MAX,
    PAYOUT_SELLERS_MIN,
    GeneratedCommand,
    LoadPlan,
    generate,
    opening_count,
)
from schemas.model import PostTransaction
from tests.unit.ledger_builders import T0_US

EXAMPLE = Path(__file__).resolve().parents[2] / "producers" / "examples" / "transactions.jsonl"


def test_the_transaction_example_file_is_accepted_command_by_command() -> None:
    errors = io.StringIO()
    with EXAMPLE.open("rb") as lines:
        commands = [command for _, command in parse_lines(lines, T0_US, errors)]
    assert errors.getvalue() == ""
    assert all(command is not None for command in commands)
    state = ledger.LedgerState(wire_format=WIRE_FORMAT)
    for offset, command in enumerate(commands):
        assert command is not None
        decision = ledger.step(state, command, T0_US + offset)
        assert isinstance(decision, ledger.Accepted), decision.outcome
    transactions = [c for c in commands if isinstance(c, PostTransaction)]
    assert [len(c.postings) for c in transactions] == [3, 2]
    assert dict(transactions[1].metadata) == {"fx_pair": "EUR/USD", "fx_rate": "1.0837"}
    customer_usd = state.account("acme", "customer_usd")
    assert customer_usd is not None and customer_usd.credits_posted == 10837


MULTI_LEG_PLAN = LoadPlan(
    seed=11,
    tenants=4,
    accounts_per_tenant=6,
    commands=1_500,
    fee_split_share=0.15,
    payout_share=0.05,
    fx_share=0.10,
)


def fold(plan: LoadPlan) -> list[tuple[GeneratedCommand, ledger.Decision]]:
    """Every generated command with the core's decision, one state for all tenants."""
    state = ledger.LedgerState(wire_format=WIRE_FORMAT)
    return [
        (generated, ledger.step(state, generated.command, T0_US + offset))
        for offset, generated in enumerate(generate(plan))
    ]


def test_the_default_loadgen_mix_sends_no_transaction() -> None:
    plan = LoadPlan(commands=3_000)
    assert (plan.fee_split_share, plan.payout_share, plan.fx_share) == (0.0, 0.0, 0.0)
    assert not any(isinstance(g.command, PostTransaction) for g in generate(plan))
    assert opening_count(plan) == plan.tenants * (2 * plan.accounts_per_tenant - 1)


def test_loadgen_transactions_are_seeded_and_accepted_as_intended() -> None:
    first = [g.command for g in generate(MULTI_LEG_PLAN)]
    assert first == [g.command for g in generate(MULTI_LEG_PLAN)]
    assert first != [g.command for g in generate(dataclasses.replace(MULTI_LEG_PLAN, seed=12))]
    decided = fold(MULTI_LEG_PLAN)
    opened = decided[: opening_count(MULTI_LEG_PLAN)]
    assert all(isinstance(decision, ledger.Accepted) for _, decision in opened)
    assert {g.intent for g, _ in opened} == {"open_account", "fund"}
    by_intent: dict[str, list[tuple[GeneratedCommand, ledger.Decision]]] = {}
    for generated, decision in decided:
        by_intent.setdefault(generated.intent, []).append((generated, decision))
    for intent in ("fee_split", "payout", "fx"):
        assert len(by_intent[intent]) > 10, intent
        assert all(isinstance(decision, ledger.Accepted) for _, decision in by_intent[intent])
    sizes = {len(g.command.postings) for g, _ in by_intent["payout"]}  # type: ignore[union-attr]
    assert min(sizes) >= PAYOUT_SELLERS_MIN and max(sizes) <= PAYOUT_SELLERS_MAX
    assert {len(g.command.postings) for g, _ in by_intent["fee_split"]} == {3}  # type: ignore[union-attr]


def test_an_fx_conversion_records_its_rate_and_moves_two_currencies() -> None:
    generated = next(g for g in generate(MULTI_LEG_PLAN) if g.intent == "fx")
    command = generated.command
    assert isinstance(command, PostTransaction)
    metadata = dict(command.metadata)
    base, quote = metadata["fx_pair"].split("/")
    assert base != quote and {base, quote} == {"USD", "EUR"}
    source, target = command.postings
    assert (source.currency, target.currency) == (base, quote)
    assert source.credit_account_id == f"fx-liquidity-{base.lower()}"
    assert target.debit_account_id == f"fx-liquidity-{quote.lower()}"
    rate = Decimal(metadata["fx_rate"])
    assert target.amount == int(source.amount * rate)  # rounded down: never more than the rate
    with pytest.raises(ValueError, match="two currencies"):
        LoadPlan(fx_share=0.1, currencies=("USD",))
