"""The API's pure parts: strict bodies, limits, API key tokens, settings, the outcome cache and
the idempotency judgement (same fingerprint → the original; another payload → 409 naming it)."""

from __future__ import annotations

import asyncio
import gc
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import KafkaError
from prometheus_client import generate_latest

from api.api_keys import is_token_shaped, new_api_key, token_digest
from api.app import (
    BEARER_PATTERN,
    ROUTES,
    UNMATCHED_ROUTE,
    parse_after,
    parse_as_of,
    parse_limit,
    route_template,
)
from api.bodies import OpenAccountBody, TransferBody, check_limits, decode_body, to_command
from api.gateway import check_same_command
from api.http_protocol import malformed_request_body
from api.metrics import ApiMetrics
from api.outcomes import OutcomeCache, OutcomeFeed, split_outcome_key
from api.problems import ApiProblemError
from api.readiness import CachedProbe, topic_problem
from api.settings import ApiSettings, build_api_settings
from ledger import command_fingerprint
from schemas.model import Outcome, OutcomeStatus, Transfer
from streamledger.errors import SettingError
from streamledger.settings import Settings

TRANSFER = (
    b'{"transfer_id": "t-1", "debit_account_id": "a", "credit_account_id": "b",'
    b' "amount": 5, "currency": "USD", "metadata": {"z": "1", "a": "2"}}'
)


def command(amount: int = 5, key: str = "k-1") -> Transfer:
    body = decode_body(TransferBody, TRANSFER.replace(b'"amount": 5', b'"amount": %d' % amount))
    made = to_command(body, tenant_id="acme", idempotency_key=key, submitted_at_us=1)
    assert isinstance(made, Transfer)
    return made


def outcome_of(transfer: Transfer) -> Outcome:
    fingerprint, fields = command_fingerprint(transfer)
    return Outcome(
        tenant_id=transfer.tenant_id,
        idempotency_key=transfer.idempotency_key,
        command_type="Transfer",
        fingerprint=fingerprint,
        field_fingerprints=fields,
        status=OutcomeStatus.ACCEPTED,
        event_sequences=(3,),
        decided_at_us=10,
    )


def test_a_body_becomes_the_command_with_tenant_and_key_from_the_request() -> None:
    made = command()
    assert (made.tenant_id, made.idempotency_key, made.amount) == ("acme", "k-1", 5)
    assert made.metadata == (("a", "2"), ("z", "1"))  # sorted, as the contract wants


@pytest.mark.parametrize(
    ("raw", "slug", "field"),
    [
        (TRANSFER.replace(b'"amount": 5', b'"amount": 5.0'), "invalid-body", "amount"),
        (TRANSFER.replace(b'"amount": 5', b'"amount": "5"'), "invalid-body", "amount"),
        (TRANSFER.replace(b'"amount": 5', b'"amount": "5.25"'), "invalid-body", "amount"),
        (TRANSFER.replace(b'"amount": 5', b'"amount": true'), "invalid-body", "amount"),
        (
            TRANSFER.replace(b'"amount": 5', b'"amount": 5, "tenant_id": "x"'),
            "invalid-body",
            "tenant_id",
        ),
        (b'{"transfer_id": "t"}', "invalid-body", "debit_account_id"),
        (b"not json", "malformed-json", None),
        (b"", "malformed-json", None),
        (b"1" * 5000, "invalid-body", None),  # valid JSON, but not an object
        (TRANSFER.replace(b'"amount": 5', b'"amount": ' + b"9" * 5000), "invalid-body", "amount"),
    ],
)
def test_malformed_bodies_are_refused_naming_the_member(
    raw: bytes, slug: str, field: str | None
) -> None:
    with pytest.raises(ApiProblemError) as caught:
        decode_body(TransferBody, raw)
    assert caught.value.kind.slug == slug
    assert caught.value.extensions.get("field") == field


def test_limits_are_the_contracts() -> None:
    with pytest.raises(ApiProblemError) as caught:
        check_limits(command(amount=0))
    assert caught.value.kind.status == 422 and caught.value.extensions == {"field": "amount"}
    body = decode_body(
        OpenAccountBody, b'{"account_id": "a/b", "currency": "USD", "asset_scale": 2}'
    )
    made = to_command(body, tenant_id="acme", idempotency_key="k", submitted_at_us=1)
    with pytest.raises(ApiProblemError, match="account_id"):
        check_limits(made)


