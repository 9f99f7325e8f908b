"""Balance-monitor notifications delivered as webhooks (issue 18, decision 0068), on the real
broker, the real PostgreSQL and real HTTP receivers: monitors created through the command path
(``POST /v1/monitors``), the balance moved across their thresholds and back; an endpoint
subscribed to ``monitor.triggered``/``monitor.cleared`` gets each edge exactly once, in the
tenant's order, signed, with the notification id as the delivery id (two monitors firing on one
event are two deliveries); a dispatcher of a fresh consumer group reads the whole log again and
delivers only the new edge (the stored rows are its restart point); another tenant's endpoint
gets nothing; spilled notifications that share a sequence are read back each once, in order."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from notifications.signing import signature_problem
from streamledger.settings import Settings
from tests.conftest import run_streamledger
from tests.system.test_api_monitors import accepted_sequence, post, unique
from tests.system.test_notifications import Dispatchers, subscribe
from tests.system.webhook_receivers import Received, Receiver, stop_receiver
from tests.system.webhook_receivers import start_receiver as start_receiver_in
from workloads.api_stack import ApiStack, running_api_stack

pytestmark = pytest.mark.system

TENANTS = ("wayne", "tyrell", "cyberdyne")
API_FLAGS = ["--wait-timeout-ms=20000", "--api-key-cache-ttl-s=0"]
DELIVERY_TIMEOUT_S = 60.0
QUIET_S = 2.0  # after the expected deliveries: long enough for a wrong extra one to show
PORT_FIRST, PORT_LAST = 21_900, 21_999  # this test's receivers (helper K's range)
MONITOR_KINDS = ["monitor.triggered", "monitor.cleared"]


@pytest.fixture(scope="module")
def stack(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiStack]:
    logs = tmp_path_factory.mktemp("monitor-webhooks")
    with running_api_stack(stack_settings, Path(logs), TENANTS, API_FLAGS) as running:
        yield running


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    started: list[Receiver] = []
    yield started
    for receiver in started:
        stop_receiver(receiver)


def start_receiver(started: list[Receiver]) -> Receiver:
    receiver = start_receiver_in(port_first=PORT_FIRST, port_last=PORT_LAST)
    started.append(receiver)
    return receiver


def move(client: httpx.Client, debit: str, credit: str, amount: int) -> int:
    """A transfer through the command path; the sequence of its event."""
    body = {
        "transfer_id": unique("t"),
        "debit_account_id": debit,
        "credit_account_id": credit,
        "amount": amount,
        "currency": "USD",
    }
    return accepted_sequence(post(client, "/v1/transfers", body, unique("k")))


def verified(items: list[Received], secret: str) -> list[Received]:
    for item in items:
        header = item.headers["streamledger-signature"]
        assert signature_problem(secret, header, item.body, now_s=int(time.time())) is None
        tampered = item.body.replace(b'"value":', b'"value":1')
        assert signature_problem(secret, header, tampered, now_s=int(time.time())) is not None
    return items


def edges(items: list[Received]) -> list[tuple[str, int, str, int]]:
    return [
        (
            item.document["type"],
            item.document["sequence"],
            item.document["data"]["monitor_id"],
            item.document["data"]["value"],
        )
        for item in items
    ]


def open_and_fund(client: httpx.Client, amount: int) -> tuple[str, str]:
    """Two accounts, ``cash`` and a checked ``alice`` holding ``amount``."""
    cash, alice = unique("cash"), unique("alice")
    for account_id, flags in ((cash, {}), (alice, {"debits_must_not_exceed_credits": True})):
        body = {"account_id": account_id, "currency": "USD", "asset_scale": 2, **flags}
        assert post(client, "/v1/accounts", body, unique("open")).status_code == 201
    move(client, cash, alice, amount)
    return cash, alice


def create_low_balance_monitor(client: httpx.Client, account_id: str, threshold: int) -> str:
    monitor_id = unique("low")
    monitor = {
        "monitor_id": monitor_id,
        "account_id": account_id,
        "field": "available",
        "operator": "<",
        "threshold": threshold,
    }
    accepted_sequence(post(client, "/v1/monitors", monitor, unique("m")))
    return monitor_id


def both(
    kind: str, sequence: int, monitors: tuple[str, str], value: int
) -> list[tuple[str, int, str, int]]:
    """The two monitors' edges of one kind, caused by one event (sorted)."""
    return sorted((kind, sequence, monitor_id, value) for monitor_id in monitors)


