"""Metadata search on the real broker and PostgreSQL (issue 19 §3, decision 0056).

A seeded history of two tenants whose commands carry metadata (accounts, transfers, pending ones
posted, voided and expired, multi-leg transactions) goes through the pure core (schemas v1.4:
events carry the metadata), is produced to ``ledger.events`` and projected. Every search read back
— metadata filters, alone and **together with a point in time** (``to``, and ``from``; Formance's
users lost results exactly there, formancehq/ledger#1416), account and status filters, paged with
small pages through the keyset cursor — must equal a plain Python filter of the events, and must
not be empty where the reference is not. The other tenant sees nothing, and ``project --rebuild``
(a replay into a fresh generation) fills the metadata again.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
import pytest

import ledger
from processors.partition_ledger import WIRE_FORMAT
from projections.queries import LedgerReader, reader_dsn
from projections.rebuild import rebuild
from projections.search import (
    ACCOUNT_COLUMNS,
    TRANSFER_COLUMNS,
    AccountSearch,
    TransferSearch,
    account_statement,
    bounds_statement,
    page_of,
    parse_search_cursor,
    sequence_bounds,
    transfer_statement,
)
from schemas.event_time import to_datetime
from schemas.model import (
    AccountOpened,
    Command,
    Event,
    OpenAccount,
    PendingExpired,
    PendingPosted,
    PendingVoided,
    Posting,
    PostPending,
    PostTransaction,
    RejectReason,
    TransactionPendingExpired,
    TransactionPendingPosted,
    TransactionPendingVoided,
    Transfer,
    VoidPending,
)
from streamledger.settings import Settings
from tests.system.projection_checks import project_until_caught_up, projection_for
from workloads.projection_events import produce_events

pytestmark = pytest.mark.system
SEED = 19_0056
T0_US = 1_800_000_000_000_000
STEP_US = 1_000_000
ORDERS = tuple(f"O-{index}" for index in range(12))
CHANNELS = ("web", "app", "pos")
PAGE = 7  # small pages: every search pages through the keyset cursor
PAGES_MAX = 1_000
COMMANDS = 220
TENANTS = ("acme-meta", "globex-meta")
transactional_ids = itertools.count()
FINAL = {
    "PendingPosted": "posted",
    "PendingVoided": "voided",
    "PendingExpired": "expired",
    "TransactionPendingPosted": "posted",
    "TransactionPendingVoided": "voided",
    "TransactionPendingExpired": "expired",
}


@dataclass
class ReferenceTransfer:
    transfer_id: str
    created_sequence: int
    created_at_us: int
    metadata: dict[str, str]
    debit: str
    credit: str
    status: str


@dataclass
class History:
    """A tenant's commands run through the core, and what a search must find (by a fold of the
    events written for this test)."""

    tenant: str
    events: list[Event] = field(default_factory=list)
    accounts: dict[str, tuple[int, dict[str, str], str]] = field(default_factory=dict)
    transfers: dict[str, ReferenceTransfer] = field(default_factory=dict)
    pending: list[tuple[str, str]] = field(default_factory=list)  # (id, reference key)
    now_us: int = T0_US

    def note(self, event: Event) -> None:
        self.events.append(event)
        metadata = dict(event.metadata)
        if isinstance(event, AccountOpened):
            self.accounts[event.account_id] = (event.sequence, metadata, event.currency)
            return
        name = type(event).__name__
        if name in ("TransferPosted", "TransferPending"):
            status = "pending" if name == "TransferPending" else "posted"
            self.add(
                event.transfer_id, event, event.debit_account_id, event.credit_account_id, status
            )  # type: ignore[attr-defined]
        elif name in ("TransactionPosted", "TransactionPending"):
            status = "pending" if name == "TransactionPending" else "posted"
            for index, posting in enumerate(event.postings):  # type: ignore[attr-defined]
                transfer_id = f"{event.transaction_id}/{index}"  # type: ignore[attr-defined]
                self.add(
                    transfer_id, event, posting.debit_account_id, posting.credit_account_id, status
                )
        elif isinstance(event, PendingPosted | PendingVoided | PendingExpired):
            self.transfers[event.transfer_id].status = FINAL[name]
        elif isinstance(
            event, TransactionPendingPosted | TransactionPendingVoided | TransactionPendingExpired
        ):
            for index in range(len(event.postings)):
                self.transfers[f"{event.transaction_id}/{index}"].status = FINAL[name]

    def add(self, transfer_id: str, event: Event, debit: str, credit: str, status: str) -> None:
        self.transfers[transfer_id] = ReferenceTransfer(
            transfer_id,
            event.sequence,
            event.effective_at_us,
            dict(event.metadata),
            debit,
            credit,
            status,
        )

    def search(self, search: TransferSearch) -> list[str]:
        """The transfer ids ``search`` must return, newest first (no paging)."""
        found = [
            transfer
            for transfer in self.transfers.values()
            if all(transfer.metadata.get(key) == value for key, value in search.metadata)
            and (
                search.created_from is None
                or to_datetime(transfer.created_at_us) >= search.created_from
            )
            and (
                search.created_to is None or to_datetime(transfer.created_at_us) < search.created_to
            )
            and (search.account is None or search.account in (transfer.debit, transfer.credit))
            and (search.status is None or transfer.status == search.status)
        ]
        found.sort(key=lambda item: (item.created_sequence, item.transfer_id), reverse=True)
        return [item.transfer_id for item in found]


def random_metadata(rng: random.Random) -> tuple[tuple[str, str], ...]:
    chosen: dict[str, str] = {}
    if rng.random() < 0.7:
        chosen["order_id"] = rng.choice(ORDERS)
    if rng.random() < 0.5:
        chosen["channel"] = rng.choice(CHANNELS)
    if rng.random() < 0.2:
        chosen["external_ref"] = f"psp-{rng.randrange(1000)}"
    return tuple(sorted(chosen.items()))


def run_history(tenant: str, seed: int, commands: int) -> History:
    rng = random.Random(seed)
    state = ledger.LedgerState(wire_format=WIRE_FORMAT, idempotency_retention_s=0)
    history = History(tenant)
    keys = itertools.count()

    def step(command: Command) -> None:
        history.now_us += rng.randrange(1, 3) * STEP_US
        decision = ledger.step(state, command, history.now_us)
        if not isinstance(decision, ledger.Accepted):  # only: it expired just before
            assert decision.outcome.reason is RejectReason.PENDING_EXPIRED, decision.outcome
        for event in decision.events:  # the expiries first, if any
            history.note(event)

    header = lambda: {  # noqa: E731 - a tiny factory of the common fields
        "tenant_id": tenant,
        "idempotency_key": f"k-{next(keys)}",
        "submitted_at_us": T0_US,
        "metadata": random_metadata(rng),
    }
    accounts = [f"acct-{index}" for index in range(5)]
    for account_id in accounts:
        step(OpenAccount(**header(), account_id=account_id, currency="USD", asset_scale=2))
    for number in range(commands):
        choice = rng.random()
        debit, credit = rng.sample(accounts, 2)
        if choice < 0.45:
            step(
                Transfer(
                    **header(),
                    transfer_id=f"t-{number}",
                    debit_account_id=debit,
                    credit_account_id=credit,
                    amount=rng.randrange(1, 500),
                    currency="USD",
                )
            )
        elif choice < 0.65:
            timeout = rng.choice((None, 1, 3))
            step(
                Transfer(
                    **header(),
                    transfer_id=f"p-{number}",
                    debit_account_id=debit,
                    credit_account_id=credit,
                    amount=rng.randrange(1, 500),
                    currency="USD",
                    pending=True,
                    pending_timeout_s=timeout,
                )
            )
            history.pending.append((f"p-{number}", f"p-{number}"))
        elif choice < 0.8 and history.pending:
            target, reference = history.pending.pop(rng.randrange(len(history.pending)))
            if history.transfers[reference].status != "pending":
                continue  # expired meanwhile
            ending = PostPending if rng.random() < 0.5 else VoidPending
            step(ending(**header(), transfer_id=target))
        else:
            third = next(a for a in accounts if a not in (debit, credit))
            postings = (
                Posting(debit_account_id=debit, credit_account_id=credit, amount=5, currency="USD"),
                Posting(debit_account_id=credit, credit_account_id=third, amount=3, currency="USD"),
            )
            pending = rng.random() < 0.3
            step(
                PostTransaction(
                    **header(),
                    transaction_id=f"x-{number}",
                    postings=postings,
                    pending=pending,
                    pending_timeout_s=2 if pending else None,
                )
            )
            if pending:
                history.pending.append((f"x-{number}", f"x-{number}/0"))
    return history


@dataclass
class Projected:
    settings: Settings
    histories: dict[str, History]
    reader: LedgerReader

    def pages(self, tenant: str, search: TransferSearch) -> list[str]:
        """Every page of ``search`` as the tenant, following the cursor; the ids in order."""
        found: list[str] = []
        period = bounds_statement(tenant, search)  # as the API reads it (decision 0077)
        bounds = None if period is None else sequence_bounds(self.reader.fetch(tenant, *period))
        for _ in range(PAGES_MAX):
            statement, parameters = transfer_statement(tenant, search, bounds)
            rows = self.reader.fetch(tenant, statement, parameters)
            page = page_of(rows, TRANSFER_COLUMNS, search.limit)
            found += [row["transfer_id"] for row in page.rows]
            if page.next_cursor is None:
                return found
            search = dataclasses.replace(search, after=parse_search_cursor(page.next_cursor))
        raise AssertionError(f"more than {PAGES_MAX} pages")


def project(settings: Settings) -> dict[str, History]:
    histories = {
        tenant: run_history(tenant, SEED + offset, commands=COMMANDS)
        for offset, tenant in enumerate(TENANTS)
    }
    events = [event for history in histories.values() for event in history.events]
    produce_events(settings, events, transactional_id=f"meta-{next(transactional_ids)}")
    project_until_caught_up(settings, len(events))
    return histories


def instants(history: History, rng: random.Random) -> list[datetime]:
    """Random instants inside the history, and exactly at events' effective times."""
    times = [event.effective_at_us for event in history.events]
    chosen = [rng.randrange(times[0], times[-1] + 1) for _ in range(4)]
    chosen += [rng.choice(times) for _ in range(4)]
    return [to_datetime(moment) for moment in chosen]


