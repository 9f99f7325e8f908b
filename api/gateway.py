"""Submitting a command from a request and waiting for its outcome, idempotently.

``CommandGateway.submit(command, wait=...)`` decides in this order:

1. **Known key.** The outcome cache (``api.outcomes``) holds a live outcome for (tenant, key):
   same command type and fingerprint (``ledger.command_fingerprint``, the pure
   function the processor uses) → the original outcome, nothing is produced; otherwise →
   ``idempotency-key-reused`` (409) naming the first differing field
   (``ledger.first_differing_field``), nothing is produced. This is needed, not just
   fast: the processor writes no new outcome for a duplicate or a reused key (decision 0010).
2. **New key.** Register a waiter for the key, produce the command with the SDK
   (``LedgerProducer``, on one producer thread), wait for the broker's ack, then wait for the
   outcome until ``wait_timeout_ms`` has passed → ``Decided(outcome)`` or ``Pending``. The
   outcome that arrives is checked like in 1: two concurrent requests with one key and different
   payloads both produce, the processor decides the first, and the other gets 409.

An outcome whose idempotency retention has passed (``expires_at_us`` before now) counts as absent,
as it does in the processor; the wait then ignores that stale entry.

Threads: the event loop calls ``submit``; ``send`` runs on a one-thread executor (the SDK's
counters are not thread-safe, and backpressure may block); a poll thread serves delivery reports,
which resolve futures on the loop through ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from api.outcomes import OutcomeCache
from api.problems import IDEMPOTENCY_KEY_REUSED, SERVICE_UNAVAILABLE, ApiProblemError
from api.settings import ApiSettings
from kafka_adapter.security import API_PRINCIPAL
from ledger import command_fingerprint, first_differing_field
from processors.signing_master import key_file_path
from producers.errors import ProducerError
from producers.sdk import (
    DeliveryReport,
    LedgerProducer,
    ProducerSettings,
    SigningKey,
    read_signing_key,
)
from schemas.model import Command, Outcome
from streamledger.settings import Settings

POLL_S: Final = 0.05
KEYS_REFRESH_S: Final = 60.0  # the API's signing key files are read again this often
MISSING_KEY_RETRY_S: Final = 1.0  # at most this often for a tenant without a key file
FLUSH_TIMEOUT_S: Final = 10.0
# Interactive latency over throughput: a request waits for its batch, so linger briefly.
API_PRODUCER_SETTINGS: Final = ProducerSettings(
    linger_ms=1, backpressure_timeout_s=2.0, delivery_timeout_ms=30_000
)


@dataclass(frozen=True, slots=True)
class Decided:
    outcome: Outcome
    duplicate: bool  # answered from an outcome stored before this request


@dataclass(frozen=True, slots=True)
class Pending:
    """Sent and acknowledged by the broker; no outcome within the wait."""


SubmitResult = Decided | Pending


def now_us() -> int:
    return time.time_ns() // 1_000


def is_live(outcome: Outcome, at_us: int) -> bool:
    return outcome.expires_at_us is None or outcome.expires_at_us > at_us


def check_same_command(outcome: Outcome, command: Command) -> None:
    """Raise 409 if ``outcome`` was decided for another command than ``command``."""
    fingerprint, _ = command_fingerprint(command)
    if outcome.command_type == type(command).__name__ and outcome.fingerprint == fingerprint:
        return
    field = first_differing_field(outcome, command)
    raise ApiProblemError(
        IDEMPOTENCY_KEY_REUSED,
        f"{field}: differs from the request first made with this idempotency key",
        field=field,
        idempotency_key=command.idempotency_key,
    )


class CommandGateway:
    """Produces commands with the SDK and answers them from the outcome cache."""

    def __init__(self, settings: Settings, api: ApiSettings, cache: OutcomeCache) -> None:
        self.api = api
        self.cache = cache
        self.broker_error: str | None = None
        self.in_flight = 0
        self._producer = LedgerProducer(
            settings,
            producer_settings=API_PRODUCER_SETTINGS,
            client_config_overrides={"error_cb": self._on_client_error},
            principal=API_PRINCIPAL,  # the API's own Kafka principal (decision 0063)
        )
        # the API's own signing keys, one per tenant granted to principal "api" (decision 0086)
        self._keys = ApiSigningKeys(settings.home)
        self._producer.signing_keys = self._keys.refresh(time.monotonic())
        self._sender = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="api-producer")
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="api-producer-poll", daemon=True)
        self._poller.start()

    @property
    def running(self) -> bool:
        """The delivery-report thread is alive. Whether the broker answers NOW is
        ``api.readiness.BrokerProbe``'s question, not this sticky error's."""
        return self._poller.is_alive()

    def _on_client_error(self, error: Any) -> None:
        # librdkafka reports broker trouble here and retries by itself; /readyz shows the last
        # error while its own probe of the broker fails.
        self.broker_error = str(error)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(POLL_S)

    async def submit(self, command: Command, *, wait: bool) -> SubmitResult:
        key = (command.tenant_id, command.idempotency_key)
        stored = self.cache.get(key)
        if stored is not None and is_live(stored, now_us()):
            check_same_command(stored, command)
            return Decided(stored, duplicate=True)
        if self.in_flight >= self.api.submits_in_flight_max:
            raise ApiProblemError(SERVICE_UNAVAILABLE, "too many commands waiting for outcomes")
        self.in_flight += 1
        future = self.cache.wait_for(key, stale=stored)
        try:
            deadline = asyncio.get_running_loop().time() + self.api.wait_timeout_s
            await self._send(command, deadline)
            if not wait:
                return Pending()
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                outcome = await asyncio.wait_for(asyncio.shield(future), max(remaining, 0.0))
            except TimeoutError:
                return Pending()
        finally:
            self.in_flight -= 1
            self.cache.stop_waiting(key, future)
        check_same_command(outcome, command)
        return Decided(outcome, duplicate=False)

    async def _send(self, command: Command, deadline: float) -> None:
        """Produce ``command`` and wait for the broker's acknowledgement (bounded)."""
        loop = asyncio.get_running_loop()
        delivered: asyncio.Future[DeliveryReport] = loop.create_future()

        def on_delivery(report: DeliveryReport) -> None:
            loop.call_soon_threadsafe(_settle, delivered, report)

        try:
            await loop.run_in_executor(
                self._sender, lambda: self._send_signed(command, on_delivery)
            )
            timeout_s = max(deadline - loop.time(), self.api.wait_timeout_s, 1.0)
            report = await asyncio.wait_for(delivered, timeout_s)
        except (ProducerError, TimeoutError) as exc:
            raise ApiProblemError(
                SERVICE_UNAVAILABLE, "the broker did not take the command"
            ) from exc
        if report.error is not None:
            raise ApiProblemError(
                SERVICE_UNAVAILABLE, f"the broker refused the command: {report.error}"
            )
        self.broker_error = None

    def _send_signed(self, command: Command, on_delivery: Callable[[DeliveryReport], None]) -> None:
        """On the producer thread: sign with the API's key for the command's tenant (read
        again from the key files when stale or missing) and send."""
        producer = self._producer
        if self._keys.stale(command.tenant_id, time.monotonic()):
            producer.signing_keys = self._keys.refresh(time.monotonic())
        producer.send(command, on_delivery=on_delivery)

    def close(self) -> None:
        self._sender.shutdown(wait=True)
        with contextlib.suppress(ProducerError):
            self._producer.flush(FLUSH_TIMEOUT_S)
        self._stop.set()
        self._poller.join()


