"""The HTTP API end to end over loopback: a real ``streamledger api`` (uvicorn) in front of the
real processor and projection (child processes), the real broker and a fresh database.

Tenants ``acme`` and ``globex`` each have an API key. Tests use their own account ids, so they
share one pipeline (started once for the module: start-up is the expensive part).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.api_keys import create_api_key, revoke_api_key
from api.settings import build_api_settings
from infra import kafka_broker, postgres_server, stack
from streamledger.settings import Settings
from tests.conftest import kafka_security_of_test_stacks
from tests.system.api_server import serving_api
from workloads.api_stack import ApiStack, free_port, running_api_stack

pytestmark = pytest.mark.system
PROJECTED_TIMEOUT_S = 30.0
API_FLAGS = ["--wait-timeout-ms=20000", "--api-key-cache-ttl-s=0"]


@pytest.fixture(scope="module")
def api_stack(
    stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiStack]:
    logs = tmp_path_factory.mktemp("api-stack")
    with running_api_stack(stack_settings, Path(logs), ("acme", "globex"), API_FLAGS) as stack:
        yield stack


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def post(client: httpx.Client, path: str, body: dict[str, Any], key: str) -> httpx.Response:
    return client.post(path, json=body, headers={"Idempotency-Key": key})


def open_account(client: httpx.Client, account_id: str, **flags: Any) -> None:
    body = {"account_id": account_id, "currency": "USD", "asset_scale": 2, **flags}
    response = post(client, "/v1/accounts", body, f"open-{account_id}")
    assert response.status_code == 201, response.text


def transfer(
    debit: str, credit: str, amount: int, transfer_id: str | None = None
) -> dict[str, Any]:
    return {
        "transfer_id": transfer_id or unique("t"),
        "debit_account_id": debit,
        "credit_account_id": credit,
        "amount": amount,
        "currency": "USD",
    }


def projected_balance(client: httpx.Client, account_id: str, sequence: int) -> dict[str, Any]:
    """The balance once the projection has applied event ``sequence`` (bounded wait)."""
    deadline = time.monotonic() + PROJECTED_TIMEOUT_S
    while True:
        response = client.get(f"/v1/accounts/{account_id}/balance")
        if response.status_code == 200 and response.json()["last_sequence"] >= sequence:
            balance: dict[str, Any] = response.json()
            return balance
        assert time.monotonic() < deadline, f"not projected: {response.text}"
        time.sleep(0.05)


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["type"].endswith("/" + slug), problem
    assert problem["status"] == status and problem["title"] and problem["detail"]
    return problem


# --------------------------------------------------------------------------- idempotency


def test_sequential_retries_return_the_original_result(api_stack: ApiStack) -> None:
    with api_stack.client("acme") as client:
        cash, revenue = unique("cash"), unique("revenue")
        open_account(client, cash)
        open_account(client, revenue)
        body = transfer(cash, revenue, 150)
        first = post(client, "/v1/transfers", body, "retry-1")
        assert first.status_code == 201, first.text
        assert first.headers["location"] == f"/v1/transfers/{body['transfer_id']}"
        for _ in range(3):
            again = post(client, "/v1/transfers", body, "retry-1")
            assert again.status_code == 201
            assert again.headers["idempotent-replayed"] == "true"
            assert again.json()["event_sequences"] == first.json()["event_sequences"]
        sequence = first.json()["event_sequences"][0]
        assert projected_balance(client, cash, sequence)["debits_posted"] == 150  # moved once
        status = client.get("/v1/commands/retry-1")
        assert status.status_code == 200 and status.json()["status"] == "accepted"


def test_concurrent_retries_with_one_key_move_money_once(api_stack: ApiStack) -> None:
    with api_stack.client("acme") as client:
        cash, revenue = unique("cash"), unique("revenue")
        open_account(client, cash)
        open_account(client, revenue)
    body = transfer(cash, revenue, 70)
    key = unique("concurrent")
    results: list[httpx.Response] = []

    def send() -> None:
        with api_stack.client("acme") as own:
            results.append(post(own, "/v1/transfers", body, key))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [r.status_code for r in results] == [201] * 8, [r.text for r in results]
    assert len({tuple(r.json()["event_sequences"]) for r in results}) == 1
    with api_stack.client("acme") as client:
        sequence = results[0].json()["event_sequences"][0]
        balance = projected_balance(client, cash, sequence)
        assert balance["debits_posted"] == 70
        entries = client.get(f"/v1/accounts/{cash}/entries").json()["entries"]
        assert len(entries) == 1


def test_a_key_reused_with_another_payload_is_409_naming_the_field(api_stack: ApiStack) -> None:
    with api_stack.client("acme") as client:
        cash, revenue = unique("cash"), unique("revenue")
        open_account(client, cash)
        open_account(client, revenue)
        body = transfer(cash, revenue, 10)
        assert post(client, "/v1/transfers", body, "reuse-1").status_code == 201
        changed = post(client, "/v1/transfers", {**body, "amount": 11}, "reuse-1")
        problem = assert_problem(changed, 409, "idempotency-key-reused")
        assert problem["field"] == "amount" and problem["idempotency_key"] == "reuse-1"
        other_type = post(
            client,
            "/v1/accounts",
            {"account_id": unique("x"), "currency": "USD", "asset_scale": 2},
            "reuse-1",
        )
        assert assert_problem(other_type, 409, "idempotency-key-reused")["field"] == "command_type"
        # the original stands
        assert client.get("/v1/commands/reuse-1").json()["command_type"] == "Transfer"


def test_concurrent_different_payloads_one_wins_the_rest_conflict(api_stack: ApiStack) -> None:
    with api_stack.client("acme") as client:
        cash, revenue = unique("cash"), unique("revenue")
        open_account(client, cash)
        open_account(client, revenue)
    key = unique("race")
    transfer_id = unique("t")
    results: list[httpx.Response] = []

    def send(amount: int) -> None:
        with api_stack.client("acme") as own:
            results.append(
                post(own, "/v1/transfers", transfer(cash, revenue, amount, transfer_id), key)
            )

    threads = [threading.Thread(target=send, args=(amount,)) for amount in range(1, 6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    statuses = sorted(r.status_code for r in results)
    assert statuses == [201, 409, 409, 409, 409], [r.text for r in results]


# --------------------------------------------------------------------------- rejections


def test_rejections_are_422_with_reason_and_retries_get_the_same(api_stack: ApiStack) -> None:
    with api_stack.client("acme") as client:
        wallet, shop = unique("wallet"), unique("shop")
        open_account(client, wallet, debits_must_not_exceed_credits=True)
        open_account(client, shop)
        body = transfer(wallet, shop, 500)
        for attempt in range(2):
            response = post(client, "/v1/transfers", body, "overdraw-1")
            problem = assert_problem(response, 422, "command-rejected")
            assert problem["reason"] == "insufficient_funds"
            assert problem["detail"]
            assert (response.headers.get("idempotent-replayed") == "true") == (attempt == 1)
        unknown = post(client, "/v1/transfers", transfer(unique("ghost"), shop, 1), unique("k"))
        assert assert_problem(unknown, 422, "command-rejected")["reason"] == "unknown_account"
        invalid = post(client, "/v1/transfers", transfer(wallet, shop, 0), unique("k"))
        assert assert_problem(invalid, 422, "invalid-command")["field"] == "amount"
        status = client.get("/v1/commands/overdraw-1").json()
        assert status["status"] == "rejected" and status["reason"] == "insufficient_funds"


def test_pending_transfers_post_and_void(api_stack: ApiStack) -> None:
    with api_stack.client("acme") as client:
        cash, revenue = unique("cash"), unique("revenue")
        open_account(client, cash)
        open_account(client, revenue)
        held = {**transfer(cash, revenue, 100), "pending": True, "pending_timeout_s": 3600}
        assert post(client, "/v1/transfers", held, unique("k")).status_code == 201
        posted = post(
            client, f"/v1/transfers/{held['transfer_id']}/post", {"amount": 60}, unique("k")
        )
        assert posted.status_code == 201, posted.text
        other = {**transfer(cash, revenue, 5), "pending": True}
        assert post(client, "/v1/transfers", other, unique("k")).status_code == 201
        voided = client.post(
            f"/v1/transfers/{other['transfer_id']}/void", headers={"Idempotency-Key": unique("k")}
        )
        assert voided.status_code == 201, voided.text
        again = post(client, f"/v1/transfers/{other['transfer_id']}/void", {}, unique("k"))
        assert assert_problem(again, 422, "command-rejected")["reason"] == "pending_already_final"
        balance = projected_balance(client, cash, voided.json()["event_sequences"][-1])
        assert (balance["debits_posted"], balance["debits_pending"]) == (60, 0)
        view = client.get(f"/v1/transfers/{held['transfer_id']}").json()
        assert (view["status"], view["amount_posted"]) == ("posted", 60)
        assert client.get(f"/v1/transfers/{other['transfer_id']}").json()["status"] == "voided"
        missing = client.get(f"/v1/transfers/{unique('none')}")
        assert_problem(missing, 404, "not-found")


# --------------------------------------------------------------------------- reads


def test_entries_pages_and_point_in_time_balances(api_stack: ApiStack) -> None:
    with api_stack.client("acme") as client:
        cash, revenue = unique("cash"), unique("revenue")
        open_account(client, cash)
        open_account(client, revenue)
        last: dict[str, Any] = {}
        for amount in range(1, 8):
            response = post(client, "/v1/transfers", transfer(cash, revenue, amount), unique("k"))
            assert response.status_code == 201
            last = response.json()
        projected_balance(client, cash, last["event_sequences"][-1])
        seen: list[dict[str, Any]] = []
        url: str | None = f"/v1/accounts/{cash}/entries?limit=3"
        pages = 0
        while url is not None:
            page = client.get(url).json()
            seen.extend(page["entries"])
            url = page["next"]
            pages += 1
        assert pages == 3
        assert [entry["amount"] for entry in seen] == [7, 6, 5, 4, 3, 2, 1]  # newest first
        assert len({entry["cursor"] for entry in seen}) == 7
        third = seen[4]  # amount 3: debits_posted after it is 1 + 2 + 3
        as_of = third["effective_at"]
        balance = client.get(f"/v1/accounts/{cash}/balance", params={"as_of": as_of}).json()
        assert balance["debits_posted"] == 6 and balance["last_sequence"] == third["sequence"]
        opened = datetime.fromisoformat(seen[-1]["effective_at"]) - timedelta(days=1)
        before = client.get(f"/v1/accounts/{cash}/balance", params={"as_of": opened.isoformat()})
        assert_problem(before, 404, "not-found")
        bad = client.get(f"/v1/accounts/{cash}/balance", params={"as_of": "yesterday"})
        assert assert_problem(bad, 400, "invalid-parameter")["field"] == "as_of"
        bad_cursor = client.get(f"/v1/accounts/{cash}/entries", params={"after": "x"})
        assert assert_problem(bad_cursor, 400, "invalid-parameter")["field"] == "after"
        bad_limit = client.get(f"/v1/accounts/{cash}/entries", params={"limit": "0"})
        assert_problem(bad_limit, 400, "invalid-parameter")


# --------------------------------------------------------------------------- tenancy and auth


def balance_when_projected(client: httpx.Client, account_id: str) -> httpx.Response:
    """The account's balance once the projection has written the account (bounded wait)."""
    deadline = time.monotonic() + PROJECTED_TIMEOUT_S
    response = client.get(f"/v1/accounts/{account_id}/balance")
    while response.status_code == 404 and time.monotonic() < deadline:
        time.sleep(0.1)
        response = client.get(f"/v1/accounts/{account_id}/balance")
    return response


