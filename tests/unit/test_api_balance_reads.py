"""The balance read's direct dispatch (``api.app.BalanceReads``) answers exactly as the routed
handler does: same status, body, headers and metrics label for every kind of answer, and it
takes only the requests the route would take.

The reader is a stand-in with the two methods the handler calls; the real reader, its SQL and
PostgreSQL are covered by ``tests/system/test_api.py`` (balances, as-of, 401, 404, metrics).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import generate_latest
from starlette.applications import Starlette
from starlette.routing import Match, Route

from api.app import BALANCE_PATH, BALANCE_ROUTE, ApiServices, BalanceReads, create_app
from api.settings import build_api_settings
from projections.queries import Balance
from streamledger.settings import Settings

TOKEN = "slk_" + "0" * 16 + "_" + "a" * 43
TENANT = "acme"


class StandInReader:
    """Knows one key (``TOKEN`` → ``TENANT``) and one account (``cash``)."""

    async def tenant_for_token(self, token: str) -> str | None:
        return TENANT if token == TOKEN else None

    async def balance(
        self, tenant_id: str, account_id: str, *, as_of: datetime | None
    ) -> Balance | None:
        if account_id != "cash":
            return None
        at = as_of or datetime(2026, 12, 6, tzinfo=UTC)
        available = None if as_of else Decimal(-5)
        return Balance(tenant_id, account_id, "USD", "debit", 10, 15, 0, 0, available, 7, at)


async def no_services(services: ApiServices) -> None:
    services.reader = StandInReader()  # type: ignore[assignment]


def app(*, direct: bool) -> Starlette:
    shared = Settings(home=Path("/tmp/streamledger-unit"))
    built = create_app(shared, build_api_settings(shared), start=no_services)
    built.state.services.reader = StandInReader()
    if not direct:
        built.user_middleware = [m for m in built.user_middleware if m.cls is not BalanceReads]
    return built


KEY = {"Authorization": f"Bearer {TOKEN}"}
REQUESTS = [
    ("GET", "/v1/accounts/cash/balance", KEY),
    ("GET", "/v1/accounts/cash/balance?as_of=2026-01-01T00:00:00Z", KEY),
    ("GET", "/v1/accounts/cash/balance?as_of=yesterday", KEY),
    ("GET", "/v1/accounts/cash/balance?asof=2026-01-01", KEY),
    ("GET", "/v1/accounts/other/balance", KEY),
    ("GET", "/v1/accounts/cash/balance", {}),
    ("GET", "/v1/accounts/cash/balance", {"Authorization": "Bearer " + "b" * 20}),
    ("GET", "/v1/accounts/" + "x" * 300 + "/balance", KEY),
    ("DELETE", "/v1/accounts/cash/balance", KEY),
]


async def answers(built: Starlette) -> list[tuple[int, bytes, dict[str, str], str]]:
    transport = httpx.ASGITransport(app=built)
    found = []
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        for method, url, headers in REQUESTS:
            response = await client.request(method, url, headers=headers)
            kept = {name: response.headers[name] for name in response.headers if name != "date"}
            found.append((response.status_code, response.content, kept, url))
    services: Any = built.state.services
    label = 'route="' + BALANCE_ROUTE + '"'
    observed = generate_latest(services.metrics.registry).decode().count(label)
    found.append((0, b"", {}, f"{observed} metric lines of the route"))
    return found


def test_the_direct_dispatch_answers_as_the_route_does() -> None:
    direct = asyncio.run(answers(app(direct=True)))
    routed = asyncio.run(answers(app(direct=False)))
    statuses = [status for status, *_ in direct[:-1]]
    assert statuses == [200, 200, 400, 400, 404, 401, 401, 400, 405]
    assert direct == routed


def test_it_takes_exactly_the_paths_the_route_takes() -> None:
    route = Route(BALANCE_ROUTE, lambda request: None, methods=["GET"])
    paths = [
        "/v1/accounts/cash/balance",
        "/v1/accounts/a.b-c_d:e/balance",
        "/v1/accounts//balance",
        "/v1/accounts/a/b/balance",
        "/v1/accounts/cash/balance/",
        "/v1/accounts/cash/balance-history",
        "/v1/accounts/cash",
        "/v2/accounts/cash/balance",
    ]
    for path in paths:
        scope = {"type": "http", "method": "GET", "path": path, "root_path": ""}
        routed = route.matches(scope)[0] is Match.FULL
        assert (BALANCE_PATH.fullmatch(path) is not None) == routed, path
