"""The API in this process (uvicorn on a thread, on loopback) on fresh topics with NO processor
running: every well-formed command times out into 202, and every malformed input must be a 4xx
problem — never a 500. Kafka and PostgreSQL are the real test stack.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.api_keys import create_api_key
from api.app import create_app
from api.settings import build_api_settings
from streamledger.settings import Settings
from tests.system.api_harness import drop_fresh, free_port, fresh_settings

pytestmark = pytest.mark.system
WAIT_TIMEOUT_MS = 300
BODY_BYTES_MAX = 2_048
POST_PATHS = ("/v1/accounts", "/v1/transfers", "/v1/transfers/t-1/post", "/v1/transfers/t-1/void")


STARTUP_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def client(stack_settings: Settings) -> Iterator[httpx.Client]:
    ledger = fresh_settings(stack_settings)
    try:
        token = create_api_key(ledger, "acme").token
        port = free_port()
        api = build_api_settings(
            ledger,
            limits={
                "port": port,
                "wait_timeout_ms": WAIT_TIMEOUT_MS,
                "body_bytes_max": BODY_BYTES_MAX,
            },
        )
        config = uvicorn.Config(
            create_app(ledger, api), host="127.0.0.1", port=port, log_level="warning"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="api-under-test", daemon=True)
        thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
            time.sleep(0.05)
        headers = {"Authorization": f"Bearer {token}"}
        try:
            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30
            ) as http:
                yield http
        finally:
            server.should_exit = True
            thread.join(timeout=30)
    finally:
        drop_fresh(ledger)


def test_no_outcome_in_time_is_202_with_a_status_url(client: httpx.Client) -> None:
    body = {"account_id": "cash", "currency": "USD", "asset_scale": 2}
    response = client.post("/v1/accounts", json=body, headers={"Idempotency-Key": "a/b?c"})
    assert response.status_code == 202, response.text
    assert response.headers["location"] == "/v1/commands/a%2Fb%3Fc"
    assert response.json() == {
        "status": "pending",
        "idempotency_key": "a/b?c",
        "status_url": "/v1/commands/a%2Fb%3Fc",
    }
    status = client.get(response.headers["location"])
    assert status.status_code == 404 and status.json()["detail"].endswith("(yet)")
    asynchronous = client.post(
        "/v1/accounts",
        json={**body, "account_id": "other"},
        headers={"Idempotency-Key": "async-1", "Prefer": "respond-async"},
    )
    assert asynchronous.status_code == 202
    assert asynchronous.headers["preference-applied"] == "respond-async"


def test_named_bad_inputs(client: httpx.Client) -> None:
    key = {"Idempotency-Key": "k-1", "Content-Type": "application/json"}
    transfer = {
        "transfer_id": "t",
        "debit_account_id": "a",
        "credit_account_id": "b",
        "amount": 1,
        "currency": "USD",
    }
    cases: list[tuple[bytes, dict[str, str], int, str, str | None]] = [
        (b"{", key, 400, "malformed-json", None),
        (b"[]", key, 400, "invalid-body", None),
        (json.dumps({**transfer, "amount": 1.5}).encode(), key, 400, "invalid-body", "amount"),
        (json.dumps({**transfer, "amount": 1.0}).encode(), key, 400, "invalid-body", "amount"),
        (json.dumps({**transfer, "amount": "1.50"}).encode(), key, 400, "invalid-body", "amount"),
        (json.dumps({**transfer, "amount": "100"}).encode(), key, 400, "invalid-body", "amount"),
        (b'{"amount": 1e2}', key, 400, "invalid-body", "amount"),
        (json.dumps({**transfer, "extra": 1}).encode(), key, 400, "invalid-body", "extra"),
        (json.dumps({**transfer, "amount": 2**64}).encode(), key, 422, "invalid-command", "amount"),
        (json.dumps({**transfer, "amount": -5}).encode(), key, 422, "invalid-command", "amount"),
        (
            json.dumps(transfer).encode(),
            {"Content-Type": "application/json"},
            400,
            "missing-idempotency-key",
            None,
        ),
        (
            json.dumps(transfer).encode(),
            {**key, "Idempotency-Key": "has space"},
            400,
            "invalid-parameter",
            "Idempotency-Key",
        ),
        (
            json.dumps(transfer).encode(),
            {**key, "Content-Type": "text/plain"},
            415,
            "unsupported-media-type",
            None,
        ),
        (b"{" + b" " * BODY_BYTES_MAX + b"}", key, 413, "body-too-large", None),
    ]
    for raw, headers, status, slug, field in cases:
        response = client.post("/v1/transfers", content=raw, headers=headers)
        assert response.status_code == status, (raw[:80], response.text)
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["type"].endswith("/" + slug), problem
        assert problem.get("field") == field, problem


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=12,
)
FIELD_NAMES = st.sampled_from(
    [
        "account_id",
        "currency",
        "asset_scale",
        "amount",
        "transfer_id",
        "debit_account_id",
        "credit_account_id",
        "pending",
        "pending_timeout_s",
        "reverses",
        "metadata",
        "overdraft_limit",
        "tenant_id",
        "x",
    ]
)
near_valid = st.dictionaries(FIELD_NAMES, json_values, max_size=8).map(
    lambda d: json.dumps(d).encode()
)
raw_bytes = st.binary(max_size=300)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=st.sampled_from(POST_PATHS),
    body=near_valid | raw_bytes | json_values.map(lambda v: json.dumps(v).encode()),
)
def test_malformed_bodies_are_4xx_problems_never_500(
    client: httpx.Client, path: str, body: bytes
) -> None:
    response = client.post(
        path,
        content=body,
        headers={"Idempotency-Key": "prop-1", "Content-Type": "application/json"},
    )
    # 202: a body that happened to be a valid command (no processor runs, so it times out).
    assert response.status_code < 500, response.text
    if response.status_code != 202:
        assert 400 <= response.status_code < 500
        assert response.headers["content-type"] == "application/problem+json"
        problem: dict[str, Any] = response.json()
        assert problem["status"] == response.status_code and problem["detail"]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(segment=st.text(min_size=1, max_size=40), query=st.text(max_size=40))
def test_malformed_read_parameters_are_never_500(
    client: httpx.Client, segment: str, query: str
) -> None:
    segment = quote(segment, safe="")
    for url, params in (
        (f"/v1/accounts/{segment}/balance", {"as_of": query}),
        (f"/v1/accounts/{segment}/entries", {"after": query, "limit": query}),
        (f"/v1/transfers/{segment}", {}),
        (f"/v1/commands/{segment}", {}),
    ):
        response = client.get(url, params=params)
        assert response.status_code < 500, (url, params, response.text)
