"""The API in this process (uvicorn on a thread, on loopback) on fresh topics with NO processor
running: every well-formed command times out into 202, and every malformed input must be a 4xx
problem — never a 500. Kafka and PostgreSQL are the real test stack.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.api_keys import create_api_key
from api.settings import build_api_settings
from streamledger.settings import Settings
from tests.system.api_server import serving_api
from workloads.api_stack import drop_fresh, free_port, fresh_settings

pytestmark = pytest.mark.system
WAIT_TIMEOUT_MS = 300
BODY_BYTES_MAX = 2_048
POST_PATHS = ("/v1/accounts", "/v1/transfers", "/v1/transfers/t-1/post", "/v1/transfers/t-1/void")


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
        headers = {"Authorization": f"Bearer {token}", "X-Test-Token": token}
        # Served exactly as `streamledger api` serves it (uvloop, httptools, problem+json 400s).
        with (
            serving_api(ledger, api, "api-under-test") as base_url,
            httpx.Client(base_url=base_url, headers=headers, timeout=30) as http,
        ):
            yield http
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
        ("/v1/transactions", {"from": query, "to": query, "after": query, "account": query}),
    ):
        response = client.get(url, params=params)
        assert response.status_code < 500, (url, params, response.text)


# --------------------------------------------------------------------------- the table

ACCOUNT = "/v1/accounts/acct-0001"
# (method, path and query as sent on the wire, the parameter the problem must name)
BAD_PARAMETERS: list[tuple[str, str, str]] = [
    ("GET", f"{ACCOUNT}/balance?as_of=999999999999999999", "as_of"),
    ("GET", f"{ACCOUNT}/balance?as_of=253402300800000000", "as_of"),  # one past 9999-12-31
    ("GET", f"{ACCOUNT}/balance?as_of=99999999999999999999999999", "as_of"),
    ("GET", f"{ACCOUNT}/balance?as_of=%C2%B2", "as_of"),  # superscript two
    ("GET", f"{ACCOUNT}/balance?as_of=%C2%B9%C2%B2%C2%B3", "as_of"),
    ("GET", f"{ACCOUNT}/balance?as_of=%D9%A3%D9%A0", "as_of"),  # Arabic-Indic 30
    ("GET", f"{ACCOUNT}/balance?as_of=%EF%BC%93", "as_of"),  # full-width 3
    ("GET", f"{ACCOUNT}/balance?as_of=%FF", "as_of"),  # not UTF-8
    ("GET", f"{ACCOUNT}/balance?as_of=-1", "as_of"),
    ("GET", f"{ACCOUNT}/balance?as_of=1_000", "as_of"),
    ("GET", f"{ACCOUNT}/balance?as_of=", "as_of"),
    ("GET", f"{ACCOUNT}/balance?as_of=2024-13-01", "as_of"),
    ("GET", f"{ACCOUNT}/balance?as_of=0001-01-01T00:00:00%2B01:00", "as_of"),
    ("GET", f"{ACCOUNT}/balance?as_of=9999-12-31T23:59:59-01:00", "as_of"),
    ("GET", f"{ACCOUNT}/balance?as_of=1&as_of=2", "as_of"),
    ("GET", f"{ACCOUNT}/balance?asof=1", "asof"),
    ("GET", f"{ACCOUNT}/entries?limit=%C2%B2", "limit"),
    ("GET", f"{ACCOUNT}/entries?limit=%D9%A3", "limit"),
    ("GET", f"{ACCOUNT}/entries?limit=0", "limit"),
    ("GET", f"{ACCOUNT}/entries?limit=-1", "limit"),
    ("GET", f"{ACCOUNT}/entries?limit=1001", "limit"),
    ("GET", f"{ACCOUNT}/entries?limit=99999999999999999999999999", "limit"),
    ("GET", f"{ACCOUNT}/entries?limit=1e3", "limit"),
    ("GET", f"{ACCOUNT}/entries?limit=", "limit"),
    ("GET", f"{ACCOUNT}/entries?limit=1&limit=2", "limit"),
    ("GET", f"{ACCOUNT}/entries?after=%C2%B2:posted", "after"),
    ("GET", f"{ACCOUNT}/entries?after=%D9%A3:posted", "after"),
    ("GET", f"{ACCOUNT}/entries?after=99999999999999999999:posted", "after"),
    ("GET", f"{ACCOUNT}/entries?after=9223372036854775808:posted", "after"),  # > bigint
    ("GET", f"{ACCOUNT}/entries?after=1:sideways", "after"),
    ("GET", f"{ACCOUNT}/entries?after=1", "after"),
    ("GET", f"{ACCOUNT}/entries?after=", "after"),
    ("GET", f"{ACCOUNT}/entries?cursor=1:posted", "cursor"),
    ("GET", "/v1/accounts/%C2%B2/balance", "account_id"),
    ("GET", "/v1/accounts/a%00b/balance", "account_id"),
    ("GET", "/v1/accounts/%FF/entries", "account_id"),
    ("GET", "/v1/transfers/-t", "transfer_id"),
    ("GET", "/v1/transfers/t-1?expand=1", "expand"),
    ("GET", "/v1/commands/k%20y", "idempotency_key"),
    ("GET", "/v1/commands/k-1?x=1", "x"),
    ("POST", "/v1/transfers/%C2%B2/post", "transfer_id"),
    ("POST", "/v1/transfers/t%00/void", "transfer_id"),
    ("POST", "/v1/accounts?dry_run=1", "dry_run"),
    ("POST", "/v1/transfers?amount=5", "amount"),
    ("GET", "/v1/transactions?status=done", "status"),  # the transaction search (0077)
    ("GET", "/v1/transactions?limit=0", "limit"),
    ("GET", "/v1/transactions?to=soon", "to"),
    ("GET", "/v1/transactions?from=2026-01-02&to=2026-01-01", "to"),
    ("GET", "/v1/transactions?after=x", "after"),
    ("GET", "/v1/transactions?account=%C2%B2", "account"),
    ("GET", "/v1/transactions?metadata%5Ba%20b%5D=1", "metadata[a b]"),
    ("GET", "/v1/transactions?currency=USD", "currency"),
]


@pytest.mark.parametrize(("method", "target", "parameter"), BAD_PARAMETERS)
def test_every_bad_parameter_is_a_400_problem_naming_it(
    client: httpx.Client, method: str, target: str, parameter: str
) -> None:
    port = client.base_url.port
    assert port is not None
    token = client.headers["X-Test-Token"]
    status, headers, body = raw_exchange(
        port,
        f"{method} {target} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n"
        "Idempotency-Key: table-1\r\nContent-Type: application/json\r\n"
        "Content-Length: 2\r\nConnection: close\r\n\r\n{}".encode("latin-1"),
    )
    assert status == 400, (target, body)
    assert headers["content-type"] == "application/problem+json", (target, headers)
    problem = json.loads(body)
    assert problem["type"].endswith("/invalid-parameter"), (target, problem)
    assert problem["field"] == parameter, (target, problem)
    assert parameter in problem["detail"], (target, problem)


# --------------------------------------------------------------------------- below the app


def raw_exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """One request on its own connection, as bytes (clients refuse to send most of these)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        received = b""
        while (chunk := connection.recv(65_536)) and not complete(received + chunk):
            received += chunk
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def complete(received: bytes) -> bool:
    head, separator, body = received.partition(b"\r\n\r\n")
    if not separator:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


