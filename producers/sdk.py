"""``LedgerProducer``: how an upstream system sends commands to ``ledger.commands``.

    with LedgerProducer(settings) as producer:
        producer.send(Transfer(tenant_id="acme", idempotency_key="order-17", ...))
        future = producer.submit(command)          # a Future[DeliveryReport]
        producer.flush(timeout_s=10)               # bounded; raises FlushTimeoutError

What it guarantees:

- **Validation first.** Every command is checked with ``schemas.limits.first_violation``;
  a broken limit raises ``CommandValidationError`` naming the field, and nothing is sent.
- **Placement.** Key = ``tenant_id`` (UTF-8); the partition is set explicitly with Kafka's Java
  default partitioner (murmur2), so a tenant lands on the same partition whichever client or
  language produced it. The partition count is read from the broker's metadata at start.
- **Durability and order.** ``enable.idempotence=true`` and ``acks=all``: no duplicates from
  internal retries, and a tenant's commands keep their order within the partition.
- **Delivery per command.** ``send(..., on_delivery=callback)`` or ``submit()`` (a
  ``concurrent.futures.Future``); callbacks run inside ``poll``/``flush`` on the caller's thread.
  Without a callback, failures are counted and ``flush`` raises ``DeliveryError`` for them (that
  default callback sits in the client's configuration, ``on_delivery``, so the common ``send``
  hands librdkafka no per-record callback argument).
- **Failures only, when asked** (``ProducerSettings(report_successes=False)``, decision 0110):
  librdkafka reports only failed records (``delivery.report.only.error``), so a delivered record
  costs the caller's thread no Python call (~0.5 µs of ~7.5 per ``send``). Failures are counted
  and ``flush`` raises for them as above; ``delivered`` is every record sent that neither failed
  nor is still queued; a per-command report (``on_delivery``, ``submit``) is refused with
  ``ProducerError``, since its success would never be reported.
- **Backpressure.** When librdkafka's local queue is full (``queue_records_max`` or
  ``queue_kbytes_max``), ``send`` serves delivery reports (``poll``) and retries every
  ``backpressure_poll_s`` until ``backpressure_timeout_s`` has passed, then raises
  ``BackpressureTimeoutError``. It never blocks longer and never drops a command silently.

Commands are the contract's frozen dataclasses (``schemas.model``), built by the caller and
sent as values. ``post_transaction(...)`` builds a multi-leg ``PostTransaction`` from plain
Python values (postings as ``Posting`` or ``(debit, credit, amount, currency)`` tuples,
metadata as a mapping) and checks it like ``send`` does::

    fee_split = post_transaction(
        tenant_id="acme", idempotency_key="pay-17", transaction_id="pay-17",
        postings=[("card", "merchant", 9710, "USD"), ("card", "platform", 260, "USD"),
                  ("card", "network", 30, "USD")],
    )
    producer.send(fee_split)

``create_monitor(...)``/``delete_monitor(...)`` build the balance-monitor commands the same way
(decision 0058; the monitor notifies through ``ledger.notifications`` and webhooks)::

    producer.send(create_monitor(
        tenant_id="acme", idempotency_key="low-cash-1", monitor_id="low-cash",
        account_id="cash", field="available", operator="<", threshold=5_000,
    ))
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Protocol, cast

from confluent_kafka import Producer

from kafka_adapter.admin import KAFKA_CLIENT_LOGGER
from kafka_adapter.security import (
    PRODUCER_PRINCIPAL,
    principal_label,
    refused,
    security_config,
)
from producers.errors import (
    BackpressureTimeoutError,
    CommandValidationError,
    DeliveryError,
    FlushTimeoutError,
    ProducerError,
)
from schemas.codec import encode_command
from schemas.keys import command_key, partition_for
from schemas.limits import first_violation
from schemas.model import Command, CreateMonitor, DeleteMonitor, Posting, PostTransaction
from schemas.signing_keys import signature_headers
from schemas.topics import COMMANDS_TOPIC
from streamledger.errors import SettingError
from streamledger.settings import Settings

POLL_EVERY_RECORDS: Final = 1_000  # serve delivery reports this often while sending
FAILURES_KEPT_MAX: Final = 100  # first failures remembered for the error message
# confluent-kafka configuration properties that set the client's default delivery callback
DELIVERY_CALLBACK_PROPERTIES: Final = frozenset({"on_delivery", "dr_cb", "dr_msg_cb"})
# Tenants whose record key and partition are kept (a murmur2 and an encode less per send);
# cleared when full.
ROUTES_CACHED_MAX: Final = 65_536


@dataclass(frozen=True, slots=True, kw_only=True)
class ProducerSettings:
    """Named, finite limits of the SDK's producer (librdkafka property in brackets)."""

    linger_ms: int = 5  # [linger.ms] wait this long to fill a batch
    batch_bytes_max: int = 1_048_576  # [batch.size]
    batch_records_max: int = 10_000  # [batch.num.messages]
    queue_records_max: int = 500_000  # [queue.buffering.max.messages]
    queue_kbytes_max: int = 1_048_576  # [queue.buffering.max.kbytes]
    compression: str = "lz4"  # [compression.type]
    delivery_timeout_ms: int = 120_000  # [delivery.timeout.ms] broker must ack by then
    # [delivery.report.only.error = not this] False: only failed records are reported (a
    # delivered one costs no Python call); per-command reports are then refused (decision 0110)
    report_successes: bool = True
    backpressure_timeout_s: float = 30.0  # how long send() waits for room in the queue
    backpressure_poll_s: float = 0.05  # how long each wait for room polls
    metadata_timeout_s: float = 10.0  # reading the topic's partition count at start

    def client_config(self, bootstrap_servers: str) -> dict[str, Any]:
        return {
            "bootstrap.servers": bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": self.linger_ms,
            "batch.size": self.batch_bytes_max,
            "batch.num.messages": self.batch_records_max,
            "queue.buffering.max.messages": self.queue_records_max,
            "queue.buffering.max.kbytes": self.queue_kbytes_max,
            "compression.type": self.compression,
            "delivery.timeout.ms": self.delivery_timeout_ms,
            "delivery.report.only.error": not self.report_successes,
        }


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """Where a record landed, or why it did not."""

    topic: str
    partition: int
    offset: int
    error: str | None = None


