"""Issue 21 §2 at the HTTP API: the API signs each command with its own key for the tenant of
the caller's API key (principal ``api``, decision 0086). A tenant granted an ``api`` key is
served; a tenant that signs (it was granted another system's key) but not the API's gets a 503
naming the missing grant, and nothing is stored; once granted, the same request is decided."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.signing_keys_cli import grant
from processors.signing_master import key_file_path
from streamledger.settings import Settings
from workloads.api_stack import ApiStack, running_api_stack

pytestmark = pytest.mark.system
API_FLAGS = ["--wait-timeout-ms=20000", "--api-key-cache-ttl-s=0"]
RUN = uuid.uuid4().hex[:6]  # the key files live in the stack home: fresh tenants each run
SIGNED = f"api-signed-{RUN}"
LATE = f"api-late-{RUN}"


@pytest.fixture(scope="module")
def api_stack(
    stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiStack]:
    logs = tmp_path_factory.mktemp("api-signed")
    with running_api_stack(stack_settings, Path(logs), (SIGNED, LATE), API_FLAGS) as stack:
        yield stack
    for principal, tenant in (("api", SIGNED), ("api", LATE), ("gateway", LATE)):
        key_file_path(stack_settings.home, principal, tenant).unlink(missing_ok=True)


def open_account(client: httpx.Client, account_id: str) -> httpx.Response:
    body: dict[str, Any] = {"account_id": account_id, "currency": "USD", "asset_scale": 2}
    return client.post("/v1/accounts", json=body, headers={"Idempotency-Key": f"open-{account_id}"})


def test_the_api_signs_with_its_own_key_for_the_callers_tenant(api_stack: ApiStack) -> None:
    settings = api_stack.settings
    assert grant(settings, "api", SIGNED).accepted
    # LATE signs its commands (another system's key), but the API has no key for it yet
    assert grant(settings, "gateway", LATE).accepted
    with api_stack.client(SIGNED) as client:
        response = open_account(client, "cash")
        assert response.status_code == 201, response.text
    with api_stack.client(LATE) as client:
        refused = open_account(client, "cash")
        assert refused.status_code == 503, refused.text
        problem = refused.json()
        assert problem["reason"] == "unauthenticated"
        assert "not signed" in problem["detail"], problem
        assert grant(settings, "api", LATE).accepted
        # no wait: the API reads its key files again once their directory changed (decision 0115)
        retried = open_account(client, "cash")  # same key: nothing was stored under it
        assert retried.status_code == 201, retried.text
