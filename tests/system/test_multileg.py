"""Multi-leg transactions end to end (issue 16): the real processor on the real broker, then the
projection into a scratch PostgreSQL database.

A 50-posting payout, an FX conversion through liquidity accounts (the rate in the command's
metadata) and a pending transaction posted later are each one event in the log and one
``transactions`` row, a transfer per posting and a journal row per posting side in PostgreSQL;
balances now and as of any moment equal the log's; a rejected 10-posting transaction leaves no
event and no row and every balance untouched. A processor killed with ``kill -9`` while
multi-leg batches are in flight leaves each transaction whole or absent, in the log and in
PostgreSQL.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql

from infra.topics import ledger_topic_names
from projections.queries import LedgerReader, reader_dsn
from projections.rebuild import rebuild
from projections.settings import ProjectionSettings
from projections.verify import verify
from schemas.codec import decode_event, decode_outcome
from schemas.event_time import to_datetime
from schemas.model import (
    Command,
    Event,
    OpenAccount,
    Outcome,
    OutcomeStatus,
    Posting,
    PostPending,
    PostTransaction,
    TransactionPosted,
    Transfer,
)
from streamledger.settings import Settings
from tests.system.processor_harness import produce_commands, read_topic, wait_until_consumed
from tests.system.projection_checks import project_until_caught_up, projection_for
from workloads.api_stack import running_api_stack
from workloads.processor_process import ProcessorProcess

pytestmark = pytest.mark.system
TENANT = "multileg"
CONSUME_TIMEOUT_S = 90.0
SELLERS = 50
REJECTED_POSTINGS = 10
KILL_ROUNDS = 3
KILL_TRANSACTIONS = 120
RESTORED = "restored partition"  # the processor's log line once a partition is ready
STARTUP_TIMEOUT_S = 60.0
PROJECTED_TIMEOUT_S = 60.0
OTHER_TENANT = "multileg-other"


def command_header(key: str) -> dict[str, object]:
    return {"tenant_id": TENANT, "idempotency_key": key, "submitted_at_us": 1}


def open_account(account_id: str, currency: str = "USD", **flags: object) -> OpenAccount:
    return OpenAccount(
        **command_header(f"open-{account_id}"),  # type: ignore[arg-type]
        account_id=account_id,
        currency=currency,
        asset_scale=2,
        **flags,  # type: ignore[arg-type]
    )


def fund(account_id: str, amount: int, currency: str = "USD") -> Transfer:
    return Transfer(
        **command_header(f"fund-{account_id}"),  # type: ignore[arg-type]
        transfer_id=f"fund-{account_id}",
        debit_account_id=f"world_{currency.lower()}",
        credit_account_id=account_id,
        amount=amount,
        currency=currency,
    )


def post_transaction(transaction_id: str, *postings: Posting, **fields: object) -> PostTransaction:
    return PostTransaction(
        **command_header(f"tx-{transaction_id}"),  # type: ignore[arg-type]
        transaction_id=transaction_id,
        postings=postings,
        **fields,  # type: ignore[arg-type]
    )


def posting(debit: str, credit: str, amount: int, currency: str = "USD") -> Posting:
    return Posting(
        debit_account_id=debit, credit_account_id=credit, amount=amount, currency=currency
    )


def scenario() -> list[Command]:
    sellers = [f"seller-{index:02}" for index in range(SELLERS)]
    commands: list[Command] = [
        open_account("world_usd"),
        open_account("world_eur", "EUR"),
        open_account("pool", debits_must_not_exceed_credits=True),
        *(open_account(seller) for seller in sellers),
        open_account("customer_eur", "EUR", debits_must_not_exceed_credits=True),
        open_account("fx_liquidity_eur", "EUR"),
        open_account("fx_liquidity_usd"),
        open_account("customer_usd"),
        fund("pool", 1_000_000),
        fund("customer_eur", 50_000, "EUR"),
        open_account("small", debits_must_not_exceed_credits=True),
        fund("small", 5),
        post_transaction(
            "payout-1", *(posting("pool", s, 1_000 + i) for i, s in enumerate(sellers))
        ),
        PostTransaction(
            **command_header("fx-1"),  # type: ignore[arg-type]
            transaction_id="fx-1",
            postings=(
                posting("customer_eur", "fx_liquidity_eur", 10_000, "EUR"),
                posting("fx_liquidity_usd", "customer_usd", 10_837, "USD"),
            ),
            metadata=(("fx_pair", "EUR/USD"), ("fx_rate", "1.0837")),
        ),
        # posting 7 asks "small" for more than it holds: all ten are rejected
        post_transaction(
            "too-much",
            *(
                posting("pool", s, 10) if i != 7 else posting("small", s, 100)
                for i, s in enumerate(sellers[:REJECTED_POSTINGS])
            ),
        ),
        post_transaction(
            "hold", posting("pool", "seller-00", 70), posting("pool", "seller-01", 30), pending=True
        ),
        PostPending(
            **command_header("post-hold"),  # type: ignore[arg-type]
            transfer_id="hold",
        ),
    ]
    assert (
        len([c for c in commands if isinstance(c, PostTransaction)][2].postings)
        == REJECTED_POSTINGS
    )
    return commands


def run_processor(settings: Settings, tmp_path: Path) -> None:
    processor = ProcessorProcess(settings, "a", tmp_path)
    try:
        processor.wait_for_log(RESTORED, STARTUP_TIMEOUT_S)
        wait_until_consumed(settings, CONSUME_TIMEOUT_S, [processor])
    finally:
        assert processor.stop() == 0, processor.log()


def log_of(settings: Settings) -> tuple[list[Event], dict[str, Outcome]]:
    names = ledger_topic_names(settings)
    events = sorted(
        (decode_event(r.value) for r in read_topic(settings, names.events) if r.value),
        key=lambda e: (e.tenant_id, e.sequence),
    )
    outcomes = {
        o.idempotency_key: o
        for o in (decode_outcome(r.value) for r in read_topic(settings, names.outcomes) if r.value)
    }
    return events, outcomes


def fold_balances(events: list[Event]) -> dict[str, tuple[int, int, int, int]]:
    """Each account's counters after the last event that carries it."""
    balances: dict[str, tuple[int, int, int, int]] = {}
    for event in events:
        for b in event.balances:
            balances[b.account_id] = (
                b.debits_posted,
                b.credits_posted,
                b.debits_pending,
                b.credits_pending,
            )
    return balances