DeliveryCallback = Callable[[DeliveryReport], None]


class ProducerClient(Protocol):
    """The part of ``confluent_kafka.Producer`` the SDK uses (tests swap in a fake)."""

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes,
        partition: int,
        *,
        on_delivery: Any = ...,
        headers: Any = ...,
    ) -> None: ...

    def poll(self, timeout: float) -> int: ...

    def flush(self, timeout: float) -> int: ...

    def list_topics(self, topic: str, timeout: float) -> Any: ...

    def __len__(self) -> int: ...  # records queued or in flight, reports not yet served


def validate(command: Command) -> None:
    """Raise ``CommandValidationError`` naming the first broken limit of ``command``."""
    violation = first_violation(command)
    if violation is not None:
        raise CommandValidationError(*violation)


PostingLeg = Posting | tuple[str, str, int, str]  # (debit, credit, amount, currency)


def as_posting(leg: PostingLeg) -> Posting:
    """A ``Posting`` as it is, or one from a ``(debit, credit, amount, currency)`` tuple."""
    if isinstance(leg, Posting):
        return leg
    debit_account_id, credit_account_id, amount, currency = leg
    return Posting(
        debit_account_id=debit_account_id,
        credit_account_id=credit_account_id,
        amount=amount,
        currency=currency,
    )