def test_keys_authenticate_and_tenants_never_see_each_other(api_stack: ApiStack) -> None:
    with api_stack.client("acme") as acme, api_stack.client("globex") as globex:
        theirs, mine = unique("globex-cash"), unique("acme-cash")
        open_account(globex, theirs)
        open_account(globex, unique("globex-other"))
        open_account(acme, mine)
        # acme cannot read globex's account, transfer or command outcome
        assert_problem(acme.get(f"/v1/accounts/{theirs}/balance"), 404, "not-found")
        assert acme.get(f"/v1/accounts/{theirs}/entries").json()["entries"] == []
        assert_problem(acme.get(f"/v1/commands/open-{theirs}"), 404, "not-found")
        # nor move its money: the command runs in acme's ledger, where the account is unknown
        steal = post(acme, "/v1/transfers", transfer(theirs, mine, 5), unique("k"))
        assert assert_problem(steal, 422, "command-rejected")["reason"] == "unknown_account"
        # the tenant never comes from the body
        smuggled = post(
            acme, "/v1/transfers", {**transfer(theirs, mine, 5), "tenant_id": "globex"}, unique("k")
        )
        assert assert_problem(smuggled, 400, "invalid-body")["field"] == "tenant_id"
        # globex sees its own account once the projection has written it (bounded wait: the
        # outcome above comes from the processor, the read from PostgreSQL)
        theirs_balance = balance_when_projected(globex, theirs)
        assert theirs_balance.status_code == 200 and theirs_balance.json()["credits_posted"] == 0
        # mine too, read below with a key about to be revoked (its 200 must not be a 404)
        assert balance_when_projected(acme, mine).status_code == 200
    with api_stack.client() as anonymous:
        assert_problem(anonymous.get(f"/v1/accounts/{mine}/balance"), 401, "unauthorized")
        wrong = anonymous.get(
            f"/v1/accounts/{mine}/balance", headers={"Authorization": "Bearer nope"}
        )
        assert (
            assert_problem(wrong, 401, "unauthorized")
            and wrong.headers["www-authenticate"] == "Bearer"
        )
        forged = api_stack.keys["acme"][:-4] + "AAAA"
        response = anonymous.get(
            f"/v1/accounts/{mine}/balance", headers={"Authorization": f"Bearer {forged}"}
        )
        assert_problem(response, 401, "unauthorized")
        unauthenticated_post = anonymous.post("/v1/transfers", json=transfer(mine, mine, 1))
        assert_problem(unauthenticated_post, 401, "unauthorized")
    revoked = create_api_key(api_stack.settings, "acme")
    with httpx.Client(
        base_url=api_stack.base_url, headers={"Authorization": f"Bearer {revoked.token}"}
    ) as client:
        assert client.get(f"/v1/accounts/{mine}/balance").status_code == 200
        assert revoke_api_key(api_stack.settings, revoked.key_id)
        assert_problem(client.get(f"/v1/accounts/{mine}/balance"), 401, "unauthorized")


