"""``KafkaTransport`` on the shared test stack passes the transport contract
(``tests/unit/transport_contract.py``) that ``MemoryTransport`` passes in the unit tests."""

from __future__ import annotations

import pytest

from processors.kafka_clients import KafkaTransport
from processors.processor_settings import ProcessorSettings
from processors.transport import CommandTransport
from streamledger.settings import Settings
from tests.conftest import TEST_PARTITIONS
from tests.unit.transport_contract import PARTITIONS, TransportContract

DELIVERY_TIMEOUT_S = 30.0  # a bound on a flush, not a pace
assert TEST_PARTITIONS == PARTITIONS  # the contract's partition numbers are 0..2


class TestKafkaTransport(TransportContract):
    @pytest.fixture
    def settings(self, ledger_settings: Settings) -> Settings:
        return ledger_settings

    def new_transport(self, processor_settings: ProcessorSettings) -> CommandTransport:
        return KafkaTransport(processor_settings)

    def deliver(self, transport: CommandTransport) -> None:
        assert isinstance(transport, KafkaTransport) and transport.producer is not None
        assert transport.producer.flush(DELIVERY_TIMEOUT_S) == 0
