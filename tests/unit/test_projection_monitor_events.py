"""The projection plans balance monitor events (schemas v1.5, decision 0058) as links of the
chain that move no money: no journal row, no transfer, the same balances, no quarantine."""

from __future__ import annotations

import ledger
from projections.batch import plan_batch
from schemas.model import CreateMonitor, DeleteMonitor
from tests.unit.ledger_builders import T0_US, Ledger, open_account, transfer


def test_monitor_events_continue_the_chain_and_add_no_rows() -> None:
    book = Ledger()
    book.accept(open_account("cash"))
    book.accept(open_account("alice", debits_must_not_exceed_credits=True))
    book.accept(transfer("t1", "cash", "alice", 500))
    without = plan_batch(book.events)
    book.accept(
        CreateMonitor(
            tenant_id="acme",
            idempotency_key="m",
            submitted_at_us=T0_US,
            monitor_id="low",
            account_id="alice",
            field="available",
            operator="<",
            threshold=1_000,
        )
    )
    book.accept(transfer("t2", "cash", "alice", 700))
    decision = book.accept(
        DeleteMonitor(
            tenant_id="acme", idempotency_key="d", submitted_at_us=T0_US, monitor_id="low"
        )
    )
    assert isinstance(decision, ledger.Accepted)
    plan = plan_batch(book.events)
    assert not plan.quarantines
    assert [link[1] for link in plan.chain] == [1, 2, 3, 4, 5, 6]
    assert len(plan.entries) == len(plan_batch(book.events[:5]).entries) == len(without.entries) + 2
    assert plan.balances[("acme", "alice")][:6] == ("acme", "alice", 0, 1_200, 0, 0)


def test_the_plan_keeps_live_monitors_and_deletes_older_ones() -> None:
    """Created in the batch: a row as the batch leaves it; created and deleted in it: nothing;
    deleted but created before the batch: a delete; deleted then created again: both."""
    book = Ledger()
    book.accept(open_account("alice", debits_must_not_exceed_credits=True))

    def create(monitor_id: str, key: str) -> None:
        book.accept(
            CreateMonitor(
                tenant_id="acme",
                idempotency_key=key,
                submitted_at_us=T0_US,
                metadata=(("owner", "risk"),),
                monitor_id=monitor_id,
                account_id="alice",
                field="posted",
                operator=">=",
                threshold=-5,
            )
        )

    def delete(monitor_id: str, key: str) -> None:
        book.accept(
            DeleteMonitor(
                tenant_id="acme", idempotency_key=key, submitted_at_us=T0_US, monitor_id=monitor_id
            )
        )

    create("old", "c1")
    create("again", "c2")
    before = len(book.events)
    delete("old", "d1")
    create("short", "c3")
    delete("short", "d2")
    delete("again", "d3")
    create("again", "c4")
    plan = plan_batch(book.events[before:])  # a batch after the creations
    assert plan.deleted_monitors == {("acme", "old"), ("acme", "again")}
    (row,) = plan.monitors.values()
    assert row[:8] == ("acme", "again", "alice", "posted", ">=", -5, {"owner": "risk"}, 8)