def test_monitor_edges_are_delivered_once_signed_in_order_and_only_to_their_tenant(
    stack: ApiStack, receivers: list[Receiver], tmp_path: Path
) -> None:
    sink, other = start_receiver(receivers), start_receiver(receivers)
    dispatchers = Dispatchers(stack, tmp_path)
    try:
        with stack.client("wayne") as wayne, stack.client("tyrell") as tyrell:
            endpoint = subscribe(wayne, sink.url, MONITOR_KINDS)
            subscribe(tyrell, other.url, ["*"])
            dispatchers.start()
            cash, alice = open_and_fund(wayne, 8000)
            low = create_low_balance_monitor(wayne, alice, 5000)
            very_low = create_low_balance_monitor(wayne, alice, 3000)
            move(wayne, alice, cash, 1000)  # 7000: no edge
            fell = move(wayne, alice, cash, 5000)  # 2000: both trigger
            move(wayne, alice, cash, 500)  # 1500: still below, no edge
            rose = move(wayne, cash, alice, 6500)  # 8000: both clear

            items = verified(sink.wait_for(4, DELIVERY_TIMEOUT_S), endpoint["secret"])
            time.sleep(QUIET_S)
            items = sink.snapshot()
            assert sorted(edges(items)[:2]) == sorted(
                [
                    ("monitor.triggered", fell, low, 2000),
                    ("monitor.triggered", fell, very_low, 2000),
                ]
            )
            assert sorted(edges(items)[2:]) == sorted(
                [("monitor.cleared", rose, low, 8000), ("monitor.cleared", rose, very_low, 8000)]
            )
            for item in items:
                document: dict[str, Any] = item.document
                expected_id = f"wayne:{document['sequence']}:{document['data']['monitor_id']}"
                assert item.delivery_id == document["id"] == expected_id
                assert document["tenant_id"] == "wayne"
                assert item.headers["streamledger-event-type"] == document["type"]

            # A dispatcher of a fresh consumer group reads both topics from the start: the
            # stored rows say what this endpoint had, so only the new edge arrives.
            dispatchers.stop()
            # (a group of the dispatcher principal's: {prefix}streamledger-notify*)
            fresh = f"{stack.settings.topic_prefix}streamledger-notify-fresh-{uuid.uuid4().hex[:8]}"
            dispatchers.start(f"--consumer-group={fresh}")
            again = move(wayne, alice, cash, 7000)  # 1000: both trigger again
            items = verified(sink.wait_for(6, DELIVERY_TIMEOUT_S), endpoint["secret"])
            time.sleep(QUIET_S)
            items = sink.snapshot()
            assert len(items) == 6, edges(items)
            assert sorted(edges(items)[4:]) == sorted(
                [
                    ("monitor.triggered", again, low, 1000),
                    ("monitor.triggered", again, very_low, 1000),
                ]
            )
            assert other.snapshot() == []
        checked = run_streamledger(
            ["webhooks", "verify", "wayne", endpoint["id"], items[0].delivery_id], stack.settings
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "signature ok" in checked.stdout
    finally:
        dispatchers.stop()


def test_spilled_notifications_sharing_a_sequence_are_read_back_each_once_in_order(
    stack: ApiStack, receivers: list[Receiver], tmp_path: Path
) -> None:
    """One delivery fits in the endpoint's memory, one stored row per page: three monitors fire
    on one event and clear on another; the stored ones are read back by (sequence, id), each
    exactly once (no crash here), the triggered before the cleared."""
    slow = start_receiver(receivers)
    slow.delay_s = 0.2
    dispatchers = Dispatchers(stack, tmp_path)
    try:
        with stack.client("cyberdyne") as client:
            endpoint = subscribe(client, slow.url, MONITOR_KINDS)
            dispatchers.start("--queue-deliveries-max=1", "--stored-page-max=1")
            cash, alice = open_and_fund(client, 8000)
            monitors = [
                create_low_balance_monitor(client, alice, threshold)
                for threshold in (5000, 4000, 3000)
            ]
            fell = move(client, alice, cash, 6000)  # 2000: all three trigger
            rose = move(client, cash, alice, 6000)  # 8000: all three clear
            items = verified(slow.wait_for(6, DELIVERY_TIMEOUT_S), endpoint["secret"])
            time.sleep(QUIET_S)
            items = slow.snapshot()
            assert len(items) == 6, edges(items)
            assert sorted(edges(items)[:3]) == sorted(
                ("monitor.triggered", fell, monitor_id, 2000) for monitor_id in monitors
            )
            assert sorted(edges(items)[3:]) == sorted(
                ("monitor.cleared", rose, monitor_id, 8000) for monitor_id in monitors
            )
    finally:
        dispatchers.stop()
