"""Balance monitors on the real broker (issue 18 §1, decision 0058): a real processor, killed
with SIGKILL while commands arrive, writes each notification to ``ledger.notifications`` exactly
once, exactly at each crossing an independent fold of ``ledger.events`` finds, with the monitors
surviving every restore; a replay of the command log into fresh topics writes byte-identical
notifications. Set STREAMLEDGER_CRASH_SEED to replay a run; the seed is printed either way.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Producer

from infra.topics import ledger_topic_names
from kafka_adapter.security import ADMIN_PRINCIPAL, client_config
from schemas.codec import decode_event, decode_notification
from schemas.keys import notification_key
from schemas.model import (
    Command,
    CreateMonitor,
    DeleteMonitor,
    Event,
    MonitorCreated,
    MonitorDeleted,
    MonitorTriggered,
    OpenAccount,
    Transfer,
)
from streamledger.settings import Settings, replace
from tests.conftest import delete_topics
from tests.system.processor_harness import (
    ProcessorProcess,
    TopicRecord,
    read_topic,
    wait_until_consumed,
)
from tests.system.test_processor_crash import Feeder
from tests.system.test_routing_time_replies import create_replay_topics

pytestmark = [pytest.mark.system, pytest.mark.slow]
TENANTS = ("watch-a", "watch-b", "watch-c")
TRANSFERS_PER_TENANT = 120
KILLS = 3
STARTUP_TIMEOUT_S = 60.0  # a processor child starting, restoring: seconds on a loaded machine
FINISH_TIMEOUT_S = 90.0
RESTORED = "restored partition"
LOW = 1_000  # alice's low-balance threshold (minor units)


def crash_seed() -> int:
    seed = int(os.environ.get("STREAMLEDGER_CRASH_SEED") or random.SystemRandom().randrange(10**6))
    print(f"monitor crash seed: {seed} (replay with STREAMLEDGER_CRASH_SEED={seed})")
    return seed


def tenant_commands(tenant: str, chance: random.Random) -> list[Command]:
    """Accounts, two monitors on alice (one created mid-stream, one deleted mid-stream), and
    transfers that move alice's balance up and down across the thresholds."""

    def header(key: str) -> dict[str, object]:
        return {"tenant_id": tenant, "idempotency_key": key, "submitted_at_us": 1}

    commands: list[Command] = [
        OpenAccount(**header("open-cash"), account_id="cash", currency="EUR", asset_scale=2),  # type: ignore[arg-type]
        OpenAccount(
            **header("open-alice"),  # type: ignore[arg-type]
            account_id="alice",
            currency="EUR",
            asset_scale=2,
            debits_must_not_exceed_credits=True,
        ),
        CreateMonitor(
            **header("monitor-low"),  # type: ignore[arg-type]
            monitor_id="low",
            account_id="alice",
            field="available",
            operator="<",
            threshold=LOW,
        ),
    ]
    for number in range(TRANSFERS_PER_TENANT):
        if number == TRANSFERS_PER_TENANT // 3:
            commands.append(
                CreateMonitor(
                    **header("monitor-rich"),  # type: ignore[arg-type]
                    monitor_id="rich",
                    account_id="alice",
                    field="posted",
                    operator=">=",
                    threshold=3 * LOW,
                )
            )
        if number == 2 * TRANSFERS_PER_TENANT // 3:
            commands.append(DeleteMonitor(**header("delete-low"), monitor_id="low"))  # type: ignore[arg-type]
        inflow = chance.random() < 0.5
        commands.append(
            Transfer(
                **header(f"t{number}"),  # type: ignore[arg-type]
                transfer_id=f"t{number}",
                debit_account_id="cash" if inflow else "alice",
                credit_account_id="alice" if inflow else "cash",
                amount=chance.randrange(100, 900),
                currency="EUR",
            )
        )
    return commands


def interleaved(chance: random.Random) -> list[Command]:
    per_tenant = [tenant_commands(tenant, chance) for tenant in TENANTS]
    return [command for group in zip(*per_tenant, strict=True) for command in group]


