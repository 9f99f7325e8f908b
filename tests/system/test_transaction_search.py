"""Metadata search of multi-leg transactions on the real broker and PostgreSQL (decision 0077).

Two tenants' seeded histories (the metadata search's workload: transfers, pending ones posted,
voided and expired, multi-leg transactions, pending ones among them) go through the pure core, are
produced to ``ledger.events`` and projected. Every transaction search — metadata alone and
**together with a point in time** (``to``; formancehq/ledger#1416 lost that combination), a
window, an account on any posting, a status, small pages through the keyset cursor — must equal a
plain filter of the events, and must not be empty where the reference is not. Through the real
HTTP API: a tenant's key pages through its own transactions by the ``next`` links, another
tenant's key sees none of them, a key of a tenant with no transactions sees nothing, and a bad
parameter is a 400 naming it.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import psycopg
import pytest

from api.api_keys import create_api_key
from api.settings import build_api_settings
from projections.queries import LedgerReader, reader_dsn
from projections.search import (
    TRANSACTION_COLUMNS,
    TransactionSearch,
    bounds_statement,
    page_of,
    parse_search_cursor,
    sequence_bounds,
    transaction_statement,
)
from schemas.event_time import to_datetime
from schemas.model import Event
from streamledger.settings import Settings
from tests.system.api_server import serving_api
from tests.system.free_ports import free_port_range
from tests.system.projection_checks import project_until_caught_up, projection_for
from tests.system.test_metadata_search import CHANNELS, ORDERS, run_history
from workloads.projection_events import produce_events

pytestmark = pytest.mark.system
SEED = 19_0077
COMMANDS = 260
TENANTS = ("acme-tx-search", "globex-tx-search")
PAGE = 3  # small pages: every search pages through the keyset cursor
PAGES_MAX = 1_000
transactional_ids = itertools.count()
CREATED = {"TransactionPosted": "posted", "TransactionPending": "pending"}
ENDED = {
    "TransactionPendingPosted": "posted",
    "TransactionPendingVoided": "voided",
    "TransactionPendingExpired": "expired",
}


@dataclass
class ReferenceTransaction:
    transaction_id: str
    created_sequence: int
    created_at: datetime
    metadata: dict[str, str]
    accounts: frozenset[str]
    status: str


def reference_transactions(events: list[Event]) -> dict[str, ReferenceTransaction]:
    """The tenant's transactions as a fold of its events (independent of the projection)."""
    found: dict[str, ReferenceTransaction] = {}
    for event in events:
        name = type(event).__name__
        if name in CREATED:
            postings = event.postings  # type: ignore[attr-defined]
            found[event.transaction_id] = ReferenceTransaction(  # type: ignore[attr-defined]
                event.transaction_id,  # type: ignore[attr-defined]
                event.sequence,
                to_datetime(event.effective_at_us),
                dict(event.metadata),
                frozenset(
                    account
                    for posting in postings
                    for account in (posting.debit_account_id, posting.credit_account_id)
                ),
                CREATED[name],
            )
        elif name in ENDED:
            found[event.transaction_id].status = ENDED[name]  # type: ignore[attr-defined]
    return found


def expected(transactions: dict[str, ReferenceTransaction], search: TransactionSearch) -> list[str]:
    """The ids ``search`` must return, newest first (no paging)."""
    found = [
        item
        for item in transactions.values()
        if all(item.metadata.get(key) == value for key, value in search.metadata)
        and (search.created_from is None or item.created_at >= search.created_from)
        and (search.created_to is None or item.created_at < search.created_to)
        and (search.account is None or search.account in item.accounts)
        and (search.status is None or item.status == search.status)
    ]
    found.sort(key=lambda item: (item.created_sequence, item.transaction_id), reverse=True)
    return [item.transaction_id for item in found]


def pages(reader: LedgerReader, tenant: str, search: TransactionSearch) -> list[str]:
    """Every page of ``search`` read as the tenant, following the cursor; the ids in order."""
    found: list[str] = []
    period = bounds_statement(tenant, search)  # as the API reads it, the sequences first
    bounds = None if period is None else sequence_bounds(reader.fetch(tenant, *period))
    for _ in range(PAGES_MAX):
        rows = reader.fetch(tenant, *transaction_statement(tenant, search, bounds))
        page = page_of(rows, TRANSACTION_COLUMNS, search.limit)
        found += [row["transaction_id"] for row in page.rows]
        if page.next_cursor is None:
            return found
        search = dataclasses.replace(search, after=parse_search_cursor(page.next_cursor))
    raise AssertionError(f"more than {PAGES_MAX} pages")


def searches(
    events: list[Event], transactions: dict[str, ReferenceTransaction], rng: random.Random
) -> Iterator[TransactionSearch]:
    """Metadata alone, with a point in time, with ``from``, with a window, with an account and
    a status, and no metadata at all."""
    times = [event.effective_at_us for event in events]
    moments = sorted(to_datetime(rng.randrange(times[0], times[-1] + 1)) for _ in range(3))
    created = sorted(item.created_at for item in transactions.values())
    moments += rng.sample(created, 3)  # exactly when a transaction was created
    for order in rng.sample(ORDERS, 5):
        metadata = (("order_id", order),)
        yield TransactionSearch(metadata=metadata, limit=PAGE)
        for moment in moments:
            yield TransactionSearch(metadata=metadata, created_to=moment, limit=PAGE)
            yield TransactionSearch(metadata=metadata, created_from=moment, limit=PAGE)
        yield TransactionSearch(
            metadata=metadata, created_from=moments[0], created_to=moments[2], limit=PAGE
        )
    for channel in CHANNELS:
        both = (("channel", channel), ("order_id", rng.choice(ORDERS)))
        yield TransactionSearch(metadata=both, created_to=rng.choice(moments), limit=PAGE)
        yield TransactionSearch(metadata=(("channel", channel),), account="acct-1", limit=PAGE)
        for status in ("pending", "posted", "voided", "expired"):
            yield TransactionSearch(
                metadata=(("channel", channel),), status=status, created_to=moments[1], limit=2
            )
    yield TransactionSearch(account="acct-2", status="posted", limit=PAGE * 3)
    yield TransactionSearch(limit=PAGE * 5)
    yield TransactionSearch(metadata=(("order_id", "nobody"),), limit=PAGE)