def stored_balances(conn: psycopg.Connection[tuple[object, ...]]) -> dict[str, tuple[int, ...]]:
    rows = conn.execute(
        "SELECT account_id, debits_posted, credits_posted, debits_pending, credits_pending"
        " FROM ledger.balances WHERE tenant_id = %s",
        (TENANT,),
    ).fetchall()
    return {str(row[0]): tuple(int(v) for v in row[1:]) for row in rows}  # type: ignore[call-overload]


PROJECTED_TABLES = ("transactions", "transfers", "entries", "balances", "event_chain")


def projected_rows(settings: Settings) -> dict[str, list[tuple[object, ...]]]:
    """Every row of the tenant's projected tables, in a fixed order (for before/after)."""
    tables: dict[str, list[tuple[object, ...]]] = {}
    with psycopg.connect(settings.database_dsn) as conn:
        for table in PROJECTED_TABLES:
            statement = sql.SQL("SELECT * FROM ledger.{} WHERE tenant_id = %s")
            rows = conn.execute(statement.format(sql.Identifier(table)), (TENANT,)).fetchall()
            tables[table] = sorted(rows, key=repr)
    return tables


def test_payout_fx_pending_and_a_rejected_transaction_end_to_end(
    projection_settings: Settings, tmp_path: Path
) -> None:
    settings = projection_settings
    produce_commands(settings, scenario())
    run_processor(settings, tmp_path)
    events, outcomes = log_of(settings)

    rejected = outcomes["tx-too-much"]
    assert rejected.status is OutcomeStatus.REJECTED
    assert rejected.detail.startswith("postings[7].")
    transaction_events = [e for e in events if hasattr(e, "transaction_id")]
    assert [(type(e).__name__, e.transaction_id) for e in transaction_events] == [
        ("TransactionPosted", "payout-1"),
        ("TransactionPosted", "fx-1"),
        ("TransactionPending", "hold"),
        ("TransactionPendingPosted", "hold"),
    ]
    payout = transaction_events[0]
    assert isinstance(payout, TransactionPosted) and len(payout.postings) == SELLERS
    # the rejected transaction is no event: the pending one right after fx-1 is the next link
    assert transaction_events[2].sequence == transaction_events[1].sequence + 1

    project_until_caught_up(settings, events[-1].sequence)
    with psycopg.connect(settings.database_dsn) as conn:
        stored = stored_balances(conn)
        assert stored == fold_balances(events)
        for index in range(2, REJECTED_POSTINGS):  # the rejected postings' sellers: payout only
            assert stored[f"seller-{index:02}"] == (0, 1_000 + index, 0, 0)
        transactions = conn.execute(
            "SELECT transaction_id, posting_count, currencies, pending, status"
            " FROM ledger.transactions WHERE tenant_id = %s ORDER BY created_sequence",
            (TENANT,),
        ).fetchall()
        assert [row[:5] for row in transactions] == [
            ("payout-1", SELLERS, ["USD"], False, "posted"),
            ("fx-1", 2, ["EUR", "USD"], False, "posted"),
            ("hold", 2, ["USD"], True, "posted"),
        ]
        posting_rows = conn.execute(
            "SELECT count(*) FROM ledger.transfers WHERE tenant_id = %s AND transfer_id LIKE %s",
            (TENANT, "%/%"),
        ).fetchone()
        assert posting_rows == (SELLERS + 2 + 2,)
        too_much = conn.execute(
            "SELECT count(*) FROM ledger.transfers WHERE tenant_id = %s AND transfer_id LIKE"
            " 'too-much%%'",
            (TENANT,),
        ).fetchone()
        assert too_much == (0,)
        entries = conn.execute(
            "SELECT count(*) FROM ledger.entries WHERE tenant_id = %s AND sequence = %s",
            (TENANT, payout.sequence),
        ).fetchone()
        assert entries == (2 * SELLERS,)

    with LedgerReader(reader_dsn(settings), ProjectionSettings()) as reader:
        read = reader.transaction(TENANT, "payout-1")
        assert read is not None and read.status == "posted" and len(read.postings) == SELLERS
        assert [(p.credit_account_id, p.amount) for p in read.postings] == [
            (f"seller-{i:02}", 1_000 + i) for i in range(SELLERS)
        ]
        fx = reader.transaction(TENANT, "fx-1")
        assert fx is not None and fx.currencies == ("EUR", "USD")
        assert reader.transaction(TENANT, "too-much") is None
        assert reader.transaction("another-tenant", "payout-1") is None

        # point in time: at every effective time of the log, each account's balance as of it
        # is the one carried by the last event at or before it that touched the account
        for moment_us in sorted({e.effective_at_us for e in events}):
            upto = [e for e in events if e.effective_at_us <= moment_us]
            expected = fold_balances(upto)
            for account_id in ("pool", "seller-00", "seller-07", "small", "customer_usd"):
                read_as_of = reader.balance(TENANT, account_id, as_of=to_datetime(moment_us))
                got = None if read_as_of is None else read_as_of.counters()
                assert got == expected.get(account_id), (moment_us, account_id)

        # history pages through the 50 rows of one event, each row exactly once
        seen: list[tuple[int, str, str]] = []
        cursor: str | None = None
        for _ in range(100):
            page = reader.history(TENANT, "pool", after=cursor, limit=7)
            seen.extend((e.sequence, e.kind, e.transfer_id) for e in page.entries)
            cursor = page.next_cursor
            if cursor is None:
                break
        assert len(seen) == len(set(seen))
        assert len([s for s in seen if s[0] == payout.sequence]) == SELLERS

    report = verify(settings, group=f"{settings.topic_prefix}verify")
    assert report.ok, "\n".join(report.lines())
    assert list(report.audits[TENANT].transactions) == ["payout-1", "fx-1", "hold"]

    # project --rebuild: a fresh generation from the log holds the same rows
    before = projected_rows(settings)
    rebuilt = rebuild(settings, projection_for(settings))
    assert rebuilt.events == events[-1].sequence and not rebuilt.quarantined
    assert projected_rows(settings) == before
    again = verify(settings, group=f"{settings.topic_prefix}verify-again")
    assert again.ok, "\n".join(again.lines())


