"""One endpoint's worker: delivers its events one at a time, in sequence order.

Each endpoint has its own worker (an asyncio task), its own bounded in-memory queue and its own
HTTP connection (``httpx.AsyncClient`` with one connection): a receiver that is slow, hangs,
returns 500s or drops the connection only ever holds its own worker, never another endpoint's
or another tenant's. A delivery is retried with bounded exponential backoff and jitter
(``notifications.retries``) until a 2xx; after ``endpoint_failures_max`` consecutive failures
the endpoint is disabled and the delivery, its queue and its stored pending deliveries become
dead letters (listed and replayed by the tenant through the API).

Order: the queue's deliveries come before any spilled one (once an endpoint spills, everything
after goes to PostgreSQL until the worker has read the stored ones back), and stored pending
deliveries are read back in sequence order. So a receiver sees an endpoint's events in
sequence order, each at least once (again only when a 2xx was not recorded before a crash).

After a 2xx the worker hands the delivery to the dispatcher's ``DeliveredRecorder`` and goes on:
delivered rows are written in batches, one transaction each, and a delivery's offset is
released only once its row is committed (``notifications.recording``, decision 0065).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable

from notifications.metrics import NotifyMetrics
from notifications.recording import DeliveredRecorder
from notifications.retries import retry_delay_s
from notifications.routing import PositionBook
from notifications.settings import NotifySettings
from notifications.signing import (
    DELIVERY_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    signature_header,
)
from notifications.store import (
    STATUS_DEAD,
    STATUS_DELIVERED,
    Attempt,
    Delivery,
    DeliveryStore,
    Endpoint,
)
from notifications.transport import EndpointConnection
from streamledger import __version__
from streamledger.errors import InfraError

LOG = logging.getLogger("streamledger.notify.delivery")
USER_AGENT = f"StreamLedger-Webhooks/{__version__}"
STORE_RETRY_S = 1.0  # PostgreSQL failed: try the same step again after this


class EndpointWorker:
    """Delivers ``endpoint``'s deliveries; the dispatcher feeds ``queue`` (see ``offer``)."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        settings: NotifySettings,
        store: DeliveryStore,
        positions: PositionBook,
        recorder: DeliveredRecorder,
        metrics: NotifyMetrics,
        rng: random.Random,
        owns: Callable[[str], bool] = lambda tenant_id: True,
        on_disabled: Callable[[tuple[str, str]], None] = lambda key: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.endpoint = endpoint
        self.settings = settings
        self.store = store
        self.positions = positions
        self.recorder = recorder
        self.metrics = metrics
        self.rng = rng
        self.owns = owns  # stored deliveries are read back by the owner of the tenant's partition
        self.on_disabled = on_disabled
        self.clock = clock
        self.enabled = endpoint.enabled
        self.spilling = endpoint.has_pending  # stored pending deliveries come first
        self.spill_writes = 0  # spills decided by the dispatcher but not yet stored
        self.routed_through = endpoint.routed_through
        self.notified_through = endpoint.notified_through
        self.notified_ids = endpoint.notified_ids
        self.queue: deque[Delivery] = deque()
        self.stored: deque[Delivery] = deque()
        self.wake = asyncio.Event()
        self.connection = EndpointConnection(
            endpoint.url,
            connect_timeout_s=settings.connect_timeout_s,
            timeout_s=settings.delivery_timeout_s,
            user_agent=USER_AGENT,
        )

    # ------------------------------------------------------------------ the dispatcher's side

    def enqueue(self, delivery: Delivery) -> None:
        assert delivery.partition is not None and delivery.offset is not None
        self.positions.hold((delivery.source, delivery.partition), delivery.offset)
        self.queue.append(delivery)
        self.wake.set()

    def takes_notification(self, sequence: int, notification_id: str) -> bool:
        """True once per notification: not stored before a restart, not routed already
        (several monitors may fire on one event, so the sequence alone does not say)."""
        if sequence < self.notified_through:
            return False
        if sequence == self.notified_through:
            if self.notified_ids is None or notification_id in self.notified_ids:
                return False
            self.notified_ids = self.notified_ids | {notification_id}
            return True
        self.notified_through = sequence
        self.notified_ids = frozenset((notification_id,))
        return True

    def re_enable(self, endpoint: Endpoint) -> None:
        """The tenant replayed its dead letters: they were made pending, deliver them first."""
        self.endpoint = endpoint
        self.enabled = True
        self.spilling = True
        self.wake.set()

    async def close(self) -> None:
        for delivery in self.queue:
            self.release(delivery)
        self.queue.clear()
        self.connection.close()

    # ------------------------------------------------------------------ the worker's loop

    async def run(self) -> None:
        while True:
            delivery = await self.next_delivery()
            await self.deliver(delivery)

    async def next_delivery(self) -> Delivery:
        while True:
            if self.enabled and self.queue:
                return self.queue[0]
            if self.enabled and self.spilling and self.owns(self.endpoint.tenant_id):
                if not self.stored and not await self.read_back_stored():
                    continue  # PostgreSQL failed: try again (it waited)
                if self.stored:
                    return self.stored[0]
                if self.spill_writes == 0:
                    self.spilling = False  # nothing stored and nothing on its way: back to memory
                    continue
            self.wake.clear()
            await self.wake.wait()

    async def read_back_stored(self) -> bool:
        """Read the next page of stored pending deliveries; False if PostgreSQL failed."""
        try:
            in_flight = self.recorder.in_flight(self.endpoint.tenant_id, self.endpoint.endpoint_id)
            page = await self.store.pending(self.endpoint, in_flight, self.settings.stored_page_max)
        except InfraError as exc:
            LOG.warning("reading stored deliveries back failed (%s); retrying", exc)
            await asyncio.sleep(STORE_RETRY_S)
            return False
        self.stored.extend(page)
        return True

    def pop(self, delivery: Delivery) -> None:
        if self.queue and self.queue[0] is delivery:
            self.queue.popleft()
        elif self.stored and self.stored[0] is delivery:
            self.stored.popleft()

    def release(self, delivery: Delivery) -> None:
        if delivery.partition is not None and delivery.offset is not None:
            self.positions.release((delivery.source, delivery.partition), delivery.offset)

    async def deliver(self, delivery: Delivery) -> None:
        """Attempt until a 2xx, or disable the endpoint after too many failures."""
        failures = 0
        while True:
            signed_at_s = int(self.clock())
            header = signature_header(self.endpoint.secret, signed_at_s, delivery.body)
            problem = await self.post(delivery, header)
            if problem is None:
                self.metrics.latency.observe(
                    max(self.clock() - delivery.committed_at_us / 1_000_000, 0.0)
                )
                self.metrics.deliveries.labels("delivered").inc()
                self.pop(delivery)
                # The row is written in the recorder's next batch, and only then is the
                # delivery's offset released (decision 0065): the worker goes on meanwhile.
                attempt = Attempt(STATUS_DELIVERED, signed_at_s, header, failures + 1)
                self.recorder.add(delivery, attempt)
                await self.recorder.room()
                return
            failures += 1
            if failures >= self.settings.endpoint_failures_max:
                await self.disable(delivery, problem, failures, signed_at_s, header)
                return
            delay_s = retry_delay_s(
                failures,
                base_ms=self.settings.backoff_base_ms,
                max_ms=self.settings.backoff_max_ms,
                random_fraction=self.rng.random(),
            )
            await asyncio.sleep(delay_s)

    async def post(self, delivery: Delivery, header: str) -> str | None:
        """One HTTP attempt: None on a 2xx, else what went wrong (one line)."""
        headers = (
            ("Content-Type", "application/json"),
            (SIGNATURE_HEADER, header),
            (DELIVERY_ID_HEADER, delivery.delivery_id),
            (EVENT_TYPE_HEADER, delivery.event_type),
        )
        # One connection of its own (decision 0066); the answer's body is never kept.
        answer = await self.connection.post(delivery.body, headers)
        self.metrics.attempts.labels(answer.result).inc()
        return answer.problem

    async def disable(
        self, delivery: Delivery, problem: str, failures: int, signed_at_s: int, header: str
    ) -> None:
        reason = f"{failures} consecutive failed attempts; the last: {problem}"
        LOG.warning(
            "disabling endpoint %s of tenant %s: %s",
            self.endpoint.endpoint_id,
            self.endpoint.tenant_id,
            reason,
        )
        dead = [(delivery, Attempt(STATUS_DEAD, signed_at_s, header, failures, problem))]
        dead += [
            (queued, Attempt(STATUS_DEAD, last_error="the endpoint was disabled"))
            for queued in self.queue
            if queued is not delivery
        ]
        while True:
            try:
                await self.store.store(dead)
                await self.store.disable(self.endpoint, reason)
                break
            except InfraError as exc:
                LOG.warning("disabling the endpoint failed (%s); retrying", exc)
                await asyncio.sleep(STORE_RETRY_S)
        self.metrics.deliveries.labels("dead_lettered").inc(len(dead))
        for queued, _ in dead:
            self.release(queued)
        self.queue.clear()
        self.stored.clear()
        self.enabled = False
        self.spilling = False
        self.on_disabled(self.endpoint.key)
