"""Codec micro-benchmark: µs per record to encode and decode (not a timed test).

Run: ``.venv/bin/python -m bench.bench_codec`` from the repository root.
Prints µs/record for commands (a Transfer), events (a TransferPosted), outcomes, the
canonical event bytes, ``first_violation``, and fastavro's bare schemaless writer/reader on
the same record as the baseline the codec adds to.
"""

from __future__ import annotations

import io
import timeit
from collections.abc import Callable

from fastavro import schemaless_reader, schemaless_writer

from schemas import codec
from schemas.limits import first_violation
from schemas.model import (
    GENESIS_HASH,
    AccountBalance,
    Outcome,
    OutcomeStatus,
    Transfer,
    TransferPosted,
)

REPEATS = 50_000

COMMAND = Transfer(
    tenant_id="tenant-0001",
    idempotency_key="order-000000017",
    submitted_at_us=1_700_000_000_000_000,
    transfer_id="tr-000000017",
    debit_account_id="acct-0001",
    credit_account_id="acct-0002",
    amount=125_000,
    currency="USD",
    metadata=(("channel", "web"),),
)
EVENT = TransferPosted(
    tenant_id="tenant-0001",
    sequence=17,
    event_id="tenant-0001:17",
    idempotency_key="order-000000017",
    effective_at_us=1_700_000_000_000_001,
    balances=(
        AccountBalance(account_id="acct-0001", currency="USD", debits_posted=125_000),
        AccountBalance(account_id="acct-0002", currency="USD", credits_posted=125_000),
    ),
    prev_hash=GENESIS_HASH,
    hash=b"\x01" * 32,
    transfer_id="tr-000000017",
    debit_account_id="acct-0001",
    credit_account_id="acct-0002",
    amount=125_000,
    currency="USD",
    reverses=None,
)
OUTCOME = Outcome(
    tenant_id="tenant-0001",
    idempotency_key="order-000000017",
    command_type="Transfer",
    fingerprint=b"\x02" * 32,
    field_fingerprints=b"\x01" * 8 + b"\x02" * 8,
    status=OutcomeStatus.ACCEPTED,
    event_sequences=(17,),
    decided_at_us=1_700_000_000_000_001,
)


def microseconds(function: Callable[[], object], repeats: int = REPEATS) -> float:
    best = min(timeit.repeat(function, number=repeats, repeat=3))
    return best / repeats * 1e6


def main() -> None:
    command_bytes = codec.encode_command(COMMAND)
    event_bytes = codec.encode_event(EVENT)
    outcome_bytes = codec.encode_outcome(OUTCOME)
    branch = codec.COMMANDS.by_type[Transfer]
    record = codec.to_avro(COMMAND, branch.field_names)

    def bare_write() -> bytes:
        buffer = io.BytesIO()
        schemaless_writer(buffer, branch.wire, record)
        return buffer.getvalue()

    body = bare_write()
    rows = [
        ("command encode", microseconds(lambda: codec.encode_command(COMMAND))),
        ("command decode", microseconds(lambda: codec.decode_command(command_bytes))),
        ("event encode", microseconds(lambda: codec.encode_event(EVENT))),
        ("event decode", microseconds(lambda: codec.decode_event(event_bytes))),
        ("event canonical bytes", microseconds(lambda: codec.event_canonical_bytes(EVENT))),
        ("event chain hash", microseconds(lambda: codec.event_chain_hash(EVENT))),
        ("outcome encode", microseconds(lambda: codec.encode_outcome(OUTCOME))),
        ("outcome decode", microseconds(lambda: codec.decode_outcome(outcome_bytes))),
        ("first_violation(command)", microseconds(lambda: first_violation(COMMAND))),
        ("baseline: fastavro write Transfer", microseconds(bare_write)),
        (
            "baseline: fastavro read Transfer",
            microseconds(lambda: schemaless_reader(io.BytesIO(body), branch.wire, None)),
        ),
    ]
    print(f"{'operation':40} {'µs/record':>10}")
    for name, value in rows:
        print(f"{name:40} {value:10.2f}")
    print(f"command size {len(command_bytes)} B, event size {len(event_bytes)} B")


if __name__ == "__main__":
    main()
