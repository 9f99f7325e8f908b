"""The ledger's Kafka topics, as code: one definition, applied idempotently.

``apply`` compares the definition with the cluster and then acts, in this order:

1. refuse (``TopicError``) if an existing topic has another partition count than declared. Adding
   partitions moves keys to other partitions, which breaks per-tenant ordering and the
   processor's "output partition = input partition" rule; that is an operator's decision, never
   a side effect of ``apply``. Nothing is changed when this is refused.
2. create missing topics;
3. set declared config values that differ (config drift), and report each one it corrected;
4. report what it cannot fix (a replication factor other than declared).

A second ``apply`` finds nothing to do and says so. See docs/decisions/0005-topics-as-code.md.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

# confluent-kafka re-exports these from confluent_kafka.admin without declaring them exported,
# which mypy --strict rejects; import them from where they are defined.
from confluent_kafka.admin._config import AlterConfigOpType, ConfigEntry, ConfigResource
from confluent_kafka.admin._resource import ResourceType
from confluent_kafka.cimpl import NewTopic

from infra import principals
from kafka_adapter.admin import (
    ADMIN_REQUEST_TIMEOUT_S,
    admin_client,
    cluster_metadata,
    kafka_error_text,
)
from kafka_adapter.security import is_scram
from reconciliation.topics import KEPT_FOREVER, RECONCILIATION_TOPIC, STATEMENTS_TOPIC
from schemas.topics import (
    BALANCES_TOPIC,
    COMMANDS_DLQ_TOPIC,
    COMMANDS_TOPIC,
    EVENTS_TOPIC,
    NOTIFICATIONS_TOPIC,
    OUTCOMES_TOPIC,
    REPLIES_TOPIC,
    LedgerTopicNames,
)
from streamledger.errors import TopicError
from streamledger.settings import Settings

DAY_MS = 24 * 60 * 60 * 1000
COMMANDS_RETENTION_MS = 7 * DAY_MS
DLQ_RETENTION_MS = 30 * DAY_MS
# A reply is read by the client waiting for it, seconds later; a day covers a client's retries
# and an operator's look, and keeps the topic small (it holds one record per command).
REPLIES_RETENTION_MS = DAY_MS
# A record in a compacted topic stays uncompacted at least this long, so a projection or a
# restoring processor that is days behind still reads every record, not only the latest per key.
MIN_COMPACTION_LAG_MS = 7 * DAY_MS

VISIBILITY_POLL_INTERVAL_S = 0.1

COMPACTED: Mapping[str, str] = {
    "cleanup.policy": "compact",
    "min.compaction.lag.ms": str(MIN_COMPACTION_LAG_MS),
}


@dataclass(frozen=True, slots=True)
class TopicDefinition:
    """One ledger topic without its prefix; partitions and replication come from the settings."""

    name: str
    configs: Mapping[str, str]


TOPIC_DEFINITIONS: tuple[TopicDefinition, ...] = (
    TopicDefinition(
        COMMANDS_TOPIC,
        {
            "cleanup.policy": "delete",
            "retention.ms": str(COMMANDS_RETENTION_MS),
            # the broker, not each producer's clock, stamps command time (decision 0026)
            "message.timestamp.type": "LogAppendTime",
        },
    ),
    TopicDefinition(EVENTS_TOPIC, COMPACTED),
    TopicDefinition(OUTCOMES_TOPIC, COMPACTED),
    TopicDefinition(BALANCES_TOPIC, COMPACTED),
    TopicDefinition(
        COMMANDS_DLQ_TOPIC, {"cleanup.policy": "delete", "retention.ms": str(DLQ_RETENTION_MS)}
    ),
    # bank statements and the matcher's results (issue 20, decision 0081): the audit trail of
    # what the bank said and what reconciliation decided, kept forever, never compacted
    TopicDefinition(STATEMENTS_TOPIC, KEPT_FOREVER),
    TopicDefinition(RECONCILIATION_TOPIC, KEPT_FOREVER),
    TopicDefinition(
        REPLIES_TOPIC, {"cleanup.policy": "delete", "retention.ms": str(REPLIES_RETENTION_MS)}
    ),
    # balance monitors' notifications (decision 0058): every key is unique, so compaction keeps
    # every one; a replay rewrites identical bytes under the same key
    TopicDefinition(NOTIFICATIONS_TOPIC, COMPACTED),
)


def ledger_topic_names(settings: Settings) -> LedgerTopicNames:
    return LedgerTopicNames.with_prefix(settings.topic_prefix)


def declared_topic_names(settings: Settings) -> tuple[str, ...]:
    """Every topic ``apply`` creates under the settings' prefix (the ledger's and the
    reconciliation's), in definition order: what a scratch prefix deletes when done."""
    return tuple(settings.topic(definition.name) for definition in TOPIC_DEFINITIONS)


