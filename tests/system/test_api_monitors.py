"""Balance monitors through the HTTP API (issue 18, decision 0058): a real ``streamledger api``
in front of the real processor and projection, the real broker and a fresh database.

``POST /v1/monitors`` and ``DELETE /v1/monitors/{id}`` go through the command path like
transfers (idempotency key, tenant from the API key, the processor's outcome), and
``GET /v1/monitors`` lists the projected ones with whether they hold now; transfers that
cross the threshold give one notification per edge on ``ledger.notifications``; the projection
takes the monitor events in its stride (balances still read, no quarantine); rule and limit
rejections are 422s naming the field."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.topics import ledger_topic_names
from schemas.codec import decode_notification
from schemas.model import MonitorCleared, MonitorTriggered, Notification
from streamledger.settings import Settings
from tests.system.processor_harness import read_topic
from workloads.api_stack import ApiStack, running_api_stack

pytestmark = pytest.mark.system
API_FLAGS = ["--wait-timeout-ms=20000", "--api-key-cache-ttl-s=0"]
TENANT = "acme"
NOTIFIED_TIMEOUT_S = 30.0
PROJECTED_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def api_stack(
    stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiStack]:
    logs = tmp_path_factory.mktemp("api-monitors")
    with running_api_stack(stack_settings, Path(logs), (TENANT,), API_FLAGS) as stack:
        yield stack


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def post(client: httpx.Client, path: str, body: dict[str, Any], key: str) -> httpx.Response:
    return client.post(path, json=body, headers={"Idempotency-Key": key})


def accepted_sequence(response: httpx.Response) -> int:
    assert response.status_code in (200, 201), response.text
    answer = response.json()
    assert answer["status"] == "accepted", answer
    (sequence,) = answer["event_sequences"]
    return int(sequence)


def notifications_of(settings: Settings, monitor_id: str, count: int) -> list[Notification]:
    """The monitor's notifications once ``count`` are committed (bounded wait)."""
    topic = ledger_topic_names(settings).notifications
    deadline = time.monotonic() + NOTIFIED_TIMEOUT_S
    while True:
        found = [
            note
            for record in read_topic(settings, topic)
            for note in [decode_notification(record.value or b"")]
            if note.monitor_id == monitor_id
        ]
        if len(found) >= count:
            return sorted(found, key=lambda note: note.sequence)
        assert time.monotonic() < deadline, f"{len(found)} of {count} notifications"
        time.sleep(0.2)


def projected_monitors(client: httpx.Client, sequence: int) -> list[dict[str, Any]]:
    """``GET /v1/monitors`` once the projection has applied event ``sequence`` (bounded)."""
    deadline = time.monotonic() + PROJECTED_TIMEOUT_S
    while True:
        response = client.get("/v1/monitors")
        assert response.status_code == 200, response.text
        monitors: list[dict[str, Any]] = response.json()["monitors"]
        if any(monitor["balance_sequence"] >= sequence for monitor in monitors):
            return monitors
        assert time.monotonic() < deadline, f"not projected: {response.text}"
        time.sleep(0.1)


def test_monitors_through_the_api_notify_once_per_edge(api_stack: ApiStack) -> None:
    with api_stack.client(TENANT) as client:
        cash, alice, monitor_id = unique("cash"), unique("alice"), unique("low")
        for account_id, flags in ((cash, {}), (alice, {"debits_must_not_exceed_credits": True})):
            body = {"account_id": account_id, "currency": "USD", "asset_scale": 2, **flags}
            assert post(client, "/v1/accounts", body, unique("open")).status_code == 201
        monitor = {
            "monitor_id": monitor_id,
            "account_id": alice,
            "field": "available",
            "operator": "<",
            "threshold": 5000,
            "metadata": {"owner": "treasury"},
        }
        key = unique("monitor")
        created = post(client, "/v1/monitors", monitor, key)
        created_at = accepted_sequence(created)  # alice holds 0: triggered at creation
        assert created.json()["command_type"] == "CreateMonitor"
        again = post(client, "/v1/monitors", monitor, key)
        assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
        sequences = []
        for amount, debit, credit in (
            (8000, cash, alice),
            (1000, alice, cash),
            (4000, alice, cash),
        ):
            body = {
                "transfer_id": unique("t"),
                "debit_account_id": debit,
                "credit_account_id": credit,
                "amount": amount,
                "currency": "USD",
            }
            sequences.append(accepted_sequence(post(client, "/v1/transfers", body, unique("t"))))
        notes = notifications_of(api_stack.settings, monitor_id, 3)
        assert [(type(n), n.sequence, n.value) for n in notes] == [
            (MonitorTriggered, created_at, 0),
            (MonitorCleared, sequences[0], 8000),  # 7000 after the second: no edge
            (MonitorTriggered, sequences[2], 3000),
        ]
        assert notes[0].metadata == (("owner", "treasury"),)
        listed = projected_monitors(client, sequences[2])
        (mine,) = [m for m in listed if m["monitor_id"] == monitor_id]
        assert (mine["account_id"], mine["field"], mine["operator"], mine["threshold"]) == (
            alice,
            "available",
            "<",
            5000,
        )
        assert (mine["value"], mine["holds"], mine["created_sequence"]) == (3000, True, created_at)
        assert mine["metadata"] == {"owner": "treasury"} and mine["currency"] == "USD"

        deleted = client.delete(
            f"/v1/monitors/{monitor_id}", headers={"Idempotency-Key": key + "d"}
        )
        deleted_at = accepted_sequence(deleted)
        assert deleted.status_code == 200 and deleted.json()["command_type"] == "DeleteMonitor"
        gone = client.delete(f"/v1/monitors/{monitor_id}", headers={"Idempotency-Key": key + "e"})
        assert gone.status_code == 422 and gone.json()["reason"] == "monitor_not_found", gone.text
        # the projection went on through the monitor events (no quarantine)
        deadline = time.monotonic() + PROJECTED_TIMEOUT_S
        while True:
            balance = client.get(f"/v1/accounts/{alice}/balance")
            if balance.status_code == 200 and balance.json()["last_sequence"] >= deleted_at:
                break
            assert time.monotonic() < deadline, balance.text
            time.sleep(0.1)
        assert balance.json()["credits_posted"] == 8000
        after = client.get("/v1/monitors")
        assert after.status_code == 200, after.text
        assert monitor_id not in [m["monitor_id"] for m in after.json()["monitors"]]


def test_monitor_rules_and_limits_are_422s_naming_the_field(api_stack: ApiStack) -> None:
    with api_stack.client(TENANT) as client:
        base = {"monitor_id": unique("m"), "field": "posted", "operator": ">=", "threshold": 1}
        unknown = post(client, "/v1/monitors", {**base, "account_id": "nobody"}, unique("k"))
        assert unknown.status_code == 422 and unknown.json()["reason"] == "unknown_account"
        bad = post(
            client, "/v1/monitors", {**base, "account_id": "a", "field": "balance"}, unique("k")
        )
        assert bad.status_code == 422 and bad.json()["field"] == "field", bad.text
        malformed = post(
            client, "/v1/monitors", {**base, "account_id": "a", "threshold": "1"}, unique("k")
        )
        assert malformed.status_code == 400 and malformed.json()["field"] == "threshold"
