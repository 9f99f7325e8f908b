"""Multi-leg transactions at the producing edge (issue 16 phase 4): the JSON-lines example file
of ``docs/producing.md`` parses, passes the limits and is accepted by the core as written."""

from __future__ import annotations

import io
from pathlib import Path

import ledger
from processors.partition_ledger import WIRE_FORMAT
from producers.cli import parse_lines
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
