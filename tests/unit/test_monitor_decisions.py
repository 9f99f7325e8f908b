"""Balance monitors in the core (decision 0058): the monitor commands' rules and events, edges
decided in the same step as the event that moves the balance (transfers, pending post/void/
expiry, multi-leg transactions), the flags in the state, fold, restore and replay; Hypothesis
for "a notification exactly at each crossing" and "restore mid-stream changes nothing"."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ledger
from ledger.monitors import AccountWatch, evaluate, is_credit_normal, parse_condition
from processors.partition_ledger import WIRE_FORMAT
from schemas.codec import decode_notification, encode_notification
from schemas.limits import MONITORS_PER_ACCOUNT_MAX
from schemas.model import (
    CreateMonitor,
    DeleteMonitor,
    MonitorCleared,
    MonitorCreated,
    MonitorDeleted,
    MonitorState,
    MonitorTriggered,
    Notification,
    Posting,
    PostTransaction,
    RejectReason,
)
from streamledger.errors import InvariantViolationError
from tests.unit.ledger_builders import (
    SECOND_US,
    T0_US,
    Ledger,
    open_account,
    transfer,
    void_pending,
)

EXAMPLES = settings(max_examples=60, deadline=None, derandomize=True)


def create_monitor(
    monitor_id: str,
    account_id: str,
    field: str = "available",
    operator: str = "<",
    threshold: int = 1_000,
    *,
    tenant: str = "acme",
    key: str | None = None,
    **values: Any,
) -> CreateMonitor:
    return CreateMonitor(
        tenant_id=tenant,
        idempotency_key=key or f"monitor-{monitor_id}",
        submitted_at_us=T0_US,
        monitor_id=monitor_id,
        account_id=account_id,
        field=field,
        operator=operator,
        threshold=threshold,
        **values,
    )


def delete_monitor(monitor_id: str, *, key: str | None = None) -> DeleteMonitor:
    return DeleteMonitor(
        tenant_id="acme",
        idempotency_key=key or f"delete-{monitor_id}",
        submitted_at_us=T0_US,
        monitor_id=monitor_id,
    )


def kinds(notifications: tuple[Notification, ...]) -> list[tuple[str, str, int, int]]:
    """(kind, monitor, sequence, value) per notification."""
    return [
        (type(note).__name__, note.monitor_id, note.sequence, note.value) for note in notifications
    ]


def customer_book() -> Ledger:
    """``cash`` (an unflagged funding account) and ``alice`` (a customer: credit-normal)."""
    book = Ledger()
    book.accept(open_account("cash"))
    book.accept(open_account("alice", debits_must_not_exceed_credits=True))
    book.accept(open_account("bob"))
    return book


def test_creation_evaluates_and_is_an_edge_only_when_the_condition_holds() -> None:
    book = customer_book()
    quiet = book.accept(create_monitor("rich", "alice", "posted", ">=", 100))
    (created,) = quiet.events
    assert isinstance(created, MonitorCreated)
    assert (created.holds, created.sequence, quiet.notifications) == (False, 4, ())
    assert created.balances == (ledger.effects.balance_of(book.account("alice")),)
    low = book.accept(create_monitor("low", "alice", metadata=(("team", "risk"),)))
    (note,) = low.notifications
    assert isinstance(note, MonitorTriggered)
    assert (note.notification_id, note.sequence, note.value) == ("acme:5:low", 5, 0)
    assert note.event_hash == low.events[0].hash
    assert (note.currency, note.metadata, note.effective_at_us) == (
        "USD",
        (("team", "risk"),),
        low.events[0].effective_at_us,
    )
    state = book.state.monitor("acme", "low")
    assert state == MonitorState(
        tenant_id="acme",
        monitor_id="low",
        account_id="alice",
        field="available",
        operator="<",
        threshold=1_000,
        metadata=(("team", "risk"),),
        holds=True,
        created_sequence=5,
        last_sequence=5,
    )
    assert decode_notification(encode_notification(note)) == note


def test_edges_over_transfers_never_levels() -> None:
    book = customer_book()
    book.accept(create_monitor("low", "alice"))  # available 0 < 1000: triggered at 4
    found = []
    for number, (debit, credit, amount) in enumerate(
        [
            ("cash", "alice", 5_000),  # 5000: cleared
            ("alice", "bob", 4_500),  # 500: triggered
            ("alice", "bob", 100),  # 400: holds, nothing
            ("cash", "alice", 100),  # 500: holds, nothing
            ("cash", "alice", 2_000),  # 2500: cleared
            ("cash", "bob", 7),  # not alice's: nothing
        ]
    ):
        found += kinds(book.accept(transfer(f"t{number}", debit, credit, amount)).notifications)
    assert found == [
        ("MonitorCleared", "low", 5, 5_000),
        ("MonitorTriggered", "low", 6, 500),
        ("MonitorCleared", "low", 9, 2_500),
    ]
    assert book.state.monitor("acme", "low").last_sequence == 9  # type: ignore[union-attr]


def test_pending_void_and_expiry_move_available() -> None:
    book = customer_book()
    book.accept(transfer("fund", "cash", "alice", 1_500))
    book.accept(create_monitor("low", "alice"))  # 1500: not low
    held = book.accept(transfer("hold", "alice", "bob", 800, pending=True))
    assert kinds(held.notifications) == [("MonitorTriggered", "low", 6, 700)]
    voided = book.accept(void_pending("hold"))
    assert kinds(voided.notifications) == [("MonitorCleared", "low", 7, 1_500)]
    book.accept(
        transfer("hold-2", "alice", "bob", 600, pending=True, pending_timeout_s=1),
        at_us=T0_US + 10 * SECOND_US,
    )
    assert book.state.monitor("acme", "low").holds  # type: ignore[union-attr]
    ticked = ledger.step_tick(book.state, T0_US + 20 * SECOND_US)
    (expired,) = ticked.events
    assert kinds(ticked.notifications) == [("MonitorCleared", "low", 9, 1_500)]
    assert ticked.notifications[0].effective_at_us == expired.effective_at_us


def test_an_expiry_before_a_command_is_evaluated_in_its_own_step() -> None:
    """The expiry's edge and the command's come in sequence order in one decision."""
    book = customer_book()
    book.accept(transfer("fund", "cash", "alice", 1_500))
    book.accept(transfer("hold", "alice", "bob", 800, pending=True, pending_timeout_s=1))
    book.accept(create_monitor("low", "alice"))  # 700: triggered at 6
    decision = book.accept(transfer("spend", "alice", "bob", 1_000), at_us=T0_US + 5 * SECOND_US)
    assert [type(event).__name__ for event in decision.events] == [
        "PendingExpired",
        "TransferPosted",
    ]
    assert kinds(decision.notifications) == [
        ("MonitorCleared", "low", 7, 1_500),
        ("MonitorTriggered", "low", 8, 500),
    ]


def test_a_multi_leg_transaction_is_evaluated_once_on_its_net_effect() -> None:
    book = customer_book()
    book.accept(transfer("fund", "cash", "alice", 2_000))
    book.accept(create_monitor("low", "alice"))
    book.accept(create_monitor("bob-rich", "bob", "posted", "<", 0))  # bob: unflagged, credit
    legs = (
        Posting(debit_account_id="alice", credit_account_id="bob", amount=1_500, currency="USD"),
        Posting(debit_account_id="bob", credit_account_id="alice", amount=1_500, currency="USD"),
        Posting(debit_account_id="alice", credit_account_id="cash", amount=1_200, currency="USD"),
    )
    decision = book.accept(
        PostTransaction(
            tenant_id="acme",
            idempotency_key="x-1",
            submitted_at_us=T0_US,
            transaction_id="x-1",
            postings=legs,
        )
    )
    # alice dips to 500 after posting 0 but the committed state is 800 after all three: one
    # edge on the net effect; bob ends where he began
    assert kinds(decision.notifications) == [("MonitorTriggered", "low", 7, 800)]


def test_rules_of_the_monitor_commands() -> None:
    book = customer_book()
    reason = book.run(create_monitor("m", "nobody", key="m-nobody")).outcome
    assert (reason.reason, reason.detail) == (
        RejectReason.UNKNOWN_ACCOUNT,
        "account_id: no account 'nobody'",
    )
    book.accept(create_monitor("m", "alice"))
    again = book.run(create_monitor("m", "bob", key="other")).outcome
    assert again.reason is RejectReason.MONITOR_EXISTS
    missing = book.run(delete_monitor("nope")).outcome
    assert (missing.reason, missing.detail) == (
        RejectReason.MONITOR_NOT_FOUND,
        "monitor_id: the tenant has no monitor 'nope'",
    )
    for number in range(1, MONITORS_PER_ACCOUNT_MAX):
        book.accept(create_monitor(f"m{number}", "alice", threshold=number))
    full = book.run(create_monitor("one-too-many", "alice")).outcome
    assert full.reason is RejectReason.MONITOR_LIMIT_REACHED
    assert full.detail.startswith("account_id: account 'alice' has 16 monitors")
    bad_field = book.run(create_monitor("x", "alice", field="balance")).outcome
    assert bad_field.reason is RejectReason.INVALID_COMMAND
    assert bad_field.detail.startswith("field: 'balance' is not one of debits_posted")
    bad_operator = book.run(create_monitor("x", "alice", operator="!=", key="k2")).outcome
    assert bad_operator.detail.startswith("operator: '!=' is not one of")


def test_delete_is_silent_and_the_id_can_be_used_again() -> None:
    book = customer_book()
    book.accept(create_monitor("low", "alice"))
    deleted = book.accept(delete_monitor("low"))
    (event,) = deleted.events
    assert isinstance(event, MonitorDeleted)
    assert (event.account_id, deleted.notifications) == ("alice", ())
    assert book.state.monitor("acme", "low") is None
    assert book.state.staged_deleted_monitors() == (("acme", "low"),)
    assert kinds(book.accept(transfer("t", "cash", "alice", 5_000)).notifications) == []
    again = book.accept(create_monitor("low", "alice", key="again"))
    assert again.notifications == ()  # 5000 is not low
    assert book.state.monitor("acme", "low").created_sequence == 7  # type: ignore[union-attr]


def test_abort_puts_flags_and_indexes_back() -> None:
    book = customer_book()
    book.accept(create_monitor("low", "alice"))
    book.state.commit()
    before = sorted(map(repr, ledger.export_records(book.state)))
    book.accept(transfer("t", "cash", "alice", 5_000))
    book.accept(delete_monitor("low"))
    book.accept(create_monitor("other", "bob"))
    book.state.abort()
    assert sorted(map(repr, ledger.export_records(book.state))) == before
    assert book.state.account_monitor_ids("acme", "alice") == ("low",)
    assert book.state.account_monitor_ids("acme", "bob") == ()
    assert book.state.tenant_monitor_count("acme") == 1
    ledger.assert_invariants(book.state)


def test_the_watch_keeps_the_accounts_normal_side_and_the_invariants_check_it() -> None:
    """``AccountWatch.credit_normal`` (decision 0138, follow-up) is the account's, from the
    first monitor on, after a restore too; one that differs fails the invariants."""
    book = customer_book()
    book.accept(open_account("dave", credits_must_not_exceed_debits=True, overdraft_limit=10**6))
    book.accept(create_monitor("owes", "dave", "posted", ">=", 100))
    book.accept(create_monitor("rich", "alice", "posted", ">=", 100))
    book.state.commit()
    restored = ledger.restore(ledger.export_records(book.state), (), wire_format=WIRE_FORMAT)
    for state in (book.state, restored):
        assert state._account_monitors[("acme", "dave")].credit_normal is False
        assert state._account_monitors[("acme", "alice")].credit_normal is True
    # a debit-normal account's posted balance is debits minus credits: 150 owed triggers
    (triggered,) = book.accept(transfer("t", "dave", "cash", 150)).notifications
    assert (type(triggered), triggered.monitor_id, triggered.value) == (
        MonitorTriggered,
        "owes",
        150,
    )
    watched = restored._account_monitors[("acme", "dave")]
    restored._account_monitors[("acme", "dave")] = AccountWatch(watched.entries, credit_normal=True)
    with pytest.raises(InvariantViolationError, match="normal side"):
        ledger.assert_invariants(restored)


# --------------------------------------------------------------------------- properties

ACCOUNTS = ("cash", "alice", "bob", "carol")
operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("transfer"),
            st.sampled_from(ACCOUNTS),
            st.sampled_from(ACCOUNTS),
            st.integers(1, 3_000),
        ),
        st.tuples(
            st.just("monitor"),
            st.sampled_from(ACCOUNTS),
            st.sampled_from(("available", "posted", "debits_posted", "credits_posted")),
            st.sampled_from(("<", "<=", ">", ">=", "==")),
            st.integers(-3_000, 3_000),
        ),
        st.tuples(st.just("delete"), st.integers(0, 20)),
    ),
    max_size=40,
)


def _commands(ops: list[tuple[Any, ...]]) -> list[Any]:
    commands: list[Any] = [
        open_account("cash"),
        open_account("alice", debits_must_not_exceed_credits=True),
        open_account("bob"),
        open_account("carol", credits_must_not_exceed_debits=True, overdraft_limit=10**6),
    ]
    for number, op in enumerate(ops):
        if op[0] == "transfer":
            commands.append(transfer(f"t{number}", op[1], op[2], op[3]))
        elif op[0] == "monitor":
            commands.append(create_monitor(f"m{number}", op[1], op[2], op[3], op[4]))
        else:
            commands.append(delete_monitor(f"m{op[1]}", key=f"delete-{number}"))
    return commands


@EXAMPLES
@given(operations)
def test_a_notification_exactly_at_each_crossing(ops: list[tuple[Any, ...]]) -> None:
    """Recompute every live monitor's condition after every event from the event's own
    balances: a notification exists exactly where the truth changed (creation counts as a
    change from false), each names the event that caused it, and the fold of the events
    gives the same monitor states."""
    book = Ledger()
    truth: dict[str, bool] = {}
    watched: dict[str, tuple[str, Any]] = {}
    for command in _commands(ops):
        decision = book.run(command)
        expected: list[tuple[str, str, int]] = []
        for event in decision.events:
            if isinstance(event, MonitorCreated):
                watched[event.monitor_id] = (event.account_id, event)
                truth[event.monitor_id] = False
            if isinstance(event, MonitorDeleted):
                del watched[event.monitor_id], truth[event.monitor_id]
                continue
            for monitor_id, (account_id, created) in watched.items():
                for balance in event.balances:
                    if balance.account_id != account_id:
                        continue
                    if isinstance(event, MonitorCreated) and event.monitor_id != monitor_id:
                        continue
                    account = book.account(account_id)
                    condition = parse_condition(created.field, created.operator, created.threshold)
                    holds, _ = evaluate(
                        condition,
                        balance,
                        credit_normal=is_credit_normal(
                            debits_must_not_exceed_credits=account.debits_must_not_exceed_credits,
                            credits_must_not_exceed_debits=account.credits_must_not_exceed_debits,
                        ),
                    )
                    if holds != truth[monitor_id]:
                        truth[monitor_id] = holds
                        kind = "MonitorTriggered" if holds else "MonitorCleared"
                        expected.append((kind, monitor_id, event.sequence))
        found = [(type(n).__name__, n.monitor_id, n.sequence) for n in decision.notifications]
        assert sorted(found, key=lambda item: item[2]) == found
        assert sorted(found) == sorted(expected)
    book.state.commit()
    ledger.assert_invariants(book.state)
    folded = ledger.LedgerState(wire_format=WIRE_FORMAT)
    for event in book.events:
        ledger.apply(folded, event)
    assert sorted(map(repr, ledger.export_records(folded))) == sorted(
        map(repr, ledger.export_records(book.state))
    )


@EXAMPLES
@given(operations, st.integers(0, 40))
def test_restore_mid_stream_gives_the_same_notifications(
    ops: list[tuple[Any, ...]], cut: int
) -> None:
    """Restoring from the exported records (what ledger.balances holds) at any point and going
    on gives byte-identical notifications to a straight run: the flags survive restore."""
    commands = [(command, T0_US + number) for number, command in enumerate(_commands(ops))]
    straight_state = ledger.LedgerState(wire_format=WIRE_FORMAT)
    straight = [ledger.step(straight_state, c, t) for c, t in commands]
    head, tail = commands[: 4 + cut], commands[4 + cut :]
    first = ledger.LedgerState(wire_format=WIRE_FORMAT)
    decided = [ledger.step(first, c, t) for c, t in head]
    first.commit()
    restored = ledger.restore(
        list(ledger.export_records(first)), list(ledger.outcomes_of(first)), wire_format=WIRE_FORMAT
    )
    decided += [ledger.step(restored, c, t) for c, t in tail]
    assert [encode_notification(n) for d in decided for n in d.notifications] == [
        encode_notification(n) for d in straight for n in d.notifications
    ]
    assert decided == straight
    assert isinstance(MonitorCleared, type)
