"""Batched delivered rows (decision 0065): a delivery's offset is released only after the
transaction holding its row committed; a failed write is retried with the same rows; the
batch's columns hold a key once. The store is a stand-in here (its SQL runs against the real
PostgreSQL in tests/system/test_notifications.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from notifications import recording
from notifications.metrics import NotifyMetrics
from notifications.recording import DeliveredRecorder
from notifications.routing import PositionBook
from notifications.store import (
    SOURCE_EVENT,
    STATUS_DELIVERED,
    STATUS_PENDING,
    Attempt,
    Delivery,
    batch_columns,
)
from streamledger.errors import InfraError

PARTITION = (SOURCE_EVENT, 0)  # the position book's key: (delivery source, partition)


def delivery(sequence: int, offset: int) -> Delivery:
    return Delivery(
        "acme", "we_0000000000000001", sequence, f"acme:{sequence}", "TransferPosted",
        b"{}", 1_700_000_000_000_000, 0, offset,
    )  # fmt: skip


class StandInStore:
    """Records each batch; fails the first ``failures`` writes like an unreachable database."""

    def __init__(self, positions: PositionBook, failures: int = 0) -> None:
        self.positions = positions
        self.failures = failures
        self.batches: list[list[int]] = []
        self.released_before_write: list[int] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def store(self, rows: Sequence[tuple[Delivery, Attempt]]) -> None:
        await self.gate.wait()
        if self.failures:
            self.failures -= 1
            raise InfraError("PostgreSQL is down")
        # Nothing of this batch may have been released before it is written.
        self.released_before_write += [d.sequence for d, _ in rows if not self.held(d)]
        self.batches.append([d.sequence for d, _ in rows])

    def held(self, item: Delivery) -> bool:
        assert item.offset is not None
        return item.offset in self.positions._partitions[PARTITION].held


def recorder_with(
    store: StandInStore, positions: PositionBook, *, linger_s: float = 0.0
) -> DeliveredRecorder:
    return DeliveredRecorder(
        store,  # type: ignore[arg-type]  # the stand-in has DeliveryStore.store only
        positions,
        NotifyMetrics(),
        batch_rows_max=3,
        linger_s=linger_s,
    )


def test_offsets_are_released_only_after_their_batch_is_written() -> None:
    async def scenario() -> None:
        positions = PositionBook()
        store = StandInStore(positions)
        recorder = recorder_with(store, positions)
        task = asyncio.create_task(recorder.run())
        store.gate.clear()  # the database is slow: rows accumulate
        for offset in range(5):
            positions.read(PARTITION, offset)
            positions.hold(PARTITION, offset)
            recorder.add(delivery(offset + 1, offset), Attempt(STATUS_DELIVERED))
        await asyncio.sleep(0.01)
        assert positions.to_commit() == {PARTITION: 0}  # all held: nothing written yet
        store.gate.set()
        assert await recorder.drain(5.0)
        assert positions.to_commit() == {PARTITION: 5}
        assert store.released_before_write == []
        assert [sequence for batch in store.batches for sequence in batch] == [1, 2, 3, 4, 5]
        assert len(store.batches) <= 2  # grouped, not one write per row
        task.cancel()

    asyncio.run(scenario())


def test_a_failed_write_is_retried_and_holds_the_position_meanwhile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(recording, "STORE_RETRY_S", 0.01)

    async def scenario() -> None:
        positions = PositionBook()
        store = StandInStore(positions, failures=1)
        recorder = recorder_with(store, positions)
        task = asyncio.create_task(recorder.run())
        positions.read(PARTITION, 0)
        positions.hold(PARTITION, 0)
        recorder.add(delivery(1, 0), Attempt(STATUS_DELIVERED))
        assert await recorder.drain(5.0)
        assert store.batches == [[1]] and positions.to_commit() == {PARTITION: 1}
        task.cancel()

    asyncio.run(scenario())


def test_a_full_buffer_makes_a_worker_wait_for_room() -> None:
    async def scenario() -> None:
        positions = PositionBook()
        store = StandInStore(positions)
        recorder = recorder_with(store, positions)
        for offset in range(3):
            positions.read(PARTITION, offset)
            positions.hold(PARTITION, offset)
            recorder.add(delivery(offset + 1, offset), Attempt(STATUS_DELIVERED))
        waiting = asyncio.create_task(recorder.room())
        await asyncio.sleep(0.01)
        assert not waiting.done()  # 3 rows wait, the limit: no room until a write starts
        task = asyncio.create_task(recorder.run())
        await asyncio.wait_for(waiting, 5.0)
        assert await recorder.drain(5.0)
        task.cancel()

    asyncio.run(scenario())


def test_a_trickle_of_rows_lingers_into_one_batch() -> None:
    async def scenario() -> None:
        positions = PositionBook()
        store = StandInStore(positions)
        recorder = recorder_with(store, positions, linger_s=0.5)
        task = asyncio.create_task(recorder.run())
        for offset in range(2):  # two rows a little apart, fewer than a full batch
            positions.read(PARTITION, offset)
            positions.hold(PARTITION, offset)
            recorder.add(delivery(offset + 1, offset), Attempt(STATUS_DELIVERED))
            await asyncio.sleep(0.05)
        assert store.batches == []  # still lingering: nothing written, nothing released
        assert positions.to_commit().get(PARTITION, 0) == 0  # no offset passed
        assert await recorder.drain(5.0)
        assert store.batches == [[1, 2]] and positions.to_commit() == {PARTITION: 2}
        task.cancel()

    asyncio.run(scenario())


def test_a_full_batch_ends_the_linger_at_once() -> None:
    async def scenario() -> None:
        positions = PositionBook()
        store = StandInStore(positions)
        recorder = recorder_with(store, positions, linger_s=60.0)
        task = asyncio.create_task(recorder.run())
        for offset in range(3):  # batch_rows_max rows
            positions.read(PARTITION, offset)
            positions.hold(PARTITION, offset)
            recorder.add(delivery(offset + 1, offset), Attempt(STATUS_DELIVERED))
            await asyncio.sleep(0)
        assert await recorder.drain(5.0)  # long before the minute's linger
        assert store.batches == [[1, 2, 3]]
        task.cancel()

    asyncio.run(scenario())


def test_batch_columns_hold_each_key_once_the_last_row_winning() -> None:
    pending = (delivery(1, 0), Attempt(STATUS_PENDING))
    delivered = (delivery(1, 0), Attempt(STATUS_DELIVERED, 1_700_000_000, "t=1,v1=ab", 1))
    columns = batch_columns([pending, (delivery(2, 1), Attempt(STATUS_PENDING)), delivered])
    assert len(columns) == 13  # with the delivery's source (migration 0011)
    assert columns[2] == [1, 2]  # sequence
    assert columns[5] == [STATUS_DELIVERED, STATUS_PENDING]  # status
    assert all(len(column) == 2 for column in columns)
