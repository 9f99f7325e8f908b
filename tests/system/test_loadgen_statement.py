"""``streamledger loadgen … --statement camt053|bai2 --statement-out FILE`` (issue 20 §4, decision
0099) on the real broker: the load is sent, a real processor decides it, and the synthetic
statement of the first tenant's ``funding`` account is written with the perturbations asked
for; it imports as a statement of that account. Without processors the wait is bounded and says
what it waited for; a flag without its partner is refused before anything is sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamledger.settings import Settings
from tests.conftest import run_streamledger
from workloads.processor_process import ProcessorProcess

pytestmark = pytest.mark.system

LOAD = ["loadgen", "--seed", "7", "--tenants", "1", "--accounts", "4", "--commands", "40",
        "--quiet"]  # fmt: skip


@pytest.mark.parametrize("statement_format", ["camt053", "bai2"])
def test_loadgen_writes_the_statement_of_what_was_posted(
    ledger_settings: Settings, tmp_path: Path, statement_format: str
) -> None:
    settings = ledger_settings
    output = tmp_path / ("statement.xml" if statement_format == "camt053" else "statement.bai")
    processor = ProcessorProcess(settings, "a", tmp_path)
    try:
        loaded = run_streamledger(
            [*LOAD, "--statement", statement_format, "--statement-out", str(output),
             "--missing-share", "0.2", "--mismatched", "1", "--extra", "2"],
            settings,
        )  # fmt: skip
    finally:
        assert processor.stop() == 0, processor.log()
    assert loaded.returncode == 0, loaded.stderr
    assert "sent=" in loaded.stdout and "failed=0" in loaded.stdout, loaded.stdout
    assert "reconciliation must find" in loaded.stdout, loaded.stdout
    entries = int(loaded.stdout.split(" entries from ")[0].rsplit(maxsplit=1)[-1])
    files = [output] if statement_format == "camt053" else sorted(tmp_path.glob("statement-*.bai"))
    assert files and all(file.exists() for file in files), loaded.stdout
    new_lines = 0
    for file in files:
        imported = run_streamledger(
            ["statements", "import", str(file), "--tenant", "tenant-0000", "--account", "funding"],
            settings,
        )
        assert imported.returncode == 0, imported.stderr
        new_lines += int(imported.stdout.split(" new")[0].rsplit(maxsplit=1)[-1])
    assert new_lines == entries


def test_loadgen_statement_flags_are_checked_and_the_wait_is_bounded(
    ledger_settings: Settings, tmp_path: Path
) -> None:
    output = tmp_path / "statement.xml"
    alone = run_streamledger([*LOAD, "--statement", "camt053"], ledger_settings)
    assert alone.returncode != 0 and "--statement-out" in alone.stderr, alone.stderr
    partner = run_streamledger([*LOAD, "--statement-out", str(output)], ledger_settings)
    assert partner.returncode != 0 and "--statement camt053" in partner.stderr, partner.stderr
    assert "sent=" not in alone.stdout + partner.stdout  # refused before sending
    no_processor = run_streamledger(
        [
            *LOAD,
            "--statement",
            "camt053",
            "--statement-out",
            str(output),
            "--statement-wait-s",
            "2",
        ],
        ledger_settings,
    )
    assert no_processor.returncode != 0, no_processor.stdout
    assert "are they running" in no_processor.stderr, no_processor.stderr
    assert not output.exists()
