"""The compiled core (mypyc, decision 0048) and the Python sources: same decisions, same bytes.

``make test`` runs the whole suite compiled and the core's unit and property tests again with
``STREAMLEDGER_PURE_PYTHON=1`` (Makefile ``CORE_TESTS``). This module checks that each run really
uses the implementation it names, and compares the two directly: one process holds one
implementation of a module, so each runs in a child process over the same seeded workload (the
loadgen's standard mix through the partition adapter: decode, step, seal and encode, one aborted
and redone batch, duplicates replayed, restore from the exported records, the invariants) and
prints the SHA-256 of every byte it produced.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamledger import native

REPO_ROOT = Path(__file__).resolve().parents[2]
CHILD_TIMEOUT_S = 300
WORKLOAD = """
import hashlib, importlib, json, sys
import ledger
from processors.partition_ledger import WIRE_FORMAT, PartitionLedger
from producers.loadgen import LoadPlan, generate
from schemas import codec
import pytest

from streamledger import native

SEED, COMMANDS, BATCH = 11, 3_000, 400
commands = [g.command for g in generate(LoadPlan(seed=SEED, tenants=12, commands=COMMANDS))]
records = [(codec.encode_command(c), c.submitted_at_us // 1000 * 1000) for c in commands]
replayed = records + records[:600]  # the first 600 again: duplicates
digest, counts = hashlib.sha256(), {"events": 0, "outcomes": 0, "states": 0, "replies": 0}
partition = PartitionLedger(0, ledger.LedgerState(wire_format=WIRE_FORMAT))
events = []

def reconcile(events):
    # the reconciliation matcher's core over the workload's events and a statement made from
    # every tenant's movements on one account (some lines missing, some amounts off by one,
    # some split in two): the encoded results (decision 0096)
    from reconciliation.event_movements import event_movements
    from reconciliation.matching import MatchingRules, Reconciler
    from reconciliation.records import encode
    from reconciliation.statement import Statement, StatementFormat, StatementLine
    reconciler, lines, out = Reconciler(MatchingRules()), [], []
    mirrors = {}
    for offset, value in enumerate(events):
        found = event_movements(value, "external_ref")
        for movement in found.movements:
            mirror = mirrors.setdefault(movement.tenant_id, movement.account_id)
            if movement.account_id == mirror:
                lines.append(movement)
            out += reconciler.add_movement(movement, offset, offset)
        out += reconciler.advance_ledger_time(found.tenant_id, found.effective_at_us, offset)
    days = [movement.date_days for movement in lines] or [0]
    for tenant, account in sorted(mirrors.items()):
        out += reconciler.add_statement(Statement(
            tenant_id=tenant, account_id=account, file_sha256="0" * 64,
            format=StatementFormat.CSV, statement_id=None, currency="EUR",
            opening_balance=None, closing_balance=None, from_date_days=min(days),
            to_date_days=min(days) - 1, line_count=0, new_line_count=0,
            entries_not_booked=0, imported_at_us=0), 0)
    for number, movement in enumerate(lines):
        if number % 11 == 3:
            continue  # never booked by the bank
        amounts = [movement.amount + (number % 13 == 5)]
        if number % 7 == 2 and movement.amount > 1:
            amounts = [movement.amount // 2, movement.amount - movement.amount // 2]
        for part, amount in enumerate(amounts):
            out += reconciler.add_line(StatementLine(
                tenant_id=movement.tenant_id, account_id=movement.account_id,
                line_id=f"{movement.movement_id}/{part}", file_sha256="0" * 64,
                statement_id=None, line_number=number, amount=amount, currency="EUR",
                direction=movement.direction, reversal=False,
                booking_date_days=movement.date_days, value_date_days=None,
                bank_reference=None, entry_reference=None,
                end_to_end_reference=movement.external_reference if number % 3 else None,
                counterparty_name=None, counterparty_account=None,
                remittance_information=None), number, number)
    for tenant, account in sorted(mirrors.items()):
        out += reconciler.add_statement(Statement(
            tenant_id=tenant, account_id=account, file_sha256="1" * 64,
            format=StatementFormat.CSV, statement_id=None, currency="EUR",
            opening_balance=None, closing_balance=None, from_date_days=min(days),
            to_date_days=max(days) + 10, line_count=0, new_line_count=0,
            entries_not_booked=0, imported_at_us=0), 1)
        out += reconciler.advance_ledger_time(tenant, (max(days) + 10) * 86_400_000_000, 2)
    assert out and reconciler.open_items == 0, (len(out), reconciler.open_items)
    return b"".join(encode(result) for result in out)

def run_batch(start):
    for offset, (data, timestamp_us) in enumerate(replayed[start : start + BATCH], start):
        partition.decide(codec.decode_command(data), timestamp_us, offset)
    return partition.staged_outputs()

for number, start in enumerate(range(0, len(replayed), BATCH)):
    if number == 2:  # abort one batch and decide it again
        run_batch(start)
        partition.abort()
    outputs = run_batch(start)
    for name in counts:
        for key, value in getattr(outputs, name):
            digest.update(key + b"=" + (value or b"<tombstone>") + b";")
            counts[name] += 1
    events += [value for _, value in outputs.events if value]
    partition.commit()
state = partition.state
ledger.assert_invariants(state)
exported = [codec.encode_state(record) for record in ledger.export_records(state)]
outcomes = [codec.encode_outcome(outcome) for outcome in ledger.outcomes_of(state)]
restored = ledger.restore(
    [codec.decode_state(data) for data in exported],
    [codec.decode_outcome(data) for data in outcomes],
    (),
    wire_format=WIRE_FORMAT,
)
ledger.assert_invariants(restored)
again = [codec.encode_state(record) for record in ledger.export_records(restored)]
assert sorted(again) == sorted(exported), "restore changed the state records"
digest.update(b"".join(sorted(exported)) + b"".join(sorted(outcomes)))
digest.update(reconcile(events))
for name in sorted(native.read_manifest(native.build_directory()).compiled):
    importlib.import_module(name)  # every module the build lists, whatever the above used
print(json.dumps({"sha256": digest.hexdigest(), "counts": counts,
                  "compiled": list(native.compiled_modules())}))
"""


def run_workload(*, pure_python: bool) -> dict[str, object]:
    environment = {**os.environ, native.PURE_PYTHON_VARIABLE: "1" if pure_python else "0"}
    completed = subprocess.run(
        [sys.executable, "-c", WORKLOAD],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    result: dict[str, object] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def built_modules() -> list[str]:
    """The modules the native build of this checkout compiled (the build must exist: make
    setup builds it, and a missing or stale build is an error, never a skip)."""
    manifest = native.read_manifest(native.build_directory(REPO_ROOT))
    assert manifest.problems(REPO_ROOT) == [], "stale native build: run make setup"
    return sorted(manifest.compiled)


def test_compiled_and_pure_python_produce_identical_bytes() -> None:
    compiled = run_workload(pure_python=False)
    pure = run_workload(pure_python=True)
    assert compiled["compiled"] == built_modules()
    assert pure["compiled"] == []
    assert compiled["counts"] == pure["counts"]
    assert compiled["sha256"] == pure["sha256"]


def test_this_process_runs_the_implementation_the_switch_selects() -> None:
    for name in built_modules():
        importlib.import_module(name)
    if os.environ.get(native.PURE_PYTHON_VARIABLE) == "1":
        assert native.compiled_modules() == ()
    else:
        assert list(native.compiled_modules()) == built_modules()


def test_a_bad_switch_value_fails_the_import_and_names_it() -> None:
    environment = {**os.environ, native.PURE_PYTHON_VARIABLE: "yes"}
    completed = subprocess.run(
        [sys.executable, "-c", "import ledger"],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
    )
    assert completed.returncode != 0
    assert "STREAMLEDGER_PURE_PYTHON='yes'" in completed.stderr


def test_an_edited_source_makes_the_build_stale(tmp_path: Path) -> None:
    """The loader's check, on a copy: a build whose recorded inputs differ is refused."""
    manifest = native.read_manifest(native.build_directory(REPO_ROOT))
    copy = tmp_path / "checkout"
    for source in manifest.inputs:
        target = copy / source
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((REPO_ROOT / source).read_bytes())
    assert manifest.problems(copy) == []
    (copy / "ledger" / "state.py").write_text("# edited\n", encoding="utf-8")
    assert manifest.problems(copy) == ["ledger/state.py changed since the build"]


def test_the_compiled_codec_is_served_and_checked_as_the_core_is(tmp_path: Path) -> None:
    """Decision 0092: the hand-written Avro writers and readers are in the build, their sources
    are inputs, and any ``schemas.*`` import refuses a stale build as ``ledger.*`` ones do."""
    directory = native.build_directory(REPO_ROOT)
    manifest = native.read_manifest(directory)
    assert {"schemas.avro_writers", "schemas.avro_readers"} <= set(manifest.compiled)
    assert {"schemas/avro_writers.py", "schemas/avro_readers.py"} <= set(manifest.inputs)
    copy = tmp_path / "checkout"
    for source in manifest.inputs:
        target = copy / source
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((REPO_ROOT / source).read_bytes())
    current = native.NativeCoreFinder(directory, copy)
    served = current.find_spec("schemas.avro_writers")
    assert served is not None and served.origin == str(manifest.binary_of("schemas.avro_writers"))
    assert current.find_spec("schemas.model") is None  # not compiled: the .py file
    assert current.find_spec("streamledger.settings") is None  # not a compiled package
    (copy / "schemas" / "avro_writers.py").write_text("# edited\n", encoding="utf-8")
    stale = native.NativeCoreFinder(directory, copy)
    for name in ("schemas.model", "schemas.avro_readers", "ledger.state"):
        with pytest.raises(ImportError, match=r"schemas/avro_writers\.py changed since the build"):
            stale.find_spec(name)
