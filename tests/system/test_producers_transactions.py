"""Multi-leg transactions through the sending edges on the real broker (issue 16 phase 4):
``streamledger produce --file`` of the documented example file, and ``loadgen`` with fee splits,
payouts and FX conversions, read back from ``ledger.commands``."""

from __future__ import annotations

from pathlib import Path

import pytest

from producers.jsonl import command_from_line
from schemas import codec
from schemas.model import PostTransaction
from streamledger.settings import Settings
from tests.conftest import run_streamledger
from tests.system.test_producers import read_all

pytestmark = pytest.mark.system

EXAMPLE = Path(__file__).parents[2] / "producers" / "examples" / "transactions.jsonl"


def test_produce_sends_the_transaction_example_file(ledger_settings: Settings) -> None:
    lines = [line for line in EXAMPLE.read_text().splitlines() if not line.startswith("#")]
    result = run_streamledger(["produce", "--file", str(EXAMPLE)], ledger_settings)
    assert result.returncode == 0, result.stderr
    assert f"sent={len(lines)} failed=0" in result.stdout
    messages = read_all(ledger_settings, "ledger.commands", len(lines))
    sent = {command_from_line(line, default_submitted_at_us=0) for line in lines}
    transactions = {
        command.idempotency_key: command
        for command in (codec.decode_command(m.value()) for m in messages)
        if isinstance(command, PostTransaction)
    }
    expected = {c.idempotency_key: c for c in sent if isinstance(c, PostTransaction)}
    assert transactions.keys() == expected.keys() == {"pay-0001", "fx-0001"}
    for key, command in transactions.items():  # every posting, in order, and the FX rate
        assert command.postings == expected[key].postings
        assert command.metadata == expected[key].metadata


def test_loadgen_sends_fee_splits_payouts_and_fx_as_recorded(
    ledger_settings: Settings, tmp_path: Path
) -> None:
    record = tmp_path / "sent.jsonl"
    arguments = ["loadgen", "--seed", "3", "--tenants", "2", "--accounts", "4",
                 "--commands", "300", "--quiet", "--start-us", "1700000000000000",
                 "--fee-split-share", "0.2", "--payout-share", "0.05", "--fx-share", "0.1",
                 "--record", str(record)]  # fmt: skip
    result = run_streamledger(arguments, ledger_settings)
    assert result.returncode == 0, result.stderr
    lines = record.read_text().splitlines()
    recorded = [command_from_line(line, default_submitted_at_us=0) for line in lines]
    messages = read_all(ledger_settings, "ledger.commands", len(recorded))
    decoded = [codec.decode_command(m.value()) for m in messages]
    assert sorted(map(codec.encode_command, decoded)) == sorted(map(codec.encode_command, recorded))
    sizes = [len(c.postings) for c in decoded if isinstance(c, PostTransaction)]
    assert 3 in sizes and 2 in sizes and max(sizes) >= 10  # fee split, FX, payout
