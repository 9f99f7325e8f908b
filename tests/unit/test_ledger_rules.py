"""The ledger core's rules, one targeted example each: every RejectReason, precedence, pending
transfers on stream time, reversals, tenant isolation, overflow, the hash chain."""

from __future__ import annotations

import dataclasses

import pytest

import ledger
from schemas.codec import event_chain_hash
from schemas.model import (
    GENESIS_HASH,
    INT64_MAX,
    AccountOpened,
    Command,
    OutcomeStatus,
    PendingExpired,
    PendingPosted,
    PendingVoided,
    RejectReason,
    TenantHead,
    TransferPending,
    TransferPosted,
    TransferStatus,
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


def rejected(book: Ledger, command: Command, **kwargs: int) -> tuple[RejectReason, str]:
    decision = book.run(command, **kwargs)
    assert isinstance(decision, ledger.Rejected), decision
    assert decision.outcome.status is OutcomeStatus.REJECTED
    assert decision.outcome.reason is not None
    return decision.outcome.reason, decision.outcome.detail


def field_of(detail: str) -> str:
    return detail.split(":", 1)[0]


# --------------------------------------------------------------------------- happy paths


def test_open_account_starts_the_tenant_chain() -> None:
    book = Ledger()
    decision = book.accept(open_account("cash"))
    (event,) = decision.events
    assert isinstance(event, AccountOpened)
    assert (event.sequence, event.event_id, event.prev_hash) == (1, "acme:1", GENESIS_HASH)
    assert event.hash == event_chain_hash(event)
    assert event.effective_at_us == book.now_us
    assert decision.outcome.event_sequences == (1,)
    assert book.state.head("acme") == TenantHead(
        tenant_id="acme",
        last_sequence=1,
        last_hash=event.hash,
        last_effective_at_us=event.effective_at_us,
    )


def test_posted_transfer_moves_money_and_chains_hashes() -> None:
    book = with_accounts("cash", "sales")
    decision = book.accept(transfer("t1", "cash", "sales", 1250))
    (event,) = decision.events
    assert isinstance(event, TransferPosted)
    assert event.sequence == 3
    assert event.prev_hash == book.events[1].hash
    assert [(b.account_id, b.debits_posted, b.credits_posted) for b in event.balances] == [
        ("cash", 1250, 0),
        ("sales", 0, 1250),
    ]
    assert book.account("cash").debits_posted == 1250
    assert book.state.transfer("acme", "t1").status is TransferStatus.POSTED  # type: ignore[union-attr]


# --------------------------------------------------------------------------- every reason


def test_invalid_command_names_the_field_and_is_stored() -> None:
    book = with_accounts("cash", "sales")
    command = transfer("t1", "cash", "sales", 0)
    reason, detail = rejected(book, command)
    assert (reason, field_of(detail)) == (RejectReason.INVALID_COMMAND, "amount")
    assert isinstance(book.run(command), ledger.Duplicate)  # stored: a retry gets the same


def test_invalid_scope_field_is_a_reply_only() -> None:
    book = Ledger()
    decision = book.run(open_account("cash", key=" has space"))
    assert isinstance(decision, ledger.Rejected) and decision.changes is None
    assert decision.outcome.reason is RejectReason.INVALID_COMMAND
    assert field_of(decision.outcome.detail) == "idempotency_key"


@pytest.mark.parametrize(
    ("command", "field"),
    [
        (
            open_account(
                "x", debits_must_not_exceed_credits=True, credits_must_not_exceed_debits=True
            ),
            "credits_must_not_exceed_debits",
        ),
        (open_account("x", overdraft_limit=5), "overdraft_limit"),
        (transfer("t", "a", "b", 5, pending_timeout_s=3), "pending_timeout_s"),
        (transfer("t", "a", "b", 5, pending=True, reverses="t0"), "reverses"),
        (transfer("t", "a", "b", INT64_MAX + 1), "amount"),
        (post_pending("t", 0), "amount"),
    ],
)
def test_contract_violations_the_rules_rely_on(command: Command, field: str) -> None:
    reason, detail = rejected(Ledger(), command)
    assert (reason, field_of(detail)) == (RejectReason.INVALID_COMMAND, field)


def test_idempotency_key_reused_names_the_field_and_keeps_the_original() -> None:
    book = with_accounts("cash", "sales")
    original = book.accept(transfer("t1", "cash", "sales", 100, key="k"))
    decision = book.run(transfer("t1", "cash", "sales", 101, key="k"))
    assert isinstance(decision, ledger.Rejected) and decision.changes is None
    assert decision.outcome.reason is RejectReason.IDEMPOTENCY_KEY_REUSED
    assert field_of(decision.outcome.detail) == "amount"
    assert book.state.outcome("acme", "k") == original.outcome
    assert book.account("cash").debits_posted == 100


def test_idempotency_key_reused_for_another_command_type() -> None:
    book = with_accounts("cash", "sales")
    reason, detail = rejected(book, void_pending("t1", key="open-cash"))
    assert (reason, field_of(detail)) == (RejectReason.IDEMPOTENCY_KEY_REUSED, "command_type")


def test_duplicate_returns_the_original_outcome_even_for_a_rejection() -> None:
    book = with_accounts("cash", "sales")
    first = book.run(transfer("t1", "cash", "nope", 5))
    before = ledger.export_records(book.state)
    again = book.run(dataclasses.replace(transfer("t1", "cash", "nope", 5), submitted_at_us=9))
    assert isinstance(again, ledger.Duplicate)
    assert again.outcome == first.outcome and again.events == () and again.changes is None
    assert list(before) == list(ledger.export_records(book.state))


def test_account_exists() -> None:
    book = with_accounts("cash")
    reason, detail = rejected(book, open_account("cash", key="again"))
    assert (reason, field_of(detail)) == (RejectReason.ACCOUNT_EXISTS, "account_id")


def test_transfer_exists() -> None:
    book = with_accounts("cash", "sales")
    book.accept(transfer("t1", "cash", "sales", 5))
    reason, detail = rejected(book, transfer("t1", "cash", "sales", 5, key="other"))
    assert (reason, field_of(detail)) == (RejectReason.TRANSFER_EXISTS, "transfer_id")


@pytest.mark.parametrize(
    ("debit", "credit", "field"),
    [("nope", "sales", "debit_account_id"), ("cash", "nope", "credit_account_id")],
)
def test_unknown_account_names_the_side(debit: str, credit: str, field: str) -> None:
    reason, detail = rejected(with_accounts("cash", "sales"), transfer("t1", debit, credit, 5))
    assert (reason, field_of(detail)) == (RejectReason.UNKNOWN_ACCOUNT, field)
    assert "nope" in detail


def test_currency_mismatch() -> None:
    book = with_accounts("cash", "sales")
    book.accept(open_account("euros", currency="EUR"))
    reason, detail = rejected(book, transfer("t1", "cash", "euros", 5))
    assert (reason, field_of(detail)) == (RejectReason.CURRENCY_MISMATCH, "credit_account_id")
    reason, detail = rejected(book, transfer("t2", "euros", "cash", 5, currency="EUR"))
    assert (reason, field_of(detail)) == (RejectReason.CURRENCY_MISMATCH, "credit_account_id")
    reason, _ = rejected(book, transfer("t3", "cash", "sales", 5, currency="EUR"))
    assert reason is RejectReason.CURRENCY_MISMATCH


def test_same_account() -> None:
    reason, _ = rejected(with_accounts("cash"), transfer("t1", "cash", "cash", 5))
    assert reason is RejectReason.SAME_ACCOUNT


def test_insufficient_funds_counts_pending_and_allows_the_overdraft() -> None:
    book = with_accounts("funding", "sales")
    book.accept(open_account("wallet", debits_must_not_exceed_credits=True, overdraft_limit=10))
    book.accept(transfer("in", "funding", "wallet", 100))
    book.accept(transfer("hold", "wallet", "sales", 60, pending=True))
    reason, detail = rejected(book, transfer("t1", "wallet", "sales", 51))
    assert (reason, field_of(detail)) == (RejectReason.INSUFFICIENT_FUNDS, "debit_account_id")
    book.accept(transfer("t2", "wallet", "sales", 50))  # exactly to the overdraft limit
    assert book.account("wallet").debits_posted + book.account("wallet").debits_pending == 110


def test_limit_exceeded_on_the_credit_side() -> None:
    book = with_accounts("cash")
    book.accept(open_account("card", credits_must_not_exceed_debits=True, overdraft_limit=5))
    book.accept(transfer("t1", "card", "cash", 20))
    book.accept(transfer("t2", "cash", "card", 25))  # 20 + 5 overdraft
    reason, detail = rejected(book, transfer("t3", "cash", "card", 1))
    assert (reason, field_of(detail)) == (RejectReason.LIMIT_EXCEEDED, "credit_account_id")


def test_overflow_is_rejected_never_wrapped() -> None:
    book = with_accounts("a", "b", "c")
    book.accept(transfer("t1", "a", "b", INT64_MAX))
    reason, detail = rejected(book, transfer("t2", "c", "b", 1))
    assert (reason, field_of(detail)) == (RejectReason.OVERFLOW, "credit_account_id")
    reason, _ = rejected(book, transfer("t3", "a", "c", 1, pending=True))
    assert reason is RejectReason.OVERFLOW  # posted + pending would pass int64 on "a"
    assert book.account("b").credits_posted == INT64_MAX


def test_overflow_of_the_pending_expiry_time() -> None:
    book = with_accounts("a", "b")
    reason, detail = rejected(
        book, transfer("t1", "a", "b", 1, pending=True, pending_timeout_s=10), at_us=INT64_MAX - 5
    )
    assert (reason, field_of(detail)) == (RejectReason.OVERFLOW, "pending_timeout_s")


# --------------------------------------------------------------------------- pending transfers


def test_post_pending_partially_releases_the_rest() -> None:
    book = with_accounts("cash", "sales")
    book.accept(transfer("p1", "cash", "sales", 100, pending=True))
    assert book.account("cash").debits_pending == 100
    decision = book.accept(post_pending("p1", 30))
    (event,) = decision.events
    assert isinstance(event, PendingPosted)
    assert (event.amount, event.pending_amount) == (30, 100)
    cash = book.account("cash")
    assert (cash.debits_posted, cash.debits_pending) == (30, 0)
    state = book.state.transfer("acme", "p1")
    assert state is not None and (state.status, state.amount_posted) == (TransferStatus.POSTED, 30)


def test_post_pending_in_full_by_default_and_then_final() -> None:
    book = with_accounts("cash", "sales")
    book.accept(transfer("p1", "cash", "sales", 100, pending=True))
    book.accept(post_pending("p1"))
    assert book.account("sales").credits_posted == 100
    reason, _ = rejected(book, post_pending("p1", key="again"))
    assert reason is RejectReason.PENDING_ALREADY_FINAL
    reason, _ = rejected(book, void_pending("p1"))
    assert reason is RejectReason.PENDING_ALREADY_FINAL


def test_amount_exceeds_pending() -> None:
    book = with_accounts("cash", "sales")
    book.accept(transfer("p1", "cash", "sales", 100, pending=True))
    reason, detail = rejected(book, post_pending("p1", 101))
    assert (reason, field_of(detail)) == (RejectReason.AMOUNT_EXCEEDS_PENDING, "amount")


def test_void_pending_releases_everything() -> None:
    book = with_accounts("cash", "sales")
    book.accept(transfer("p1", "cash", "sales", 100, pending=True))
    (event,) = book.accept(void_pending("p1")).events
    assert isinstance(event, PendingVoided) and event.amount == 100
    cash, sales = book.account("cash"), book.account("sales")
    assert (cash.debits_pending, sales.credits_pending, cash.debits_posted) == (0, 0, 0)
    reason, _ = rejected(book, post_pending("p1"))
    assert reason is RejectReason.PENDING_ALREADY_FINAL


def test_pending_not_found() -> None:
    book = with_accounts("cash", "sales")
    reason, detail = rejected(book, post_pending("ghost"))
    assert (reason, field_of(detail)) == (RejectReason.PENDING_NOT_FOUND, "transfer_id")
    reason, _ = rejected(book, void_pending("ghost"))
    assert reason is RejectReason.PENDING_NOT_FOUND


def test_pending_expires_on_stream_time_before_the_next_command() -> None:
    book = with_accounts("cash", "sales")
    created = book.accept(transfer("p1", "cash", "sales", 100, pending=True, pending_timeout_s=10))
    (pending_event,) = created.events
    assert isinstance(pending_event, TransferPending)
    expires_at = pending_event.expires_at_us
    assert expires_at == book.now_us + 10 * SECOND_US
    assert expires_at is not None
    book.accept(open_account("x"), at_us=expires_at - 1)
    assert book.account("cash").debits_pending == 100
    decision = book.accept(open_account("y"), at_us=expires_at)
    expired, opened = decision.events
    assert isinstance(expired, PendingExpired) and isinstance(opened, AccountOpened)
    assert expired.idempotency_key is None and expired.effective_at_us == expires_at
    assert decision.outcome.event_sequences == (opened.sequence,)
    assert opened.sequence == expired.sequence + 1
    assert book.account("cash").debits_pending == 0
    reason, _ = rejected(book, post_pending("p1"))
    assert reason is RejectReason.PENDING_EXPIRED


def test_late_record_timestamp_does_not_turn_stream_time_back() -> None:
    book = with_accounts("cash", "sales")
    book.accept(open_account("z"), at_us=T0_US + 100 * SECOND_US)
    created = book.accept(
        transfer("p1", "cash", "sales", 5, pending=True, pending_timeout_s=1), at_us=T0_US
    )
    (pending,) = created.events
    assert isinstance(pending, TransferPending)
    # a record stamped before the tenant's last event is effective with it, never before it
    assert pending.effective_at_us == T0_US + 100 * SECOND_US
    assert pending.expires_at_us == T0_US + 101 * SECOND_US
    assert created.outcome.decided_at_us == T0_US + 100 * SECOND_US
    assert book.state.stream_time_us == T0_US + 100 * SECOND_US
    decision = book.accept(open_account("w"), at_us=T0_US + 500 * SECOND_US)
    expired, opened = decision.events
    assert isinstance(expired, PendingExpired)
    assert expired.effective_at_us == T0_US + 101 * SECOND_US  # its deadline
    assert opened.effective_at_us == T0_US + 500 * SECOND_US
    assert book.state.stream_time_us == T0_US + 500 * SECOND_US


def test_expiry_order_is_by_expiry_then_tenant_then_transfer() -> None:
    book = Ledger()
    for tenant in ("b", "a"):
        for account_id in ("x", "y"):
            book.accept(open_account(account_id, tenant=tenant), at_us=T0_US - SECOND_US)
    for tenant, transfer_id, timeout in (
        ("b", "t2", 5),
        ("a", "t9", 5),
        ("a", "t1", 5),
        ("b", "t0", 3),
    ):
        command = transfer(
            transfer_id, "x", "y", 1, tenant=tenant, pending=True, pending_timeout_s=timeout
        )
        book.accept(command, at_us=T0_US)
    decision = book.accept(open_account("z", tenant="a"), at_us=T0_US + 60 * SECOND_US)
    expired = [
        (e.tenant_id, e.transfer_id) for e in decision.events if isinstance(e, PendingExpired)
    ]
    assert expired == [("b", "t0"), ("a", "t1"), ("a", "t9"), ("b", "t2")]


def test_duplicates_and_key_reuse_do_not_advance_stream_time() -> None:
    book = with_accounts("cash", "sales")
    book.accept(transfer("p1", "cash", "sales", 5, pending=True, pending_timeout_s=1))
    time_before = book.state.stream_time_us
    late = book.now_us + 10 * SECOND_US
    assert isinstance(book.run(open_account("cash"), at_us=late), ledger.Duplicate)
    assert rejected(book, open_account("cash", currency="EUR"), at_us=late)[0] is (
        RejectReason.IDEMPOTENCY_KEY_REUSED
    )
    assert book.state.stream_time_us == time_before
    assert book.state.transfer("acme", "p1").status is TransferStatus.PENDING  # type: ignore[union-attr]


# --------------------------------------------------------------------------- reversals


def test_reversal_swaps_sides_and_is_cumulative() -> None:
    book = with_accounts("cash", "sales")
    book.accept(transfer("t1", "cash", "sales", 100))
    (event,) = book.accept(transfer("r1", "sales", "cash", 60, reverses="t1")).events
    assert isinstance(event, TransferPosted) and event.reverses == "t1"
    original = book.state.transfer("acme", "t1")
    assert original is not None and original.amount_reversed == 60
    reason, detail = rejected(book, transfer("r2", "sales", "cash", 41, reverses="t1"))
    assert (reason, field_of(detail)) == (RejectReason.REVERSAL_EXCEEDS_ORIGINAL, "amount")
    book.accept(transfer("r3", "sales", "cash", 40, reverses="t1"))
    assert book.account("cash").debits_posted == book.account("cash").credits_posted == 100


def test_reversal_target_not_found_and_mismatch() -> None:
    book = with_accounts("cash", "sales", "other")
    book.accept(transfer("t1", "cash", "sales", 100))
    book.accept(transfer("p1", "cash", "sales", 100, pending=True))
    reason, detail = rejected(book, transfer("r1", "sales", "cash", 1, reverses="ghost"))
    assert (reason, field_of(detail)) == (RejectReason.REVERSAL_TARGET_NOT_FOUND, "reverses")
    reason, detail = rejected(book, transfer("r2", "cash", "sales", 1, reverses="t1"))
    assert (reason, field_of(detail)) == (RejectReason.REVERSAL_MISMATCH, "reverses")
    reason, _ = rejected(book, transfer("r3", "sales", "other", 1, reverses="t1"))
    assert reason is RejectReason.REVERSAL_MISMATCH
    reason, _ = rejected(book, transfer("r4", "sales", "cash", 1, reverses="p1"))
    assert reason is RejectReason.REVERSAL_MISMATCH  # still pending, not posted


def test_reversal_of_a_partially_posted_pending_is_bounded_by_the_posted_amount() -> None:
    book = with_accounts("cash", "sales")
    book.accept(transfer("p1", "cash", "sales", 100, pending=True))
    book.accept(post_pending("p1", 30))
    reason, _ = rejected(book, transfer("r1", "sales", "cash", 31, reverses="p1"))
    assert reason is RejectReason.REVERSAL_EXCEEDS_ORIGINAL
    book.accept(transfer("r2", "sales", "cash", 30, reverses="p1"))


def test_a_reversal_cannot_spend_money_the_account_no_longer_has() -> None:
    book = with_accounts("cash", "sink")
    book.accept(open_account("wallet", debits_must_not_exceed_credits=True))
    book.accept(transfer("t1", "cash", "wallet", 100))
    book.accept(transfer("t2", "wallet", "sink", 80))
    reason, _ = rejected(book, transfer("r1", "wallet", "cash", 100, reverses="t1"))
    assert reason is RejectReason.INSUFFICIENT_FUNDS


# --------------------------------------------------------------------------- tenants


def test_tenants_are_separate_ledgers() -> None:
    book = with_accounts("cash", "sales", tenant="acme")
    reason, _ = rejected(book, transfer("t1", "cash", "sales", 5, tenant="globex"))
    assert reason is RejectReason.UNKNOWN_ACCOUNT  # acme's accounts do not exist for globex
    for account_id in ("cash", "sales"):
        (event,) = book.accept(open_account(account_id, tenant="globex")).events
    assert (event.tenant_id, event.sequence, event.prev_hash != GENESIS_HASH) == ("globex", 2, True)
    book.accept(transfer("t1", "cash", "sales", 5, tenant="globex", key="same-key"))
    book.accept(transfer("t1", "cash", "sales", 7, tenant="acme", key="same-key"))
    assert book.account("cash", "globex").debits_posted == 5
    assert book.account("cash", "acme").debits_posted == 7


# --------------------------------------------------------------------------- precedence


def test_reasons_are_in_the_documented_precedence_order() -> None:
    assert [reason.value for reason in RejectReason] == [
        "invalid_command",
        "idempotency_key_reused",
        "account_exists",
        "transfer_exists",
        "unknown_account",
        "currency_mismatch",
        "same_account",
        "reversal_target_not_found",
        "reversal_mismatch",
        "reversal_exceeds_original",
        "pending_not_found",
        "pending_already_final",
        "pending_expired",
        "amount_exceeds_pending",
        "insufficient_funds",
        "limit_exceeded",
        "overflow",
        "monitor_exists",  # since v1.5, monitor commands only (decision 0058)
        "monitor_not_found",
        "monitor_limit_reached",
        "rate_limited",  # since v1.6: appended, checked by the processor before the rules (0083)
        "unauthenticated",  # since v1.7: appended, checked by the processor first (0085)
    ]


def precedence_book() -> Ledger:
    book = with_accounts("cash", "sales", "big", "source", "source2")
    book.accept(open_account("euros", currency="EUR"))
    book.accept(open_account("wallet", debits_must_not_exceed_credits=True))
    book.accept(open_account("card", credits_must_not_exceed_debits=True))
    book.accept(
        open_account("capped", credits_must_not_exceed_debits=True, overdraft_limit=INT64_MAX)
    )
    book.accept(transfer("t1", "cash", "sales", 100))
    book.accept(transfer("huge", "source", "big", INT64_MAX - 100))
    book.accept(transfer("fill", "source2", "capped", INT64_MAX - 100))
    book.accept(transfer("p1", "cash", "sales", 10, pending=True))
    book.accept(post_pending("p1"))
    return book


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        # invalid and key reused: the contract comes first
        (open_account("cash", currency="usd"), RejectReason.INVALID_COMMAND),
        # key reused and account exists
        (open_account("cash", asset_scale=3), RejectReason.IDEMPOTENCY_KEY_REUSED),
        # transfer exists and unknown account
        (transfer("t1", "nope", "sales", 5, key="k1"), RejectReason.TRANSFER_EXISTS),
        # unknown account and currency mismatch, and same account
        (transfer("t2", "nope", "euros", 5), RejectReason.UNKNOWN_ACCOUNT),
        (transfer("t3", "nope", "nope", 5), RejectReason.UNKNOWN_ACCOUNT),
        # currency mismatch and same account
        (transfer("t4", "euros", "euros", 5), RejectReason.CURRENCY_MISMATCH),
        # same account and insufficient funds
        (transfer("t5", "wallet", "wallet", 5), RejectReason.SAME_ACCOUNT),
        # reversal not found and insufficient funds
        (
            transfer("t6", "wallet", "cash", 5, reverses="ghost"),
            RejectReason.REVERSAL_TARGET_NOT_FOUND,
        ),
        # reversal mismatch and insufficient funds
        (transfer("t7", "wallet", "cash", 5, reverses="t1"), RejectReason.REVERSAL_MISMATCH),
        # reversal exceeds and overflow
        (transfer("t8", "sales", "big", 101, reverses="t1"), RejectReason.REVERSAL_MISMATCH),
        (
            transfer("t9", "sales", "cash", 101, reverses="t1"),
            RejectReason.REVERSAL_EXCEEDS_ORIGINAL,
        ),
        # pending already final and amount exceeds pending
        (post_pending("p1", 11, key="k2"), RejectReason.PENDING_ALREADY_FINAL),
        # insufficient funds on the debit side and limit exceeded on the credit side
        (transfer("t10", "wallet", "card", 5), RejectReason.INSUFFICIENT_FUNDS),
        # insufficient funds and overflow
        (transfer("t13", "wallet", "big", 200), RejectReason.INSUFFICIENT_FUNDS),
        # limit exceeded and overflow
        (transfer("t11", "cash", "capped", 200), RejectReason.LIMIT_EXCEEDED),
        # overflow alone
        (transfer("t12", "sales", "big", 200), RejectReason.OVERFLOW),
    ],
)
def test_the_first_applicable_reason_wins(command: Command, reason: RejectReason) -> None:
    assert rejected(precedence_book(), command)[0] is reason


def test_pending_expired_wins_over_amount_exceeds_pending() -> None:
    book = with_accounts("cash", "sales")
    book.accept(transfer("p1", "cash", "sales", 10, pending=True, pending_timeout_s=1))
    reason, _ = rejected(book, post_pending("p1", 11), at_us=book.now_us + 2 * SECOND_US)
    assert reason is RejectReason.PENDING_EXPIRED