def test_same_payload_is_the_original_other_payload_is_409_naming_the_field() -> None:
    stored = outcome_of(command())
    check_same_command(stored, command())  # a retry: no error
    with pytest.raises(ApiProblemError) as caught:
        check_same_command(stored, command(amount=6))
    assert caught.value.kind.status == 409 and caught.value.extensions["field"] == "amount"


def test_api_keys_are_random_and_only_their_digest_is_kept() -> None:
    first, second = new_api_key("acme"), new_api_key("acme")
    assert first.token != second.token and is_token_shaped(first.token)
    assert len(token_digest(first.token)) == 32
    assert not is_token_shaped("Bearer " + first.token) and not is_token_shaped("slk_x")
    with pytest.raises(SettingError, match="tenant"):
        new_api_key("bad/tenant")


def test_settings_name_the_bad_value(tmp_path: object) -> None:
    shared = Settings(home=tmp_path)  # type: ignore[arg-type]
    api = build_api_settings(shared, limits={"wait_timeout_ms": 10})
    assert api.wait_timeout_s == 0.01 and "streamledger_api" in api.reader_dsn
    with pytest.raises(SettingError, match=r"--wait-timeout-ms"):
        build_api_settings(shared, limits={"wait_timeout_ms": -1})
    with pytest.raises(SettingError, match=r"--reader-url"):
        build_api_settings(shared, reader_url="mysql://x")
    with pytest.raises(SettingError, match=r"--host"):
        ApiSettings(reader_dsn="postgresql://x", host="bad host")


def test_the_outcome_cache_is_bounded_and_wakes_waiters() -> None:
    async def scenario() -> None:
        cache = OutcomeCache(entries_max=2)
        first = outcome_of(command(key="k-1"))
        waiting = cache.wait_for(("acme", "k-1"))
        assert not waiting.done()
        cache.put(first)
        assert await asyncio.wait_for(waiting, 1) is first
        stale = cache.wait_for(("acme", "k-1"), stale=first)
        assert not stale.done()  # a stale entry is not an answer
        cache.stop_waiting(("acme", "k-1"), stale)
        cache.put(outcome_of(command(key="k-2")))
        cache.put(outcome_of(command(key="k-3")))
        assert len(cache) == 2 and cache.evicted == 1 and cache.get(("acme", "k-1")) is None
        cache.forget(("acme", "k-3"))
        assert cache.get(("acme", "k-3")) is None and cache.waiting == 0

    asyncio.run(scenario())
    assert split_outcome_key(b"acme/a/b") == ("acme", "a/b")


def test_the_outcome_cache_evicts_in_write_order_and_stays_out_of_the_collector() -> None:
    cache = OutcomeCache(entries_max=3)
    for key in ("k-1", "k-2", "k-3"):
        cache.put(outcome_of(command(key=key)))
    rewritten = outcome_of(command(amount=7, key="k-1"))
    cache.put(rewritten)  # k-1 is now the newest: k-2 goes first
    cache.forget(("acme", "k-3"))  # a hole in the write order
    cache.put(outcome_of(command(key="k-4")))
    cache.put(outcome_of(command(key="k-5")))
    assert cache.get(("acme", "k-2")) is None and cache.evicted == 1
    assert cache.get(("acme", "k-1")) == rewritten and len(cache) == 3
    cache.put(outcome_of(command(key="k-6")))  # passes the hole, evicts k-1
    assert cache.get(("acme", "k-1")) is None and cache.evicted == 2
    assert [cache.get(("acme", key)) is not None for key in ("k-4", "k-5", "k-6")] == [True] * 3
    # the records and their order are plain str/bytes/int dicts: never walked by gc
    for kept in ("_records", "_positions", "_order"):
        assert not gc.is_tracked(getattr(cache, kept)), kept