def test_operations_endpoints(api_stack: ApiStack) -> None:
    with api_stack.client() as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz").json()
        assert ready == {
            "ready": True,
            "checks": {"database": True, "producer": True, "outcomes": True},
        }
        document = client.get("/openapi.json").json()
        assert "/v1/transfers" in document["paths"]
        assert "TransferBody" in document["components"]["schemas"]
        text = client.get("/metrics").text
        assert 'route="/v1/accounts/{account_id}/balance"' in text
        assert "streamledger_api_request_seconds_bucket" in text


# --------------------------------------------------------------------------- readiness, by itself

# An own stack (home, ports) so restarting its broker and PostgreSQL disturbs nobody; ports
# below Linux's ephemeral range (see test_stack_lifecycle.py) and apart from that test's.
READINESS_PORTS = {
    "kafka_port": 23192,
    "kafka_controller_port": 23193,
    "postgres_port": 23532,
    "metrics_port": 23500,
}
# Each probe step is bounded by the timeout; after a PostgreSQL restart a probe connects anew and
# opens a fresh pool (api/reads.py ping): under 500 ms on a quiet machine, not on a loaded one.
READINESS_FLAGS = {"readiness_timeout_ms": 3000, "readiness_cache_ms": 200}
READY_TIMEOUT_S = 60.0
NOT_READY_TIMEOUT_S = 20.0
OUTAGE_PROBES = 10  # /readyz asked this often while a service is down (the pool backs off)


