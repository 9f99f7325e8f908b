"""The core's rules for multi-leg transactions (issue 16 phase 2, decision 0040): all or nothing,
net limits, the first failing posting named, FX through liquidity accounts, pending post/void/
expiry of every posting, reversals per posting; Hypothesis for conservation per currency,
all-or-nothing under random failing postings, replay and restore mid-stream."""

from __future__ import annotations

import dataclasses
from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

import ledger
from processors.partition_ledger import WIRE_FORMAT
from schemas.codec import event_canonical_bytes
from schemas.model import (
    AccountState,
    Command,
    Event,
    Posting,
    PostTransaction,
    RejectReason,
    TransactionPendingExpired,
    TransactionPosted,
    TransactionState,
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


def posting(debit: str, credit: str, amount: int, currency: str = "USD") -> Posting:
    return Posting(
        debit_account_id=debit, credit_account_id=credit, amount=amount, currency=currency
    )


def transaction(
    transaction_id: str, *postings: Posting, key: str | None = None, **fields: object
) -> PostTransaction:
    return PostTransaction(
        tenant_id="acme",
        idempotency_key=key or f"tx-{transaction_id}",
        submitted_at_us=T0_US,
        transaction_id=transaction_id,
        postings=postings,
        **fields,  # type: ignore[arg-type]
    )


def counters(book: Ledger, account_id: str) -> tuple[int, int, int, int]:
    account = book.account(account_id)
    return (
        account.debits_posted,
        account.credits_posted,
        account.debits_pending,
        account.credits_pending,
    )


def funded(*account_ids: str, amount: int = 10_000) -> Ledger:
    """``world`` (unlimited) and each account (may not go below zero) holding ``amount``."""
    book = with_accounts("world")
    for account_id in account_ids:
        book.accept(open_account(account_id, debits_must_not_exceed_credits=True))
        book.accept(transfer(f"fund-{account_id}", "world", account_id, amount))
    return book


def test_a_card_payment_is_one_event_with_every_posting() -> None:
    book = funded("card")
    book.accept(open_account("merchant"))
    book.accept(open_account("platform"))
    book.accept(open_account("network"))
    decision = book.accept(
        transaction(
            "pay-1",
            posting("card", "merchant", 9710),
            posting("card", "platform", 260),
            posting("card", "network", 30),
        )
    )
    (event,) = decision.events
    assert isinstance(event, TransactionPosted)
    assert decision.outcome.event_sequences == (event.sequence,)
    assert [balance.account_id for balance in event.balances] == [
        "card",
        "merchant",
        "platform",
        "network",
    ]
    assert counters(book, "card") == (10_000, 10_000, 0, 0)
    assert counters(book, "platform") == (0, 260, 0, 0)
    state = book.state.transaction("acme", "pay-1")
    assert state is not None and state.status is TransferStatus.POSTED
    assert state.amounts_posted == (9710, 260, 30)
    ledger.assert_invariants(book.state)


def test_a_rejected_posting_rejects_all_and_names_the_first_failing_one() -> None:
    book = funded("a", "b", amount=100)
    book.accept(open_account("c"))
    before = list(ledger.export_records(book.state))
    postings = [posting("a", "c", 10), posting("b", "c", 10), posting("a", "c", 10)]
    postings.append(posting("b", "c", 200))  # b has 100: posting 3 breaks the rule
    decision = book.run(transaction("many", *postings))
    assert isinstance(decision, ledger.Rejected)
    assert decision.outcome.reason is RejectReason.INSUFFICIENT_FUNDS
    assert decision.outcome.detail.startswith("postings[1].debit_account_id: account 'b'")
    assert decision.events == ()
    assert [r for r in ledger.export_records(book.state) if not _is_head(r)] == [
        r for r in before if not _is_head(r)
    ]
    unknown = book.run(transaction("u", posting("a", "c", 1), posting("a", "zz", 1), key="u"))
    assert unknown.outcome.detail == "postings[1].credit_account_id: no account 'zz'"


def _is_head(record: object) -> bool:
    return type(record).__name__ == "TenantHead"


def test_limits_apply_to_the_net_effect_not_posting_by_posting() -> None:
    """Decision 0040: ``empty`` may not go below zero and holds nothing. Debited 100 by posting 0
    and credited 100 by posting 1, its net effect is zero: the transaction is accepted. Checked
    posting by posting (or as two transfers) the first posting would be refused."""
    book = funded("source", amount=100)
    book.accept(open_account("empty", debits_must_not_exceed_credits=True))
    book.accept(open_account("shop"))
    sequential = book.run(transfer("first", "empty", "shop", 100))
    assert sequential.outcome.reason is RejectReason.INSUFFICIENT_FUNDS
    net = book.run(
        transaction("swap", posting("empty", "shop", 100), posting("source", "empty", 100))
    )
    assert isinstance(net, ledger.Accepted)
    assert counters(book, "empty") == (100, 100, 0, 0)
    # a pending transaction's own credits do not help (as for a pending transfer)
    pending = book.run(
        transaction(
            "swap-pending",
            posting("empty", "shop", 100),
            posting("shop", "empty", 100),
            pending=True,
        )
    )
    assert pending.outcome.reason is RejectReason.INSUFFICIENT_FUNDS
    assert pending.outcome.detail.startswith("postings[0].debit_account_id")


def test_fx_through_liquidity_accounts_conserves_each_currency() -> None:
    book = Ledger()
    for account_id, currency in (
        ("customer_eur", "EUR"),
        ("fx_liquidity_eur", "EUR"),
        ("fx_liquidity_usd", "USD"),
        ("customer_usd", "USD"),
    ):
        book.accept(open_account(account_id, currency=currency))
    fx = transaction(
        "fx-1",
        posting("customer_eur", "fx_liquidity_eur", 10_000, "EUR"),
        posting("fx_liquidity_usd", "customer_usd", 10_837, "USD"),
        metadata=(("fx_pair", "EUR/USD"), ("fx_rate", "1.0837")),
    )
    book.accept(fx)
    assert counters(book, "customer_usd") == (0, 10_837, 0, 0)
    ledger.assert_invariants(book.state)
    wrong = book.run(
        transaction("fx-2", posting("customer_eur", "customer_usd", 1, "EUR"), key="fx-2")
    )
    assert wrong.outcome.reason is RejectReason.CURRENCY_MISMATCH
    assert wrong.outcome.detail.startswith("postings[0].credit_account_id: account 'customer_usd'")


def test_pending_transaction_reserves_then_posts_every_posting_in_full() -> None:
    book = funded("a", amount=1_000)
    book.accept(open_account("b"))
    book.accept(open_account("c"))
    book.accept(transaction("hold", posting("a", "b", 300), posting("a", "c", 200), pending=True))
    assert counters(book, "a") == (0, 1_000, 500, 0)
    partial = book.run(post_pending("hold", 100))
    assert partial.outcome.reason is RejectReason.INVALID_COMMAND
    assert partial.outcome.detail.startswith("amount: a pending transaction is posted in full")
    book.accept(post_pending("hold", key="post-hold-full"))
    assert counters(book, "a") == (500, 1_000, 0, 0)
    assert counters(book, "c") == (0, 200, 0, 0)
    again = book.run(void_pending("hold"))
    assert again.outcome.reason is RejectReason.PENDING_ALREADY_FINAL
    ledger.assert_invariants(book.state)


def test_void_and_expiry_release_every_posting() -> None:
    book = funded("a", amount=1_000)
    book.accept(open_account("b"))
    book.accept(transaction("v", posting("a", "b", 300), posting("a", "b", 1), pending=True))
    book.accept(void_pending("v"))
    assert counters(book, "a") == (0, 1_000, 0, 0)
    book.accept(
        transaction("e", posting("a", "b", 400), pending=True, pending_timeout_s=10),
        at_us=T0_US + SECOND_US,
    )
    assert counters(book, "a")[2] == 400
    ticked = ledger.step_tick(book.state, T0_US + 11 * SECOND_US)
    (expired,) = ticked.events
    assert isinstance(expired, TransactionPendingExpired)
    assert expired.effective_at_us == T0_US + 11 * SECOND_US
    assert counters(book, "a") == (0, 1_000, 0, 0)
    late = book.run(post_pending("e"), at_us=T0_US + 12 * SECOND_US)
    assert late.outcome.reason is RejectReason.PENDING_EXPIRED
    ledger.assert_invariants(book.state)


def test_reversal_reverses_each_posting_never_more_than_posted() -> None:
    book = funded("a", amount=1_000)
    book.accept(open_account("b"))
    book.accept(open_account("c"))
    book.accept(transaction("sale", posting("a", "b", 300), posting("a", "c", 50)))
    swapped = (posting("b", "a", 300), posting("c", "a", 50))
    wrong_order = book.run(transaction("r0", *swapped[::-1], reverses="sale"))
    assert wrong_order.outcome.reason is RejectReason.REVERSAL_MISMATCH
    assert wrong_order.outcome.detail.startswith("postings[0]: a reversal of 'sale'")
    subset = book.run(transaction("r1", swapped[0], reverses="sale"))
    assert subset.outcome.reason is RejectReason.REVERSAL_MISMATCH
    book.accept(transaction("r2", posting("b", "a", 100), posting("c", "a", 50), reverses="sale"))
    state = book.state.transaction("acme", "sale")
    assert state is not None and state.amounts_reversed == (100, 50)
    too_much = book.run(
        transaction("r3", posting("b", "a", 200), posting("c", "a", 1), reverses="sale")
    )
    assert too_much.outcome.reason is RejectReason.REVERSAL_EXCEEDS_ORIGINAL
    assert too_much.outcome.detail.startswith("postings[1].amount: posting 1 of 'sale' has 0")
    assert counters(book, "a") == (350, 1_150, 0, 0)


def test_transaction_and_transfer_ids_share_one_namespace() -> None:
    book = funded("a")
    book.accept(open_account("b"))
    book.accept(transfer("t-1", "a", "b", 1))
    taken = book.run(transaction("t-1", posting("a", "b", 1)))
    assert taken.outcome.reason is RejectReason.TRANSFER_EXISTS
    book.accept(transaction("x-1", posting("a", "b", 1)))
    assert book.run(transfer("x-1", "a", "b", 1)).outcome.reason is RejectReason.TRANSFER_EXISTS


def test_a_reused_key_names_the_first_differing_posting_field() -> None:
    book = funded("a")
    book.accept(open_account("b"))
    first = transaction("k", posting("a", "b", 1), posting("a", "b", 2), posting("a", "b", 3))
    book.accept(first)
    assert isinstance(book.run(first), ledger.Duplicate)
    changed = dataclasses.replace(first, postings=(*first.postings[:2], posting("a", "b", 4)))
    reused = book.run(changed)
    assert reused.outcome.reason is RejectReason.IDEMPOTENCY_KEY_REUSED
    assert reused.outcome.detail.startswith("postings[2].amount: differs")


# --------------------------------------------------------------------------- properties

ACCOUNTS = (("u1", "USD"), ("u2", "USD"), ("u3", "USD"), ("e1", "EUR"), ("e2", "EUR"))
EXAMPLES = settings(max_examples=60, deadline=None, derandomize=True)


def _setup() -> list[tuple[Command, int]]:
    commands: list[tuple[Command, int]] = []
    for index, (account_id, currency) in enumerate(ACCOUNTS):
        limited = account_id.endswith("1")  # u1, e1 may not go below zero
        commands.append(
            (
                open_account(account_id, currency=currency, debits_must_not_exceed_credits=limited),
                T0_US + index,
            )
        )
    return commands


BY_CURRENCY = {"USD": ("u1", "u2", "u3"), "EUR": ("e1", "e2")}
one_posting = st.sampled_from(sorted(BY_CURRENCY)).flatmap(
    lambda currency: st.tuples(st.permutations(BY_CURRENCY[currency]), st.integers(1, 500)).map(
        lambda drawn: posting(drawn[0][0], drawn[0][1], drawn[1], currency)
    )
)
postings_strategy = st.lists(one_posting, min_size=1, max_size=8).map(tuple)
operations = st.lists(
    st.tuples(postings_strategy, st.sampled_from(["posted", "pending", "post", "void"])),
    min_size=1,
    max_size=12,
)


def _history(ops: list[tuple[tuple[Posting, ...], str]]) -> list[tuple[Command, int]]:
    commands = _setup()
    now = T0_US + SECOND_US
    for number, (postings, kind) in enumerate(ops):
        now += SECOND_US
        if kind in ("post", "void"):
            target = f"x{max(number - 1, 0)}"
            maker = post_pending if kind == "post" else void_pending
            commands.append((maker(target, key=f"k{number}"), now))
            continue
        command = transaction(f"x{number}", *postings, key=f"k{number}", pending=kind == "pending")
        commands.append((command, now))
    return commands


def _sums(state: ledger.LedgerState) -> dict[str, list[int]]:
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for record in ledger.export_records(state):
        if isinstance(record, AccountState):
            sums[record.currency][0] += record.debits_posted - record.credits_posted
            sums[record.currency][1] += record.debits_pending - record.credits_pending
    return sums


@EXAMPLES
@given(operations)
def test_every_currency_sums_to_zero_and_rejections_change_nothing(
    ops: list[tuple[tuple[Posting, ...], str]],
) -> None:
    state = ledger.LedgerState(wire_format=WIRE_FORMAT)
    events: list[Event] = []
    for command, timestamp in _history(ops):
        before = sorted(map(repr, ledger.export_records(state)))
        decision = ledger.step(state, command, timestamp)
        events.extend(decision.events)
        if isinstance(decision, ledger.Rejected):  # all or nothing: no account moved
            assert decision.events == ()
            after = [r for r in sorted(map(repr, ledger.export_records(state)))]
            assert [r for r in after if "AccountState" in r] == [
                r for r in before if "AccountState" in r
            ]
        assert all(value == [0, 0] for value in _sums(state).values())
    state.commit()
    ledger.assert_invariants(state)
    folded = ledger.LedgerState(wire_format=WIRE_FORMAT)
    for event in events:
        ledger.apply(folded, event)
    assert sorted(map(repr, ledger.export_records(folded))) == sorted(
        map(repr, ledger.export_records(state))
    )


@EXAMPLES
@given(operations, st.integers(0, 16))
def test_replay_and_restore_mid_stream_give_identical_bytes(
    ops: list[tuple[tuple[Posting, ...], str]], cut: int
) -> None:
    commands = _history(ops)
    straight_state = ledger.LedgerState(wire_format=WIRE_FORMAT)
    straight = [ledger.step(straight_state, c, t) for c, t in commands]
    replayed_state = ledger.LedgerState(wire_format=WIRE_FORMAT)
    replayed = [ledger.step(replayed_state, c, t) for c, t in commands]
    assert [d.encoded_events for d in replayed] == [d.encoded_events for d in straight]
    head, tail = commands[: len(_setup()) + cut], commands[len(_setup()) + cut :]
    first = ledger.LedgerState(wire_format=WIRE_FORMAT)
    decided = [ledger.step(first, c, t) for c, t in head]
    first.commit()
    restored = ledger.restore(
        list(ledger.export_records(first)), list(ledger.outcomes_of(first)), wire_format=WIRE_FORMAT
    )
    decided += [ledger.step(restored, c, t) for c, t in tail]
    assert decided == straight
    assert [event_canonical_bytes(e) for d in decided for e in d.events] == [
        event_canonical_bytes(e) for d in straight for e in d.events
    ]
    pending = [r for r in ledger.export_records(restored) if isinstance(r, TransactionState)]
    assert all(r.status in TransferStatus for r in pending)
