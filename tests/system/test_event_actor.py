"""The actor on every event, end to end (issue 21 part 3, contract v1.7, decision 0093).

A tenant's commands go through the pure core with the key id each was signed with (as the
processor passes the verified one): an account opened and transfers made by an upstream's key, a
transfer and a multi-leg transaction by the API's key, a pending transfer that expires (the
``system`` actor) and one command unsigned (``""``). The events are produced to the real
``ledger.events`` and projected into the real PostgreSQL. Then the actor is:

- in the events: the bytes on the topic decode to it, and their hash covers it;
- in PostgreSQL: ``event_chain.actor`` per event and ``entries.actor`` per journal row;
- in the reads: the history and the statement name each entry's actor, a transfer and a
  transaction their ``created_by``/``updated_by``, through the real HTTP API too, whose live
  event stream names each event's actor;
- checked by ``streamledger verify``: it passes, and names an ``event_chain`` actor and
  journal rows' actors changed behind its back.

Then the same through the whole pipeline (processor, projection and API as child processes):
commands made through the HTTP API are signed with the API's key, the real processor verifies it
and names ``api:v1`` on their events, the tick-driven expiry names ``system``, and the API's
reads, PostgreSQL and verify agree.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition

import ledger
from api.api_keys import create_api_key
from api.settings import build_api_settings
from api.signing_keys_cli import grant
from kafka_adapter.security import ADMIN_PRINCIPAL, client_config
from processors.partition_ledger import WIRE_FORMAT
from processors.signing_master import key_file_path
from projections.queries import LedgerReader, reader_dsn
from projections.verify import verify
from schemas.codec import HEADER_BYTES, decode_event, record_canonical_bytes
from schemas.event_time import to_datetime
from schemas.keys import command_key, event_key, partition_for
from schemas.model import (
    SYSTEM_ACTOR,
    Command,
    Event,
    OpenAccount,
    Posting,
    PostPending,
    PostTransaction,
    Transfer,
)
from streamledger.settings import Settings
from tests.system.api_server import serving_api
from tests.system.free_ports import free_port_range
from tests.system.projection_checks import project_until_caught_up, projection_for
from workloads.api_stack import ApiStack, running_api_stack
from workloads.projection_events import produce_events

pytestmark = pytest.mark.system
TENANT = "acme-actor"
GATEWAY = "payments-gw:v1"
API_KEY_ID = "api:v3"
T0_US = 1_810_000_000_000_000
SECOND_US = 1_000_000
CONSUME_TIMEOUT_S = 60.0


def open_account(account_id: str) -> OpenAccount:
    return OpenAccount(
        tenant_id=TENANT,
        idempotency_key=f"open-{account_id}",
        submitted_at_us=T0_US,
        account_id=account_id,
        currency="USD",
        asset_scale=2,
    )


def transfer(transfer_id: str, amount: int, **fields: Any) -> Transfer:
    return Transfer(
        tenant_id=TENANT,
        idempotency_key=f"pay-{transfer_id}",
        submitted_at_us=T0_US,
        transfer_id=transfer_id,
        debit_account_id="cash",
        credit_account_id="alice",
        amount=amount,
        currency="USD",
        **fields,
    )


def posting(debit: str, credit: str, amount: int) -> Posting:
    return Posting(debit_account_id=debit, credit_account_id=credit, amount=amount, currency="USD")


def post_pending(transfer_id: str) -> PostPending:
    return PostPending(
        tenant_id=TENANT,
        idempotency_key=f"post-{transfer_id}",
        submitted_at_us=T0_US,
        transfer_id=transfer_id,
    )


def transaction(transaction_id: str, *postings: Posting) -> PostTransaction:
    return PostTransaction(
        tenant_id=TENANT,
        idempotency_key=f"tx-{transaction_id}",
        submitted_at_us=T0_US,
        transaction_id=transaction_id,
        postings=postings,
    )


def history() -> list[Event]:
    """The tenant's events, each command decided with the actor it was signed with."""
    state = ledger.LedgerState(wire_format=WIRE_FORMAT)
    script: list[tuple[Command, str, int]] = [
        (open_account("cash"), GATEWAY, 0),
        (open_account("alice"), GATEWAY, 1),
        (transfer("t-1", 1_000), GATEWAY, 2),
        (transfer("t-2", 500, pending=True), GATEWAY, 3),
        (post_pending("t-2"), API_KEY_ID, 4),
        (transfer("t-3", 300, pending=True, pending_timeout_s=1), GATEWAY, 5),
        # t-3 expires first, effective at its deadline: the system's event, then the transaction
        (
            transaction("x-1", posting("cash", "alice", 7), posting("alice", "cash", 2)),
            API_KEY_ID,
            20,
        ),
        (transfer("t-4", 40), "", 21),  # unsigned
    ]
    events: list[Event] = []
    for command, actor, second in script:
        decision = ledger.step(state, command, T0_US + second * SECOND_US, actor)
        assert isinstance(decision, ledger.Accepted), decision.outcome
        events.extend(decision.events)
    return events


