"""The feed of a ``make chaos`` round: one idempotent raw confluent-kafka producer, paced.

One producer with ``enable.idempotence`` keeps each partition's records in the order given, also
across broker restarts, which the fold relies on. A record is produced exactly where the
workload says (partition and key, right or wrong on purpose); a back-dated one carries a record
timestamp ``BACKDATE_MS`` before now. Every wait is bounded: the offered rate paces the loop, a
full local queue is drained for at most ``QUEUE_FULL_TIMEOUT_S``, and a record the broker did not
take within ``DELIVERY_TIMEOUT_MS`` is reported as a problem (the round then fails).
"""

from __future__ import annotations

import threading
import time
from typing import Final

from confluent_kafka import KafkaError, Message, Producer

from kafka_adapter.admin import KAFKA_CLIENT_LOGGER
from kafka_adapter.security import ADMIN_PRINCIPAL, client_config
from streamledger.settings import Settings
from tests.chaos.rounds_workload import BACKDATE_MS, Outgoing

DELIVERY_TIMEOUT_MS: Final = 600_000  # a broker restart under load takes well under this
QUEUE_FULL_TIMEOUT_S: Final = 120.0
QUEUE_RECORDS_MAX: Final = 200_000
PACE_EVERY: Final = 200  # records between two looks at the clock
FLUSH_TIMEOUT_S: Final = DELIVERY_TIMEOUT_MS / 1000 + 60
PROBLEMS_MAX: Final = 5


class Feeder:
    def __init__(self, settings: Settings, records: list[Outgoing], rate_per_s: int) -> None:
        self.settings = settings
        self.records = records
        self.rate_per_s = rate_per_s
        self.problems: list[str] = []
        self.failed_deliveries = 0
        self.thread = threading.Thread(target=self._feed, name="feeder", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def join(self, timeout_s: float) -> None:
        self.thread.join(timeout_s)
        if self.thread.is_alive():
            self.problems.append(f"the feed did not finish in {timeout_s:.0f} s")
        if self.failed_deliveries:
            self.problems.append(f"{self.failed_deliveries} records not delivered")

    def _feed(self) -> None:
        try:
            producer = Producer(
                {
                    **client_config(self.settings, ADMIN_PRINCIPAL),
                    "enable.idempotence": True,
                    "linger.ms": 5,
                    "message.timeout.ms": DELIVERY_TIMEOUT_MS,
                    "queue.buffering.max.messages": QUEUE_RECORDS_MAX,
                },
                logger=KAFKA_CLIENT_LOGGER,
            )
            topic = self.settings.topic("ledger.commands")
            began = time.monotonic()
            for index, record in enumerate(self.records):
                if index % PACE_EVERY == 0:
                    ahead_s = index / self.rate_per_s - (time.monotonic() - began)
                    time.sleep(max(ahead_s, 0.0))
                self._produce(producer, topic, record)
            left = producer.flush(FLUSH_TIMEOUT_S)
            if left:
                self.problems.append(f"{left} records still queued after {FLUSH_TIMEOUT_S:.0f} s")
        except Exception as exc:  # noqa: BLE001 - reported by join()
            self.problems.append(f"feed: {type(exc).__name__}: {exc}")

    def _produce(self, producer: Producer, topic: str, record: Outgoing) -> None:
        timestamp_ms = int(time.time() * 1000) - BACKDATE_MS if record.backdated else 0
        deadline = time.monotonic() + QUEUE_FULL_TIMEOUT_S
        while True:
            try:
                producer.produce(
                    topic, record.value, record.key, partition=record.partition,
                    timestamp=timestamp_ms, on_delivery=self._delivered,
                )  # fmt: skip
                producer.poll(0)
                return
            except BufferError:
                if time.monotonic() > deadline:
                    raise
                producer.poll(0.1)

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self.failed_deliveries += 1
            if len(self.problems) < PROBLEMS_MAX:
                self.problems.append(f"delivery failed: {error.str()}")