class ApiSigningKeys:
    """The key files ``streamledger tenants grant api TENANT`` wrote, by tenant. Read at start,
    again every ``KEYS_REFRESH_S`` (a rotation), and, for a request whose tenant has no key,
    as soon as that tenant's key file exists (granted since: one ``stat`` per such request) or
    at most every ``MISSING_KEY_RETRY_S``. Decision 0115."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.directory = key_file_path(home, API_PRINCIPAL, "tenant").parent
        self.keys: dict[str, SigningKey] = {}
        self.read_at = -math.inf

    def stale(self, tenant_id: str, now: float) -> bool:
        age = now - self.read_at
        if age >= KEYS_REFRESH_S:
            return True
        if tenant_id in self.keys:
            return False
        # a tenant id has no path separator (TENANT_ID_PATTERN): the path is the tenant's own
        return (
            age >= MISSING_KEY_RETRY_S
            or key_file_path(self.home, API_PRINCIPAL, tenant_id).exists()
        )

    def refresh(self, now: float) -> dict[str, SigningKey]:
        keys: dict[str, SigningKey] = {}
        if self.directory.is_dir():
            for path in sorted(self.directory.glob("*.json")):
                tenant_id, key = read_signing_key(path)
                keys[tenant_id] = key
        self.keys, self.read_at = keys, now
        return dict(keys)


def _settle(future: asyncio.Future[DeliveryReport], report: DeliveryReport) -> None:
    if not future.done():
        future.set_result(report)
