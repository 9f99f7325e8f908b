"""A three-node local Kafka cluster loses a node and nothing acknowledged (issue 22 §1, decision
0036): on a cluster of this test's own (own home, free ports below the ephemeral range, 256 MiB
heaps), never the shared test stack.

``acks=all`` writes to a topic with replication factor 3 and min.insync.replicas 2 keep being
acknowledged while one node is killed with SIGKILL; ``infra status`` then shows the node down and
partitions under-replicated; the node restarts, every ISR fills again, and every acknowledged
record is read back exactly once. The pipeline on top under the same faults is ``make chaos-ha``
(not in CI: each fault costs the processors 20-50 s, docs/availability.md).

Under scram, a principal's credentials and ACLs are on every broker when ``principals.create``
returns, and gone from every broker when ``principals.revoke`` returns (decision 0126: the
followers apply the metadata log a few milliseconds after the controller acknowledged it).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import NewTopic

from infra import kafka_broker, principals, stack
from kafka_adapter.admin import admin_client
from kafka_adapter.security import ADMIN_PRINCIPAL, client_config, is_scram
from streamledger.errors import SettingError
from streamledger.settings import Settings
from tests.conftest import kafka_security_of_test_stacks
from tests.system.free_ports import free_port_range

pytestmark = pytest.mark.system

TOPIC = "cluster-test"
PARTITIONS = 6
RECORDS_PER_PHASE = 300
TIMEOUT_S = 120.0
POLL_S = 0.5
# create -> look at once -> revoke -> look at once: with the code before decision 0126 about
# one broker in six had not applied a change at the first look, so two rounds (12 looks at
# each kind of change) catch that again nearly always, for a few seconds.
PRINCIPAL_ROUNDS = 2


@pytest.fixture(scope="module")
def cluster() -> Iterator[Settings]:
    home = Path(tempfile.mkdtemp(prefix="sl-kafka-cluster-"))
    base = free_port_range(8)
    settings = Settings(
        home=home,
        kafka_port=base,
        kafka_controller_port=base + 1,  # nodes: base, base+2, base+4 and base+1, +3, +5
        postgres_port=base + 6,
        metrics_port=base + 7,
        brokers=3,
        replication_factor=3,
        min_insync_replicas=2,
        kafka_heap_mb=256,
        kafka_security=kafka_security_of_test_stacks(),
    )
    try:
        kafka_broker.start(settings)
        topic = NewTopic(
            TOPIC, PARTITIONS, replication_factor=3, config={"min.insync.replicas": "2"}
        )
        admin = admin_client(settings)  # kept: a destroyed client fails its futures
        admin.create_topics([topic])[TOPIC].result(timeout=TIMEOUT_S)
        yield settings
    finally:
        for node in kafka_broker.cluster_nodes(settings):  # the data goes: no controlled shutdown
            kafka_broker.kill_node(settings, node.node_id)
        kafka_broker.reset(settings)
        shutil.rmtree(home, ignore_errors=True)


def produce(settings: Settings, first: int, count: int) -> list[int]:
    """``count`` numbered records with acks=all; the numbers the cluster acknowledged."""
    acknowledged: list[int] = []

    def delivered(error: KafkaError | None, message: object) -> None:
        if error is None:
            acknowledged.append(int(message.value()))  # type: ignore[attr-defined]

    producer = Producer(
        {
            **client_config(settings, ADMIN_PRINCIPAL),
            "acks": "all",
            "enable.idempotence": True,
            "message.timeout.ms": int(TIMEOUT_S * 1000),
        }
    )
    for number in range(first, first + count):
        producer.produce(TOPIC, str(number).encode(), str(number).encode(), on_delivery=delivered)
    assert producer.flush(TIMEOUT_S) == 0
    return acknowledged


def consume_all(settings: Settings, expected: int) -> list[int]:
    consumer = Consumer(
        {
            **client_config(settings, ADMIN_PRINCIPAL),
            "group.id": f"cluster-test-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([TOPIC])
    seen: list[int] = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(seen) < expected and time.monotonic() < deadline:
        for message in consumer.consume(1000, timeout=POLL_S):
            if message.error() is None:
                seen.append(int(message.value()))
    consumer.close()
    return seen


def wait_for(done, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not done():
        assert time.monotonic() < deadline, f"{what}: not within {TIMEOUT_S:g} s"
        time.sleep(POLL_S)


def test_a_principal_is_on_every_broker_when_created_and_gone_when_revoked(cluster):
    spec = principals.PrincipalSpec("cluster-upstream", principals.ROLE_UPSTREAM)
    if not is_scram(cluster):  # a plaintext run: no principals, said in one line
        with pytest.raises(SettingError, match="--kafka-security scram"):
            principals.create(cluster, spec)
        return
    view = principals.cluster_of(cluster)
    assert [broker.node_id for broker in view.brokers] == [1, 2, 3]
    for _ in range(PRINCIPAL_ROUNDS):
        grants = set(principals.create(cluster, spec))
        for broker in reversed(view.brokers):  # a follower first: the likeliest to lag
            assert principals.has_credentials(broker, spec.name), broker
            assert grants <= principals.held_grants(view, broker, spec.name), broker
        principals.revoke(cluster, spec.name)
        for broker in reversed(view.brokers):
            assert not principals.has_credentials(broker, spec.name), broker
            assert not principals.held_grants(view, broker, spec.name), broker


def test_killing_a_node_loses_no_acknowledged_write(cluster):
    health = kafka_broker.cluster_health(cluster)
    assert health.controller_leader in (1, 2, 3) and health.under_replicated == 0
    acknowledged = produce(cluster, 0, RECORDS_PER_PHASE)
    victim = health.controller_leader
    assert kafka_broker.kill_node(cluster, victim) is not None
    acknowledged += produce(cluster, RECORDS_PER_PHASE, RECORDS_PER_PHASE)  # 2 of 3 in sync
    wait_for(
        lambda: kafka_broker.cluster_health(cluster).under_replicated > 0,
        "partitions under-replicated after the kill",
    )
    down = {report.name: report for report in stack.status(cluster).services}
    assert not down[f"kafka-{victim}"].running
    assert kafka_broker.controller_leader(cluster) is not None  # a new leader was elected
    kafka_broker.start(cluster)
    wait_for(
        lambda: kafka_broker.cluster_health(cluster).under_replicated == 0,
        "every ISR full again after the restart",
    )
    assert len(acknowledged) == 2 * RECORDS_PER_PHASE
    seen = consume_all(cluster, len(acknowledged))
    assert sorted(seen) == sorted(acknowledged)  # every acknowledged record, once