def searches(history: History, rng: random.Random) -> Iterator[TransferSearch]:
    """Filter combinations: metadata alone, with a point in time (``to``), with a window, with an
    account and a status, and no metadata at all."""
    moments = instants(history, rng)
    for order in rng.sample(ORDERS, 4):
        metadata = (("order_id", order),)
        yield TransferSearch(metadata=metadata, limit=PAGE)
        for moment in moments[:3]:
            yield TransferSearch(metadata=metadata, created_to=moment, limit=PAGE)
            yield TransferSearch(metadata=metadata, created_from=moment, limit=PAGE)
        low, high = sorted(rng.sample(moments, 2))
        yield TransferSearch(metadata=metadata, created_from=low, created_to=high, limit=PAGE)
    for channel in CHANNELS:
        both = (("channel", channel), ("order_id", rng.choice(ORDERS)))
        yield TransferSearch(metadata=both, created_to=rng.choice(moments), limit=PAGE)
        yield TransferSearch(metadata=(("channel", channel),), account="acct-1", limit=PAGE)
        for status in ("pending", "posted", "voided", "expired"):
            yield TransferSearch(
                metadata=(("channel", channel),), status=status, created_to=moments[0], limit=3
            )
    yield TransferSearch(limit=PAGE * 5)
    yield TransferSearch(metadata=(("order_id", "nobody"),), limit=PAGE)


