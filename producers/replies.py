"""Request/reply: send a command and wait for its reply on ``ledger.replies``.

The processor writes exactly one reply per command it decides to the ``ledger.replies``
partition with the same number as the command's partition, keyed ``{tenant}/{idempotency_key}``
(docs/contract.md, "Replies"): the new outcome, the original outcome for a duplicate, or the
reply-only rejection for a reused key or an invalid tenant/key. ``OutcomeWaiter`` notes that
partition's end offset, sends the command, waits for its delivery, then reads the partition from
the noted offset (``read_committed``) until the key appears or the timeout runs out
(``OutcomeTimeoutError``). So a retry after a timeout gets its answer too. Use ``request`` for
interactive tools and tests, not on a high-throughput path.

``request_reply`` returns the whole reply: the outcome, its kind (``decided``, ``duplicate``,
``not_stored``) and, for a ``RATE_LIMITED`` reply (contract v1.6, decision 0083), the
``retry_after_ms`` the processor computed: send the same command with the same key after that
long and it is decided normally (the key was not used up).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Final

from confluent_kafka import Consumer, KafkaException, TopicPartition

from kafka_adapter.security import PRODUCER_PRINCIPAL, client_config
from producers.errors import OutcomeTimeoutError, ProducerError
from producers.sdk import DeliveryReport, LedgerProducer
from schemas.codec import decode_outcome
from schemas.keys import command_key, outcome_key, partition_for
from schemas.model import Command, Outcome
from schemas.topics import REPLIES_TOPIC
from streamledger.settings import Settings

REPLY_POLL_S: Final = 0.1
WATERMARK_TIMEOUT_S: Final = 10.0
# The reply headers of the contract (docs/contract.md, "Replies"), as the processor writes them
# (processors.partition_ledger; a unit test checks the two agree).
REPLY_KIND_HEADER: Final = "streamledger.reply.kind"
REPLY_RETRY_AFTER_HEADER: Final = "streamledger.reply.retry_after_ms"


@dataclass(frozen=True, slots=True)
class Reply:
    """A command's one reply: its outcome, what kind of answer it is, and for a rate-limited
    command (``RejectReason.RATE_LIMITED``) the ms of record time before a retry is admitted."""

    outcome: Outcome
    kind: str  # decided | duplicate | not_stored
    retry_after_ms: int | None = None


def reply_of(value: bytes, headers: list[tuple[str, bytes | None]] | None) -> Reply:
    """The ``Reply`` of a record of ``ledger.replies`` (its value and headers)."""
    found = {name: (header or b"").decode("ascii") for name, header in headers or ()}
    retry_after = found.get(REPLY_RETRY_AFTER_HEADER)
    return Reply(
        outcome=decode_outcome(value),
        kind=found.get(REPLY_KIND_HEADER, ""),
        retry_after_ms=None if retry_after is None else int(retry_after),
    )


class OutcomeWaiter:
    """Sends commands through ``producer`` and waits for their outcomes."""

    def __init__(self, settings: Settings, producer: LedgerProducer) -> None:
        self._producer = producer
        self._topic = settings.topic(REPLIES_TOPIC)
        self._consumer = Consumer(
            {
                **client_config(settings, PRODUCER_PRINCIPAL),
                "group.id": f"streamledger-replies-{os.getpid()}",  # assign() only, no commits
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": False,
            }
        )

    def request(self, command: Command, *, timeout_s: float) -> Outcome:
        """Send ``command`` and return its outcome, or raise ``OutcomeTimeoutError``."""
        return self.request_reply(command, timeout_s=timeout_s).outcome

    def request_reply(self, command: Command, *, timeout_s: float) -> Reply:
        """Send ``command`` and return its reply (outcome, kind, retry-after), or raise
        ``OutcomeTimeoutError``."""
        return self.request_record(
            command.tenant_id,
            command.idempotency_key,
            lambda: self._producer.submit(command),
            timeout_s=timeout_s,
        )

    def request_record(
        self,
        tenant_id: str,
        idempotency_key: str,
        submit: Callable[[], Future[DeliveryReport]],
        *,
        timeout_s: float,
    ) -> Reply:
        """Send a record through ``submit`` (e.g. a signing-key command) and return the reply
        under (``tenant_id``, ``idempotency_key``), or raise ``OutcomeTimeoutError``."""
        deadline = time.monotonic() + timeout_s
        partition = partition_for(command_key(tenant_id), self._producer.partitions)
        high = self._end_offset(partition, deadline)
        delivery = submit()
        self._producer.flush(max(deadline - time.monotonic(), 0.0))
        delivery.result(timeout=0)  # raises DeliveryError if the broker refused it
        self._consumer.assign([TopicPartition(self._topic, partition, high)])
        wanted = outcome_key(tenant_id, idempotency_key)
        return self._read_until(wanted, deadline, timeout_s)

    def _end_offset(self, partition: int, deadline: float) -> int:
        """The partition's end offset; retries while leadership settles, up to ``deadline``."""
        while True:
            try:
                _, high = self._consumer.get_watermark_offsets(
                    TopicPartition(self._topic, partition), timeout=WATERMARK_TIMEOUT_S
                )
            except KafkaException as exc:
                if time.monotonic() >= deadline:  # e.g. leadership not settled after creation
                    raise ProducerError(f"end offset of {self._topic}: {exc}") from exc
                time.sleep(REPLY_POLL_S)
            else:
                end: int = high
                return end

    def _read_until(self, wanted: bytes, deadline: float, timeout_s: float) -> Reply:
        while (remaining := deadline - time.monotonic()) > 0:
            message: Any = self._consumer.poll(min(REPLY_POLL_S, remaining))
            if message is None:
                continue
            if message.error() is not None:
                raise ProducerError(f"reading {self._topic}: {message.error()}")
            if message.key() == wanted and message.value() is not None:
                return reply_of(message.value(), message.headers())
        raise OutcomeTimeoutError(f"no outcome for {wanted.decode()!r} within {timeout_s} s")

    def close(self) -> None:
        self._consumer.close()