def expected_edges(events: list[Event]) -> list[tuple[str, int, str, bool, int]]:
    """An independent reference: (tenant, sequence, monitor, triggered, value) of every edge,
    from the events alone (alice is credit-normal; available = credits_posted - debits_posted
    - debits_pending, posted = credits_posted - debits_posted)."""
    edges: list[tuple[str, int, str, bool, int]] = []
    monitors: dict[tuple[str, str], tuple[MonitorCreated, bool]] = {}
    for event in sorted(events, key=lambda e: (e.tenant_id, e.sequence)):
        if isinstance(event, MonitorDeleted):
            del monitors[(event.tenant_id, event.monitor_id)]
            continue
        if isinstance(event, MonitorCreated):
            monitors[(event.tenant_id, event.monitor_id)] = (event, False)
        for (tenant, monitor_id), (created, was) in list(monitors.items()):
            if tenant != event.tenant_id:
                continue
            if isinstance(event, MonitorCreated) and event.monitor_id != monitor_id:
                continue
            for balance in event.balances:
                if balance.account_id != created.account_id:
                    continue
                posted = balance.credits_posted - balance.debits_posted
                value = posted - balance.debits_pending if created.field == "available" else posted
                now = (
                    value < created.threshold
                    if created.operator == "<"
                    else value >= created.threshold
                )
                if now != was:
                    edges.append((tenant, event.sequence, monitor_id, now, value))
                    monitors[(tenant, monitor_id)] = (created, now)
    return edges


def by_partition(records: list[TopicRecord]) -> dict[int, list[tuple[bytes, bytes | None]]]:
    grouped: dict[int, list[tuple[bytes, bytes | None]]] = {}
    for record in records:
        grouped.setdefault(record.partition, []).append((record.key, record.value))
    return grouped


def test_kill_9_gives_each_notification_once_at_each_crossing_and_replay_the_same_bytes(
    ledger_settings: Settings, tmp_path: Path
) -> None:
    seed = crash_seed()
    chance = random.Random(seed)
    commands = interleaved(chance)
    feeder = Feeder(ledger_settings, commands)
    processor = ProcessorProcess(ledger_settings, "a", tmp_path)
    for _ in range(KILLS):
        processor.wait_for_log(RESTORED, STARTUP_TIMEOUT_S)
        time.sleep(chance.uniform(0.1, 1.0))
        processor.kill()
        processor = ProcessorProcess(ledger_settings, "a", tmp_path)
    feeder.join()
    try:
        wait_until_consumed(ledger_settings, FINISH_TIMEOUT_S, [processor])
    finally:
        assert processor.stop() == 0, processor.log()
    names = ledger_topic_names(ledger_settings)
    events = [decode_event(r.value or b"") for r in read_topic(ledger_settings, names.events)]
    written = read_topic(ledger_settings, names.notifications)
    notes = [decode_notification(r.value or b"") for r in written]

    # exactly once: every key once (the topic is compacted, but not within 7 days)
    assert not [key for key, count in Counter(r.key for r in written).items() if count > 1]
    assert all(r.key == notification_key(note) for r, note in zip(written, notes, strict=True))
    # exactly at each crossing, as the events say, and each names its event's hash
    found = [
        (n.tenant_id, n.sequence, n.monitor_id, isinstance(n, MonitorTriggered), n.value)
        for n in notes
    ]
    expected = expected_edges(events)
    assert sorted(found) == sorted(expected)
    assert len(expected) > len(TENANTS) * 4, "the workload crossed the thresholds too rarely"
    hashes = {(e.tenant_id, e.sequence): e.hash for e in events}
    assert all(n.event_hash == hashes[(n.tenant_id, n.sequence)] for n in notes)
    # per partition, in sequence order per tenant (written with the events that caused them)
    for tenant in TENANTS:
        sequences = [n.sequence for n in notes if n.tenant_id == tenant]
        assert sequences == sorted(sequences)

    replayed = replay_notifications(ledger_settings, tmp_path)
    assert replayed == by_partition(written)


def replay_notifications(
    settings: Settings, tmp_path: Path
) -> dict[int, list[tuple[bytes, bytes | None]]]:
    """The command log (with its timestamps and ticks) produced again into fresh topics and
    decided by a fresh processor: its ``ledger.notifications``, per partition."""
    log = read_topic(settings, ledger_topic_names(settings).commands)
    replay = replace(settings, topic_prefix=f"r{uuid.uuid4().hex[:8]}.")
    create_replay_topics(replay)
    try:
        producer = Producer({**client_config(replay, ADMIN_PRINCIPAL)})
        for record in log:
            producer.produce(
                ledger_topic_names(replay).commands,
                record.value,
                record.key,
                partition=record.partition,
                timestamp=record.timestamp_ms,
            )
        assert producer.flush(30) == 0
        second = ProcessorProcess(replay, "a", tmp_path)
        try:
            wait_until_consumed(replay, FINISH_TIMEOUT_S, [second])
        finally:
            assert second.stop() == 0, second.log()
        return by_partition(read_topic(replay, ledger_topic_names(replay).notifications))
    finally:
        delete_topics(replay, [*ledger_topic_names(replay).all()])