def declared_configs(definition: TopicDefinition, settings: Settings) -> dict[str, str]:
    return {**definition.configs, "min.insync.replicas": str(settings.min_insync_replicas)}


# --- comparing --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigDrift:
    topic: str
    key: str
    found: str | None
    wanted: str

    def line(self) -> str:
        return f"{self.topic}: {self.key} was {self.found}, declared {self.wanted}"


@dataclass(frozen=True, slots=True)
class CountDrift:
    """A partition count or replication factor other than declared."""

    topic: str
    what: str  # "partitions" or "replication factor"
    found: int
    wanted: int

    def line(self) -> str:
        return f"{self.topic}: {self.found} {self.what}, declared {self.wanted}"


@dataclass(frozen=True, slots=True)
class TopicReport:
    """What ``check`` found or ``apply`` did. ``applied`` tells which of the two."""

    applied: bool
    missing: tuple[str, ...] = ()  # created by apply
    config_drift: tuple[ConfigDrift, ...] = ()  # corrected by apply
    partition_drift: tuple[CountDrift, ...] = ()  # apply refuses these
    replication_drift: tuple[CountDrift, ...] = ()  # reported, never changed
    up_to_date: tuple[str, ...] = field(default=())

    @property
    def changed(self) -> bool:
        return self.applied and bool(self.missing or self.config_drift)

    @property
    def in_sync(self) -> bool:
        return not (
            self.missing or self.config_drift or self.partition_drift or self.replication_drift
        )

    def lines(self) -> list[str]:
        created, corrected = ("created", "corrected") if self.applied else ("missing", "drift")
        result = [f"topic {created}: {name}" for name in self.missing]
        result += [f"config {corrected}: {drift.line()}" for drift in self.config_drift]
        result += [f"partition drift: {drift.line()}" for drift in self.partition_drift]
        result += [f"replication drift: {drift.line()}" for drift in self.replication_drift]
        total = len(TOPIC_DEFINITIONS)
        if self.in_sync:
            result.append(f"topics: all {total} up to date, nothing to do")
        elif self.applied and not (self.partition_drift or self.replication_drift):
            result.append(f"topics: {total} in sync after this apply")
        return result


@dataclass(frozen=True, slots=True)
class ExistingTopic:
    partitions: int
    replication_factor: int
    configs: Mapping[str, str]


def compare(
    settings: Settings, existing: Mapping[str, ExistingTopic], *, applied: bool
) -> TopicReport:
    """Pure: the difference between the definition and what the cluster has."""
    missing: list[str] = []
    up_to_date: list[str] = []
    config_drift: list[ConfigDrift] = []
    partition_drift: list[CountDrift] = []
    replication_drift: list[CountDrift] = []
    for definition in TOPIC_DEFINITIONS:
        name = settings.topic(definition.name)
        topic = existing.get(name)
        if topic is None:
            missing.append(name)
            continue
        drifts = [
            ConfigDrift(name, key, topic.configs.get(key), wanted)
            for key, wanted in declared_configs(definition, settings).items()
            if topic.configs.get(key) != wanted
        ]
        config_drift += drifts
        if topic.partitions != settings.partitions:
            partition_drift.append(
                CountDrift(name, "partitions", topic.partitions, settings.partitions)
            )
        if topic.replication_factor != settings.replication_factor:
            replication_drift.append(
                CountDrift(
                    name,
                    "replication factor",
                    topic.replication_factor,
                    settings.replication_factor,
                )
            )
        if not drifts and topic.partitions == settings.partitions:
            up_to_date.append(name)
    return TopicReport(
        applied=applied,
        missing=tuple(missing),
        config_drift=tuple(config_drift),
        partition_drift=tuple(partition_drift),
        replication_drift=tuple(replication_drift),
        up_to_date=tuple(up_to_date),
    )


# --- talking to the cluster -------------------------------------------------------------------


def describe_existing(
    client: AdminClient, settings: Settings, timeout_s: float
) -> dict[str, ExistingTopic]:
    """Partition counts, replication factors and config values of the declared topics found."""
    metadata = cluster_metadata(client, settings, timeout_s)
    wanted = {settings.topic(definition.name) for definition in TOPIC_DEFINITIONS}
    found = {name: metadata.topics[name] for name in wanted if name in metadata.topics}
    if not found:
        return {}
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in sorted(found)]
    futures = client.describe_configs(resources, request_timeout=timeout_s)
    result: dict[str, ExistingTopic] = {}
    for resource, future in futures.items():
        entries = wait(future, timeout_s, f"describing topic {resource.name}")
        partitions = found[resource.name].partitions
        replicas = max((len(partition.replicas) for partition in partitions.values()), default=0)
        configs = {key: entry.value for key, entry in entries.items() if entry.value is not None}
        result[resource.name] = ExistingTopic(len(partitions), replicas, configs)
    return result