def test_requests_are_counted_under_the_route_the_router_matched() -> None:
    balance = next(route for route in ROUTES if route.path.endswith("/balance"))
    assert route_template({"method": "GET", "route": balance}) == balance.path
    # the path matched but not the method (405), or nothing matched (404): not a route's label
    assert route_template({"method": "DELETE", "route": balance}) == UNMATCHED_ROUTE
    assert route_template({"method": "GET"}) == UNMATCHED_ROUTE


# --------------------------------------------------------------------------- query parameters

# Superscripts, Arabic-Indic and full-width digits, and what else int() would take.
UNICODE_DIGITS = ["\u00b2", "\u00b9\u00b2\u00b3", "\u0663", "\u0661\u0662", "\uff13", "1_0", "+5"]


@pytest.mark.parametrize(
    "text",
    [
        *("999999999999999999", "253402300800000000", "9" * 40, "-1", "", "x", "2024-13-01"),
        *UNICODE_DIGITS,
        *("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "\u0662\u0660-01-01"),
    ],
)
def test_a_bad_as_of_is_a_400_naming_it(text: str) -> None:
    with pytest.raises(ApiProblemError) as raised:
        parse_as_of(text)
    assert raised.value.kind.status == 400 and raised.value.extensions["field"] == "as_of"
    assert raised.value.detail.startswith("as_of: ")


def test_as_of_takes_microseconds_and_rfc_3339_in_utc() -> None:
    assert parse_as_of("0") == datetime(1970, 1, 1, tzinfo=UTC)
    assert parse_as_of("253402300799999999") == datetime.max.replace(tzinfo=UTC)
    assert parse_as_of("2024-01-01T02:00:00+02:00") == datetime(2024, 1, 1, tzinfo=UTC)
    assert parse_as_of("2024-01-01") == datetime(2024, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("text", ["0", "1001", "9" * 30, "", "-1", *UNICODE_DIGITS])
def test_a_bad_limit_is_a_400_naming_it(text: str) -> None:
    with pytest.raises(ApiProblemError) as raised:
        parse_limit(text, 1_000)
    assert raised.value.kind.status == 400 and raised.value.extensions["field"] == "limit"


@pytest.mark.parametrize(
    "cursor",
    [
        "\u00b2:posted",
        "\u0663:posted",
        "1",
        ":posted",
        "1:other",
        "9223372036854775808:posted",
        "9" * 30,
    ],
)
def test_a_bad_cursor_is_a_400_naming_after(cursor: str) -> None:
    with pytest.raises(ApiProblemError) as raised:
        parse_after(cursor)
    assert raised.value.extensions["field"] == "after"
    assert parse_after("9223372036854775807:posted") == "9223372036854775807:posted"


@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        ("Bearer KEY", True),
        ("bearer KEY", True),
        ("Bearer   KEY", True),
        ("Bearer KEY \t ", True),  # HTTP's optional whitespace: not part of the key
        ("Bearer KEY\xa0", False),  # a no-break space is not HTTP whitespace
        ("Bearer KEY\x0b", False),
        ("Bearer KEY other", False),
        ("Bearer\tKEY", False),
        ("BearerKEY", False),
        ("Basic KEY", False),
        ("Bearer ", False),
    ],
)
def test_the_bearer_credential_syntax(header: str, accepted: bool) -> None:
    match = BEARER_PATTERN.fullmatch(header.replace("KEY", "slk_0123456789abcdef_x-y"))
    assert (match is not None) == accepted
    if match is not None:
        assert match.group(1) == "slk_0123456789abcdef_x-y"


# --------------------------------------------------------------------------- readiness, parser


class FakePartition:
    def __init__(self, leader: int, error: object = None) -> None:
        self.leader = leader
        self.error = error


class FakeTopic:
    def __init__(self, partitions: dict[int, FakePartition], error: object = None) -> None:
        self.partitions = partitions
        self.error = error


class FakeMetadata:
    def __init__(self, topics: dict[str, FakeTopic]) -> None:
        self.topics = topics


