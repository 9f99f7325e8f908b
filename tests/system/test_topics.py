"""Topics as code against the real broker: declared configs, idempotence, drift."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka.admin._config import AlterConfigOpType, ConfigEntry, ConfigResource
from confluent_kafka.admin._resource import ResourceType
from confluent_kafka.cimpl import NewTopic

from infra import topics
from kafka_adapter.admin import admin_client
from streamledger.errors import TopicError
from streamledger.settings import replace
from tests.conftest import delete_topics, run_streamledger

pytestmark = pytest.mark.system

TIMEOUT_S = 30.0


def topic_configs(settings, name):
    client = admin_client(settings)
    resource = ConfigResource(ResourceType.TOPIC, name)
    entries = client.describe_configs([resource])[resource].result(timeout=TIMEOUT_S)
    return {key: entry.value for key, entry in entries.items()}


def wait_for_config(settings, name, key, value):
    """The broker applies an acknowledged config change asynchronously; wait until it shows."""
    deadline = time.monotonic() + TIMEOUT_S
    while topic_configs(settings, name)[key] != value:
        assert time.monotonic() < deadline, f"{name} {key} never became {value}"
        time.sleep(0.1)


def partition_count(settings, name):
    metadata = admin_client(settings).list_topics(topic=name, timeout=TIMEOUT_S)
    return len(metadata.topics[name].partitions)


def test_every_topic_has_the_declared_configs_and_partitions(ledger_settings):
    for definition in topics.TOPIC_DEFINITIONS:
        name = ledger_settings.topic(definition.name)
        configs = topic_configs(ledger_settings, name)
        for key, wanted in topics.declared_configs(definition, ledger_settings).items():
            assert configs[key] == wanted, (name, key)
        assert partition_count(ledger_settings, name) == ledger_settings.partitions


def test_compacted_topics_keep_fresh_records_for_days(ledger_settings):
    names = topics.ledger_topic_names(ledger_settings)
    for name in (names.events, names.outcomes, names.balances):
        configs = topic_configs(ledger_settings, name)
        assert configs["cleanup.policy"] == "compact"
        assert configs["min.compaction.lag.ms"] == str(7 * 24 * 60 * 60 * 1000)
    assert topic_configs(ledger_settings, names.commands)["cleanup.policy"] == "delete"
    assert topic_configs(ledger_settings, names.commands_dlq)["cleanup.policy"] == "delete"


def test_second_apply_is_a_no_op(ledger_settings):
    report = topics.apply(ledger_settings)
    assert report.in_sync
    assert not report.changed
    assert report.lines() == [
        f"topics: all {len(topics.TOPIC_DEFINITIONS)} up to date, nothing to do"
    ]


def test_second_apply_from_the_command_line_says_nothing_to_do(ledger_settings):
    completed = run_streamledger(["topics", "apply", "--check"], ledger_settings)
    assert completed.returncode == 0, completed.stderr
    assert "nothing to do" in completed.stdout


def test_config_drift_is_reported_then_corrected(ledger_settings):
    events = topics.ledger_topic_names(ledger_settings).events
    client = admin_client(ledger_settings)
    entry = ConfigEntry(
        "min.compaction.lag.ms", "1000", incremental_operation=AlterConfigOpType.SET
    )
    resource = ConfigResource(ResourceType.TOPIC, events, incremental_configs=[entry])
    client.incremental_alter_configs([resource])[resource].result(timeout=TIMEOUT_S)
    wait_for_config(ledger_settings, events, "min.compaction.lag.ms", "1000")

    checked = topics.check(ledger_settings)
    assert not checked.in_sync
    assert [(d.topic, d.key, d.found) for d in checked.config_drift] == [
        (events, "min.compaction.lag.ms", "1000")
    ]
    assert f"config drift: {events}: min.compaction.lag.ms was 1000" in "\n".join(checked.lines())

    applied = topics.apply(ledger_settings)
    assert applied.changed
    assert applied.config_drift == checked.config_drift
    assert topic_configs(ledger_settings, events)["min.compaction.lag.ms"] == str(
        topics.MIN_COMPACTION_LAG_MS
    )
    assert topics.check(ledger_settings).in_sync


def test_wrong_partition_count_is_refused_and_nothing_changes(stack_settings):
    settings = replace(stack_settings, topic_prefix=f"t{uuid.uuid4().hex[:8]}.", partitions=3)
    events = topics.ledger_topic_names(settings).events
    client = admin_client(settings)
    client.create_topics([NewTopic(events, num_partitions=2, replication_factor=1)])[events].result(
        timeout=TIMEOUT_S
    )
    try:
        assert topics.check(settings).partition_drift[0].found == 2
        with pytest.raises(TopicError) as refused:
            topics.apply(settings)
        message = str(refused.value)
        assert f"{events} has 2 partitions, declared 3" in message
        assert "\n" not in message
        metadata = client.list_topics(timeout=TIMEOUT_S)
        others = set(topics.ledger_topic_names(settings).all()) - {events}
        assert not others & set(metadata.topics), "apply created topics although it refused"
        assert partition_count(settings, events) == 2
    finally:
        delete_topics(settings, [events])
