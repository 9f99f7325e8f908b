"""The pure parts of notifications: signatures, backoff, routing and commit positions, bodies,
and the live stream's grouping and resume point."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.event_stream import events_of, sse_message, start_after
from api.problems import ApiProblemError
from api.webhooks import url_problem
from notifications.payloads import event_body, event_types_problem, json_default, subscribes_to
from notifications.retries import retry_delay_s
from notifications.routing import PositionBook, Route, route
from notifications.signing import (
    new_secret,
    parse_header,
    signature,
    signature_header,
    signature_problem,
)
from schemas.model import AccountBalance, Event, TransferPosted
from tests.unit import contract_strategies

SECRET = "whsec_" + "A" * 43
BODY = b'{"id":"acme:3","type":"TransferPosted"}'


def test_a_signature_verifies_and_a_tampered_body_does_not() -> None:
    header = signature_header(SECRET, 1_700_000_000, BODY)
    assert signature_problem(SECRET, header, BODY, now_s=1_700_000_010) is None
    tampered = BODY.replace(b"acme:3", b"acme:4")
    assert signature_problem(SECRET, header, tampered, now_s=1_700_000_010) is not None
    other = new_secret()
    assert signature_problem(other, header, BODY, now_s=1_700_000_010) is not None


def test_a_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert signature(SECRET, 1_700_000_000, BODY) == expected
    assert signature_header(SECRET, 1_700_000_000, BODY) == f"t=1700000000,v1={expected}"


def test_an_old_or_future_timestamp_is_refused_outside_the_tolerance() -> None:
    header = signature_header(SECRET, 1_000, BODY)
    assert signature_problem(SECRET, header, BODY, now_s=1_300, tolerance_s=300) is None
    assert signature_problem(SECRET, header, BODY, now_s=1_301, tolerance_s=300) is not None
    assert signature_problem(SECRET, header, BODY, now_s=699, tolerance_s=300) is not None
    assert signature_problem(SECRET, header, BODY, now_s=10**9, tolerance_s=0) is None


@pytest.mark.parametrize("header", ["", "t=1", "v1=ab", "t=x,v1=ab", "t=1;v1=ab", "x" * 2000])
def test_malformed_headers_are_refused(header: str) -> None:
    assert parse_header(header) is None
    assert signature_problem(SECRET, header, BODY, now_s=1) is not None


def test_any_of_several_v1_signatures_may_match() -> None:
    good = signature(SECRET, 5, BODY)
    assert signature_problem(SECRET, f"t=5,v1=00,v1={good}", BODY, now_s=5) is None


@given(st.integers(1, 200), st.floats(0, 1))
def test_backoff_is_bounded_never_zero_and_grows(failures: int, fraction: float) -> None:
    delay = retry_delay_s(failures, base_ms=500, max_ms=60_000, random_fraction=fraction)
    assert 0.25 <= delay <= 60.0
    ceiling = min(500 * 2 ** min(failures - 1, 32), 60_000) / 1000
    assert ceiling / 2 <= delay <= ceiling


def test_routing_queues_spills_or_dead_letters() -> None:
    assert route(enabled=True, spilling=False, queued=0, queue_max=2) is Route.QUEUE
    assert route(enabled=True, spilling=False, queued=2, queue_max=2) is Route.SPILL
    assert route(enabled=True, spilling=True, queued=0, queue_max=2) is Route.SPILL
    assert route(enabled=False, spilling=False, queued=0, queue_max=2) is Route.DEAD


def test_the_commit_position_waits_for_the_oldest_held_delivery() -> None:
    book = PositionBook()
    for offset in range(10, 15):
        book.read(0, offset)
    book.hold(0, 11)
    book.hold(0, 11)
    book.hold(0, 13)
    assert book.to_commit() == {0: 11}
    book.committed({0: 11})
    assert book.to_commit() == {}
    book.release(0, 11)
    assert book.to_commit() == {}  # still one delivery of offset 11 in memory
    book.release(0, 11)
    assert book.to_commit() == {0: 13}
    book.release(0, 13)
    assert book.to_commit() == {0: 15}
    book.forget([0])
    book.release(0, 13)  # a late release after a revoke is harmless
    assert book.to_commit() == {}


def test_offsets_that_go_back_stop_the_process() -> None:
    book = PositionBook()
    book.read(1, 5)
    with pytest.raises(AssertionError):
        book.read(1, 4)


def transfer_posted() -> TransferPosted:
    return TransferPosted(
        tenant_id="acme", sequence=3, event_id="acme:3", idempotency_key="pay-1",
        effective_at_us=1_700_000_000_200_000,
        balances=(AccountBalance(account_id="cash", currency="USD", debits_posted=2500),),
        prev_hash=b"\x01" * 32, hash=b"\x02" * 32, transfer_id="t-1",
        debit_account_id="cash", credit_account_id="alice", amount=2500, currency="USD",
        reverses=None,
    )  # fmt: skip


def test_the_body_names_the_event_and_carries_its_fields() -> None:
    document = json.loads(event_body(transfer_posted()))
    assert document["id"] == "acme:3"
    assert document["type"] == "TransferPosted"
    assert document["sequence"] == 3
    assert document["data"]["amount"] == 2500
    assert document["data"]["hash"] == "02" * 32
    assert "sequence" not in document["data"]


def test_event_type_lists_are_checked() -> None:
    assert event_types_problem(["*"]) is None
    assert event_types_problem(["TransferPosted", "PendingExpired"]) is None
    assert event_types_problem([]) is not None
    assert event_types_problem(["TransferPosted", "TransferPosted"]) is not None
    assert event_types_problem(["transfer.posted"]) is not None
    assert subscribes_to(("*",), "AccountOpened")
    assert not subscribes_to(("TransferPosted",), "AccountOpened")


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://example.com/hooks", True),
        ("http://127.0.0.1:37001/x?y=1", True),
        ("ftp://example.com/", False),
        ("https:///nohost", False),
        ("https://user:pw@example.com/", False),
        ("https://example.com/a b", False),
        ("https://example.com/" + "a" * 3000, False),
    ],
)
def test_endpoint_urls_are_checked(url: str, ok: bool) -> None:
    assert (url_problem(url) is None) is ok


def test_the_stream_resumes_after_last_event_id_or_after() -> None:
    assert start_after({}, {}) == 0
    assert start_after({"last-event-id": "41"}, {"after": "7"}) == 41
    assert start_after({}, {"after": "7"}) == 7
    for bad in ("-1", "x", "1e3", "9" * 19):
        with pytest.raises(ApiProblemError):
            start_after({"last-event-id": bad}, {})


def test_stream_rows_group_into_events_with_their_entries() -> None:
    moment = datetime(2024, 1, 1, tzinfo=UTC)
    head = (2, b"\x02" * 32, moment, None, None, "TransferPosted", "t-1")
    rows = [
        (1, b"\x01" * 32, moment, "cash", "USD", *(None,) * 11, "payments-gw:v1"),
        (*head, "cash", "posted", "debit", 5, "USD", 5, 0, 0, 0, "api:v3"),
        (*head, "alice", "posted", "credit", 5, "USD", 0, 5, 0, 0, "api:v3"),
    ]
    events = events_of(rows)
    assert [event.actor for event in events] == ["payments-gw:v1", "api:v3"]  # contract v1.7
    assert [event.sequence for event in events] == [1, 2]
    assert events[0].type == "AccountOpened"
    assert events[0].data == {"account_id": "cash", "currency": "USD"}
    assert events[1].type == "TransferPosted"
    assert [entry["account_id"] for entry in events[1].data["entries"]] == ["cash", "alice"]
    message = sse_message("acme", events[1]).decode()
    assert message.startswith("id: 2\nevent: TransferPosted\ndata: {")
    assert '"actor":"api:v3"' in message
    assert message.endswith("\n\n")


def test_the_receiver_snippet_in_the_docs_agrees_with_the_signer() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "webhooks.md").read_text()
    snippet = text.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, object] = {}
    exec(snippet, namespace)  # the documented receiver code, as a receiver would paste it
    verify = namespace["verify"]
    assert callable(verify)
    header = signature_header(SECRET, 1_700_000_000, BODY)
    assert verify(SECRET, header, BODY, 1_700_000_100) is True
    assert verify(SECRET, header, BODY + b" ", 1_700_000_100) is False
    assert verify(SECRET, header, BODY, 1_700_001_000) is False
    assert verify(new_secret(), header, BODY, 1_700_000_100) is False


def test_streamledger_run_supervises_dispatchers_after_the_supervisor_with_a_heartbeat() -> None:
    from pathlib import Path

    from pipeline.liveness import NOTIFY_HEARTBEAT
    from pipeline.supervisor import (
        NOTIFY_ROLE,
        ROLE_DEPENDENCIES,
        ROLE_HEARTBEATS,
        RunSettings,
        plan_children,
        supervisor_metrics_port,
    )
    from streamledger.settings import Settings

    settings = Settings(home=Path("/nonexistent"), metrics_port=9400)
    run = RunSettings(processors=2, projections=1, verifier=True, notifiers=2)
    specs = plan_children(settings, run)
    notify = [spec for spec in specs if spec.role == NOTIFY_ROLE]
    assert [(spec.name, spec.metrics_port) for spec in notify] == [
        ("notify-0", 9405),
        ("notify-1", 9406),
    ]
    assert notify[0].argv[-1] == "notify"
    assert notify[0].environment["STREAMLEDGER_METRICS_PORT"] == "9405"
    assert supervisor_metrics_port(settings, run) == 9404  # where it was without dispatchers
    assert ROLE_HEARTBEATS[NOTIFY_ROLE] == NOTIFY_HEARTBEAT
    assert ROLE_DEPENDENCIES[NOTIFY_ROLE] == ("kafka", "postgresql")
    assert not [s for s in plan_children(settings, RunSettings()) if s.role == NOTIFY_ROLE]


def test_a_multi_leg_event_streams_its_transaction_id_and_every_posting_side() -> None:
    moment = datetime(2024, 1, 1, tzinfo=UTC)
    head = (3, b"\x03" * 32, moment, None, None, "TransactionPosted")
    rows = [
        (*head, "pay/0", "seller-a", "posted", "credit", 7, "USD", 0, 7, 0, 0, "system"),
        (*head, "pay/1", "seller-b", "posted", "credit", 3, "USD", 0, 3, 0, 0, "system"),
        (*head, "pay/0", "pool", "posted", "debit", 7, "USD", 10, 0, 0, 0, "system"),
        (*head, "pay/1", "pool", "posted", "debit", 3, "USD", 10, 0, 0, 0, "system"),
    ]
    (event,) = events_of(rows)
    assert event.type == "TransactionPosted" and event.data["transaction_id"] == "pay"
    assert "transfer_id" not in event.data
    assert [(e["transfer_id"], e["account_id"]) for e in event.data["entries"]] == [
        ("pay/0", "seller-a"),
        ("pay/1", "seller-b"),
        ("pay/0", "pool"),
        ("pay/1", "pool"),
    ]


@given(contract_strategies.events)
def test_the_body_is_the_json_of_the_events_fields_as_asdict_gives_them(event: Event) -> None:
    fields = dataclasses.asdict(event)
    fields["metadata"] = dict(event.metadata)
    for header in ("tenant_id", "sequence", "event_id", "effective_at_us"):
        fields.pop(header)
    expected = {
        "id": event.event_id,
        "type": type(event).__name__,
        "tenant_id": event.tenant_id,
        "sequence": event.sequence,
        "effective_at_us": event.effective_at_us,
        "data": fields,
    }
    encoded = json.dumps(expected, default=json_default, separators=(",", ":"), ensure_ascii=False)
    assert event_body(event) == encoded.encode("utf-8")
