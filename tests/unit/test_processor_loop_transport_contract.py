"""``MemoryTransport`` passes the transport contract (``tests/unit/transport_contract.py``);
``KafkaTransport`` passes the same class in ``tests/system/test_transport_contract.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from processors.memory_transport import MemoryBroker, MemoryTransport
from processors.processor_settings import ProcessorSettings
from processors.transport import CommandTransport
from schemas.topics import LedgerTopicNames
from streamledger.settings import Settings
from tests.unit.transport_contract import PARTITIONS, TransportContract

TOPIC_PREFIX = "memory."


class TestMemoryTransport(TransportContract):
    @pytest.fixture
    def settings(self) -> Settings:
        self.broker = MemoryBroker(
            LedgerTopicNames.with_prefix(TOPIC_PREFIX).all(), PARTITIONS, clock_ms=lambda: 1_000
        )
        return Settings(home=Path("/nonexistent"), topic_prefix=TOPIC_PREFIX, partitions=PARTITIONS)

    def new_transport(self, processor_settings: ProcessorSettings) -> CommandTransport:
        return MemoryTransport(self.broker, processor_settings)
