"""The topic definition and the drift comparison (pure, no broker), and the rendered broker
configuration."""

from __future__ import annotations

from pathlib import Path

from infra import kafka_broker, topics
from streamledger.settings import Settings

SETTINGS = Settings(home=Path("/srv/sl"), topic_prefix="p.", partitions=3)


def existing(settings, partitions=None, overrides=None):
    """What a cluster would report after a correct apply, with optional changes."""
    result = {}
    for definition in topics.TOPIC_DEFINITIONS:
        name = settings.topic(definition.name)
        configs = dict(topics.declared_configs(definition, settings))
        configs.update((overrides or {}).get(name, {}))
        count = (partitions or {}).get(name, settings.partitions)
        result[name] = topics.ExistingTopic(count, settings.replication_factor, configs)
    return result


def test_the_seven_ledger_topics_share_the_prefix():
    names = topics.ledger_topic_names(SETTINGS)
    assert names.all() == (
        "p.ledger.commands",
        "p.ledger.events",
        "p.ledger.outcomes",
        "p.ledger.balances",
        "p.ledger.commands.dlq",
        "p.ledger.replies",
        "p.ledger.notifications",
    )
    assert names == topics.LedgerTopicNames.with_prefix("p.")


def test_the_broker_stamps_command_time_and_replies_are_short_lived():
    commands, *_, replies, _notifications = topics.TOPIC_DEFINITIONS
    assert commands.configs["message.timestamp.type"] == "LogAppendTime"
    assert replies.name == "ledger.replies"
    assert replies.configs["cleanup.policy"] == "delete"
    assert int(replies.configs["retention.ms"]) <= topics.DAY_MS


def test_compacted_topics_never_compact_fresh_records():
    for definition in topics.TOPIC_DEFINITIONS[1:4]:
        assert definition.configs["cleanup.policy"] == "compact"
        assert int(definition.configs["min.compaction.lag.ms"]) >= 7 * topics.DAY_MS


def test_notifications_are_compacted_by_their_unique_key():
    *_, notifications = topics.TOPIC_DEFINITIONS
    assert notifications.name == "ledger.notifications"
    assert notifications.configs["cleanup.policy"] == "compact"
    assert int(notifications.configs["min.compaction.lag.ms"]) >= 7 * topics.DAY_MS


def test_min_insync_replicas_comes_from_the_settings():
    settings = Settings(home=Path("/srv"), replication_factor=3, min_insync_replicas=2)
    for definition in topics.TOPIC_DEFINITIONS:
        assert topics.declared_configs(definition, settings)["min.insync.replicas"] == "2"


def test_nothing_existing_means_everything_missing():
    report = topics.compare(SETTINGS, {}, applied=True)
    assert report.missing == topics.declared_topic_names(SETTINGS)
    assert set(topics.ledger_topic_names(SETTINGS).all()) < set(report.missing)
    assert report.changed


def test_a_matching_cluster_is_in_sync():
    report = topics.compare(SETTINGS, existing(SETTINGS), applied=True)
    assert report.in_sync
    assert not report.changed
    assert report.lines() == ["topics: all 9 up to date, nothing to do"]


def test_extra_configs_on_the_broker_are_not_drift():
    overrides = {"p.ledger.events": {"segment.bytes": "1000"}}
    assert topics.compare(SETTINGS, existing(SETTINGS, overrides=overrides), applied=False).in_sync


def test_a_changed_config_value_is_drift():
    overrides = {"p.ledger.balances": {"cleanup.policy": "delete"}}
    report = topics.compare(SETTINGS, existing(SETTINGS, overrides=overrides), applied=False)
    assert report.config_drift == (
        topics.ConfigDrift("p.ledger.balances", "cleanup.policy", "delete", "compact"),
    )
    assert report.lines() == [
        "config drift: p.ledger.balances: cleanup.policy was delete, declared compact"
    ]


def test_a_wrong_partition_count_is_partition_drift():
    report = topics.compare(
        SETTINGS, existing(SETTINGS, partitions={"p.ledger.events": 12}), applied=True
    )
    assert report.partition_drift == (topics.CountDrift("p.ledger.events", "partitions", 12, 3),)
    assert "p.ledger.events" not in report.up_to_date


def test_server_properties_make_transactions_work_on_one_node():
    settings = Settings(home=Path("/srv/sl"), kafka_port=29092, kafka_controller_port=29093)
    rendered = kafka_broker.server_properties(settings, kafka_broker.KafkaPaths.of(settings))
    lines = set(rendered.splitlines())
    for expected in (
        "process.roles=broker,controller",
        "listeners=PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093",
        "controller.quorum.voters=1@127.0.0.1:29093",
        "log.dirs=/srv/sl/kafka/data",
        "offsets.topic.replication.factor=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=false",
    ):
        assert expected in lines


def test_cluster_ids_are_kafka_shaped():
    for _ in range(100):
        cluster_id = kafka_broker.new_cluster_id()
        assert len(cluster_id) == 22
        assert not cluster_id.startswith("-")


def test_the_reconciliation_topics_are_applied_with_the_ledger_and_kept_forever():
    """``streamledger topics apply`` creates them (decision 0081) with the configs the matcher's
    own ``ensure_topics`` uses, so topics it created before are in sync."""
    names = topics.declared_topic_names(SETTINGS)
    assert "p.ledger.statements" in names and "p.ledger.reconciliation" in names
    for definition in topics.TOPIC_DEFINITIONS:
        if definition.name in ("ledger.statements", "ledger.reconciliation"):
            assert definition.configs == {"cleanup.policy": "delete", "retention.ms": "-1"}