def wait(future: Future[object], timeout_s: float, doing: str) -> dict[str, ConfigEntry]:
    try:
        result = future.result(timeout=timeout_s)
    except KafkaException as exc:
        raise TopicError(f"{doing} failed: {kafka_error_text(exc)}") from exc
    except TimeoutError as exc:
        raise TopicError(f"{doing} took longer than {timeout_s:g} s") from exc
    return result if isinstance(result, dict) else {}


def create_missing(
    client: AdminClient, settings: Settings, names: tuple[str, ...], timeout_s: float
) -> None:
    by_name = {settings.topic(definition.name): definition for definition in TOPIC_DEFINITIONS}
    new_topics = [
        NewTopic(
            name,
            num_partitions=settings.partitions,
            replication_factor=settings.replication_factor,
            config=declared_configs(by_name[name], settings),
        )
        for name in names
    ]
    futures = client.create_topics(
        new_topics, operation_timeout=timeout_s, request_timeout=timeout_s
    )
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue  # a concurrent apply created it from the same definition
            raise TopicError(f"creating topic {name} failed: {kafka_error_text(exc)}") from exc
        except TimeoutError as exc:
            raise TopicError(f"creating topic {name} took longer than {timeout_s:g} s") from exc


def correct_configs(client: AdminClient, drifts: tuple[ConfigDrift, ...], timeout_s: float) -> None:
    by_topic: dict[str, list[ConfigEntry]] = {}
    for drift in drifts:
        entry = ConfigEntry(drift.key, drift.wanted, incremental_operation=AlterConfigOpType.SET)
        by_topic.setdefault(drift.topic, []).append(entry)
    resources = [
        ConfigResource(ResourceType.TOPIC, topic, incremental_configs=entries)
        for topic, entries in by_topic.items()
    ]
    futures = client.incremental_alter_configs(resources, request_timeout=timeout_s)
    for resource, future in futures.items():
        wait(future, timeout_s, f"correcting the config of topic {resource.name}")


def refuse_partition_drift(report: TopicReport) -> None:
    if report.partition_drift:
        details = "; ".join(
            f"{drift.topic} has {drift.found} partitions, declared {drift.wanted}"
            for drift in report.partition_drift
        )
        raise TopicError(
            f"refusing to change partition counts ({details}); changing them moves keys to other"
            " partitions. Recreate the topics or set STREAMLEDGER_PARTITIONS / --partitions to"
            " the existing count. Nothing was changed."
        )


# --- the public operations --------------------------------------------------------------------


def check(settings: Settings, *, timeout_s: float = ADMIN_REQUEST_TIMEOUT_S) -> TopicReport:
    """What ``apply`` would do, without changing anything."""
    client = admin_client(settings, timeout_s=timeout_s)
    return compare(settings, describe_existing(client, settings, timeout_s), applied=False)


def apply(
    settings: Settings,
    *,
    timeout_s: float = ADMIN_REQUEST_TIMEOUT_S,
    grant_services: bool = True,
) -> TopicReport:
    """Create missing topics and correct config drift; refuse partition-count drift. Under
    ``kafka_security=scram`` also (re)create the service principals with their ACLs on these
    topics (decision 0063): a topic prefix's topics and their grants are applied together.
    ``grant_services=False``: the topics only, for a caller that granted the service principals
    a family of prefixes this one belongs to already (the bench, decision 0147)."""
    client = admin_client(settings, timeout_s=timeout_s)
    report = compare(settings, describe_existing(client, settings, timeout_s), applied=True)
    refuse_partition_drift(report)
    if report.missing:
        create_missing(client, settings, report.missing, timeout_s)
    if report.config_drift:
        correct_configs(client, report.config_drift, timeout_s)
    if report.changed:
        wait_until_visible(client, settings, timeout_s)
    if grant_services and is_scram(settings):
        principals.create_services(settings)
    return report


def wait_until_visible(client: AdminClient, settings: Settings, timeout_s: float) -> None:
    """Return once metadata and configs show the changes, so callers can use the topics at once.

    The controller acknowledges a change before every broker's metadata cache has applied it; a
    producer started right after ``apply`` would otherwise see an unknown topic.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        pending = compare(settings, describe_existing(client, settings, timeout_s), applied=True)
        if not (pending.missing or pending.config_drift):
            return
        if time.monotonic() >= deadline:
            waiting = [*pending.missing, *(drift.topic for drift in pending.config_drift)]
            raise TopicError(
                f"the cluster accepted the changes but does not show them after {timeout_s:g} s:"
                f" {', '.join(sorted(set(waiting)))}"
            )
        time.sleep(VISIBILITY_POLL_INTERVAL_S)
