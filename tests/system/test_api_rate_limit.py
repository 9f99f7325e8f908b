"""Issue 21 §4 at the HTTP API: a command the processor's per-tenant rate limit answers
RATE_LIMITED is a 429 with ``Retry-After`` (never a wait that runs out), nothing is stored under
its key, and the same request after the retry-after is decided normally (decision 0083)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from streamledger.settings import Settings
from workloads.api_stack import ApiStack, running_api_stack

pytestmark = pytest.mark.system
API_FLAGS = ["--wait-timeout-ms=20000", "--api-key-cache-ttl-s=0"]
# one command a second, two at once: the third request in a row is over the limit
PROCESSOR_FLAGS = ("--tenant-commands-per-second=1", "--tenant-command-burst=2")


@pytest.fixture(scope="module")
def api_stack(
    stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiStack]:
    logs = tmp_path_factory.mktemp("api-rate-limit")
    with running_api_stack(
        stack_settings, Path(logs), ("acme",), API_FLAGS, processor_flags=PROCESSOR_FLAGS
    ) as stack:
        yield stack


def open_account(client: httpx.Client, account_id: str) -> httpx.Response:
    body: dict[str, Any] = {"account_id": account_id, "currency": "USD", "asset_scale": 2}
    return client.post("/v1/accounts", json=body, headers={"Idempotency-Key": f"open-{account_id}"})


def sent_at_once(api_stack: ApiStack, count: int) -> list[httpx.Response]:
    """``count`` account openings sent together (a client each): the bucket refills by record
    time, so requests sent one after another on a loaded machine (a round trip each) could be
    far enough apart for every one to be decided."""
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(
            pool.map(open_account_alone, [api_stack] * count, [f"a{n}" for n in range(count)])
        )


def open_account_alone(api_stack: ApiStack, account_id: str) -> httpx.Response:
    with api_stack.client("acme") as client:
        return open_account(client, account_id)


def test_over_the_rate_is_a_429_with_retry_after_and_the_retry_is_decided(
    api_stack: ApiStack,
) -> None:
    responses = sent_at_once(api_stack, 4)
    statuses = sorted(response.status_code for response in responses)
    # the burst (2) is decided, at least one more is over the rate, nothing else happens
    assert statuses.count(201) >= 2 and 429 in statuses, [r.text for r in responses]
    assert set(statuses) == {201, 429}, [r.text for r in responses]
    # each 429's retry-after points at the moment the bucket holds a token again (the longest
    # belongs to the earliest of them): retried after it, the request is decided
    limited = max(
        (r for r in responses if r.status_code == 429), key=lambda r: r.json()["retry_after_ms"]
    )
    with api_stack.client("acme") as client:
        problem = limited.json()
        assert problem["type"].endswith("/rate-limited")
        assert problem["reason"] == "rate_limited"
        assert problem["detail"].startswith("tenant_id: rate limited: tenant over 1 commands/s")
        retry_after_ms = problem["retry_after_ms"]
        assert 1 <= retry_after_ms <= 1_000
        assert limited.headers["Retry-After"] == str(-(-retry_after_ms // 1000))
        time.sleep(retry_after_ms / 1000 + 0.1)
        retried = open_account(client, f"a{responses.index(limited)}")  # same body, same key
        assert retried.status_code == 201, retried.text
        assert "Idempotent-Replayed" not in retried.headers  # decided now: nothing was stored
