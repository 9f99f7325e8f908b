"""The projection's planner on multi-leg transactions (issue 16 phase 3, decision 0042): one
``transactions`` row, one ``transfers`` row per posting (``{transaction_id}/{i}``), one journal
row per posting side and kind carrying the account's counters after the whole event; pending,
post, void, expiry and reversals move every posting; a bad transaction event quarantines only
its tenant."""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict

from hypothesis import given
from hypothesis import strategies as st

import ledger
from pipeline.events_tail import event_to_json
from processors.partition_ledger import WIRE_FORMAT
from projections.batch import (
    REASON_FOLD_FAILED,
    BatchPlan,
    EntryRow,
    TransferRow,
    fold_transfers,
    plan_batch,
    posting_transfer_id,
)
from projections.verify import Place, TenantAudit
from schemas.model import (
    AccountState,
    Event,
    Posting,
    PostTransaction,
    TransactionPosted,
    TransactionState,
)
from tests.unit.ledger_builders import (
    SECOND_US,
    T0_US,
    Ledger,
    open_account,
    post_pending,
    transfer,
    void_pending,
    with_accounts,
)
from tests.unit.test_transactions import EXAMPLES, operations
from tests.unit.test_transactions import _history as transaction_history


def posting(debit: str, credit: str, amount: int, currency: str = "USD") -> Posting:
    return Posting(
        debit_account_id=debit, credit_account_id=credit, amount=amount, currency=currency
    )


def transaction(transaction_id: str, *postings: Posting, **fields: object) -> PostTransaction:
    return PostTransaction(
        tenant_id="acme",
        idempotency_key=f"tx-{transaction_id}",
        submitted_at_us=T0_US,
        transaction_id=transaction_id,
        postings=postings,
        **fields,  # type: ignore[arg-type]
    )


def funded(*account_ids: str, amount: int = 10_000) -> Ledger:
    book = with_accounts("world")
    for account_id in account_ids:
        book.accept(open_account(account_id, debits_must_not_exceed_credits=True))
        book.accept(transfer(f"fund-{account_id}", "world", account_id, amount))
    return book


def planned_transfers(plan: BatchPlan) -> dict[tuple[str, str], TransferRow]:
    return fold_transfers({}, plan.transfer_events)


def journal_sums(entries: list[EntryRow]) -> dict[str, list[int]]:
    """Per account, the four counters the journal rows add up to."""
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for row in entries:
        account_id, kind, side, amount = row[1], row[3], row[4], row[8]
        column = (0 if side == "debit" else 1) + (0 if kind == "posted" else 2)
        sums[account_id][column] += -amount if kind == "released" else amount
    return sums


def test_a_payout_is_one_transaction_row_a_transfer_per_posting_and_exact_entries() -> None:
    book = funded("pool", amount=1_000_000)
    sellers = [f"seller-{i}" for i in range(50)]
    for seller in sellers:
        book.accept(open_account(seller))
    book.accept(
        transaction("payout", *(posting("pool", s, 100 + i) for i, s in enumerate(sellers)))
    )
    event = book.events[-1]
    assert isinstance(event, TransactionPosted)

    plan = plan_batch(book.events)
    assert not plan.quarantines
    row = plan.transactions[("acme", "payout")]
    assert (row.posting_count, row.currencies, row.pending, row.status) == (
        50,
        ["USD"],
        False,
        "posted",
    )
    assert row.created_sequence == row.last_sequence == event.sequence
    transfers = planned_transfers(plan)
    for index, seller in enumerate(sellers):
        posted = transfers[("acme", posting_transfer_id("payout", index))]
        assert (posted.debit_account_id, posted.credit_account_id) == ("pool", seller)
        assert (posted.amount, posted.amount_posted, posted.status) == (100 + index,) * 2 + (
            "posted",
        )
    rows = [r for r in plan.entries if r[2] == event.sequence]
    assert len(rows) == 100 and {r[6] for r in rows} == {"TransactionPosted"}
    keys = [(r[1], r[2], r[3], r[5]) for r in rows]
    assert len(set(keys)) == len(keys)  # the entries key (account, sequence, kind, transfer_id)
    pool_after = book.account("pool")
    pool_rows = [r for r in rows if r[1] == "pool"]
    assert len(pool_rows) == 50
    assert {r[9:13] for r in pool_rows} == {
        (pool_after.debits_posted, pool_after.credits_posted, 0, 0)
    }
    # every account's journal adds up to its balance
    for (_tenant, account_id), balance in plan.balances.items():
        assert journal_sums(plan.entries)[account_id] == list(balance[2:6]), account_id