def test_the_actor_is_in_the_events_postgresql_the_reads_and_verify(
    projection_settings: Settings,
) -> None:
    events = history()
    actors = {event.sequence: event.actor for event in events}
    assert set(actors.values()) == {GATEWAY, API_KEY_ID, SYSTEM_ACTOR, ""}
    produce_events(projection_settings, events, transactional_id="event-actor")
    check_the_topic(projection_settings, events)
    project_until_caught_up(projection_settings, len(events))
    check_postgresql(projection_settings, actors)
    check_the_reads(projection_settings, actors)
    check_the_api(projection_settings, actors)
    check_verify(projection_settings)


def check_the_topic(settings: Settings, events: list[Event]) -> None:
    """The records on ledger.events carry the actor, and each hash covers it."""
    consumer = Consumer(
        {
            **client_config(settings, ADMIN_PRINCIPAL),
            "group.id": f"{settings.topic_prefix}event-actor",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    partition = partition_for(command_key(TENANT), settings.partitions)
    consumer.assign([TopicPartition(settings.topic("ledger.events"), partition, 0)])
    found: dict[bytes, bytes] = {}
    deadline = time.monotonic() + CONSUME_TIMEOUT_S
    try:
        while len(found) < len(events) and time.monotonic() < deadline:
            for record in consumer.consume(100, timeout=1.0):
                assert record.error() is None, record.error()
                found[record.key()] = record.value()
    finally:
        consumer.close()
    for event in events:
        value = found[event_key(event.tenant_id, event.sequence)]
        decoded = decode_event(value)
        assert decoded.actor == event.actor and decoded == event
        canonical = record_canonical_bytes(value)
        assert canonical.endswith(event.actor.encode())
        assert hashlib.sha256(decoded.prev_hash + canonical).digest() == value[-32:]
        assert len(value) > HEADER_BYTES + 32


def check_postgresql(settings: Settings, actors: dict[int, str]) -> None:
    with psycopg.connect(settings.database_dsn) as conn:
        chain = conn.execute(
            "SELECT sequence, actor FROM ledger.event_chain WHERE tenant_id = %s", (TENANT,)
        ).fetchall()
        entries = conn.execute(
            "SELECT sequence, actor FROM ledger.entries WHERE tenant_id = %s", (TENANT,)
        ).fetchall()
    assert dict(chain) == actors
    assert entries and all(actor == actors[sequence] for sequence, actor in entries)
    assert {actor for _, actor in entries} == {GATEWAY, API_KEY_ID, SYSTEM_ACTOR, ""}


def check_the_reads(settings: Settings, actors: dict[int, str]) -> None:
    with LedgerReader(reader_dsn(settings), projection_for(settings)) as reader:
        page = reader.history(TENANT, "alice", limit=100)
        assert page.entries and all(entry.actor == actors[entry.sequence] for entry in page.entries)
        posted = reader.transfer(TENANT, "t-2")
        assert posted is not None and (posted.created_by, posted.updated_by) == (
            GATEWAY,
            API_KEY_ID,
        )
        expired = reader.transfer(TENANT, "t-3")
        assert expired is not None and expired.status == "expired"
        assert (expired.created_by, expired.updated_by) == (GATEWAY, SYSTEM_ACTOR)
        multi = reader.transaction(TENANT, "x-1")
        assert multi is not None and (multi.created_by, multi.updated_by) == (API_KEY_ID,) * 2


def check_the_api(settings: Settings, actors: dict[int, str]) -> None:
    token = create_api_key(settings, TENANT).token
    headers = {"Authorization": f"Bearer {token}"}
    with api_in_this_process(settings) as client:
        response = client.get("/v1/accounts/alice/entries?limit=100", headers=headers)
        assert response.status_code == 200, response.text
        entries = response.json()["entries"]
        assert entries and all(entry["actor"] == actors[entry["sequence"]] for entry in entries)
        transfer_read = client.get("/v1/transfers/t-3", headers=headers).json()
        assert (transfer_read["created_by"], transfer_read["updated_by"]) == (GATEWAY, "system")
        transaction_read = client.get("/v1/transactions/x-1", headers=headers).json()
        assert transaction_read["created_by"] == API_KEY_ID
        period = (
            f"from={to_datetime(T0_US).isoformat()}"
            f"&to={to_datetime(T0_US + 60 * SECOND_US).isoformat()}"
        ).replace("+", "%2B")
        statement = client.get(f"/v1/accounts/alice/statement?{period}", headers=headers)
        assert statement.status_code == 200, statement.text
        lines = statement.json()["entries"]
        assert {line["actor"] for line in lines} == {GATEWAY, API_KEY_ID, SYSTEM_ACTOR, ""}
        assert all(line["actor"] == actors[line["sequence"]] for line in lines)
        as_csv = client.get(f"/v1/accounts/alice/statement?{period}&format=csv", headers=headers)
        assert as_csv.status_code == 200 and "payments-gw:v1" in as_csv.text
        streamed = stream_events(client, headers, len(actors))
        assert {event["sequence"]: event["actor"] for event in streamed} == actors


def stream_events(client: httpx.Client, headers: dict[str, str], count: int) -> list[Any]:
    """The first ``count`` events of the tenant's live stream (``/v1/events/stream``)."""
    events: list[Any] = []
    timeout = httpx.Timeout(30.0)
    with client.stream("GET", "/v1/events/stream", headers=headers, timeout=timeout) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line.removeprefix("data: ")))
                if len(events) == count:
                    return events
    raise AssertionError(f"the stream ended after {len(events)} events")