def post_transaction(
    *,
    tenant_id: str,
    idempotency_key: str,
    transaction_id: str,
    postings: Iterable[PostingLeg],
    submitted_at_us: int | None = None,
    pending: bool = False,
    pending_timeout_s: int | None = None,
    reverses: str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> PostTransaction:
    """A checked multi-leg ``PostTransaction`` (all postings or none; ``docs/producing.md``).

    ``submitted_at_us`` defaults to now (the processor stamps the broker's time anyway);
    ``metadata`` is sorted into the contract's pairs (an FX rate: ``fx_rate``, ``fx_pair``).
    Raises ``CommandValidationError`` naming the field, e.g. ``postings[3].amount``."""
    command = PostTransaction(
        tenant_id=tenant_id,
        idempotency_key=idempotency_key,
        submitted_at_us=time.time_ns() // 1_000 if submitted_at_us is None else submitted_at_us,
        metadata=tuple(sorted((metadata or {}).items())),
        transaction_id=transaction_id,
        postings=tuple(as_posting(leg) for leg in postings),
        pending=pending,
        pending_timeout_s=pending_timeout_s,
        reverses=reverses,
    )
    validate(command)
    return command


def create_monitor(
    *,
    tenant_id: str,
    idempotency_key: str,
    monitor_id: str,
    account_id: str,
    field: str,
    operator: str,
    threshold: int,
    submitted_at_us: int | None = None,
    metadata: Mapping[str, str] | None = None,
) -> CreateMonitor:
    """A checked ``CreateMonitor``: ``field`` one of ``schemas.limits.MONITOR_FIELDS`` (e.g.
    ``available``), ``operator`` one of ``MONITOR_OPERATORS`` (``<``, ``<=``, ``>``, ``>=``,
    ``==``), ``threshold`` in minor units; ``metadata`` is the monitor's. Raises
    ``CommandValidationError`` naming the field."""
    command = CreateMonitor(
        tenant_id=tenant_id,
        idempotency_key=idempotency_key,
        submitted_at_us=time.time_ns() // 1_000 if submitted_at_us is None else submitted_at_us,
        metadata=tuple(sorted((metadata or {}).items())),
        monitor_id=monitor_id,
        account_id=account_id,
        field=field,
        operator=operator,
        threshold=threshold,
    )
    validate(command)
    return command


def delete_monitor(
    *,
    tenant_id: str,
    idempotency_key: str,
    monitor_id: str,
    submitted_at_us: int | None = None,
) -> DeleteMonitor:
    """A checked ``DeleteMonitor``."""
    command = DeleteMonitor(
        tenant_id=tenant_id,
        idempotency_key=idempotency_key,
        submitted_at_us=time.time_ns() // 1_000 if submitted_at_us is None else submitted_at_us,
        monitor_id=monitor_id,
    )
    validate(command)
    return command


def topic_partition_count(
    client: ProducerClient, topic: str, timeout_s: float, *, principal: str = "this principal"
) -> int:
    """The partition count of ``topic`` from the broker; raises if the topic is missing, or
    ``NotAuthorizedError`` naming ``principal`` when the broker refuses to describe it."""
    try:
        metadata = client.list_topics(topic, timeout=timeout_s)
    except Exception as exc:  # librdkafka raises KafkaException; translate whatever comes
        cause = exc.args[0] if exc.args else None
        raise refused(principal, f"access to topic {topic}", cause) or ProducerError(
            f"cannot read metadata of topic {topic}: {exc}"
        ) from exc
    description = metadata.topics.get(topic)
    refusal = refused(principal, f"access to topic {topic}", getattr(description, "error", None))
    if refusal is not None:
        raise refusal
    if description is None or description.error is not None or not description.partitions:
        reason = "missing" if description is None else description.error or "no partitions"
        raise ProducerError(f"topic {topic} is not usable: {reason}")
    return len(description.partitions)


def _delivery_future() -> tuple[Future[DeliveryReport], DeliveryCallback]:
    """A future and the delivery callback that sets it (``DeliveryError`` on failure)."""
    future: Future[DeliveryReport] = Future()

    def resolve(report: DeliveryReport) -> None:
        if report.error is None:
            future.set_result(report)
        else:
            future.set_exception(DeliveryError(report.error))

    return future, resolve


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A signing key of one tenant (issue 21 §2, decision 0084): ``key_id`` (``PRINCIPAL:vN``)
    and its 32-byte secret, as ``streamledger tenants grant`` wrote them (``read_signing_key``)."""

    key_id: str
    secret: bytes = field(repr=False)


def read_signing_key(path: Path) -> tuple[str, SigningKey]:
    """(tenant id, key) from a key file written by ``write_signing_key``."""
    try:
        document = json.loads(path.read_text())
        return document["tenant_id"], SigningKey(
            document["key_id"], bytes.fromhex(document["secret"])
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SettingError(f"cannot read the signing key file {path}: {exc}") from None


def write_signing_key(path: Path, tenant_id: str, key: SigningKey) -> None:
    """Write a key file (JSON: tenant_id, key_id, secret in hex), 0600, replacing any."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    document = {"tenant_id": tenant_id, "key_id": key.key_id, "secret": key.secret.hex()}
    with os.fdopen(descriptor, "w") as handle:
        handle.write(json.dumps(document) + "\n")
    temporary.replace(path)


class LedgerProducer:
    """Validates, encodes and sends commands to ``ledger.commands``; see the module docstring.

    With ``signing_keys`` (tenant id -> ``SigningKey``), every command of such a tenant is
    signed: ``streamledger.signature.key_id`` and ``streamledger.signature`` headers over the
    exact value bytes sent (``schemas.signing_keys``)."""

    def __init__(
        self,
        settings: Settings,
        *,
        producer_settings: ProducerSettings | None = None,
        client: ProducerClient | None = None,
        client_config_overrides: Mapping[str, Any] | None = None,
        principal: str = PRODUCER_PRINCIPAL,
        signing_keys: Mapping[str, SigningKey] | None = None,
    ) -> None:
        """``principal``: the Kafka principal under ``kafka_security=scram`` (the stack's
        upstream ``producer`` unless the caller is another service or the settings name one)."""
        self.producer_settings = producer_settings or ProducerSettings()
        self.signing_keys: dict[str, SigningKey] = dict(signing_keys or {})
        self.topic = settings.topic(COMMANDS_TOPIC)
        # What a record sent without its own callback is queued with: None when the client itself
        # calls ``_on_delivery`` for it (set in its configuration).
        self._default_callback: Any = self._on_delivery
        if client is None:
            overrides = dict(client_config_overrides or {})
            config = self.producer_settings.client_config(settings.kafka_bootstrap)
            config.update(security_config(settings, principal))
            config["logger"] = KAFKA_CLIENT_LOGGER  # librdkafka's lines off stderr
            if not DELIVERY_CALLBACK_PROPERTIES & overrides.keys():
                config["on_delivery"] = self._on_delivery
                self._default_callback = None
            config.update(overrides)
            client = cast(ProducerClient, Producer(config))
        self._client: ProducerClient = client
        self.partitions = topic_partition_count(
            client,
            self.topic,
            self.producer_settings.metadata_timeout_s,
            principal=principal_label(settings, principal),
        )
        self.sent = 0
        self._delivered_reported = 0  # successes reported one by one (report_successes)
        self.failed = 0
        self.failures: list[str] = []
        self._since_poll = 0
        self._routes: dict[str, tuple[bytes, int]] = {}  # tenant -> (record key, partition)

    # ------------------------------------------------------------------ sending

    def send(self, command: Command, *, on_delivery: DeliveryCallback | None = None) -> None:
        """Validate, encode and queue ``command``; ``on_delivery`` gets its ``DeliveryReport``."""
        violation = first_violation(command)  # what ``validate`` does, one call less
        if violation is not None:
            raise CommandValidationError(*violation)
        route = self._routes.get(command.tenant_id) or self._route(command.tenant_id)
        callback = self._default_callback if on_delivery is None else self._wrap(on_delivery)
        value = encode_command(command)
        signing_key = self.signing_keys.get(command.tenant_id) if self.signing_keys else None
        headers = (
            None
            if signing_key is None
            else signature_headers(signing_key.secret, signing_key.key_id, value)
        )
        self._produce(route[0], value, route[1], callback, headers)

    def _route(self, tenant_id: str) -> tuple[bytes, int]:
        """The record key of a tenant's commands and its partition (Kafka's default
        partitioner on that key), kept for the next send."""
        key = command_key(tenant_id)
        route = (key, partition_for(key, self.partitions))
        if len(self._routes) >= ROUTES_CACHED_MAX:
            self._routes.clear()
        self._routes[tenant_id] = route
        return route

    def send_signed(
        self,
        key: bytes,
        value: bytes,
        headers: list[tuple[str, bytes]],
        *,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        """Queue an encoded record with its headers as they are (a signing-key command)."""
        callback = self._default_callback if on_delivery is None else self._wrap(on_delivery)
        self._produce(key, value, partition_for(key, self.partitions), callback, headers)

    def submit(self, command: Command) -> Future[DeliveryReport]:
        """Like ``send`` but returns a future of the ``DeliveryReport`` (set in ``poll``/``flush``).

        A failed delivery sets the future's exception to ``DeliveryError``.
        """
        future, resolve = _delivery_future()
        self.send(command, on_delivery=resolve)
        return future

    def submit_signed(
        self, key: bytes, value: bytes, headers: list[tuple[str, bytes]]
    ) -> Future[DeliveryReport]:
        """Like ``send_signed`` but returns a future of the ``DeliveryReport``."""
        future, resolve = _delivery_future()
        self.send_signed(key, value, headers, on_delivery=resolve)
        return future

    def send_raw(self, key: bytes, value: bytes, *, partition: int | None = None) -> None:
        """Queue bytes as they are (no validation, no encoding): for poison-record tests only."""
        target = partition_for(key, self.partitions) if partition is None else partition
        self._produce(key, value, target, self._default_callback)

    def _produce(
        self, key: bytes, value: bytes, partition: int, callback: Any, headers: Any = None
    ) -> None:
        """Queue one record; ``callback`` None: the client's default (``_on_delivery``)."""
        try:
            if callback is None and headers is None:  # the common case: one call
                self._client.produce(self.topic, value, key, partition)
            else:
                self._queue(key, value, partition, callback, headers)
        except BufferError:
            self._produce_when_room(key, value, partition, callback, headers)
        self.sent += 1
        self._since_poll += 1
        if self._since_poll >= POLL_EVERY_RECORDS:
            self._since_poll = 0
            self._client.poll(0)

    def _queue(
        self, key: bytes, value: bytes, partition: int, callback: Any, headers: Any = None
    ) -> None:
        if headers is not None:
            if callback is None:
                self._client.produce(self.topic, value, key, partition, headers=headers)
            else:
                self._client.produce(
                    self.topic, value, key, partition, on_delivery=callback, headers=headers
                )
        elif callback is None:
            self._client.produce(self.topic, value, key, partition)
        else:
            self._client.produce(self.topic, value, key, partition, on_delivery=callback)

    def _produce_when_room(
        self, key: bytes, value: bytes, partition: int, callback: Any, headers: Any = None
    ) -> None:
        """Backpressure: serve delivery reports until the queue has room, for a bounded time."""
        limits = self.producer_settings
        deadline = time.monotonic() + limits.backpressure_timeout_s
        while True:
            self._client.poll(limits.backpressure_poll_s)
            try:
                self._queue(key, value, partition, callback, headers)
            except BufferError:
                if time.monotonic() >= deadline:
                    raise BackpressureTimeoutError(
                        f"the local queue stayed full for {limits.backpressure_timeout_s} s"
                        f" (queue_records_max={limits.queue_records_max}); is the broker up?"
                    ) from None
            else:
                return

    # ------------------------------------------------------------------ delivery

    def _count(self, error: Any, message: Any) -> DeliveryReport:
        if error is None:
            self._delivered_reported += 1
            return DeliveryReport(message.topic(), message.partition(), message.offset())
        self.failed += 1
        return DeliveryReport(self.topic, message.partition(), -1, str(error))

    def _on_delivery(self, error: Any, message: Any) -> None:
        if error is None:  # the common case, kept cheap
            self._delivered_reported += 1
            return
        self._count(error, message)
        if len(self.failures) < FAILURES_KEPT_MAX:
            self.failures.append(str(error))

    def _wrap(self, on_delivery: DeliveryCallback) -> Callable[[Any, Any], None]:
        if not self.producer_settings.report_successes:
            raise ProducerError(
                "a per-command delivery report (on_delivery, submit) needs"
                " ProducerSettings(report_successes=True): this producer reports failures only"
            )

        def deliver(error: Any, message: Any) -> None:
            on_delivery(self._count(error, message))

        return deliver

    def poll(self, timeout_s: float = 0.0) -> int:
        """Serve delivery reports; returns how many were served."""
        return self._client.poll(timeout_s)

    @property
    def delivered(self) -> int:
        """Records the broker acknowledged: reported one by one, or, with
        ``report_successes=False``, every record sent that neither failed nor is still queued."""
        if self.producer_settings.report_successes:
            return self._delivered_reported
        return self.sent - self.failed - len(self._client)

    @property
    def in_flight(self) -> int:
        return self.sent - self.delivered - self.failed

    def flush(self, timeout_s: float) -> None:
        """Wait at most ``timeout_s`` for every queued record's delivery report.

        Raises ``FlushTimeoutError`` if some are still undelivered, ``DeliveryError`` if any
        record without its own callback failed since the last flush.
        """
        remaining = self._client.flush(timeout_s)
        if remaining > 0:
            raise FlushTimeoutError(
                f"{remaining} records undelivered after {timeout_s} s", undelivered=remaining
            )
        if self.failures:
            failures, self.failures = self.failures, []
            raise DeliveryError(f"{len(failures)} records failed, first: {failures[0]}")

    def close(self, timeout_s: float = 30.0) -> None:
        self.flush(timeout_s)

    def __enter__(self) -> LedgerProducer:
        return self

    def __exit__(
        self,
        exception_type: type[BaseException] | None,
        exception: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exception_type is None:
            self.close()
