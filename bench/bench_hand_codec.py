"""The hand-written Avro writers and state readers: CPU µs per record (not a timed test).

    python -m bench.bench_hand_codec                              # as this process selects
    STREAMLEDGER_PURE_PYTHON=1 python -m bench.bench_hand_codec   # the Python sources

Times, through ``schemas.codec`` as the processor and the restore call them, the hand-written
writers (``schemas.avro_writers``: a 10-posting ``TransactionPosted`` with 13 balances and its
``TransactionState``, a ``Transfer`` command as the SDK encodes it, a ``TransferPosted`` as the
processor seals it) and readers (``schemas.avro_readers``: ``TransferState``,
``AccountState``, ``TenantHead``), each the best of ``ROUNDS`` rounds of CPU time, and prints
one JSON line with which of the two modules run compiled (mypyc, decision 0092). Compare two
builds by running each back to back (the machine is shared: only figures of one run compare).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Final

from schemas import codec
from schemas.model import (
    AccountBalance,
    AccountState,
    Posting,
    TenantHead,
    TransactionPosted,
    TransactionState,
    Transfer,
    TransferPosted,
    TransferState,
    TransferStatus,
)
from streamledger import native

ROUNDS: Final = 5
POSTINGS_PER_TRANSACTION: Final = 10
HASH: Final = b"\x01" * 32
POSTINGS: Final = tuple(
    Posting(
        debit_account_id=f"acct-{index:04d}",
        credit_account_id=f"acct-{index + 1:04d}",
        amount=1_000 + index,
        currency="USD",
    )
    for index in range(POSTINGS_PER_TRANSACTION)
)
EVENT: Final = TransactionPosted(
    tenant_id="tenant-0001",
    sequence=1_234,
    event_id="tenant-0001:1234",
    idempotency_key="order-000001234",
    effective_at_us=1_700_000_000_000_001,
    balances=tuple(
        AccountBalance(
            account_id=f"acct-{index:04d}",
            currency="USD",
            debits_posted=125_000 + index,
            credits_posted=99_000 + index,
        )
        for index in range(POSTINGS_PER_TRANSACTION + 3)
    ),
    prev_hash=HASH,
    hash=HASH,
    metadata=(("channel", "web"),),
    actor="payments-gw",
    transaction_id="tx-000001234",
    postings=POSTINGS,
    reverses=None,
)
TRANSACTION_STATE: Final = TransactionState(
    tenant_id="tenant-0001",
    transaction_id="tx-000001234",
    postings=POSTINGS,
    status=TransferStatus.PENDING,
    amounts_posted=(0,) * POSTINGS_PER_TRANSACTION,
    amounts_reversed=(0,) * POSTINGS_PER_TRANSACTION,
    reverses=None,
    expires_at_us=1_700_000_100_000_000,
    last_sequence=1_234,
)
# The per-command records (decision 0104): what the SDK encodes per send, what the processor
# seals per transfer.
TRANSFER_COMMAND: Final = Transfer(
    tenant_id="tenant-0001",
    idempotency_key="order-000001234",
    submitted_at_us=1_700_000_000_000_001,
    transfer_id="tr-000001234",
    debit_account_id="acct-0001",
    credit_account_id="acct-0002",
    amount=125_000,
    currency="USD",
)
TRANSFER_POSTED: Final = TransferPosted(
    tenant_id="tenant-0001",
    sequence=1_234,
    event_id="tenant-0001:1234",
    idempotency_key="order-000001234",
    effective_at_us=1_700_000_000_000_001,
    balances=(
        AccountBalance(account_id="acct-0001", currency="USD", debits_posted=125_000),
        AccountBalance(account_id="acct-0002", currency="USD", credits_posted=125_000),
    ),
    prev_hash=HASH,
    hash=HASH,
    actor="payments-gw",
    transfer_id="tr-000001234",
    debit_account_id="acct-0001",
    credit_account_id="acct-0002",
    amount=125_000,
    currency="USD",
    reverses=None,
)
STATE_RECORDS: Final = {
    "TransferState": TransferState(
        tenant_id="tenant-0001",
        transfer_id="tr-000000017",
        debit_account_id="acct-0001",
        credit_account_id="acct-0002",
        currency="USD",
        amount=125_000,
        status=TransferStatus.POSTED,
        amount_posted=125_000,
        amount_reversed=0,
        reverses=None,
        expires_at_us=None,
        last_sequence=17,
    ),
    "AccountState": AccountState(
        tenant_id="tenant-0001",
        account_id="acct-0001",
        currency="USD",
        asset_scale=2,
        debits_must_not_exceed_credits=False,
        credits_must_not_exceed_debits=True,
        overdraft_limit=None,
        debits_posted=125_000,
        credits_posted=99_000,
        debits_pending=0,
        credits_pending=0,
        last_sequence=17,
    ),
    "TenantHead": TenantHead(
        tenant_id="tenant-0001",
        last_sequence=17,
        last_hash=HASH,
        last_effective_at_us=1_700_000_000_000_001,
    ),
}


def cpu_us_per_call(call: Callable[[], object], repeats: int) -> float:
    """The best of ``ROUNDS`` rounds of ``repeats`` calls: CPU µs per call."""
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.process_time()
        for _ in range(repeats):
            call()
        best = min(best, (time.process_time() - started) / repeats * 1e6)
    return round(best, 2)


def main() -> None:
    figures: dict[str, object] = {
        "compiled": [
            name
            for name in native.compiled_modules()
            if name in ("schemas.avro_writers", "schemas.avro_readers")
        ],
        "seal TransactionPosted (10 postings)": cpu_us_per_call(
            lambda: codec.seal_event(EVENT), 2_000
        ),
        "encode TransactionState (10 postings)": cpu_us_per_call(
            lambda: codec.encode_state(TRANSACTION_STATE), 4_000
        ),
        "encode Transfer command": cpu_us_per_call(
            lambda: codec.encode_command(TRANSFER_COMMAND), 40_000
        ),
        "seal TransferPosted": cpu_us_per_call(lambda: codec.seal_event(TRANSFER_POSTED), 20_000),
    }
    for name, record in STATE_RECORDS.items():
        data = codec.encode_state(record)
        assert codec.decode_state(data) == record
        figures[f"decode {name}"] = cpu_us_per_call(
            lambda data=data: codec.decode_state(data), 20_000
        )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