def check_verify(settings: Settings) -> None:
    group = f"{settings.topic_prefix}verify-actor"
    clean = verify(settings, group=f"{group}-clean")
    assert clean.ok, list(clean.lines())
    with psycopg.connect(settings.database_dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE ledger.event_chain SET actor = 'intruder:v1' WHERE tenant_id = %s"
            " AND sequence = 1",  # an AccountOpened: no journal rows
            (TENANT,),
        )
        conn.execute(
            "UPDATE ledger.entries SET actor = 'intruder:v1' WHERE tenant_id = %s AND sequence = 4",
            (TENANT,),
        )
    report = verify(settings, group=f"{group}-tampered")
    assert report.audits[TENANT].problems == [
        f"PostgreSQL event_chain sequence 1 holds actor 'intruder:v1', the log {GATEWAY!r}",
        "PostgreSQL entries: 2 journal rows name another actor than their event"
        " (the first at sequence 4)",
    ]


@contextmanager
def api_in_this_process(settings: Settings) -> Iterator[httpx.Client]:
    """The real HTTP API on a port of this run's range, reading the projected database."""
    api = build_api_settings(settings, limits={"port": free_port_range(1)})
    with (
        serving_api(settings, api, "api-event-actor") as base_url,
        httpx.Client(base_url=base_url, timeout=30) as client,
    ):
        yield client