@pytest.fixture
def own_stack() -> Iterator[Settings]:
    home = Path(tempfile.mkdtemp(prefix="streamledger-readiness-"))
    settings = Settings(
        home=home,
        partitions=2,
        kafka_security=kafka_security_of_test_stacks(),
        **READINESS_PORTS,  # type: ignore[arg-type]
    )
    try:
        stack.up(settings)
        yield settings
    finally:
        stack.down(settings)  # whatever happened, leave nothing running
        shutil.rmtree(home, ignore_errors=True)


@contextmanager
def api_in_this_process(settings: Settings) -> Iterator[httpx.Client]:
    api = build_api_settings(settings, limits={"port": free_port(), **READINESS_FLAGS})
    with (
        serving_api(settings, api, "api-readiness") as base_url,
        httpx.Client(base_url=base_url, timeout=30) as client,  # a probe: 4 steps at most
    ):
        yield client


def readiness(client: httpx.Client) -> tuple[int, dict[str, Any]]:
    response = client.get("/readyz")
    body: dict[str, Any] = response.json()
    assert response.status_code == (200 if body["ready"] else 503)
    return response.status_code, body


def wait_readiness(client: httpx.Client, status: int, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        got, body = readiness(client)
        if got == status:
            return body
        assert time.monotonic() < deadline, f"/readyz not {status} in {timeout_s} s: {body}"
        time.sleep(0.2)


def test_readiness_follows_the_broker_and_postgresql_without_any_request(
    own_stack: Settings,
) -> None:
    """Issue 14: after a broker restart /readyz stayed 503 until some POST succeeded; after a
    PostgreSQL restart the first checks failed on stale pooled connections. Now both recover by
    themselves: no POST, no read, only /readyz."""
    with api_in_this_process(own_stack) as client:
        wait_readiness(client, 200, READY_TIMEOUT_S)

        kafka_broker.stop(own_stack)
        down = wait_readiness(client, 503, NOT_READY_TIMEOUT_S)
        assert down["checks"] == {"database": True, "producer": False, "outcomes": True}, down
        assert "broker unreachable" in down["problems"]["producer"]
        kafka_broker.start(own_stack)
        wait_readiness(client, 200, READY_TIMEOUT_S)

        # A quick restart: every pooled connection is stale, the first check must not say so.
        postgres_server.stop(own_stack)
        postgres_server.start(own_stack)
        time.sleep(READINESS_FLAGS["readiness_cache_ms"] / 1000)
        status, body = readiness(client)
        assert status == 200, body

        # A longer outage: not ready while it lasts, ready at the first check after it.
        postgres_server.stop(own_stack)
        down = wait_readiness(client, 503, NOT_READY_TIMEOUT_S)
        assert down["checks"]["database"] is False and down["checks"]["producer"], down
        for _ in range(OUTAGE_PROBES):
            assert readiness(client)[0] == 503
        postgres_server.start(own_stack)
        # the first check after the cache interval (the probes above cached the 503)
        time.sleep(READINESS_FLAGS["readiness_cache_ms"] / 1000)
        status, body = readiness(client)
        assert status == 200, body