def test_fx_records_both_currencies() -> None:
    book = Ledger()
    for account_id, currency in (
        ("customer_eur", "EUR"),
        ("fx_liquidity_eur", "EUR"),
        ("fx_liquidity_usd", "USD"),
        ("customer_usd", "USD"),
    ):
        book.accept(open_account(account_id, currency=currency))
    book.accept(
        transaction(
            "fx-1",
            posting("customer_eur", "fx_liquidity_eur", 10_000, "EUR"),
            posting("fx_liquidity_usd", "customer_usd", 10_837, "USD"),
        )
    )
    plan = plan_batch(book.events)
    assert plan.transactions[("acme", "fx-1")].currencies == ["EUR", "USD"]
    currencies = {r[1]: r[7] for r in plan.entries}
    assert currencies == {
        "customer_eur": "EUR",
        "fx_liquidity_eur": "EUR",
        "fx_liquidity_usd": "USD",
        "customer_usd": "USD",
    }


def test_pending_then_posted_in_another_batch_is_a_change_not_a_new_row() -> None:
    book = funded("a", amount=1_000)
    book.accept(open_account("b"))
    book.accept(open_account("c"))
    book.accept(transaction("hold", posting("a", "b", 300), posting("a", "c", 200), pending=True))
    first = plan_batch(book.events)
    assert first.transactions[("acme", "hold")].status == "pending"
    held = len(book.events)
    book.accept(post_pending("hold"))
    second = plan_batch(book.events[held:])
    known = planned_transfers(first)
    after = fold_transfers(known, second.transfer_events)
    assert [after[("acme", f"hold/{i}")].amount_posted for i in range(2)] == [300, 200]
    assert second.transactions == {}
    ((key, change),) = second.transaction_changes.items()
    assert key == ("acme", "hold") and change[2:4] == ("posted", book.events[-1].sequence)
    kinds = sorted((r[1], r[3]) for r in second.entries)
    assert kinds.count(("a", "released")) == 2 and kinds.count(("a", "posted")) == 2
    assert {r[6] for r in second.entries} == {"TransactionPendingPosted"}


def test_void_and_expiry_in_the_same_batch_end_the_created_row() -> None:
    book = funded("a", amount=1_000)
    book.accept(open_account("b"))
    book.accept(transaction("v", posting("a", "b", 300), posting("a", "b", 1), pending=True))
    book.accept(void_pending("v"))
    book.accept(
        transaction("e", posting("a", "b", 400), pending=True, pending_timeout_s=10),
        at_us=T0_US + SECOND_US,
    )
    ticked = ledger.step_tick(book.state, T0_US + 11 * SECOND_US)
    events: list[Event] = [*book.events, *ticked.events]
    plan = plan_batch(events)
    assert not plan.quarantines
    assert plan.transactions[("acme", "v")].status == "voided"
    expired = plan.transactions[("acme", "e")]
    assert expired.status == "expired" and expired.expires_at is not None
    transfers = planned_transfers(plan)
    assert {transfers[("acme", f"v/{i}")].status for i in range(2)} == {"voided"}
    assert transfers[("acme", "e/0")].status == "expired"
    assert journal_sums(plan.entries)["a"] == [0, 1_000, 0, 0]


def test_a_reversal_reverses_each_posting_row() -> None:
    book = funded("a", amount=1_000)
    book.accept(open_account("b"))
    book.accept(open_account("c"))
    book.accept(transaction("sale", posting("a", "b", 300), posting("a", "c", 50)))
    book.accept(transaction("r", posting("b", "a", 100), posting("c", "a", 50), reverses="sale"))
    plan = plan_batch(book.events)
    assert plan.transactions[("acme", "r")].reverses == "sale"
    transfers = planned_transfers(plan)
    assert transfers[("acme", "r/0")].reverses == "sale/0"
    assert [transfers[("acme", f"sale/{i}")].amount_reversed for i in range(2)] == [100, 50]
    assert plan.existing_transfer_keys() == set()


def test_a_transaction_event_that_cannot_apply_quarantines_only_its_tenant() -> None:
    book = funded("a")
    book.accept(open_account("b"))
    book.accept(transaction("t", posting("a", "b", 5)))
    broken = book.events[-1]
    assert isinstance(broken, TransactionPosted)
    book.events[-1] = dataclasses.replace(broken, postings=())
    other = Ledger()
    other.accept(open_account("z", tenant="other"))
    plan = plan_batch([*book.events, *other.events])
    quarantine = plan.quarantines["acme"]
    assert quarantine.reason == REASON_FOLD_FAILED
    assert quarantine.sequence == broken.sequence and "has 0 postings" in quarantine.detail
    assert "other" not in plan.quarantines
    assert ("acme", "t") not in plan.transactions


