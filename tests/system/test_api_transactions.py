"""``POST /v1/transactions`` end to end (issue 16 phase 4): a real ``streamledger api`` in front
of the real processor and projection (child processes), the real broker and a fresh database.

Answered exactly like ``POST /v1/transfers``: the idempotency key, the tenant from the API key,
the wait for the outcome (201 / 422 / 409 / 202), problems for bad bodies naming the member
(``postings[3].amount``), never a 500. The answer is the processor's outcome (also read back by
``GET /v1/commands/{key}``); a fee split is then followed into PostgreSQL (balances, and the
``GET /v1/transactions/{id}`` its ``Location`` names).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from schemas.limits import POSTINGS_MAX
from streamledger.settings import Settings
from workloads.api_stack import ApiStack, running_api_stack

pytestmark = pytest.mark.system
API_FLAGS = ["--wait-timeout-ms=20000", "--api-key-cache-ttl-s=0"]
TENANT = "acme"
PROJECTED_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def api_stack(
    stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiStack]:
    logs = tmp_path_factory.mktemp("api-transactions")
    with running_api_stack(stack_settings, Path(logs), (TENANT,), API_FLAGS) as stack:
        yield stack


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def post(client: httpx.Client, path: str, body: dict[str, Any], key: str) -> httpx.Response:
    return client.post(path, json=body, headers={"Idempotency-Key": key})


def open_accounts(client: httpx.Client, currency: str, *account_ids: str, **flags: Any) -> None:
    for account_id in account_ids:
        body = {"account_id": account_id, "currency": currency, "asset_scale": 2, **flags}
        response = post(client, "/v1/accounts", body, f"open-{account_id}")
        assert response.status_code == 201, response.text


def posting(debit: str, credit: str, amount: int, currency: str = "USD") -> dict[str, Any]:
    return {
        "debit_account_id": debit,
        "credit_account_id": credit,
        "amount": amount,
        "currency": currency,
    }


def transaction(*postings: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"transaction_id": unique("tx"), "postings": list(postings), **fields}


def problem_of(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["type"].endswith("/" + slug), problem
    return problem


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


def fee_split_accounts(client: httpx.Client) -> tuple[str, str, str, str]:
    card, merchant, platform, network = (
        unique(name) for name in ("card", "merchant", "platform", "network")
    )
    open_accounts(client, "USD", card, merchant, platform, network)
    return card, merchant, platform, network


def test_a_fee_split_is_201_once_and_a_retry_replays_it(api_stack: ApiStack) -> None:
    with api_stack.client(TENANT) as client:
        card, merchant, platform, network = fee_split_accounts(client)
        body = transaction(
            posting(card, merchant, 9710),
            posting(card, platform, 260),
            posting(card, network, 30),
            metadata={"order": "A-17"},
        )
        key = unique("pay")
        first = post(client, "/v1/transactions", body, key)
        assert first.status_code == 201, first.text
        assert first.headers["location"] == f"/v1/transactions/{body['transaction_id']}"
        answer = first.json()
        assert answer["command_type"] == "PostTransaction" and answer["status"] == "accepted"
        assert len(answer["event_sequences"]) == 1  # one transaction, one event
        assert answer["resource"] == f"/v1/transactions/{body['transaction_id']}"
        again = post(client, "/v1/transactions", body, key)
        assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
        assert again.json()["event_sequences"] == answer["event_sequences"]
        status = client.get(f"/v1/commands/{key}").json()
        assert status["command_type"] == "PostTransaction" and status["status"] == "accepted"
        sequence = answer["event_sequences"][0]
        credited = {
            account: projected_balance(client, account, sequence)["credits_posted"]
            for account in (merchant, platform, network)
        }
        assert credited == {merchant: 9710, platform: 260, network: 30}  # moved once
        assert projected_balance(client, card, sequence)["debits_posted"] == 10000
        stored = client.get(first.headers["location"])  # the resource the answer points at
        assert stored.status_code == 200, stored.text
        assert stored.json()["status"] == "posted"
        assert [p["amount_posted"] for p in stored.json()["postings"]] == [9710, 260, 30]


def test_an_fx_conversion_and_a_full_payout_are_accepted(api_stack: ApiStack) -> None:
    with api_stack.client(TENANT) as client:
        customer_eur, liquidity_eur = unique("customer-eur"), unique("fx-liquidity-eur")
        liquidity_usd, customer_usd = unique("fx-liquidity-usd"), unique("customer-usd")
        open_accounts(client, "EUR", customer_eur, liquidity_eur)
        open_accounts(client, "USD", liquidity_usd, customer_usd)
        fx = transaction(
            posting(customer_eur, liquidity_eur, 10000, "EUR"),
            posting(liquidity_usd, customer_usd, 10837, "USD"),
            metadata={"fx_pair": "EUR/USD", "fx_rate": "1.0837"},
        )
        assert post(client, "/v1/transactions", fx, unique("fx")).status_code == 201
        source = unique("marketplace")
        sellers = [unique("seller") for _ in range(POSTINGS_MAX)]
        open_accounts(client, "USD", source, *sellers)
        payout = transaction(
            *(posting(source, seller, 100 + n) for n, seller in enumerate(sellers))
        )
        response = post(client, "/v1/transactions", payout, unique("payout"))
        assert response.status_code == 201, response.text


def test_a_failing_posting_rejects_the_whole_transaction_naming_it(api_stack: ApiStack) -> None:
    with api_stack.client(TENANT) as client:
        card, merchant, platform, network = fee_split_accounts(client)
        wallet = unique("wallet")
        open_accounts(client, "USD", wallet, debits_must_not_exceed_credits=True)
        body = transaction(posting(card, merchant, 100), posting(wallet, platform, 5))
        key = unique("overdraw")
        for attempt in range(2):
            response = post(client, "/v1/transactions", body, key)
            problem = problem_of(response, 422, "command-rejected")
            assert problem["reason"] == "insufficient_funds"
            assert problem["detail"].startswith("postings[1]."), problem["detail"]
            assert (response.headers.get("idempotent-replayed") == "true") == (attempt == 1)
        ghost = transaction(posting(card, network, 1), posting(card, unique("ghost"), 1))
        unknown = problem_of(
            post(client, "/v1/transactions", ghost, unique("k")), 422, "command-rejected"
        )
        assert unknown["reason"] == "unknown_account"
        assert unknown["detail"].startswith("postings[1].credit_account_id")


def test_key_reuse_and_bad_bodies_name_the_posting_field(api_stack: ApiStack) -> None:
    with api_stack.client(TENANT) as client:
        card, merchant, platform, network = fee_split_accounts(client)
        legs = [posting(card, merchant, 10), posting(card, platform, 2), posting(card, network, 1)]
        body = transaction(*legs)
        key = unique("reuse")
        assert post(client, "/v1/transactions", body, key).status_code == 201
        changed = transaction(*legs[:2], posting(card, network, 2))
        changed["transaction_id"] = body["transaction_id"]
        reused = problem_of(
            post(client, "/v1/transactions", changed, key), 409, "idempotency-key-reused"
        )
        assert reused["field"] == "postings[2].amount"
        as_transfer = {**legs[0], "transfer_id": unique("t")}
        other_type = post(client, "/v1/transfers", as_transfer, key)
        assert problem_of(other_type, 409, "idempotency-key-reused")["field"] == "command_type"
        fourth = "postings[3].amount"
        cases = [
            (transaction(*legs, posting(card, merchant, 0)), 422, "invalid-command", fourth),
            (transaction(*legs, {**legs[0], "amount": 1.5}), 400, "invalid-body", fourth),
            (transaction(*legs, {**legs[0], "amount": "7"}), 400, "invalid-body", fourth),
            (transaction(*legs[:1], {**legs[1], "fee": 1}), 400, "invalid-body", "postings[1].fee"),
            (transaction(), 422, "invalid-command", "postings"),
            (transaction(*legs * 22), 422, "invalid-command", "postings"),
            ({**body, "tenant_id": "globex"}, 400, "invalid-body", "tenant_id"),
        ]  # fmt: skip
        for bad, status, slug, field in cases:
            response = post(client, "/v1/transactions", bad, unique("bad"))
            assert problem_of(response, status, slug).get("field") == field, response.text
        missing_key = client.post("/v1/transactions", json=body)
        assert missing_key.status_code == 400, missing_key.text
        headers = {"Idempotency-Key": "m-1", "Content-Type": "application/json"}
        malformed = client.post("/v1/transactions", content=b'{"postings": [', headers=headers)
        assert problem_of(malformed, 400, "malformed-json")
        anonymous = client.post(
            "/v1/transactions", json=body, headers={"Idempotency-Key": "a-1", "Authorization": ""}
        )
        assert anonymous.status_code == 401, anonymous.text


def test_a_pending_transaction_is_posted_by_its_id(api_stack: ApiStack) -> None:
    with api_stack.client(TENANT) as client:
        card, merchant, platform, _ = fee_split_accounts(client)
        body = transaction(posting(card, merchant, 900), posting(card, platform, 100), pending=True)
        assert post(client, "/v1/transactions", body, unique("hold")).status_code == 201
        path = f"/v1/transfers/{body['transaction_id']}/post"
        partial = post(client, path, {"amount": 500}, unique("capture"))
        assert problem_of(partial, 422, "command-rejected")["reason"] == "invalid_command"
        captured = post(client, path, {}, unique("capture"))
        assert captured.status_code == 201, captured.text
        assert captured.json()["command_type"] == "PostPending"
