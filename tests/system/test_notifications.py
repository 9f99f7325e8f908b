"""Webhooks and the live stream on the real broker, the real PostgreSQL and real HTTP receivers
(issue 18): deliveries in order with valid signatures, a tampered body failing; a receiver that
returns 500s, hangs or drops the connection delays no other endpoint, is disabled, and its dead
letters are listed and replayed; kill -9 of the dispatcher loses nothing and a receiver that
deduplicates by id sees each delivery once, in order; the SSE stream resumes from Last-Event-ID
without a gap; another tenant's key sees nothing of it."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from notifications.signing import signature_problem
from streamledger.settings import Settings, replace
from tests.conftest import run_streamledger
from tests.system.webhook_receivers import (
    Receiver,
    free_port_in_range,
    start_receiver,
    stop_receiver,
)
from workloads.api_stack import ApiStack, ChildProcess, running_api_stack

pytestmark = pytest.mark.system

TENANTS = ("acme", "globex", "initech", "hooli", "umbrella", "soylent", "stark")
DELIVERY_TIMEOUT_S = 60.0
# A POST answers 201 once its outcome is in: wait for it as long as the other API modules do (the
# default 5 s, then 202, is short for a stack's first commands on a loaded machine).
API_FLAGS = ["--wait-timeout-ms=20000"]
BIND_KEY = "SELECT set_config('streamledger.api_key_sha256', %s, true)"
DISPATCHER_FLAGS = (
    "--endpoint-failures-max=3",
    "--backoff-base-ms=20",
    "--backoff-max-ms=100",
    "--delivery-timeout-ms=8000",
    "--connect-timeout-ms=1000",
    "--endpoints-refresh-ms=200",
    "--commit-interval-ms=100",
)


@pytest.fixture(scope="module")
def stack(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiStack]:
    logs = tmp_path_factory.mktemp("notify-stack")
    with running_api_stack(stack_settings, logs, TENANTS, API_FLAGS) as running:
        yield running


@pytest.fixture
def clients(stack: ApiStack) -> Iterator[dict[str, httpx.Client]]:
    """One API client per tenant, closed after the test."""
    opened = {tenant: stack.client(tenant) for tenant in TENANTS}
    yield opened
    for client in opened.values():
        client.close()


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    started: list[Receiver] = []
    yield started
    for receiver in started:
        stop_receiver(receiver)


def receiver(started: list[Receiver], mode: str = "ok") -> Receiver:
    started.append(start_receiver(mode))
    return started[-1]


class Dispatchers:
    """``streamledger notify`` children of one test, stopped when it ends (one consumer group:
    a dispatcher left from another test would share the partitions)."""

    def __init__(self, stack: ApiStack, log_directory: Path) -> None:
        self.stack = stack
        self.log_directory = log_directory
        self.started: list[ChildProcess] = []

    def start(self, *flags: str, metrics_port: int | None = None) -> ChildProcess:
        name = f"notify-{uuid.uuid4().hex[:6]}.log"
        settings = self.stack.settings
        metrics = ["--no-metrics"] if metrics_port is None else []
        if metrics_port is not None:
            settings = replace(settings, metrics_port=metrics_port)
        arguments = ["notify", *metrics, *DISPATCHER_FLAGS, *flags]
        child = ChildProcess(settings, arguments, self.log_directory / name)
        self.started.append(child)
        return child

    def logs(self) -> str:
        return "\n".join(child.log() for child in self.started)

    def stop(self) -> None:
        for child in self.started:
            child.stop()


@pytest.fixture
def dispatchers(stack: ApiStack, tmp_path: Path) -> Iterator[Dispatchers]:
    started = Dispatchers(stack, tmp_path)
    yield started
    started.stop()


def subscribe(
    client: httpx.Client, url: str, event_types: list[str] | None = None
) -> dict[str, Any]:
    response = client.post(
        "/v1/webhook-endpoints", json={"url": url, "event_types": event_types or ["*"]}
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    assert created["secret"].startswith("whsec_")
    return created


def command(client: httpx.Client, path: str, body: dict[str, Any]) -> None:
    response = client.post(path, json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
    assert response.status_code == 201, response.text


def open_accounts(client: httpx.Client) -> None:
    for account in ("cash", "alice"):
        body = {"account_id": account, "currency": "USD", "asset_scale": 2}
        command(client, "/v1/accounts", body)


def transfers(client: httpx.Client, count: int) -> None:
    for _ in range(count):
        body = {
            "transfer_id": f"t-{uuid.uuid4().hex[:12]}",
            "debit_account_id": "cash",
            "credit_account_id": "alice",
            "amount": 100,
            "currency": "USD",
        }
        command(client, "/v1/transfers", body)


def first_occurrences(items: list[Any]) -> list[int]:
    """The sequences a receiver that deduplicates by delivery id keeps, in arrival order."""
    seen: set[str] = set()
    kept: list[int] = []
    for item in items:
        if item.delivery_id not in seen:
            seen.add(item.delivery_id)
            kept.append(item.document["sequence"])
    return kept


def wait_until(condition: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def endpoint_view(client: httpx.Client, endpoint_id: str) -> dict[str, Any]:
    listed = client.get("/v1/webhook-endpoints")
    assert listed.status_code == 200, listed.text
    return next(item for item in listed.json()["endpoints"] if item["id"] == endpoint_id)


def disabled_view(client: httpx.Client, endpoint_id: str) -> dict[str, Any] | None:
    view = endpoint_view(client, endpoint_id)
    return None if view["enabled"] else view


def dead_letters_when(client: httpx.Client, path: str, count: int) -> list[Any] | None:
    letters: list[Any] = client.get(path).json()["dead_letters"]
    return letters if len(letters) == count else None


def test_deliveries_arrive_signed_in_order_and_bad_receivers_delay_no_one(
    clients: dict[str, httpx.Client], receivers: list[Receiver], dispatchers: Dispatchers
) -> None:
    good, failing, hanging, closing, other = (
        receiver(receivers, mode) for mode in ("ok", "fail", "hang", "close", "ok")
    )
    acme, globex = clients["acme"], clients["globex"]
    good_endpoint = subscribe(acme, good.url)
    failing_endpoint = subscribe(acme, failing.url)
    subscribe(acme, hanging.url)
    closing_endpoint = subscribe(acme, closing.url)
    globex_endpoint = subscribe(globex, other.url, ["TransferPosted"])
    assert [item["id"] for item in globex.get("/v1/webhook-endpoints").json()["endpoints"]] == [
        globex_endpoint["id"]
    ]
    open_accounts(acme)
    open_accounts(globex)
    transfers(acme, 10)
    transfers(globex, 3)
    # Started once every event is in the log, so the times below measure the dispatcher, not
    # how fast this test got 15 commands through the API (seconds on a loaded machine).
    child = dispatchers.start()

    delivered = good.wait_for(12, DELIVERY_TIMEOUT_S)
    assert child.process.poll() is None, child.log()
    assert first_occurrences(delivered) == list(range(1, 13))
    for item in delivered:
        header = item.headers["streamledger-signature"]
        assert (
            signature_problem(good_endpoint["secret"], header, item.body, now_s=int(time.time()))
            is None
        )
        assert item.document["id"] == item.delivery_id == f"acme:{item.document['sequence']}"
        tampered = item.body.replace(b'"amount":100', b'"amount":900')
        if tampered != item.body:
            assert signature_problem(
                good_endpoint["secret"], header, tampered, now_s=int(time.time())
            )
    # The hanging receiver holds its first delivery for the whole 8 s timeout: the good
    # endpoint got all twelve long before that attempt ended.
    first_hang = wait_until(
        hanging.snapshot, DELIVERY_TIMEOUT_S, "the hanging receiver's first request"
    )[0]
    assert delivered[-1].at < first_hang.at + 6.0

    globex_items = other.wait_for(3, DELIVERY_TIMEOUT_S)
    assert {item.document["tenant_id"] for item in globex_items} == {"globex"}
    assert {item.document["type"] for item in globex_items} == {"TransferPosted"}
    assert first_occurrences(globex_items) == [3, 4, 5]

    for endpoint in (failing_endpoint, closing_endpoint):
        view = wait_until(
            lambda e=endpoint: disabled_view(acme, e["id"]),
            DELIVERY_TIMEOUT_S,
            "a failing endpoint to be disabled",
        )
        assert "3 consecutive failed attempts" in view["disabled_reason"]
    dead_letters = f"/v1/webhook-endpoints/{failing_endpoint['id']}/dead-letters"
    dead = wait_until(
        lambda: dead_letters_when(acme, dead_letters, 12),
        DELIVERY_TIMEOUT_S,
        "twelve dead letters",
    )
    assert [letter["sequence"] for letter in dead] == list(range(1, 13))
    assert (
        globex.get(f"/v1/webhook-endpoints/{failing_endpoint['id']}/dead-letters").status_code
        == 404
    )

    failing.mode = "ok"
    replay = acme.post(f"/v1/webhook-endpoints/{failing_endpoint['id']}/dead-letters/replay")
    assert replay.status_code == 202, replay.text
    assert replay.json()["queued"] == 12
    wait_until(lambda: len(failing.answered()) >= 12, DELIVERY_TIMEOUT_S, "the replay")
    assert first_occurrences(failing.answered()) == list(range(1, 13))
    assert endpoint_view(acme, failing_endpoint["id"])["enabled"] is True

    verified = run_streamledger(
        ["webhooks", "verify", "acme", good_endpoint["id"], "5"], dispatchers.stack.settings
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "signature ok" in verified.stdout


def test_kill_9_of_the_dispatcher_loses_no_delivery_and_dedup_gives_each_once_in_order(
    clients: dict[str, httpx.Client], receivers: list[Receiver], dispatchers: Dispatchers
) -> None:
    sink = receiver(receivers)
    sink.delay_s = 0.02
    initech = clients["initech"]
    subscribe(initech, sink.url)
    child = dispatchers.start()
    open_accounts(initech)
    transfers(initech, 40)
    sink.wait_for(8, DELIVERY_TIMEOUT_S)
    child.process.kill()
    child.process.wait(timeout=10)
    dispatchers.start()
    items = sink.wait_for(42, DELIVERY_TIMEOUT_S * 2)
    assert first_occurrences(items) == list(range(1, 43))
    by_id = {item.delivery_id for item in items}
    assert by_id == {f"initech:{sequence}" for sequence in range(1, 43)}


def test_a_full_queue_spills_to_postgresql_and_the_order_holds(
    clients: dict[str, httpx.Client], receivers: list[Receiver], dispatchers: Dispatchers
) -> None:
    """Two deliveries fit in the endpoint's memory; the rest wait in PostgreSQL and are read
    back in sequence order, behind the queued ones, while newer events keep spilling."""
    slow = receiver(receivers)
    slow.delay_s = 0.1
    soylent = clients["soylent"]
    endpoint = subscribe(soylent, slow.url, ["TransferPosted"])
    open_accounts(soylent)
    transfers(soylent, 25)
    # Started once the 25 events are in the log: it reads them far faster than the receiver
    # answers (0.1 s each), so the queue fills and spills whatever the pace of the API calls
    # above; started before them, a slow API let the receiver keep up and nothing spilled.
    metrics_port = free_port_in_range()
    dispatchers.start("--queue-deliveries-max=2", "--stored-page-max=3", metrics_port=metrics_port)
    items = slow.wait_for(25, DELIVERY_TIMEOUT_S)
    assert first_occurrences(items) == list(range(3, 28))
    assert all(item.document["type"] == "TransferPosted" for item in items)
    assert endpoint_view(soylent, endpoint["id"])["enabled"] is True
    path = f"/v1/webhook-endpoints/{endpoint['id']}/dead-letters"
    # Nothing left pending once the last 2xx is recorded: every spilled delivery was sent.
    wait_until(
        lambda: soylent.get(path).json()["dead_letters"] == [],
        DELIVERY_TIMEOUT_S,
        "no pending rows",
    )
    metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30).text
    spilled = next(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith('streamledger_notify_deliveries_total{outcome="spilled"}')
    )
    assert spilled > 0, "the queue never filled: the spill path was not exercised"


def test_a_replay_after_a_dispatcher_restart_delivers_the_dead_letters_in_order(
    clients: dict[str, httpx.Client], receivers: list[Receiver], dispatchers: Dispatchers
) -> None:
    """The endpoint was disabled by a dispatcher that is gone; the next one sees the tenant's
    replay and delivers every dead letter, then what comes after, in order."""
    flaky = receiver(receivers, "fail")
    stark = clients["stark"]
    endpoint = subscribe(stark, flaky.url)
    first = dispatchers.start()
    open_accounts(stark)
    transfers(stark, 3)
    wait_until(lambda: disabled_view(stark, endpoint["id"]), DELIVERY_TIMEOUT_S, "disabled")
    path = f"/v1/webhook-endpoints/{endpoint['id']}/dead-letters"
    wait_until(lambda: dead_letters_when(stark, path, 5), DELIVERY_TIMEOUT_S, "5 dead letters")
    first.stop()
    second = dispatchers.start()
    # Its first endpoint refresh precedes its first poll, hence its partition assignment:
    # from then on it holds the endpoint as disabled, and only the replay can enable it.
    wait_until(lambda: "assigned partitions" in second.log(), 30, "the second dispatcher")
    flaky.mode = "ok"
    assert stark.post(f"{path}/replay").json()["queued"] == 5
    transfers(stark, 2)
    wait_until(lambda: len(flaky.answered()) >= 7, DELIVERY_TIMEOUT_S, "the replay")
    assert first_occurrences(flaky.answered()) == list(range(1, 8))


def sse_events(response: httpx.Response, count: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    message: dict[str, str] = {}
    for line in response.iter_lines():
        if line == "":
            if "data" in message:
                events.append({**json.loads(message["data"]), "sse_id": int(message["id"])})
                if len(events) == count:
                    return events
            message = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            message[name] = value
    raise AssertionError(f"the stream ended after {len(events)} events")


def test_the_live_stream_resumes_without_gaps_and_shows_only_the_keys_tenant(
    stack: ApiStack, clients: dict[str, httpx.Client]
) -> None:
    hooli, umbrella = clients["hooli"], clients["umbrella"]
    open_accounts(hooli)
    transfers(hooli, 6)
    open_accounts(umbrella)
    transfers(umbrella, 1)
    timeout = httpx.Timeout(30.0)
    with hooli.stream("GET", "/v1/events/stream", timeout=timeout) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        first = sse_events(response, 3)
    assert [event["sequence"] for event in first] == [1, 2, 3]
    assert [event["sse_id"] for event in first] == [1, 2, 3]
    assert [event["id"] for event in first] == ["hooli:1", "hooli:2", "hooli:3"]
    assert first[0]["type"] == "AccountOpened"
    resumed_from = str(first[-1]["sequence"])
    headers = {"Last-Event-ID": resumed_from}
    with hooli.stream("GET", "/v1/events/stream", headers=headers, timeout=timeout) as response:
        rest = sse_events(response, 5)
    assert [event["sequence"] for event in rest] == [4, 5, 6, 7, 8]
    assert {event["tenant_id"] for event in first + rest} == {"hooli"}
    assert rest[0]["type"] == "TransferPosted"
    assert [entry["account_id"] for entry in rest[0]["data"]["entries"]] == ["cash", "alice"]

    with umbrella.stream("GET", "/v1/events/stream?after=0", timeout=timeout) as response:
        theirs = sse_events(response, 3)
    assert {event["tenant_id"] for event in theirs} == {"umbrella"}
    assert [event["sequence"] for event in theirs] == [1, 2, 3]
    with stack.client() as anonymous:
        assert anonymous.get("/v1/events/stream").status_code == 401


def test_endpoints_are_checked_isolated_per_tenant_and_their_secrets_unreadable(
    stack: ApiStack, clients: dict[str, httpx.Client]
) -> None:
    """Bad input is a 400 naming the member; another tenant's key can neither see, delete nor
    replay an endpoint; the API's database role cannot read a secret or write around the
    functions, even with a key bound (decision 0038)."""
    acme, globex = clients["acme"], clients["globex"]
    for body, member in (
        ({"url": "ftp://x.example/", "event_types": ["*"]}, "url"),
        ({"url": "https://x.example/", "event_types": ["transfer.posted"]}, "event_types"),
        ({"url": "https://x.example/", "event_types": []}, "event_types"),
    ):
        refused = acme.post("/v1/webhook-endpoints", json=body)
        assert refused.status_code == 400, refused.text
        assert refused.json()["field"] == member
    unknown_member = acme.post(
        "/v1/webhook-endpoints", json={"url": "https://x.example/", "event_types": ["*"], "x": 1}
    )
    assert unknown_member.status_code == 400
    mine = subscribe(acme, "https://acme.example/hooks")
    path = f"/v1/webhook-endpoints/{mine['id']}"
    assert globex.delete(path).status_code == 404
    assert globex.post(f"{path}/dead-letters/replay").status_code == 404
    listed = globex.get("/v1/webhook-endpoints").json()["endpoints"]
    assert mine["id"] not in {endpoint["id"] for endpoint in listed}
    assert "secret" not in endpoint_view(acme, mine["id"])
    assert acme.delete("/v1/webhook-endpoints/not-an-id").status_code == 400

    digest = hashlib.sha256(stack.keys["acme"].encode()).hexdigest()
    url = stack.settings.database_url.replace(
        "streamledger:streamledger@", "streamledger_api:streamledger_api@"
    )
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in (
            "SELECT secret FROM streamledger_notify.webhook_endpoints",
            "UPDATE streamledger_notify.webhook_endpoints SET enabled = false",
            "SELECT streamledger_notify.bound_tenant()",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                conn.execute("SET TRANSACTION READ WRITE")
                conn.execute(BIND_KEY, (digest,))
                conn.execute(statement)
        with conn.transaction():
            conn.execute(BIND_KEY, (digest,))
            rows = conn.execute(
                "SELECT DISTINCT tenant_id FROM streamledger_notify.webhook_endpoints"
            ).fetchall()
        assert rows == [("acme",)]
    assert acme.delete(path).status_code == 204
    assert acme.delete(path).status_code == 404