def test_searches_equal_a_filter_of_the_events(projection_settings: Settings) -> None:
    histories = project(projection_settings)
    rng = random.Random(SEED)
    with LedgerReader(
        reader_dsn(projection_settings), projection_for(projection_settings)
    ) as reader:
        projected = Projected(projection_settings, histories, reader)
        non_empty_points_in_time = 0
        for tenant, history in histories.items():
            for search in searches(history, rng):
                expected = history.search(search)
                assert projected.pages(tenant, search) == expected, search
                if search.metadata and search.created_to is not None and expected:
                    non_empty_points_in_time += 1
        # metadata + a point in time found something (formancehq/ledger#1416 returned nothing)
        assert non_empty_points_in_time >= 5
        check_accounts(projected)
        check_other_tenant_sees_nothing(projected)


def check_accounts(projected: Projected) -> None:
    for tenant, history in projected.histories.items():
        for order in ORDERS[:4]:
            search = AccountSearch(metadata=(("order_id", order),), limit=2)
            found: list[str] = []
            while True:
                rows = projected.reader.fetch(tenant, *account_statement(tenant, search))
                page = page_of(rows, ACCOUNT_COLUMNS, search.limit)
                found += [row["account_id"] for row in page.rows]
                assert all(row["metadata"]["order_id"] == order for row in page.rows)
                if page.next_cursor is None:
                    break
                search = dataclasses.replace(search, after=parse_search_cursor(page.next_cursor))
            expected = sorted(
                (
                    (sequence, account_id)
                    for account_id, (sequence, metadata, _) in history.accounts.items()
                    if metadata.get("order_id") == order
                ),
                reverse=True,
            )
            assert found == [account_id for _, account_id in expected]