def test_a_topic_is_usable_when_every_partition_has_a_leader() -> None:
    led = {0: FakePartition(1), 1: FakePartition(1)}
    assert topic_problem("c", FakeMetadata({"c": FakeTopic(led)})) is None
    assert "missing" in (topic_problem("c", FakeMetadata({})) or "")
    assert "no partitions" in (topic_problem("c", FakeMetadata({"c": FakeTopic({})})) or "")
    leaderless = {0: FakePartition(1), 1: FakePartition(-1)}
    assert "[1]" in (topic_problem("c", FakeMetadata({"c": FakeTopic(leaderless)})) or "")
    broken = FakeMetadata({"c": FakeTopic(led, error="UNKNOWN_TOPIC")})
    assert "UNKNOWN_TOPIC" in (topic_problem("c", broken) or "")


def test_a_request_the_http_parser_refuses_is_a_problem() -> None:
    problem = json.loads(malformed_request_body("Invalid method encountered"))
    assert problem["status"] == 400 and problem["type"].endswith("/malformed-request")
    assert problem["detail"].endswith("Invalid method encountered")


def test_readiness_limits_are_settings() -> None:
    api = build_api_settings(
        Settings(home=Path("/tmp/x")),
        limits={"readiness_timeout_ms": 250, "readiness_cache_ms": 0},
    )
    assert (api.readiness_timeout_s, api.readiness_cache_s) == (0.25, 0.0)
    with pytest.raises(SettingError, match="readiness_timeout_ms"):
        build_api_settings(Settings(home=Path("/tmp/x")), limits={"readiness_timeout_ms": 50})


def test_a_probe_is_asked_once_per_interval_and_once_for_concurrent_callers() -> None:
    asked: list[int] = []

    async def ask() -> str | None:
        asked.append(1)
        await asyncio.sleep(0.01)
        return None if len(asked) > 1 else "down"

    async def scenario() -> None:
        probe = CachedProbe(ask, cache_s=60.0)
        first = await asyncio.gather(*(probe.check() for _ in range(5)))
        assert len(asked) == 1 and all(result.problem == "down" for result in first)
        assert (await probe.check()).problem == "down"  # cached
        uncached = CachedProbe(ask, cache_s=0.0)
        assert (await uncached.check()).ok and len(asked) == 2

    asyncio.run(scenario())


def test_request_metrics_count_into_one_series_per_method_route_and_status() -> None:
    metrics = ApiMetrics()
    metrics.observe("GET", "/v1/accounts/{account_id}/balance", 200, 0.004)
    metrics.observe("GET", "/v1/accounts/{account_id}/balance", 200, 0.020)
    metrics.observe("GET", "/v1/accounts/{account_id}/balance", 404, 0.001)
    exposed = generate_latest(metrics.registry).decode()
    route = 'method="GET",route="/v1/accounts/{account_id}/balance"'
    assert f'streamledger_api_requests_total{{{route},status="200"}} 2.0' in exposed
    assert f'streamledger_api_requests_total{{{route},status="404"}} 1.0' in exposed
    assert f'streamledger_api_request_seconds_count{{{route},status="200"}} 2.0' in exposed
    assert f'streamledger_api_request_seconds_bucket{{le="0.005",{route},status="200"}} 1.0' in (
        exposed
    )


class EndOf:
    """A consumed message that is only a partition's end (``enable.partition.eof``)."""

    def __init__(self, topic: str, partition: int) -> None:
        self._topic, self._partition = topic, partition

    def error(self) -> KafkaError:
        return KafkaError(KafkaError._PARTITION_EOF)

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition


def test_the_feed_is_caught_up_only_once_every_outcomes_and_replies_partition_ended(
    tmp_path: Path,
) -> None:
    """Not before the replies' ends: until a replies partition is first fetched its start
    (``OFFSET_END``) is not fixed, and a RATE_LIMITED reply written then would be skipped."""
    feed = OutcomeFeed(
        Settings(home=tmp_path, kafka_security="plaintext"), OutcomeCache(entries_max=10)
    )
    feed._partitions = 2  # as start() learns it from the metadata
    for partition in range(2):
        feed._take(EndOf(feed.topic, partition))
    feed._take(EndOf(feed.replies_topic, 0))
    assert not feed.caught_up
    feed._take(EndOf(feed.replies_topic, 0))  # the same end again counts once
    assert not feed.caught_up
    feed._take(EndOf(feed.replies_topic, 1))
    assert feed.caught_up
