"""Expiry indexes: which pending transfers and stored outcomes are due by a stream time.

Min-heaps of (expires_at_us, tenant_id, name) with lazy deletion, and a separate heap for the
open batch so an abort simply clears it. Used by ``ledger.state.LedgerState``.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator

ExpiryEntry = tuple[int, str, str]  # (expires_at_us, tenant_id, transfer_id or idempotency_key)


def _heap_prefix(heap: list[ExpiryEntry], until_us: int) -> Iterator[ExpiryEntry]:
    """Entries of a binary min-heap with expires_at <= until_us, without popping (O(found))."""
    size = len(heap)
    stack = [0] if size else []
    while stack:
        position = stack.pop()
        entry = heap[position]
        if entry[0] <= until_us:
            yield entry
            stack.extend(child for child in (2 * position + 1, 2 * position + 2) if child < size)


class ExpiryIndex:
    """Min-heaps of (expires_at_us, tenant_id, name) with lazy deletion.

    An entry is live while the record it names still carries that expiry; dead entries are
    dropped when they reach the top at commit. Entries of the open batch sit in a separate heap
    so an abort simply clears it.
    """

    __slots__ = ("committed", "pruned", "staged")

    def __init__(self, entries: Iterable[ExpiryEntry] = ()) -> None:
        self.committed: list[ExpiryEntry] = list(entries)
        heapq.heapify(self.committed)
        self.staged: list[ExpiryEntry] = []
        self.pruned: list[ExpiryEntry] = []  # popped from committed in the open batch

    def push(self, entry: ExpiryEntry) -> None:
        heapq.heappush(self.staged, entry)

    def any_due(self, until_us: int) -> bool:
        return bool(
            (self.committed and self.committed[0][0] <= until_us)
            or (self.staged and self.staged[0][0] <= until_us)
        )

    def due(self, until_us: int, is_live: Callable[[ExpiryEntry], bool]) -> list[ExpiryEntry]:
        """Live entries with expires_at <= until_us, sorted, without duplicates."""
        found = set(_heap_prefix(self.committed, until_us))
        found.update(_heap_prefix(self.staged, until_us))
        return sorted(entry for entry in found if is_live(entry))

    def prune(self, is_live: Callable[[ExpiryEntry], bool]) -> None:
        """Drop dead entries from the tops of both heaps, so ``any_due``/``due`` do not walk
        over transfers the open batch already ended (O(1) when the top is live).

        A dead staged entry stays dead (a transfer never returns to pending); a committed one
        may come back to life if the batch aborts, so it is kept in ``pruned`` until then.
        """
        staged, committed = self.staged, self.committed
        while staged and not is_live(staged[0]):
            heapq.heappop(staged)
        while committed and not is_live(committed[0]):
            self.pruned.append(heapq.heappop(committed))

    def commit(self, is_live: Callable[[ExpiryEntry], bool]) -> None:
        for entry in self.staged:
            heapq.heappush(self.committed, entry)
        self.staged.clear()
        self.pruned.clear()
        while self.committed and not is_live(self.committed[0]):
            heapq.heappop(self.committed)

    def abort(self) -> None:
        self.staged.clear()
        for entry in self.pruned:
            heapq.heappush(self.committed, entry)
        self.pruned.clear()
