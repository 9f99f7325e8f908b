"""The processor transport's consumer lag on the real broker, from cached high watermarks.

``KafkaTransport.consumer_lag`` reads librdkafka's cached high watermark (updated by every fetch
response) instead of asking the broker, which stalled the loop (bench/README.md, 2026-12-06).
The lag must still be right: zero once everything is consumed, and the new records' count once
more arrive, without the loop consuming them.
"""

from __future__ import annotations

import time

import pytest

from processors.kafka_clients import KafkaTransport
from processors.processor_settings import build_processor_settings
from schemas.model import OpenAccount
from streamledger.settings import Settings
from tests.system.processor_harness import produce_commands

pytestmark = pytest.mark.system
WAIT_S = 30.0
POLL_S = 0.1
TENANT = "lag-tenant"


def _commands(first: int, count: int) -> list[OpenAccount]:
    return [
        OpenAccount(
            tenant_id=TENANT,
            idempotency_key=f"open-{number}",
            submitted_at_us=1_000_000 + number,
            account_id=f"acct-{number}",
            currency="EUR",
            asset_scale=2,
        )
        for number in range(first, first + count)
    ]


def _wait_for_lag(transport: KafkaTransport, expected: int) -> dict[int, int]:
    deadline = time.monotonic() + WAIT_S
    lag: dict[int, int] = {}
    while time.monotonic() < deadline:
        lag = transport.consumer_lag()
        if lag and sum(lag.values()) == expected:
            return lag
        time.sleep(POLL_S)
    raise AssertionError(f"lag {lag}, expected {expected} in all")


def test_consumer_lag_counts_unconsumed_records_without_asking_the_broker(
    ledger_settings: Settings,
) -> None:
    settings = build_processor_settings(ledger_settings, instance_id="lag", metrics_port=0)
    transport = KafkaTransport(settings)
    assigned: list[int] = []
    produce_commands(ledger_settings, _commands(0, 20))
    transport.start(assigned.extend, lambda _: None, lambda _: None)
    try:
        consumed = 0
        deadline = time.monotonic() + WAIT_S
        while consumed < 20 and time.monotonic() < deadline:
            consumed += len(transport.take_batch(100, POLL_S))
        assert consumed == 20, f"consumed {consumed} of 20"
        assert sorted(assigned) == list(range(ledger_settings.partitions))
        assert set(_wait_for_lag(transport, 0).values()) == {0}
        produce_commands(ledger_settings, _commands(20, 7))  # one tenant: one partition
        lag = _wait_for_lag(transport, 7)
        assert sorted(lag.values())[-1] == 7, lag
    finally:
        transport.close(flush_timeout_s=5)