def project(settings: Settings) -> dict[str, list[Event]]:
    histories = {
        tenant: run_history(tenant, SEED + offset, commands=COMMANDS).events
        for offset, tenant in enumerate(TENANTS)
    }
    events = [event for tenant_events in histories.values() for event in tenant_events]
    produce_events(settings, events, transactional_id=f"tx-search-{next(transactional_ids)}")
    project_until_caught_up(settings, len(events))
    return histories


def test_transaction_searches_equal_a_filter_of_the_events(projection_settings: Settings) -> None:
    histories = project(projection_settings)
    rng = random.Random(SEED)
    non_empty_points_in_time = 0
    with LedgerReader(
        reader_dsn(projection_settings), projection_for(projection_settings)
    ) as reader:
        for tenant, events in histories.items():
            transactions = reference_transactions(events)
            assert len(transactions) >= 20, "the workload has transactions to find"
            for search in searches(events, transactions, rng):
                wanted = expected(transactions, search)
                assert pages(reader, tenant, search) == wanted, search
                if search.metadata and search.created_to is not None and wanted:
                    non_empty_points_in_time += 1
        # metadata + a point in time found something (formancehq/ledger#1416 returned nothing)
        assert non_empty_points_in_time >= 10
        check_a_chain_without_its_first_links(projection_settings, reader, histories, rng)
        first, second = TENANTS
        statement = transaction_statement(first, TransactionSearch(metadata=(("order_id", "O-1"),)))
        assert reader.fetch(first, *statement) != []
        assert reader.fetch(second, *statement) == [], "another tenant's rows are never read"
    check_the_api(projection_settings, histories)


def check_a_chain_without_its_first_links(
    settings: Settings, reader: LedgerReader, histories: dict[str, list[Event]], rng: random.Random
) -> None:
    """A generation migrated after its events lacks their chain links (decision 0032): the
    searches' sequence bounds taken from the chain must then not drop a row (0077)."""
    tenant = TENANTS[0]
    events = histories[tenant]
    with psycopg.connect(settings.database_dsn, autocommit=True) as conn:
        conn.execute(
            "DELETE FROM ledger.event_chain WHERE tenant_id = %s AND sequence <= %s",
            (tenant, len(events) // 2),
        )
    transactions = reference_transactions(events)
    for search in searches(events, transactions, rng):
        assert pages(reader, tenant, search) == expected(transactions, search), search


@contextmanager
def api_in_this_process(settings: Settings) -> Iterator[httpx.Client]:
    """The real HTTP API on a port of this run's range, reading the projected database."""
    api = build_api_settings(settings, limits={"port": free_port_range(1)})
    with (
        serving_api(settings, api, "api-transaction-search") as base_url,
        httpx.Client(base_url=base_url, timeout=30) as client,
    ):
        yield client


def api_pages(client: httpx.Client, token: str, url: str) -> list[dict[str, Any]]:
    """Every row of a search through the API, following the ``next`` links."""
    rows: list[dict[str, Any]] = []
    next_url: str | None = url
    for _ in range(PAGES_MAX):
        if next_url is None:
            return rows
        response = client.get(next_url, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.text
        document = response.json()
        rows += document["data"]
        next_url = document["next"]
    raise AssertionError(f"more than {PAGES_MAX} pages")


def check_the_api(settings: Settings, histories: dict[str, list[Event]]) -> None:
    first, second = TENANTS
    tokens = {tenant: create_api_key(settings, tenant).token for tenant in (*TENANTS, "nobody")}
    events = histories[first]
    transactions = reference_transactions(events)
    moment = sorted(item.created_at for item in transactions.values())[len(transactions) * 2 // 3]
    search = TransactionSearch(metadata=(("order_id", "O-3"),), created_to=moment, limit=PAGE)
    query = f"metadata[order_id]=O-3&to={moment.isoformat()}&limit={PAGE}"
    url = f"/v1/transactions?{query}".replace("+", "%2B")
    with api_in_this_process(settings) as client:
        own = api_pages(client, tokens[first], url)
        wanted = expected(transactions, search)
        assert wanted and [row["transaction_id"] for row in own] == wanted
        assert all(row["metadata"]["order_id"] == "O-3" for row in own)
        assert own[0]["posting_count"] == 2 and own[0]["currencies"] == ["USD"]
        theirs = api_pages(client, tokens[second], url)  # the same URL, another tenant's key
        wanted_there = expected(reference_transactions(histories[second]), search)
        assert [row["transaction_id"] for row in theirs] == wanted_there != wanted
        assert api_pages(client, tokens["nobody"], url) == []
        assert api_pages(client, tokens["nobody"], "/v1/transactions") == []
        bad = client.get(
            "/v1/transactions?status=done", headers={"Authorization": f"Bearer {tokens[first]}"}
        )
        assert bad.status_code == 400 and bad.json()["field"] == "status", bad.text
