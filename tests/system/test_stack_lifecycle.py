"""The stack's lifecycle on its own home and ports, so the shared test stack is never disturbed:
``up`` twice is harmless, ``down`` then ``up`` keeps data, ``reset`` removes it."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from infra import stack
from infra.topics import TOPIC_DEFINITIONS, ledger_topic_names
from kafka_adapter.admin import KAFKA_CLIENT_LOGGER
from kafka_adapter.security import ADMIN_PRINCIPAL, client_config
from streamledger.settings import Settings
from tests.conftest import kafka_security_of_test_stacks, run_streamledger

pytestmark = pytest.mark.system

TIMEOUT_S = 30.0
POLL_TIMEOUT_S = 1.0
READ_TIMEOUT_S = 60.0  # partition 0 read to its end after a broker restart


@pytest.fixture
def lifecycle_settings():
    # Not pytest's tmp_path: pytest prunes old basetemp folders of *other* concurrent runs, which
    # would delete a data directory under a running server.
    home = Path(tempfile.mkdtemp(prefix="streamledger-lifecycle-"))
    # Ports below Linux's ephemeral range (32768-60999): a client retrying a stopped server's
    # port in that range can be given that very port as its source and connect to itself,
    # holding the port so the server cannot bind it again.
    settings = Settings(
        home=home,
        kafka_port=31092,
        kafka_controller_port=31093,
        postgres_port=31432,
        metrics_port=31400,
        partitions=2,
        kafka_security=kafka_security_of_test_stacks(),
    )
    try:
        yield settings
    finally:
        stack.down(settings)  # whatever happened, leave nothing running
        shutil.rmtree(home)


def write_record(settings, value):
    producer = Producer(client_config(settings, ADMIN_PRINCIPAL), logger=KAFKA_CLIENT_LOGGER)
    producer.produce(ledger_topic_names(settings).commands, value=value, partition=0)
    assert producer.flush(TIMEOUT_S) == 0


def read_partition_zero(settings):
    """Every value in partition 0 of ledger.commands, read without a group."""
    consumer = Consumer(
        {
            **client_config(settings, ADMIN_PRINCIPAL),
            "group.id": "lifecycle-reader",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        },
        logger=KAFKA_CLIENT_LOGGER,
    )
    topic = ledger_topic_names(settings).commands
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT_S)
        consumer.assign([TopicPartition(topic, 0, low)])
        values = []
        deadline = time.monotonic() + READ_TIMEOUT_S  # not a count of polls: some return at once
        while low + len(values) < high and time.monotonic() < deadline:
            message = consumer.poll(POLL_TIMEOUT_S)
            if message is not None and message.error() is None:
                values.append(message.value())
        return values
    finally:
        consumer.close()


def write_row(settings, text):
    with psycopg.connect(settings.database_dsn, connect_timeout=10, autocommit=True) as connection:
        connection.execute("CREATE TABLE IF NOT EXISTS lifecycle_probe (note text)")
        connection.execute("INSERT INTO lifecycle_probe VALUES (%s)", (text,))


def read_rows(settings):
    with psycopg.connect(settings.database_dsn, connect_timeout=10, autocommit=True) as connection:
        exists = connection.execute("SELECT to_regclass('lifecycle_probe') IS NOT NULL").fetchone()
        if not exists[0]:
            return None
        return [row[0] for row in connection.execute("SELECT note FROM lifecycle_probe")]


def test_up_twice_down_up_keeps_data_and_reset_removes_it(lifecycle_settings):
    settings = lifecycle_settings
    first = stack.up(settings)
    assert [report.running for report in first] == [True, True]
    assert all("already running" not in report.detail for report in first)

    second = stack.up(settings)
    assert all(report.detail.startswith("already running") for report in second), second
    write_record(settings, b"survives a restart")
    write_row(settings, "survives a restart")

    stack.down(settings)
    stopped = stack.status(settings)
    assert [service.running for service in stopped.services] == [False, False]

    stack.up(settings)
    assert read_partition_zero(settings) == [b"survives a restart"]
    assert read_rows(settings) == ["survives a restart"]

    stack.reset(settings)
    assert not (settings.home / "kafka").exists()
    stack.up(settings)
    assert read_partition_zero(settings) == []
    assert read_rows(settings) is None
    status = stack.status(settings)
    assert status.topics is not None and status.topics.in_sync


def test_the_command_line_lifecycle_prints_addresses_and_logs(lifecycle_settings):
    settings = lifecycle_settings
    up = run_streamledger(["infra", "up"], settings)
    assert up.returncode == 0, up.stderr
    assert f"127.0.0.1:{settings.kafka_port}" in up.stdout
    assert f"127.0.0.1:{settings.postgres_port}" in up.stdout
    assert str(settings.home / "logs" / "kafka.log") in up.stdout
    assert (settings.home / "logs" / "kafka.log").stat().st_size > 0

    again = run_streamledger(["infra", "up"], settings)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("already running") == 2

    status = run_streamledger(["infra", "status"], settings)
    assert status.returncode == 0, status.stderr
    assert f"topics: all {len(TOPIC_DEFINITIONS)} up to date" in status.stdout

    down = run_streamledger(["infra", "down"], settings)
    assert down.returncode == 0, down.stderr
    assert "kafka       stopped" in down.stdout