def test_kill_9_while_multi_leg_batches_are_in_flight(
    projection_settings: Settings, tmp_path: Path
) -> None:
    """Each transaction is whole or absent: one event with every posting, or none, and in
    PostgreSQL one row with every posting's transfer and journal rows, or none."""
    settings = projection_settings
    rng = random.Random(16_003)
    sellers = [f"seller-{index:02}" for index in range(20)]
    setup: list[Command] = [
        open_account("world_usd"),
        open_account("pool", debits_must_not_exceed_credits=True),
        *(open_account(seller) for seller in sellers),
        fund("pool", 10**12),
    ]
    produce_commands(settings, setup)
    run_processor(settings, tmp_path)
    batches: list[Command] = [
        post_transaction(
            f"payout-{index}",
            *(
                posting("pool", s, rng.randint(1, 999))
                for s in rng.sample(sellers, rng.randint(2, 20))
            ),
        )
        for index in range(KILL_TRANSACTIONS)
    ]
    chunk = len(batches) // (KILL_ROUNDS + 1)
    for round_index in range(KILL_ROUNDS):
        produce_commands(settings, batches[round_index * chunk : (round_index + 1) * chunk])
        processor = ProcessorProcess(settings, "a", tmp_path)
        processor.wait_for_log(RESTORED, STARTUP_TIMEOUT_S)
        time.sleep(rng.uniform(0.05, 1.0))
        processor.kill()
    produce_commands(settings, batches[KILL_ROUNDS * chunk :])
    run_processor(settings, tmp_path)

    events, outcomes = log_of(settings)
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    by_id = {e.transaction_id: e for e in events if isinstance(e, TransactionPosted)}
    assert (
        len(by_id)
        == KILL_TRANSACTIONS
        == len([e for e in events if isinstance(e, TransactionPosted)])
    )
    for command in batches:
        assert isinstance(command, PostTransaction)
        assert outcomes[command.idempotency_key].status is OutcomeStatus.ACCEPTED
        assert by_id[command.transaction_id].postings == command.postings
    project_until_caught_up(settings, events[-1].sequence)
    with psycopg.connect(settings.database_dsn) as conn:
        assert stored_balances(conn) == fold_balances(events)
        rows = conn.execute(
            "SELECT x.transaction_id, x.posting_count,"
            " (SELECT count(*) FROM ledger.transfers AS t WHERE t.tenant_id = x.tenant_id"
            "  AND t.transfer_id LIKE x.transaction_id || '/%%'),"
            " (SELECT count(*) FROM ledger.entries AS e WHERE e.tenant_id = x.tenant_id"
            "  AND e.sequence = x.created_sequence)"
            " FROM ledger.transactions AS x WHERE x.tenant_id = %s",
            (TENANT,),
        ).fetchall()
    assert {row[0] for row in rows} == set(by_id)
    for transaction_id, count, transfers, entries in rows:
        assert count == len(by_id[transaction_id].postings) == transfers
        assert entries == 2 * count


