"""Hypothesis properties of the ledger core over random histories (fixed seed, derandomized):
money is conserved, flags and limits hold, duplicates change nothing, the fold of the events is
the state, and a replay — straight, in other batches with aborts, or across a restore — gives
byte-identical events. Plus: a reused key with any one differing field names that field."""

from __future__ import annotations

import dataclasses
from array import array
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ledger
from processors.partition_ledger import WIRE_FORMAT
from schemas.codec import encode_outcome, encode_state, event_canonical_bytes
from schemas.keys import outcome_key, transfer_state_key
from schemas.model import (
    INT64_MAX,
    AccountState,
    Command,
    Event,
    OpenAccount,
    Outcome,
    PostPending,
    RejectReason,
    StateRecord,
    Transfer,
    TransferState,
    TransferStatus,
    VoidPending,
)
from tests.unit.ledger_builders import (
    SECOND_US,
    T0_US,
    open_account,
    post_pending,
    transfer,
    void_pending,
)

PROPERTY_SETTINGS = settings(
    derandomize=True,
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TENANTS = ("t1", "t2")
ACCOUNTS = ("a0", "a1", "a2", "a3", "a4")
TRANSFERS = ("x0", "x1", "x2", "x3", "x4", "x5")
small_amounts = st.integers(1, 120)
amounts = st.integers(0, 9).flatmap(
    lambda pick: small_amounts if pick < 8 else st.integers(INT64_MAX - 200, INT64_MAX)
)
currencies = st.sampled_from(("USD",) * 7 + ("EUR",))
account_setups = st.lists(
    st.tuples(
        currencies,
        st.sampled_from(("none", "none", "debits", "credits")),
        st.one_of(st.none(), st.integers(0, 50)),
    ),
    min_size=len(TENANTS) * len(ACCOUNTS),
    max_size=len(TENANTS) * len(ACCOUNTS),
)

open_ops = st.tuples(
    st.just("open"),
    st.sampled_from(TENANTS),
    st.sampled_from(ACCOUNTS),
    currencies,
    st.sampled_from(("none", "debits", "credits")),
    st.one_of(st.none(), st.integers(0, 50)),
)
transfer_ops = st.tuples(
    st.just("transfer"),
    st.sampled_from(TENANTS),
    st.sampled_from(TRANSFERS),
    st.sampled_from(ACCOUNTS),
    st.integers(1, len(ACCOUNTS) - 1),  # the credit account: this many places further
    amounts,
    currencies,
    st.sampled_from(("posted", "posted", "pending", "pending-timeout", "reversal")),
    st.sampled_from(TRANSFERS),
)
end_ops = st.tuples(
    st.sampled_from(("post", "void")),
    st.sampled_from(TENANTS),
    st.sampled_from(TRANSFERS),
    st.one_of(st.none(), small_amounts),
)
repeat_ops = st.tuples(st.sampled_from(("duplicate", "reuse")), st.integers(0, 10_000))
ops = st.tuples(
    st.integers(0, 19).flatmap(
        lambda pick: (
            transfer_ops
            if pick < 12
            else end_ops
            if pick < 16
            else repeat_ops
            if pick < 19
            else open_ops
        )
    ),
    st.integers(-3, 6),  # seconds of record time since the previous command; may go back
)
histories = st.tuples(account_setups, st.lists(ops, min_size=20, max_size=60))
History = tuple[list[tuple[str, str, int | None]], list[tuple[tuple[Any, ...], int]]]


def _new_command(op: tuple[Any, ...], key: str) -> Command:
    kind, tenant = op[0], op[1]
    if kind == "open":
        _, _, account_id, currency, flags, overdraft = op
        return open_account(
            account_id,
            tenant=tenant,
            key=key,
            currency=currency,
            debits_must_not_exceed_credits=flags == "debits",
            credits_must_not_exceed_debits=flags == "credits",
            overdraft_limit=None if flags == "none" else overdraft,
        )
    if kind == "transfer":
        _, _, transfer_id, debit, offset, amount, currency, mode, target = op
        credit = ACCOUNTS[(ACCOUNTS.index(debit) + offset) % len(ACCOUNTS)]
        return transfer(
            transfer_id,
            debit,
            credit,
            amount,
            tenant=tenant,
            key=key,
            currency=currency,
            pending=mode.startswith("pending"),
            pending_timeout_s=2 if mode == "pending-timeout" else None,
            reverses=target if mode == "reversal" else None,
        )
    if kind == "post":
        return post_pending(op[2], op[3], tenant=tenant, key=key)
    return void_pending(op[2], tenant=tenant, key=key)


def build(history: History) -> list[tuple[Command, int]]:
    """Commands with record timestamps: every account opened (random currency, flag, limit),
    then random operations; repeats re-send an earlier command (duplicate) or its key with
    another payload (reuse)."""
    setups, operations = history
    now = T0_US
    accounts = [(tenant, account) for tenant in TENANTS for account in ACCOUNTS]
    commands: list[tuple[Command, int]] = [
        (_new_command(("open", tenant, account, *setup), f"open-{account}"), now)
        for (tenant, account), setup in zip(accounts, setups, strict=True)
    ]
    for number, (op, step_s) in enumerate(operations):
        now += step_s * SECOND_US
        if op[0] in ("duplicate", "reuse") and commands:
            earlier = commands[op[1] % len(commands)][0]
            if op[0] == "duplicate":
                command: Command = dataclasses.replace(earlier, submitted_at_us=number)
            else:
                command = dataclasses.replace(earlier, metadata=(("retry", str(number)),))
        elif op[0] in ("duplicate", "reuse"):
            continue
        else:
            command = _new_command(op, f"k{number}")
        commands.append((command, now))
    return commands


def run(commands: list[tuple[Command, int]]) -> tuple[ledger.LedgerState, list[ledger.Decision]]:
    state = ledger.LedgerState(wire_format=WIRE_FORMAT, idempotency_retention_s=5)
    decisions = [ledger.step(state, command, timestamp) for command, timestamp in commands]
    state.commit()
    return state, decisions


def events_of(decisions: list[ledger.Decision]) -> list[Event]:
    return [event for decision in decisions for event in decision.events]


def assert_within_flags_and_limits(state: ledger.LedgerState) -> None:
    for account in ledger.export_records(state):
        if not isinstance(account, AccountState):
            continue
        overdraft = account.overdraft_limit or 0
        if account.debits_must_not_exceed_credits:
            assert account.debits_posted + account.debits_pending <= (
                account.credits_posted + overdraft
            )
        if account.credits_must_not_exceed_debits:
            assert account.credits_posted + account.credits_pending <= (
                account.debits_posted + overdraft
            )


@PROPERTY_SETTINGS
@given(histories)
def test_random_histories_conserve_money_and_respect_limits(history: History) -> None:
    state = ledger.LedgerState(wire_format=WIRE_FORMAT, idempotency_retention_s=5)
    events: list[Event] = []
    for command, timestamp in build(history):
        before = list(ledger.export_records(state))
        decision = ledger.step(state, command, timestamp)
        events.extend(decision.events)
        if isinstance(decision, ledger.Duplicate) or decision.changes is None:
            assert decision.events == ()
            assert list(ledger.export_records(state)) == before
        assert_within_flags_and_limits(state)
    state.commit()
    ledger.assert_invariants(state)
    folded = ledger.LedgerState(wire_format=WIRE_FORMAT)
    for event in events:
        ledger.apply(folded, event)
    assert list(ledger.export_records(folded)) == list(ledger.export_records(state))


@PROPERTY_SETTINGS
@given(histories, st.lists(st.tuples(st.integers(1, 8), st.booleans()), min_size=1))
def test_replay_in_other_batches_with_aborts_gives_identical_events(
    history: History, batches: list[tuple[int, bool]]
) -> None:
    commands = build(history)
    _, straight = run(commands)
    state = ledger.LedgerState(wire_format=WIRE_FORMAT, idempotency_retention_s=5)
    events: list[Event] = []
    position, batch = 0, 0
    while position < len(commands):
        size, abort_first = batches[batch % len(batches)]
        batch += 1
        chunk = commands[position : position + size]
        if abort_first:  # a failed transaction: decide, drop, then redo the same records
            for command, timestamp in chunk:
                ledger.step(state, command, timestamp)
            state.abort()
        for command, timestamp in chunk:
            events.extend(ledger.step(state, command, timestamp).events)
        state.forget_outcomes(ledger.expired_outcomes(state, state.stream_time_us))
        state.commit()
        position += size
    expected = events_of(straight)
    assert events == expected
    assert [event_canonical_bytes(e) for e in events] == [
        event_canonical_bytes(e) for e in expected
    ]


@PROPERTY_SETTINGS
@given(histories, st.integers(0, 60))
def test_replay_across_a_restore_gives_identical_decisions(history: History, cut: int) -> None:
    commands = build(history)
    _, straight = run(commands)
    head, tail = commands[:cut], commands[cut:]
    first, decided = run(head)
    restored = ledger.restore(
        list(ledger.export_records(first)),
        list(ledger.outcomes_of(first)),
        wire_format=WIRE_FORMAT,
        idempotency_retention_s=5,
    )
    decided += [ledger.step(restored, command, timestamp) for command, timestamp in tail]
    assert decided == straight


@PROPERTY_SETTINGS
@given(histories, st.integers(0, 60))
def test_replay_across_a_lazy_restore_gives_identical_decisions(history: History, cut: int) -> None:
    """Outcomes and settled transfers restored as bytes (decoded on first use) decide and
    expire exactly as decoded ones: same decisions, same encoded events and outcomes, same
    tombstones, the same records exported."""
    commands = build(history)
    _, straight = run(commands)
    head, tail = commands[:cut], commands[cut:]
    first, decided = run(head)
    records, transfers = encoded_transfers(list(ledger.export_records(first)))
    restored = ledger.restore(
        records,
        (),
        wire_format=WIRE_FORMAT,
        idempotency_retention_s=5,
        encoded_outcomes=encoded_outcomes(list(ledger.outcomes_of(first))),
        encoded_transfers=transfers,
    )
    assert restored.stream_time_us == first.stream_time_us
    assert restored.outcome_count == first.outcome_count
    assert sorted(map(repr, ledger.export_records(restored))) == sorted(
        map(repr, ledger.export_records(first))
    )
    for command, timestamp in tail:
        decision = ledger.step(restored, command, timestamp)
        decided.append(decision)
        stored = decision.stored_outcome
        if stored is not None:
            assert encode_outcome(stored) == encode_outcome(straight[len(decided) - 1].outcome)
        restored.forget_outcomes(ledger.expired_outcomes(restored, restored.stream_time_us))
        restored.commit()
    assert decided == straight


def encoded_transfers(
    records: list[StateRecord],
) -> tuple[list[StateRecord], ledger.EncodedTransfers]:
    """The records a restore decodes, and the settled transfers it keeps encoded."""
    settled = [
        record
        for record in records
        if isinstance(record, TransferState) and record.status is not TransferStatus.PENDING
    ]
    last_sequences: dict[str, int] = {}
    for one in settled:
        last_sequences[one.tenant_id] = max(last_sequences.get(one.tenant_id, 0), one.last_sequence)
    values = {transfer_state_key(t.tenant_id, t.transfer_id): encode_state(t) for t in settled}
    kept = [record for record in records if not any(record is t for t in settled)]
    return kept, ledger.EncodedTransfers(values=values, last_sequences=last_sequences)


def encoded_outcomes(outcomes: list[Outcome]) -> ledger.EncodedOutcomes:
    """The outcomes as a restore keeps them encoded, in reverse order (so the core sorts
    their expiries itself)."""
    ordered = outcomes[::-1]
    times: array[int] = array("q")
    for outcome in ordered:
        expires_at_us = outcome.expires_at_us
        times.append(outcome.decided_at_us)
        times.append(ledger.KEPT_FOREVER_US if expires_at_us is None else expires_at_us)
    keys = [outcome_key(o.tenant_id, o.idempotency_key) for o in ordered]
    values = {key: encode_outcome(o) for key, o in zip(keys, ordered, strict=True)}
    return ledger.EncodedOutcomes(values=values, keys=keys, times=times)


# --------------------------------------------------------------------------- key reuse per field

BASE_TRANSFER = transfer("t1", "cash", "sales", 5, key="k", metadata=(("order", "1"),))
BASE_PENDING = transfer("t1", "cash", "sales", 5, key="k", pending=True, pending_timeout_s=9)
BASE_ACCOUNT = open_account("cash", key="k")
BASE_CAPPED = open_account("cash", key="k", debits_must_not_exceed_credits=True, overdraft_limit=3)
REUSES: list[tuple[Command, str, object]] = [
    (BASE_ACCOUNT, "metadata", (("note", "x"),)),
    (BASE_ACCOUNT, "account_id", "cash2"),
    (BASE_ACCOUNT, "currency", "EUR"),
    (BASE_ACCOUNT, "asset_scale", 3),
    (BASE_ACCOUNT, "debits_must_not_exceed_credits", True),
    (BASE_ACCOUNT, "credits_must_not_exceed_debits", True),
    (BASE_CAPPED, "overdraft_limit", 4),
    (BASE_TRANSFER, "metadata", (("order", "2"),)),
    (BASE_TRANSFER, "transfer_id", "t2"),
    (BASE_TRANSFER, "debit_account_id", "cash2"),
    (BASE_TRANSFER, "credit_account_id", "sales2"),
    (BASE_TRANSFER, "amount", 6),
    (BASE_TRANSFER, "currency", "EUR"),
    (BASE_TRANSFER, "pending", True),
    (BASE_PENDING, "pending_timeout_s", 10),
    (BASE_TRANSFER, "reverses", "t0"),
    (post_pending("t1", key="k"), "transfer_id", "t2"),
    (post_pending("t1", key="k"), "amount", 4),
    (post_pending("t1", key="k"), "metadata", (("m", "1"),)),
    (void_pending("t1", key="k"), "metadata", (("m", "1"),)),
    (void_pending("t1", key="k"), "transfer_id", "t2"),
]


def test_the_reuse_table_covers_every_fingerprinted_field() -> None:
    covered = {(type(command), name) for command, name, _ in REUSES}
    expected = {
        (command_type, name)
        for command_type in (OpenAccount, Transfer, PostPending, VoidPending)
        for name in ledger.FINGERPRINT_FIELDS[command_type]
    }
    assert covered == expected


@pytest.mark.parametrize(("base", "name", "value"), REUSES, ids=lambda v: str(v)[:24])
def test_key_reuse_with_one_differing_field_names_exactly_that_field(
    base: Command, name: str, value: object
) -> None:
    state = ledger.LedgerState(wire_format=WIRE_FORMAT)
    ledger.step(state, base, T0_US)
    changed = dataclasses.replace(base, **{name: value})  # type: ignore[arg-type]
    decision = ledger.step(state, changed, T0_US + 1)
    assert isinstance(decision, ledger.Rejected), decision
    assert decision.outcome.reason is RejectReason.IDEMPOTENCY_KEY_REUSED
    assert decision.outcome.detail.split(":", 1)[0] == name
    assert isinstance(ledger.step(state, base, T0_US + 2), ledger.Duplicate)


@PROPERTY_SETTINGS
@given(st.integers(0, 2**40), st.sampled_from(TENANTS))
def test_submitted_at_and_the_scope_are_not_fingerprinted(submitted_at: int, tenant: str) -> None:
    one = dataclasses.replace(BASE_TRANSFER, submitted_at_us=submitted_at, tenant_id=tenant)
    assert ledger.command_fingerprint(one) == ledger.command_fingerprint(BASE_TRANSFER)
