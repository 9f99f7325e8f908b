"""Which endpoint gets which event, and how far the dispatcher may commit. Pure.

``PositionBook`` keeps, per partition (of ``ledger.events`` or ``ledger.notifications``: the
dispatcher keys them ``(source, partition)``), the next offset read and the offsets
of events some in-memory delivery still holds (queued or being retried). The position committed
to Kafka is the smallest held offset, or the next offset read when nothing is held: committed
only after every delivery of every earlier event was answered 2xx or stored in PostgreSQL
(spilled, dead-lettered). A restart reads again from there; the endpoints skip what they had
already stored (``Endpoint.routed_through``), so a receiver sees a delivery again only if its
2xx was not recorded yet (at least once, never skipped).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

PartitionKey = int | tuple[str, int]  # the dispatcher's: (delivery source, partition number)


class Route(Enum):
    """Where one delivery goes when it is read."""

    QUEUE = "queue"  # the endpoint's in-memory queue
    SPILL = "spill"  # PostgreSQL, pending: the queue is full or stored deliveries come first
    DEAD = "dead"  # PostgreSQL, dead: the endpoint is disabled


def route(*, enabled: bool, spilling: bool, queued: int, queue_max: int) -> Route:
    if not enabled:
        return Route.DEAD
    if spilling or queued >= queue_max:
        return Route.SPILL
    return Route.QUEUE


@dataclass(slots=True)
class PartitionPosition:
    next_offset: int | None = None  # one past the last offset read
    held: Counter[int] = field(default_factory=Counter)  # offset -> deliveries in memory


class PositionBook:
    """Commit positions per partition; see the module docstring."""

    def __init__(self) -> None:
        self._partitions: dict[PartitionKey, PartitionPosition] = {}
        self._committed: dict[PartitionKey, int] = {}

    def read(self, partition: PartitionKey, offset: int) -> None:
        position = self._partitions.setdefault(partition, PartitionPosition())
        assert position.next_offset is None or offset >= position.next_offset, (
            f"offsets of partition {partition} went back: {offset} < {position.next_offset}"
        )
        position.next_offset = offset + 1

    def hold(self, partition: PartitionKey, offset: int) -> None:
        self._partitions.setdefault(partition, PartitionPosition()).held[offset] += 1

    def release(self, partition: PartitionKey, offset: int) -> None:
        position = self._partitions.get(partition)
        if position is None or position.held[offset] <= 0:
            return  # the partition was revoked meanwhile: its book is gone
        position.held[offset] -= 1
        if position.held[offset] == 0:
            del position.held[offset]

    def forget(self, partitions: Iterable[PartitionKey]) -> None:
        for partition in partitions:
            self._partitions.pop(partition, None)
            self._committed.pop(partition, None)

    def held_total(self) -> int:
        return sum(sum(position.held.values()) for position in self._partitions.values())

    def to_commit(self) -> dict[PartitionKey, int]:
        """Positions that moved since the last ``committed``: partition -> next offset."""
        moved: dict[PartitionKey, int] = {}
        for partition, position in self._partitions.items():
            if position.next_offset is None:
                continue
            target = min(position.held) if position.held else position.next_offset
            if target > self._committed.get(partition, -1):
                moved[partition] = target
        return moved

    def committed(self, positions: dict[PartitionKey, int]) -> None:
        for partition, offset in positions.items():
            if partition in self._partitions:
                self._committed[partition] = offset
