"""Delivered rows written in batches: one PostgreSQL transaction per batch (decision 0065).

A worker that got a 2xx hands the delivery to the ``DeliveredRecorder`` and goes on with its
next delivery at once; the recorder's task writes whatever has accumulated in one statement
(array parameters, one transaction) while the workers keep posting, so under load a batch is
whatever completed during the previous write (group commit). At a trickle that would be a
transaction per delivery (1.05 rows per write at 1,000 deliveries/s to one endpoint, about as much
dispatcher CPU as the deliveries themselves), so the recorder first lets a batch gather for
``linger_s`` after its first row, cut short when ``batch_rows_max`` rows wait (decision 0079).
The linger delays only the row and the release of its offset, never the delivery: the receiver
has its 2xx already, and the consumer commits its positions far less often.

Commit order, per delivery:

    2xx received → handed to the recorder (the worker moves on)
    → its row committed in the batch's transaction
    → its offset released in the ``PositionBook``
    → a later ``commit`` of the consumer may pass it

So a Kafka position never passes a delivery whose row is not committed. A crash between the
2xx and the batch's commit loses the rows of that batch, never the events: the committed
position is still before them and each endpoint's restart point (its highest stored sequence)
too, so they are delivered again with the same ``StreamLedger-Delivery-Id`` — a duplicate the
receiver drops, never a loss (decision 0065).

Memory is bounded: at most ``batch_rows_max`` rows wait; a worker that finds the buffer full
waits for the write (PostgreSQL down means workers stop delivering, the positions stay).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from notifications.metrics import NotifyMetrics
from notifications.routing import PositionBook
from notifications.store import Attempt, Delivery, DeliveryStore
from streamledger.errors import InfraError

LOG = logging.getLogger("streamledger.notify.recording")
STORE_RETRY_S = 1.0  # a failed batch is written again after this (same rows, same order)


class DeliveredRecorder:
    """Buffers delivered rows and writes them, a batch per transaction; see the module doc."""

    def __init__(
        self,
        store: DeliveryStore,
        positions: PositionBook,
        metrics: NotifyMetrics,
        *,
        batch_rows_max: int,
        linger_s: float = 0.0,
    ) -> None:
        assert batch_rows_max >= 1 and linger_s >= 0
        self.store = store
        self.positions = positions
        self.metrics = metrics
        self.batch_rows_max = batch_rows_max
        self.linger_s = linger_s
        self.waiting: list[tuple[Delivery, Attempt]] = []
        self.writing: list[tuple[Delivery, Attempt]] = []
        self.has_rows = asyncio.Event()
        self.full = asyncio.Event()  # batch_rows_max rows wait: the linger ends
        self.has_room = asyncio.Event()
        self.has_room.set()
        self.idle = asyncio.Event()  # nothing waiting and nothing being written
        self.idle.set()

    def add(self, delivery: Delivery, attempt: Attempt) -> None:
        """Hand over a delivered row (never lost once here: a worker cancelled afterwards
        leaves it to be written and its offset released)."""
        self.waiting.append((delivery, attempt))
        self.idle.clear()
        self.has_rows.set()
        if len(self.waiting) >= self.batch_rows_max:
            self.full.set()

    async def room(self) -> None:
        """Wait while ``batch_rows_max`` rows already wait (each worker adds one at most
        before waiting here, so the buffer holds at most that plus one per endpoint)."""
        while len(self.waiting) >= self.batch_rows_max:
            self.has_room.clear()
            await self.has_room.wait()

    def in_flight(self, tenant_id: str, endpoint_id: str) -> list[str]:
        """The delivery ids of the endpoint handed over but not written yet: still ``pending``
        in PostgreSQL if they were read back from there, yet answered already."""
        return [
            delivery.delivery_id
            for delivery, _ in (*self.writing, *self.waiting)
            if delivery.endpoint_id == endpoint_id and delivery.tenant_id == tenant_id
        ]

    def rows_waiting(self) -> int:
        return len(self.waiting) + len(self.writing)

    async def run(self) -> None:
        """The recorder's task: write a batch, release its positions, again."""
        while True:
            if not self.waiting:
                self.idle.set()
                self.has_rows.clear()
                await self.has_rows.wait()
                continue
            await self.linger()
            self.writing, self.waiting = self.waiting, []
            self.full.clear()
            self.has_room.set()
            await self.write(self.writing)
            for delivery, _ in self.writing:
                if delivery.partition is not None and delivery.offset is not None:
                    self.positions.release((delivery.source, delivery.partition), delivery.offset)
            self.metrics.record_batches.inc()
            self.metrics.record_batch_rows.observe(len(self.writing))
            self.writing = []

    async def linger(self) -> None:
        """Let more rows join the batch: until ``linger_s`` has passed or the batch is full."""
        if self.linger_s <= 0 or len(self.waiting) >= self.batch_rows_max:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.full.wait(), self.linger_s)

    async def write(self, rows: list[tuple[Delivery, Attempt]]) -> None:
        """One transaction for the batch; PostgreSQL down means wait and write it again."""
        while True:
            try:
                await self.store.store(rows)
                return
            except InfraError as exc:
                LOG.warning("storing %d delivered rows failed (%s); retrying", len(rows), exc)
                await asyncio.sleep(STORE_RETRY_S)

    async def drain(self, timeout_s: float) -> bool:
        """Wait (bounded) until every row handed over is written; False on the deadline
        (shutting down: what is not written is delivered again after the restart)."""
        try:
            await asyncio.wait_for(self.idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True