@pytest.mark.parametrize(
    ("request_text", "status", "slug"),
    [
        ("FOO /v1/transfers/t-1 HTTP/1.1\r\nHost: t\r\n\r\n", 400, "malformed-request"),
        (
            "POST /v1/transfers HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
            400,
            "malformed-request",
        ),
        ("GET /v1/transfers/\x01 HTTP/1.1\r\nHost: t\r\n\r\n", 400, "malformed-request"),
        ("GET /healthz HTTP/9.9\r\nHost: t\r\n\r\n", 400, "malformed-request"),
        (
            "PROPFIND /v1/transfers/t-1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            405,
            "method-not-allowed",
        ),
        ("DELETE /v1/accounts HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 405, None),
        ("GET /nowhere HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 404, "not-found"),
    ],
)
def test_requests_the_http_parser_or_router_refuse_are_problems_too(
    client: httpx.Client, request_text: str, status: int, slug: str | None
) -> None:
    """What uvicorn answers itself (unknown method, ``Content-Length: abc``) is problem+json as
    well (``api.http_protocol``), like Starlette's own 404 and 405."""
    port = client.base_url.port
    assert port is not None
    got_status, headers, body = raw_exchange(port, request_text.encode("latin-1"))
    assert got_status == status, body
    assert headers["content-type"] == "application/problem+json", headers
    problem = json.loads(body)
    assert problem["status"] == status
    assert slug is None or problem["type"].endswith("/" + slug), problem


@pytest.mark.parametrize(
    ("credentials", "accepted"),
    [
        ("Bearer {token}", True),
        ("bearer {token}", True),
        ("Bearer   {token}", True),
        ("Bearer {token}  ", True),  # trailing SP/HTAB: HTTP's optional whitespace (decision 0021)
        ("Bearer {token}\t", True),
        ("Bearer {token}\xa0", False),  # a no-break space is part of the value: not the key
        ("Bearer {token} {token}", False),
        ("Bearer {token}x", False),
        ("Bearer\t{token}", False),
        ("Token {token}", False),
        ("{token}", False),
    ],
)
def test_bearer_credentials_are_parsed_strictly_around_the_key(
    client: httpx.Client, credentials: str, accepted: bool
) -> None:
    port = client.base_url.port
    assert port is not None
    value = credentials.format(token=client.headers["X-Test-Token"])
    status, headers, body = raw_exchange(
        port,
        f"GET /v1/transfers/t-none HTTP/1.1\r\nHost: t\r\nAuthorization: {value}\r\n"
        "Connection: close\r\n\r\n".encode("latin-1"),
    )
    assert headers["content-type"] == "application/problem+json"
    assert status == (404 if accepted else 401), (credentials, body)