def get_when_projected(client: httpx.Client, path: str) -> httpx.Response:
    """GET ``path`` until it is no longer 404 (the projection trails the log; bounded)."""
    deadline = time.monotonic() + PROJECTED_TIMEOUT_S
    while True:
        response = client.get(path)
        if response.status_code != 404:
            return response
        assert time.monotonic() < deadline, f"{path} not projected: {response.text}"
        time.sleep(0.1)


def test_get_transaction_through_the_api(stack_settings: Settings, tmp_path: Path) -> None:
    """``GET /v1/transactions/{id}``: the tenant from the key (row-level security as the API's
    role), every posting in order, a 404 problem for an unknown id or another tenant's."""
    flags = ["--api-key-cache-ttl-s=0"]
    with running_api_stack(stack_settings, tmp_path, (TENANT, OTHER_TENANT), flags) as stack:
        produce_commands(
            stack.settings,
            [
                open_account("world_usd"),
                open_account("world_eur", "EUR"),
                open_account("customer_eur", "EUR"),
                open_account("fx_liquidity_eur", "EUR"),
                open_account("fx_liquidity_usd"),
                open_account("customer_usd"),
                fund("customer_eur", 50_000, "EUR"),
                post_transaction(
                    "fx-1",
                    posting("customer_eur", "fx_liquidity_eur", 10_000, "EUR"),
                    posting("fx_liquidity_usd", "customer_usd", 10_837, "USD"),
                ),
            ],
        )
        with stack.client(TENANT) as client, stack.client(OTHER_TENANT) as other:
            response = get_when_projected(client, "/v1/transactions/fx-1")
            assert response.status_code == 200, response.text
            body = response.json()
            assert (body["transaction_id"], body["status"], body["pending"]) == (
                "fx-1",
                "posted",
                False,
            )
            assert body["currencies"] == ["EUR", "USD"]
            assert [
                (p["index"], p["debit_account_id"], p["amount"], p["amount_posted"])
                for p in body["postings"]
            ] == [(0, "customer_eur", 10_000, 10_000), (1, "fx_liquidity_usd", 10_837, 10_837)]
            for response in (
                client.get("/v1/transactions/no-such"),
                other.get("/v1/transactions/fx-1"),
            ):
                assert response.status_code == 404, response.text
                assert response.headers["content-type"] == "application/problem+json"
            assert client.get("/v1/transactions/bad%20id").status_code == 400
            paths = client.get("/openapi.json").json()["paths"]
            assert "get" in paths["/v1/transactions/{transaction_id}"]