def test_a_transaction_created_twice_in_a_batch_is_a_fold_failure() -> None:
    book = funded("a")
    book.accept(open_account("b"))
    book.accept(transaction("t", posting("a", "b", 5)))
    repeated = dataclasses.replace(
        book.events[-1], sequence=book.events[-1].sequence + 1, prev_hash=book.events[-1].hash
    )
    plan = plan_batch([*book.events, repeated])
    assert plan.quarantines["acme"].reason == REASON_FOLD_FAILED
    assert "created twice" in plan.quarantines["acme"].detail


def test_verify_folds_transaction_rows_and_names_a_difference() -> None:
    book = funded("a", amount=1_000)
    book.accept(open_account("b"))
    book.accept(transaction("sale", posting("a", "b", 300), posting("a", "b", 50)))
    book.accept(transaction("hold", posting("a", "b", 5), pending=True))
    book.accept(void_pending("hold"))
    audit = TenantAudit("acme")
    for offset, event in enumerate(book.events):
        audit.fold_transaction(event, f"on {Place(0, offset)}")
    assert not audit.problems
    last = book.events[-1].sequence
    assert audit.transactions == {
        "sale": (2, False, None, "posted", last - 2, last - 2),
        "hold": (1, True, None, "voided", last - 1, last),
    }
    audit.check_transactions(dict(audit.transactions))
    assert not audit.problems
    audit.check_transactions({"sale": audit.transactions["sale"]})
    (problem,) = audit.problems
    assert problem.startswith("PostgreSQL transaction 'hold' is None")


def test_events_tail_says_how_many_postings_and_what_they_move_per_currency() -> None:
    book = Ledger()
    for account_id, currency in (
        ("c_eur", "EUR"),
        ("l_eur", "EUR"),
        ("l_usd", "USD"),
        ("c_usd", "USD"),
    ):
        book.accept(open_account(account_id, currency=currency))
    book.accept(
        transaction(
            "fx", posting("c_eur", "l_eur", 100, "EUR"), posting("l_usd", "c_usd", 108, "USD")
        )
    )
    line = json.loads(event_to_json(book.events[-1], partition=1, offset=9))
    assert line["type"] == "TransactionPosted" and line["posting_count"] == 2
    assert line["amounts_by_currency"] == {"EUR": 100, "USD": 108}
    assert line["postings"][1]["credit_account_id"] == "c_usd"
    assert "posting_count" not in json.loads(event_to_json(book.events[0]))


@EXAMPLES
@given(operations, st.integers(0, 20))
def test_the_planner_agrees_with_the_core_on_random_transactions_across_two_batches(
    ops: list[tuple[tuple[Posting, ...], str]], cut: int
) -> None:
    """Random multi-leg histories (posted, pending, post, void; some rejected) decided by the
    core, planned in two batches split anywhere: every transaction's status and per-posting
    posted amounts, and every balance, are the core's; each journal adds up to its balance."""
    state = ledger.LedgerState(wire_format=WIRE_FORMAT)
    events: list[Event] = []
    for command, timestamp in transaction_history(ops):
        events.extend(ledger.step(state, command, timestamp).events)
    state.commit()
    first, second = plan_batch(events[:cut]), plan_batch(events[cut:])
    assert not first.quarantines and not second.quarantines
    known = planned_transfers(first)
    transfers = known | fold_transfers(known, second.transfer_events)
    statuses = {key: row.status for key, row in first.transactions.items()}
    statuses |= {key: change[2] for key, change in second.transaction_changes.items()}
    statuses |= {key: row.status for key, row in second.transactions.items()}
    core = [r for r in ledger.export_records(state) if isinstance(r, TransactionState)]
    assert statuses == {(r.tenant_id, r.transaction_id): r.status.value for r in core}
    for record in core:
        posted = [
            transfers[(record.tenant_id, posting_transfer_id(record.transaction_id, index))]
            for index in range(len(record.postings))
        ]
        assert tuple(row.amount_posted for row in posted) == record.amounts_posted
        assert {row.status for row in posted} == {record.status.value}
    balances = first.balances | second.balances
    accounts = {
        (r.tenant_id, r.account_id): [
            r.debits_posted,
            r.credits_posted,
            r.debits_pending,
            r.credits_pending,
        ]
        for r in ledger.export_records(state)
        if isinstance(r, AccountState)
    }
    sums = journal_sums(first.entries + second.entries)
    for key, row in balances.items():
        assert list(row[2:6]) == accounts[key] == sums.get(key[1], [0, 0, 0, 0])