# --------------------------------------------------------------------------- the real pipeline

RUN = uuid.uuid4().hex[:6]  # the signing key files live in the stack home: a fresh tenant each run
PIPELINE_TENANT = f"actor-api-{RUN}"
PROJECTED_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def api_stack(
    stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiStack]:
    logs = tmp_path_factory.mktemp("event-actor")
    flags = ["--wait-timeout-ms=20000", "--api-key-cache-ttl-s=0"]
    with running_api_stack(stack_settings, Path(logs), (PIPELINE_TENANT,), flags) as stack:
        yield stack
    key_file_path(stack_settings.home, "api", PIPELINE_TENANT).unlink(missing_ok=True)


def test_commands_through_the_api_and_the_processor_name_the_apis_key(
    api_stack: ApiStack,
) -> None:
    """The real processor verifies the API's signature and writes its key id as the actor; a
    pending transfer that expires is the system's; PostgreSQL, the API's reads and verify agree."""
    settings = api_stack.settings
    granted = grant(settings, "api", PIPELINE_TENANT)
    assert granted.accepted
    api_actor = "api:v1"  # the first generation of the API's key for the tenant
    with api_stack.client(PIPELINE_TENANT) as client:
        for account_id in ("cash", "alice"):
            body = {"account_id": account_id, "currency": "USD", "asset_scale": 2}
            answer = client.post("/v1/accounts", json=body, headers={"Idempotency-Key": account_id})
            assert answer.status_code == 201, answer.text
        for transfer_id, extra in (("t-1", {}), ("t-2", {"pending": True, "pending_timeout_s": 1})):
            body = {
                "transfer_id": transfer_id,
                "debit_account_id": "cash",
                "credit_account_id": "alice",
                "amount": 25,
                "currency": "USD",
                **extra,
            }
            answer = client.post(
                "/v1/transfers", json=body, headers={"Idempotency-Key": transfer_id}
            )
            assert answer.status_code == 201, answer.text
        expired = wait_for_status(client, "t-2", "expired")
        assert (expired["created_by"], expired["updated_by"]) == (api_actor, SYSTEM_ACTOR)
        posted = client.get("/v1/transfers/t-1").json()
        assert (posted["created_by"], posted["updated_by"]) == (api_actor, api_actor)
        entries = client.get("/v1/accounts/alice/entries?limit=100").json()["entries"]
    assert sorted((entry["kind"], entry["actor"]) for entry in entries) == [
        ("pending", api_actor),
        ("posted", api_actor),
        ("released", SYSTEM_ACTOR),
    ]
    with psycopg.connect(settings.database_dsn) as conn:
        chain = conn.execute(
            "SELECT sequence, actor FROM ledger.event_chain WHERE tenant_id = %s ORDER BY sequence",
            (PIPELINE_TENANT,),
        ).fetchall()
    assert chain == [(1, api_actor), (2, api_actor), (3, api_actor), (4, api_actor), (5, "system")]
    report = verify(settings, group=f"{settings.topic_prefix}verify-actor")
    assert report.ok, list(report.lines())


def wait_for_status(client: httpx.Client, transfer_id: str, status: str) -> Any:
    deadline = time.monotonic() + PROJECTED_TIMEOUT_S
    while time.monotonic() < deadline:
        answer = client.get(f"/v1/transfers/{transfer_id}")
        if answer.status_code == 200 and answer.json()["status"] == status:
            return answer.json()
        time.sleep(0.2)
    raise AssertionError(f"{transfer_id} is not {status} after {PROJECTED_TIMEOUT_S} s")
