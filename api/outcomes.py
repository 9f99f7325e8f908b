"""The outcome cache: every live outcome of ``ledger.outcomes`` this process has read, bounded.

Why not ``producers.replies.OutcomeWaiter``: it reads a partition from the offset noted before
sending, so it only sees outcomes written *after* the send. The processor writes nothing for a
duplicate (the original outcome stands) and nothing for a key reused with another payload (it
would overwrite the original in a compacted topic) — see decision 0010. A retry would then wait
for an outcome that never comes. So the API reads ``ledger.outcomes`` itself:

- ``OutcomeFeed`` is one thread with one group-less consumer assigned to every partition from
  the beginning, ``read_committed``. It puts each outcome into the ``OutcomeCache`` and drops
  the key on a tombstone (retention expiry). It is *caught up* once every partition of both
  topics has reported its end once; until then ``/readyz`` says no: before the outcomes' ends a
  duplicate cannot be answered yet, and before the replies' ends their starting offsets may not be
  fixed yet (``OFFSET_END`` is resolved when the partition is first fetched), so a
  ``RATE_LIMITED`` reply written meanwhile could be skipped and its request wait out its time.
- ``OutcomeCache`` maps (tenant, idempotency key) to the outcome, least recently written first,
  at most ``entries_max`` (the oldest is evicted and counted), kept as the records read so the
  garbage collector never walks them (decision 0122). Waiters are futures on an asyncio
  loop, resolved with ``call_soon_threadsafe`` when their key arrives.

The feed also reads ``ledger.replies`` from its end, for one kind of answer only: a
``RATE_LIMITED`` reply (decision 0083), which is never stored in ``ledger.outcomes``. It fails the
key's waiters with a ``rate-limited`` problem (429 with ``Retry-After``) and caches nothing, so a
retry with the same key is sent and decided normally. Every other reply is skipped by its
``streamledger.reply.kind`` header without decoding it.

Thread safety: one lock guards the map and the waiters; the feed thread writes, the event loop
reads and registers waiters. Nothing blocks under the lock.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any, Final

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, TopicPartition

from api.problems import RATE_LIMITED, SERVICE_UNAVAILABLE, ApiProblemError
from kafka_adapter.admin import KAFKA_CLIENT_LOGGER
from kafka_adapter.batches import take_batch
from kafka_adapter.security import API_PRINCIPAL, client_config
from schemas.codec import DecodeError, decode_outcome, encode_outcome
from schemas.keys import KEY_SEPARATOR
from schemas.model import Outcome, RejectReason
from schemas.topics import OUTCOMES_TOPIC, REPLIES_TOPIC
from streamledger.errors import InfraError, InvariantViolationError, TopicError
from streamledger.settings import Settings

LOG = logging.getLogger("streamledger.api.outcomes")
CONSUME_RECORDS_MAX: Final = 1_000
CONSUME_TIMEOUT_S: Final = 0.05
METADATA_TIMEOUT_S: Final = 10.0
# The reply headers of the contract (docs/contract.md, "Replies"): only not_stored replies can be
# RATE_LIMITED, and only those carry the retry-after.
REPLY_KIND_HEADER: Final = "streamledger.reply.kind"
REPLY_NOT_STORED: Final = b"not_stored"
REPLY_RETRY_AFTER_HEADER: Final = "streamledger.reply.retry_after_ms"

OutcomeKey = tuple[str, str]  # (tenant_id, idempotency_key)


class OutcomeCache:
    """Outcomes by (tenant, key), bounded; futures waiting for keys not seen yet.

    Kept as the records read (``bytes``), decoded when asked for, in three plain dicts of
    ``str``, ``bytes`` and ``int`` only: CPython's cyclic collector untracks such dicts, so the
    cache adds nothing to what a full collection walks, however many outcomes it holds. As
    ``Outcome`` objects in an ``OrderedDict``, 250,000 of them (the default bound) made every
    full collection of the API walk them all, 67 ms of CPU during which no request is served
    (decision 0122). The write order (oldest evicted first) is a position per key and a key per
    position, the oldest position kept; a key written again moves to the newest position."""

    def __init__(self, *, entries_max: int) -> None:
        assert entries_max > 0
        self.entries_max = entries_max
        self.evicted = 0
        self._records: dict[str, bytes] = {}  # cache key → the outcome's record
        self._positions: dict[str, int] = {}  # cache key → its place in the write order
        self._order: dict[int, str] = {}  # place → cache key (holes: rewritten or forgotten)
        self._next_position = 0
        self._oldest_position = 0
        self._waiters: dict[OutcomeKey, list[asyncio.Future[Outcome]]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._records)

    def get(self, key: OutcomeKey) -> Outcome | None:
        with self._lock:
            record = self._records.get(cache_key(key))
        return None if record is None else decode_outcome(record)

    def put(self, outcome: Outcome, record: bytes | None = None) -> None:
        """Keep ``outcome`` (``record``: its bytes as read; encoded from it when None) and hand
        it to the key's waiters."""
        key = (outcome.tenant_id, outcome.idempotency_key)
        stored = encode_outcome(outcome) if record is None else record
        with self._lock:
            self._write(cache_key(key), stored)
            waiters = self._waiters.pop(key, [])
        for future in waiters:
            future.get_loop().call_soon_threadsafe(_resolve, future, outcome)

    def _write(self, key: str, record: bytes) -> None:
        """Under the lock: ``record`` at the newest position, the oldest evicted past the bound."""
        self._unplace(key)
        self._records[key] = record
        self._positions[key] = self._next_position
        self._order[self._next_position] = key
        self._next_position += 1
        while len(self._records) > self.entries_max:
            self._evict_oldest()

    def _unplace(self, key: str) -> None:
        position = self._positions.pop(key, None)
        if position is not None:
            del self._order[position]

    def _evict_oldest(self) -> None:
        """Under the lock: drop the oldest key; each hole in the order is passed once."""
        while self._oldest_position < self._next_position:
            key = self._order.pop(self._oldest_position, None)
            self._oldest_position += 1
            if key is not None:
                del self._records[key], self._positions[key]
                self.evicted += 1
                return
        raise InvariantViolationError("the outcome cache holds keys with no place in its order")

    def refuse(self, key: OutcomeKey, problem: ApiProblemError) -> None:
        """Fail the key's current waiters with ``problem`` (a reply that is not an outcome: the
        key stays free, nothing is cached)."""
        with self._lock:
            waiters = self._waiters.pop(key, [])
        for future in waiters:
            future.get_loop().call_soon_threadsafe(_refuse, future, problem)

    def forget(self, key: OutcomeKey) -> None:
        with self._lock:
            found = cache_key(key)
            self._unplace(found)
            self._records.pop(found, None)

    def wait_for(self, key: OutcomeKey, *, stale: Outcome | None = None) -> asyncio.Future[Outcome]:
        """A future of the key's outcome: done at once if one other than ``stale`` (equal to it)
        is cached, else when the feed puts one. Call on the event loop."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        with self._lock:
            record = self._records.get(cache_key(key))
            outcome = None if record is None else decode_outcome(record)
            if outcome is None or outcome == stale:
                outcome = None
                self._waiters.setdefault(key, []).append(future)
        if outcome is not None:
            future.set_result(outcome)
        return future

    def stop_waiting(self, key: OutcomeKey, future: asyncio.Future[Outcome]) -> None:
        with self._lock:
            waiters = self._waiters.get(key)
            if waiters is not None and future in waiters:
                waiters.remove(future)
                if not waiters:
                    del self._waiters[key]

    @property
    def waiting(self) -> int:
        with self._lock:
            return sum(len(futures) for futures in self._waiters.values())


def cache_key(key: OutcomeKey) -> str:
    """The record key's text (``schemas.keys``): a tenant id holds no separator, so one text
    per (tenant, key), and a ``str`` keeps the cache's dicts out of the collector's reach."""
    return key[0] + KEY_SEPARATOR + key[1]


def _resolve(future: asyncio.Future[Outcome], outcome: Outcome) -> None:
    if not future.done():
        future.set_result(outcome)


def _refuse(future: asyncio.Future[Outcome], problem: ApiProblemError) -> None:
    if not future.done():
        future.set_exception(problem)


def rate_limited_problem(
    value: bytes, headers: list[tuple[str, bytes]] | None
) -> ApiProblemError | None:
    """The 429 of a ``RATE_LIMITED`` reply on ``ledger.replies``, or None for any other reply
    (decoded only when its kind is ``not_stored`` and it carries a retry-after)."""
    found = dict(headers or ())
    if found.get(REPLY_KIND_HEADER) != REPLY_NOT_STORED:
        return None
    retry_after = found.get(REPLY_RETRY_AFTER_HEADER)
    if retry_after is None:
        return _unauthenticated_problem(value)
    outcome = decode_outcome(value)
    if outcome.reason is not RejectReason.RATE_LIMITED:
        return None
    return ApiProblemError(
        RATE_LIMITED,
        outcome.detail,
        reason=outcome.reason.value,
        retry_after_ms=int(retry_after),
        idempotency_key=outcome.idempotency_key,
    )


def _unauthenticated_problem(value: bytes) -> ApiProblemError | None:
    """The processor refused the API's signature for the tenant (decision 0086): the API has
    no key granted for it, or an old one. The caller did nothing wrong: 503, and the operator
    grants the key (``streamledger tenants grant api TENANT``); nothing was stored."""
    outcome = decode_outcome(value)
    if outcome.reason is not RejectReason.UNAUTHENTICATED:
        return None
    return ApiProblemError(
        SERVICE_UNAVAILABLE,
        f"the API may not sign for this tenant yet ({outcome.detail})",
        reason=outcome.reason.value,
        idempotency_key=outcome.idempotency_key,
    )


def split_outcome_key(key: bytes) -> OutcomeKey:
    tenant_id, _, idempotency_key = key.decode("utf-8").partition(KEY_SEPARATOR)
    return tenant_id, idempotency_key


class OutcomeFeed:
    """One thread reading every partition of ``ledger.outcomes`` into an ``OutcomeCache``."""

    def __init__(
        self,
        settings: Settings,
        cache: OutcomeCache,
        *,
        on_record: Callable[[], None] | None = None,
    ) -> None:
        self.topic = settings.topic(OUTCOMES_TOPIC)
        self.replies_topic = settings.topic(REPLIES_TOPIC)
        self.cache = cache
        self.failure: str | None = None
        self.records_read = 0
        self._on_record = on_record
        self._caught_up = threading.Event()
        self._stop = threading.Event()
        self._consumer = Consumer(
            {
                **client_config(settings, API_PRINCIPAL),
                "group.id": f"streamledger-api-outcomes-{uuid.uuid4().hex}",  # assign() only
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
            },
            logger=KAFKA_CLIENT_LOGGER,
        )
        self._thread = threading.Thread(target=self._run, name="api-outcome-feed", daemon=True)
        self._at_end: set[tuple[str, int]] = set()  # (topic, partition) that reported its end
        self._partitions = 0

    @property
    def caught_up(self) -> bool:
        return self._caught_up.is_set()

    def start(self) -> None:
        metadata = self._consumer.list_topics(self.topic, timeout=METADATA_TIMEOUT_S)
        description = metadata.topics.get(self.topic)
        if description is None or description.error is not None or not description.partitions:
            raise_missing(self.topic, description)
        self._partitions = len(description.partitions)
        # the outcomes from the beginning (the cache); the replies from their end: only replies
        # to commands sent from now on can answer a waiter (same partition count, checked by
        # the processor at its start)
        self._consumer.assign(
            [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in range(self._partitions)]
            + [TopicPartition(self.replies_topic, p, OFFSET_END) for p in range(self._partitions)]
        )
        self._thread.start()

    def wait_caught_up(self, timeout_s: float) -> bool:
        return self._caught_up.wait(timeout_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._consumer.close()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                # No added wait: an outcome reaches its waiting submit as soon as it is fetched.
                for message in take_batch(self._consumer, CONSUME_RECORDS_MAX, CONSUME_TIMEOUT_S):
                    self._take(message)
        except Exception as exc:  # a feed that dies must say so through readiness, not vanish
            self.failure = f"{type(exc).__name__}: {exc}"
            LOG.exception("the outcome feed stopped")

    def _take(self, message: Any) -> None:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                raise InfraError(f"reading {message.topic()}: {error.str()}")
            # an outcomes partition's end: caught up with the cache there; a replies partition's
            # end: its position is fixed, every reply written from now on will be read
            self._at_end.add((message.topic(), message.partition()))
            if len(self._at_end) == 2 * self._partitions:
                self._caught_up.set()
            return
        key = split_outcome_key(message.key())
        value = message.value()
        if message.topic() == self.replies_topic:
            problem = None if value is None else rate_limited_problem(value, message.headers())
            if problem is not None:
                self.cache.refuse(key, problem)
            return
        if value is None:
            self.cache.forget(key)
        else:
            try:
                self.cache.put(decode_outcome(value), value)
            except DecodeError as exc:
                raise InvariantViolationError(
                    f"undecodable outcome at {self.topic}[{message.partition()}]"
                    f"@{message.offset()}: {exc}"
                ) from exc
        self.records_read += 1
        if self._on_record is not None:
            self._on_record()


def raise_missing(topic: str, description: Any) -> None:
    reason = "missing" if description is None else description.error or "no partitions"
    raise TopicError(f"topic {topic} is not usable: {reason}")