def check_other_tenant_sees_nothing(projected: Projected) -> None:
    """Row-level security: the statement of tenant A run as tenant B finds nothing."""
    first, second = TENANTS
    for search in (TransferSearch(limit=PAGE), TransferSearch(metadata=(("order_id", ORDERS[0]),))):
        statement, parameters = transfer_statement(first, search)
        assert projected.reader.fetch(second, statement, parameters) == []
        assert projected.reader.fetch(first, statement, parameters) != []


def test_a_rebuild_fills_the_metadata(projection_settings: Settings) -> None:
    histories = project(projection_settings)
    before = stored_metadata(projection_settings)
    assert any(before.values()), "the projection stored the events' metadata"
    with psycopg.connect(projection_settings.database_dsn, autocommit=True) as conn:
        conn.execute("UPDATE ledger.transfers SET metadata = '{}'::jsonb")
        conn.execute("UPDATE ledger.accounts SET metadata = '{}'::jsonb")
    assert not any(stored_metadata(projection_settings).values())
    report = rebuild(projection_settings, projection_for(projection_settings))
    assert report.events == sum(len(history.events) for history in histories.values())
    assert stored_metadata(projection_settings) == before
    expected = {
        (tenant, transfer_id): transfer.metadata
        for tenant, history in histories.items()
        for transfer_id, transfer in history.transfers.items()
    }
    assert {key: value for key, value in before.items() if key[0] != "account"} == {
        ("transfer", *key): value for key, value in expected.items()
    }


def stored_metadata(settings: Settings) -> dict[tuple[str, str, str], dict[str, str]]:
    with psycopg.connect(settings.database_dsn) as conn:
        rows = conn.execute(
            "SELECT 'transfer', tenant_id, transfer_id, metadata FROM ledger.transfers"
            " UNION ALL SELECT 'account', tenant_id, account_id, metadata FROM ledger.accounts"
        ).fetchall()
    return {(kind, tenant, name): metadata for kind, tenant, name, metadata in rows}
