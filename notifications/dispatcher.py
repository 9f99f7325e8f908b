"""``streamledger notify``: read ``ledger.events`` and ``ledger.notifications`` and feed each
endpoint's worker.

One loop, top to bottom (an asyncio task; the workers are tasks beside it)::

    every endpoints_refresh_ms: read the endpoints → start, re-enable or stop workers
    → take a batch of ledger.events and ledger.notifications (balance monitors' edges;
      read_committed, in a thread: the workers keep delivering)
    → apply partition assignment changes
    → route each event (notification) to the endpoints of its tenant that subscribed to its
      type (kind):
      the endpoint's queue (held in the position book), or PostgreSQL (spilled when the queue
      is full, dead when the endpoint is disabled), stored before the loop goes on
    → every commit_interval_ms: commit, per topic and partition, the smallest offset some
      queued delivery still holds (``notifications.routing.PositionBook``)

Its own consumer group (``streamledger-notify`` after the topic prefix); a fresh group starts at
the beginning of the log (endpoints skip what precedes their creation), so nothing committed
between an endpoint's creation and the dispatcher's first start is missed.

A notification is delivered like an event (signed, at least once, its offset committed only
after its 2xx and its row), with its notification id ``{tenant}:{sequence}:{monitor_id}`` as the
delivery id; several monitors may fire on one event, so an endpoint's restart point for
notifications is its highest stored sequence *and* the ids stored at it (decision 0068).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from kafka_adapter.admin import KAFKA_CLIENT_LOGGER
from kafka_adapter.batches import take_batch
from kafka_adapter.security import DISPATCHER_PRINCIPAL, client_config
from notifications.delivery import EndpointWorker
from notifications.metrics import NotifyMetrics
from notifications.payloads import (
    event_body,
    event_type_name,
    notification_body,
    notification_kind,
    subscribes_to,
)
from notifications.recording import DeliveredRecorder
from notifications.routing import PartitionKey, PositionBook, Route, route
from notifications.settings import NotifySettings
from notifications.store import (
    SOURCE_EVENT,
    SOURCE_NOTIFICATION,
    STATUS_DEAD,
    STATUS_PENDING,
    Attempt,
    Delivery,
    DeliveryStore,
    Endpoint,
)
from schemas.codec import decode_event, decode_notification
from schemas.keys import command_key, partition_for
from schemas.model import Event, Notification
from schemas.topics import EVENTS_TOPIC, NOTIFICATIONS_TOPIC
from streamledger.errors import InfraError
from streamledger.settings import Settings

LOG = logging.getLogger("streamledger.notify")
METADATA_TIMEOUT_S = 30.0
STORE_RETRY_S = 1.0
WORKER_STOP_TIMEOUT_S = 5.0
RECORD_DRAIN_TIMEOUT_S = 5.0  # at shutdown: rows not written by then are delivered again


@dataclass(slots=True)
class Assignment:
    """Partitions of ``ledger.events`` this dispatcher owns (``owned``; stored deliveries are
    read back by the owner of the tenant's events partition) and the partitions of both topics
    it lost; changed by the consumer's callbacks (in the polling thread), read by the loop and
    the workers."""

    partition_count: int
    owned: set[int] = field(default_factory=set)
    dropped: list[PartitionKey] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def owns(self, tenant_id: str) -> bool:
        return partition_for(command_key(tenant_id), self.partition_count) in self.owned

    def take_dropped(self) -> list[PartitionKey]:
        with self.lock:
            dropped, self.dropped = self.dropped, []
        return dropped


class Dispatcher:
    """The consumer of ``ledger.events`` and ``ledger.notifications``, and the endpoints'
    workers."""

    def __init__(
        self,
        settings: Settings,
        notify: NotifySettings,
        metrics: NotifyMetrics,
        *,
        seed: int | None = None,
    ) -> None:
        self.settings = settings
        self.notify = notify
        self.metrics = metrics
        self.topic = settings.topic(EVENTS_TOPIC)
        self.notifications_topic = settings.topic(NOTIFICATIONS_TOPIC)
        self.topics = {SOURCE_EVENT: self.topic, SOURCE_NOTIFICATION: self.notifications_topic}
        self.sources = {topic: source for source, topic in self.topics.items()}
        self.store = DeliveryStore(settings.database_dsn, pool_size_max=notify.pool_size_max)
        self.positions = PositionBook()
        self.recorder = DeliveredRecorder(
            self.store,
            self.positions,
            metrics,
            batch_rows_max=notify.record_batch_rows_max,
            linger_s=notify.record_linger_s,
        )
        self.rng = random.Random(seed)  # noqa: S311  jitter, not secrets
        self.workers: dict[tuple[str, str], EndpointWorker] = {}
        self.tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self.by_tenant: dict[str, list[EndpointWorker]] = {}
        self.disabled_at: dict[tuple[str, str], float] = {}
        # tenant -> the last sequence read: where an endpoint seen for the first time starts.
        self.tenant_heads: dict[str, int] = {}
        self.endpoints_version = -1
        self.assignment = Assignment(partition_count=1)

    # ------------------------------------------------------------------ the loop

    async def run(self, stop: asyncio.Event) -> None:
        await self.store.open()
        consumer = self.new_consumer()
        recording = asyncio.create_task(self.recorder.run(), name="webhook-recorder")
        try:
            self.assignment = Assignment(partition_count=self.partition_count(consumer))
            self.partition_count(consumer, self.notifications_topic)  # it exists
            consumer.subscribe(
                list(self.topics.values()),
                on_assign=self.on_assign,
                on_revoke=self.on_drop,
                on_lost=self.on_drop,
            )
            await self.loop(consumer, stop, recording)
        finally:
            await self.shut_down(consumer, recording)

    async def loop(
        self, consumer: Consumer, stop: asyncio.Event, recording: asyncio.Task[None]
    ) -> None:
        next_refresh = next_commit = 0.0
        poll_s = self.notify.poll_timeout_ms / 1000
        while not stop.is_set():
            if recording.done():
                recording.result()  # the recorder only ends by a bug: crash loudly with it
                raise AssertionError("the delivered-row recorder stopped")
            self.metrics.loop_heartbeat()
            if time.monotonic() >= next_refresh:
                await self.refresh_endpoints()
                next_refresh = time.monotonic() + self.notify.endpoints_refresh_ms / 1000
            records = await asyncio.to_thread(
                take_batch, consumer, self.notify.batch_records_max, poll_s
            )
            self.positions.forget(self.assignment.take_dropped())
            if records:
                await self.refresh_if_changed()
            await self.route_batch(records)
            if time.monotonic() >= next_commit:
                await self.commit(consumer)
                next_commit = time.monotonic() + self.notify.commit_interval_ms / 1000
            self.update_gauges()

    def new_consumer(self) -> Consumer:
        return Consumer(
            {
                **client_config(self.settings, DISPATCHER_PRINCIPAL),
                "group.id": self.notify.consumer_group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "session.timeout.ms": self.notify.session_timeout_ms,
                "partition.assignment.strategy": "cooperative-sticky",
            },
            logger=KAFKA_CLIENT_LOGGER,
        )

    def partition_count(self, consumer: Consumer, name: str | None = None) -> int:
        name = self.topic if name is None else name
        try:
            metadata = consumer.list_topics(name, timeout=METADATA_TIMEOUT_S)
        except KafkaException as exc:
            raise InfraError(f"reading {name}'s metadata failed: {exc}") from exc
        topic = metadata.topics.get(name)
        if topic is None or topic.error is not None or not topic.partitions:
            raise InfraError(f"topic {name} not found; run `streamledger infra up`")
        return len(topic.partitions)

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        with self.assignment.lock:
            self.assignment.owned.update(p.partition for p in partitions if p.topic == self.topic)
        LOG.info("assigned partitions %s", sorted((p.topic, p.partition) for p in partitions))

    def on_drop(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        with self.assignment.lock:
            for partition in partitions:
                if partition.topic == self.topic:
                    self.assignment.owned.discard(partition.partition)
                source = self.sources.get(partition.topic, SOURCE_EVENT)
                self.assignment.dropped.append((source, partition.partition))

    # ------------------------------------------------------------------ endpoints

    async def refresh_if_changed(self) -> None:
        """Called after a batch was taken, before it is routed: an endpoint created before the
        batch's events were committed is known when they are routed (decision 0038)."""
        try:
            version = await self.store.changes_version()
        except InfraError as exc:
            LOG.warning("reading the endpoints' version failed (%s)", exc)
            await self.refresh_endpoints()
            return
        if version != self.endpoints_version and await self.refresh_endpoints():
            self.endpoints_version = version

    async def refresh_endpoints(self) -> bool:
        """Start, re-enable and stop workers to match the stored endpoints; False if
        PostgreSQL could not be read (the known endpoints stay)."""
        started = time.monotonic()
        try:
            endpoints = await self.store.endpoints(self.notify.endpoints_max)
        except InfraError as exc:
            LOG.warning("reading the endpoints failed (%s); keeping the known ones", exc)
            return False
        current = {endpoint.key: endpoint for endpoint in endpoints}
        for key, endpoint in current.items():
            worker = self.workers.get(key)
            if worker is None:
                await self.start_worker(endpoint)
            elif self.replayed(endpoint, worker, started):
                worker.re_enable(endpoint)
        for key in [key for key in self.workers if key not in current]:
            await self.stop_worker(key)
        self.by_tenant = {}
        for worker in self.workers.values():
            self.by_tenant.setdefault(worker.endpoint.tenant_id, []).append(worker)
        return True

    def replayed(self, endpoint: Endpoint, worker: EndpointWorker, started: float) -> bool:
        """The tenant replayed its dead letters (the endpoint is enabled again), and not merely
        read as enabled just before this dispatcher disabled it."""
        # Disabled before this process started (no entry): any enabled row is a replay.
        disabled_at = self.disabled_at.get(endpoint.key, -math.inf)
        return endpoint.enabled and not worker.enabled and disabled_at < started

    async def start_worker(self, endpoint: Endpoint) -> None:
        """A worker for an endpoint seen for the first time. It gets the events after the
        tenant's last one read so far (the consumer has passed the earlier ones); that start is
        stored, so a restart does not deliver older events to it."""
        head = self.tenant_heads.get(endpoint.tenant_id, 0)
        if head > min(endpoint.routed_through, endpoint.notified_through):
            try:
                await self.store.advance_start(endpoint, head)
            except InfraError as exc:
                LOG.warning("storing an endpoint's start failed (%s); next refresh", exc)
                return
            endpoint = advanced(endpoint, head)
        worker = EndpointWorker(
            endpoint,
            settings=self.notify,
            store=self.store,
            positions=self.positions,
            recorder=self.recorder,
            metrics=self.metrics,
            rng=random.Random(self.rng.random()),  # noqa: S311  jitter, not secrets
            owns=self.assignment.owns,
            on_disabled=self.note_disabled,
        )
        self.workers[endpoint.key] = worker
        self.tasks[endpoint.key] = asyncio.create_task(
            worker.run(), name=f"webhook-{endpoint.endpoint_id}"
        )

    def note_disabled(self, key: tuple[str, str]) -> None:
        self.disabled_at[key] = time.monotonic()

    async def stop_worker(self, key: tuple[str, str]) -> None:
        task = self.tasks.pop(key)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await self.workers.pop(key).close()
        self.disabled_at.pop(key, None)

    # ------------------------------------------------------------------ routing

    async def route_batch(self, records: Sequence[Message]) -> None:
        stored: list[tuple[Delivery, Attempt]] = []
        spilled: list[EndpointWorker] = []
        for record in records:
            error = record.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise InfraError(f"reading {record.topic()}: {error}")
            source = self.sources.get(record.topic() or "", SOURCE_EVENT)
            partition, offset = record.partition() or 0, record.offset() or 0
            self.positions.read((source, partition), offset)
            value = record.value()
            if value is None:
                continue
            _, timestamp_ms = record.timestamp()
            read = (timestamp_ms * 1000, partition, offset)
            if source == SOURCE_NOTIFICATION:
                self.route_notification(decode_notification(value), read, stored, spilled)
            else:
                self.route_event(decode_event(value), read, stored, spilled)
        await self.store_until_done(stored)
        for worker in spilled:
            worker.spill_writes -= 1
            worker.wake.set()
        for _, attempt in stored:
            outcome = "spilled" if attempt.status == STATUS_PENDING else "dead_lettered"
            self.metrics.deliveries.labels(outcome).inc()

    def route_event(
        self,
        event: Event,
        read: tuple[int, int, int],  # the record's timestamp (µs), partition and offset
        stored: list[tuple[Delivery, Attempt]],
        spilled: list[EndpointWorker],
    ) -> None:
        committed_at_us, partition, offset = read
        self.tenant_heads[event.tenant_id] = event.sequence
        type_name = event_type_name(event)
        body: bytes | None = None
        for worker in self.by_tenant.get(event.tenant_id, ()):
            endpoint = worker.endpoint
            if event.sequence <= worker.routed_through:
                continue  # stored before a restart
            if not subscribes_to(endpoint.event_types, type_name):
                continue
            worker.routed_through = event.sequence
            body = body if body is not None else event_body(event)
            delivery = Delivery(
                event.tenant_id, endpoint.endpoint_id, event.sequence, event.event_id,
                type_name, body, committed_at_us, partition, offset,
            )  # fmt: skip
            self.hand_over(worker, delivery, stored, spilled)

    def route_notification(
        self,
        notification: Notification,
        read: tuple[int, int, int],  # the record's timestamp (µs), partition and offset
        stored: list[tuple[Delivery, Attempt]],
        spilled: list[EndpointWorker],
    ) -> None:
        """A balance monitor's edge to each endpoint of its tenant subscribed to its kind, once
        per endpoint (its id is the delivery id; several may share the causing sequence)."""
        committed_at_us, partition, offset = read
        kind = notification_kind(notification)
        body: bytes | None = None
        for worker in self.by_tenant.get(notification.tenant_id, ()):
            if not subscribes_to(worker.endpoint.event_types, kind):
                continue
            if not worker.takes_notification(notification.sequence, notification.notification_id):
                continue  # stored before a restart, or routed already
            body = body if body is not None else notification_body(notification)
            delivery = Delivery(
                notification.tenant_id, worker.endpoint.endpoint_id, notification.sequence,
                notification.notification_id, kind, body, committed_at_us, partition, offset,
                source=SOURCE_NOTIFICATION,
            )  # fmt: skip
            self.hand_over(worker, delivery, stored, spilled)

    def hand_over(
        self,
        worker: EndpointWorker,
        delivery: Delivery,
        stored: list[tuple[Delivery, Attempt]],
        spilled: list[EndpointWorker],
    ) -> None:
        """To the endpoint's queue, or to be stored: spilled (pending) or dead."""
        where = route(
            enabled=worker.enabled,
            spilling=worker.spilling,
            queued=len(worker.queue),
            queue_max=self.notify.queue_deliveries_max,
        )
        if where is Route.QUEUE:
            worker.enqueue(delivery)
        elif where is Route.SPILL:
            worker.spilling = True
            worker.spill_writes += 1
            spilled.append(worker)
            stored.append((delivery, Attempt(STATUS_PENDING)))
        else:
            stored.append((delivery, Attempt(STATUS_DEAD, last_error="endpoint disabled")))

    async def store_until_done(self, rows: list[tuple[Delivery, Attempt]]) -> None:
        """Spilled and dead deliveries must be stored before their offsets may be committed."""
        while rows:
            try:
                await self.store.store(rows)
                return
            except InfraError as exc:
                LOG.warning("storing %d deliveries failed (%s); retrying", len(rows), exc)
                self.metrics.loop_heartbeat()  # waiting on PostgreSQL is not a stall
                await asyncio.sleep(STORE_RETRY_S)

    # ------------------------------------------------------------------ positions

    async def commit(self, consumer: Consumer) -> None:
        moved = self.positions.to_commit()
        if not moved:
            return
        offsets = [
            TopicPartition(self.topics[key[0]], key[1], offset)
            for key, offset in moved.items()
            if isinstance(key, tuple)
        ]
        try:
            await asyncio.to_thread(consumer.commit, offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            LOG.warning("committing positions failed (%s); the next commit covers them", exc)
            return
        self.positions.committed(moved)

    def update_gauges(self) -> None:
        backlogs = [len(worker.queue) for worker in self.workers.values()]
        self.metrics.backlog.set(sum(backlogs))
        self.metrics.backlog_largest.set(max(backlogs, default=0))
        self.metrics.record_waiting.set(self.recorder.rows_waiting())
        self.metrics.endpoints.set(len(self.workers))
        self.metrics.endpoints_disabled.set(
            sum(1 for worker in self.workers.values() if not worker.enabled)
        )
        self.metrics.ready = bool(self.assignment.owned)

    async def shut_down(self, consumer: Consumer, recording: asyncio.Task[None]) -> None:
        """Stop posting, write the delivered rows (bounded), commit, then close: a position
        committed here passes only deliveries whose rows are written (decision 0065)."""
        try:
            for task in self.tasks.values():
                task.cancel()
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)
            if not recording.done() and not await self.recorder.drain(RECORD_DRAIN_TIMEOUT_S):
                LOG.warning("delivered rows not written at shutdown: delivered again later")
            await self.commit(consumer)
        finally:
            recording.cancel()
            await asyncio.gather(recording, return_exceptions=True)
            for key in list(self.workers):
                await self.stop_worker(key)
            await asyncio.to_thread(consumer.close)
            await self.store.close()


def advanced(endpoint: Endpoint, head: int) -> Endpoint:
    """``endpoint`` starting after the tenant's sequence ``head`` (for events and for the
    notifications they caused), unless it was further already."""
    if head > endpoint.notified_through:
        endpoint = dataclasses.replace(endpoint, notified_through=head, notified_ids=None)
    return dataclasses.replace(endpoint, routed_through=max(endpoint.routed_through, head))
