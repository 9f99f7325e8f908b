"""One meaning per event: the core's fold and the projection's planner agree on every history.

Both read what an event does from ``ledger.effects``; this property checks the two users stay in
step. Generated histories (tests/unit/test_ledger_properties.py: opens, posted and pending
transfers, reversals, posts, voids, expiries, duplicates and reused keys) are decided by the
core; their events are then folded by ``ledger.apply`` into a fresh state and planned by
``projections.batch`` (journal rows, balances after, transfer rows). Balances and transfer states
must be the same, and each account's journal must sum to its balance.
"""

from __future__ import annotations

from hypothesis import given

import ledger
from ledger.effects import MONEY_EVENT_TYPES
from processors.partition_ledger import WIRE_FORMAT
from projections.batch import fold_transfers, plan_batch
from projections.event_records import event_record
from schemas.model import AccountState, TransferState
from tests.unit.test_ledger_properties import (
    PROPERTY_SETTINGS,
    History,
    build,
    events_of,
    histories,
    run,
)


@PROPERTY_SETTINGS
@given(histories)
def test_the_fold_and_the_projection_planner_agree(history: History) -> None:
    _, decisions = run(build(history))
    events = events_of(decisions)
    folded = ledger.LedgerState(wire_format=WIRE_FORMAT)
    for event in events:
        ledger.apply(folded, event)
    folded.commit()
    records = list(ledger.export_records(folded))

    plan = plan_batch(events)
    assert not plan.quarantines
    planned_balances = {key: row[2:6] for key, row in plan.balances.items()}
    folded_balances = {
        (r.tenant_id, r.account_id): (
            r.debits_posted,
            r.credits_posted,
            r.debits_pending,
            r.credits_pending,
        )
        for r in records
        if isinstance(r, AccountState) and r.last_sequence > 0
    }
    touched = {key: value for key, value in folded_balances.items() if key in planned_balances}
    assert planned_balances == touched
    assert all(value == (0, 0, 0, 0) for key, value in folded_balances.items()
               if key not in planned_balances)  # fmt: skip

    planned_transfers = fold_transfers({}, [event_record(e) for e in events if _is_money(e)])
    folded_transfers = {
        (r.tenant_id, r.transfer_id): (
            r.status.value,
            r.amount_posted,
            r.amount_reversed,
            r.last_sequence,
        )
        for r in records
        if isinstance(r, TransferState)
    }
    assert {
        key: (row.status, row.amount_posted, row.amount_reversed, row.last_sequence)
        for key, row in planned_transfers.items()
    } == folded_transfers
    _assert_journals_sum_to_balances(plan.entries, planned_balances)


def _is_money(event: object) -> bool:
    return type(event).__name__ in MONEY_EVENT_TYPES


def _assert_journals_sum_to_balances(
    entries: list[tuple[object, ...]], balances: dict[tuple[str, str], tuple[int, ...]]
) -> None:
    """Summing each account's postings (kind, side, amount) gives its balance after the batch."""
    sums: dict[tuple[str, str], list[int]] = {}
    for row in entries:
        tenant_id, account_id, _, kind, side, *_, amount = row[:9]
        total = sums.setdefault((str(tenant_id), str(account_id)), [0, 0, 0, 0])
        column = 0 if side == "debit" else 1
        assert isinstance(amount, int)
        if kind == ledger.PostingKind.POSTED.value:
            total[column] += amount
        elif kind == ledger.PostingKind.PENDING.value:
            total[column + 2] += amount
        else:
            total[column + 2] -= amount
    for key, counters in sums.items():
        assert tuple(counters) == balances[key], key
