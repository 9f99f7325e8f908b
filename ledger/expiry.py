"""Expiry indexes: which pending transfers and stored outcomes are due by a stream time.

Min-heaps of (expires_at_us, tenant_id, name) with lazy deletion, and a separate heap for the
open batch so an abort simply clears it. Used by ``ledger.state.LedgerState``.
"""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Callable, Iterable, Iterator

from schemas.keys import KEY_SEPARATOR

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


class OutcomeExpiryIndex(ExpiryIndex):
    """The stored outcomes' ``ExpiryIndex`` plus the expiries of the outcomes a restore kept
    encoded (decision 0102): one sorted ``array('q')`` of expiries and a parallel list of their
    record keys (the same ``bytes`` objects as the keys of ``encoded``, 16 bytes an entry where a
    heap entry was ~105), walked from ``position``.

    An encoded entry is live while its record key is still in ``encoded`` (the state's dict of
    outcomes kept encoded: replaced or forgotten ones leave it, an abort puts them back). Only
    ``commit`` moves ``position``, past entries that are dead then, so an abort has nothing to
    undo here. ``due`` answers both parts as ``ExpiryEntry`` tuples, sorted, as before: the
    record key is split into (tenant, idempotency key) only for an entry that is due.
    """

    __slots__ = ("encoded", "encoded_expiries", "encoded_keys", "position")

    def __init__(
        self,
        entries: Iterable[ExpiryEntry] = (),
        *,
        encoded: dict[bytes, bytes] | None = None,
        encoded_expiries: array[int] | None = None,
        encoded_keys: list[bytes] | None = None,
    ) -> None:
        super().__init__(entries)
        self.encoded: dict[bytes, bytes] = {} if encoded is None else encoded
        self.encoded_expiries: array[int] = (
            array("q") if encoded_expiries is None else encoded_expiries
        )
        self.encoded_keys: list[bytes] = [] if encoded_keys is None else encoded_keys
        assert len(self.encoded_expiries) == len(self.encoded_keys)
        self.position = 0

    def any_due(self, until_us: int) -> bool:
        position = self.position
        return ExpiryIndex.any_due(self, until_us) or (
            position < len(self.encoded_keys) and self.encoded_expiries[position] <= until_us
        )

    def due(self, until_us: int, is_live: Callable[[ExpiryEntry], bool]) -> list[ExpiryEntry]:
        found = ExpiryIndex.due(self, until_us, is_live)
        expiries, keys, encoded = self.encoded_expiries, self.encoded_keys, self.encoded
        position, size = self.position, len(keys)
        while position < size and expiries[position] <= until_us:
            key = keys[position]
            if key in encoded:
                tenant_id, name = key.decode().split(KEY_SEPARATOR, 1)
                found.append((expiries[position], tenant_id, name))
            position += 1
        found.sort()
        return found

    def commit(self, is_live: Callable[[ExpiryEntry], bool]) -> None:
        ExpiryIndex.commit(self, is_live)
        keys, encoded = self.encoded_keys, self.encoded
        position, size = self.position, len(keys)
        while position < size and keys[position] not in encoded:
            position += 1
        if position and position * 2 >= size:  # drop the passed half: amortised O(1) an entry
            del keys[:position]
            del self.encoded_expiries[:position]
            position = 0
        self.position = position
