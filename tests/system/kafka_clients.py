"""Small real-Kafka client helpers shared by the system tests (no mocks)."""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, Message, Producer

from kafka_adapter.admin import KAFKA_CLIENT_LOGGER
from kafka_adapter.security import ADMIN_PRINCIPAL, client_config, credentials_directory
from streamledger.settings import Settings, replace

OPERATION_TIMEOUT_S = 30.0
READ_TIMEOUT_S = 30.0
POLL_TIMEOUT_S = 0.5


def moved_home(settings: Settings, home: Path) -> Settings:
    """``settings`` with a home of its own (logs, run files) whose processes still authenticate
    as the stack's principals: under scram their stored passwords are copied (0700/0600)."""
    source = credentials_directory(settings.home)
    if source.is_dir():
        shutil.copytree(source, credentials_directory(home), dirs_exist_ok=True)
    return replace(settings, home=home)


def transactional_producer(settings: Settings) -> Producer:
    producer = Producer(
        {
            **client_config(settings, ADMIN_PRINCIPAL),
            "transactional.id": f"test-{uuid.uuid4().hex}",
            "transaction.timeout.ms": 60_000,
        },
        logger=KAFKA_CLIENT_LOGGER,
    )
    producer.init_transactions(OPERATION_TIMEOUT_S)
    return producer


def group_consumer(settings: Settings, topic: str, *, isolation_level: str) -> Consumer:
    consumer = Consumer(
        {
            **client_config(settings, ADMIN_PRINCIPAL),
            "group.id": f"test-{uuid.uuid4().hex}",
            "isolation.level": isolation_level,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        },
        logger=KAFKA_CLIENT_LOGGER,
    )
    consumer.subscribe([topic])
    return consumer


def read_until(
    consumer: Consumer, last_value: bytes, *, timeout_s: float = READ_TIMEOUT_S
) -> list[Message]:
    """Every record read until one with ``last_value`` arrives; fails the test on timeout."""
    messages: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        message = consumer.poll(POLL_TIMEOUT_S)
        if message is None:
            continue
        if message.error() is not None:
            raise KafkaException(message.error())
        messages.append(message)
        if message.value() == last_value:
            return messages
    values = [message.value() for message in messages]
    raise AssertionError(f"{last_value!r} did not arrive within {timeout_s} s; read {values}")
