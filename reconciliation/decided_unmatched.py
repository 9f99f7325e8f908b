"""The items whose current state is ``unmatched``, remembered for a manual match (decision 0106).

A line or a movement that ended ``unmatched`` (its window closed without a partner, or a person
unmatched it, decision 0090) is no longer open: the matcher dropped it. A person who finds its
partner later matches them by hand (``statements match``); the matcher then supersedes the
``unmatched`` result with a manual ``matched`` one, which names the items and their signed
amounts. This index holds what that result needs: per (tenant, account) and side, the item ids
and the signed amount of each *part* — the items of one side of one ``unmatched`` result (one
item for a window that closed; the lines, or the movements, of a group a person unmatched, whose
amounts the result gives only as a sum). A manual match names whole parts.

Bounded: at most ``items_max`` items per matcher partition (``decided_unmatched_max``); past it
the oldest parts (in decision order) are forgotten and counted (``forgotten_items``, a metric and
a warning): a manual match naming a forgotten item is refused, naming the limit. The index is a
function of the results alone, in their order on ``ledger.reconciliation``: a restore that
reads them back (``Reconciler.remember_decided``) rebuilds it exactly, evictions included.
Pure: no I/O, plain typed code (compiled with the matcher's core).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

DECIDED_UNMATCHED_MAX_DEFAULT: Final = 100_000  # items per partition (~0.3 kB each)


@dataclass(frozen=True, slots=True)
class UnmatchedPart:
    """The items of one side of one ``unmatched`` result and their signed amount (credit > 0)."""

    tenant_id: str
    account_id: str
    is_line: bool
    item_ids: tuple[str, ...]
    signed_amount: int


ItemKey = tuple[str, str, bool, str]  # (tenant, account, is a line, item id)


class DecidedUnmatched:
    """The parts of the ``unmatched`` results still current, oldest first, at most ``items_max``
    items in all."""

    def __init__(self, items_max: int) -> None:
        assert items_max > 0
        self.items_max = items_max
        self.parts: dict[int, UnmatchedPart] = {}  # insertion order = decision order
        self.part_of: dict[ItemKey, int] = {}
        self.next_part = 0
        self.forgotten_items = 0  # items dropped past items_max (a metric)

    def __len__(self) -> int:
        return len(self.part_of)

    def add_result(
        self,
        tenant_id: str,
        account_id: str,
        *,
        line_ids: Sequence[str],
        line_amount: int,
        movement_ids: Sequence[str],
        movement_amount: int,
    ) -> None:
        """An ``unmatched`` result was decided: its items are now unmatched."""
        for is_line, item_ids, amount in (
            (True, line_ids, line_amount),
            (False, movement_ids, movement_amount),
        ):
            if item_ids:
                self._add(UnmatchedPart(tenant_id, account_id, is_line, tuple(item_ids), amount))

    def discard_named(
        self, tenant_id: str, account_id: str, line_ids: Sequence[str], movement_ids: Sequence[str]
    ) -> None:
        """A ``matched``/``mismatched`` result names these items: the parts holding them are no
        longer current (a manual match names whole parts)."""
        for is_line, item_ids in ((True, line_ids), (False, movement_ids)):
            for item_id in item_ids:
                number = self.part_of.get((tenant_id, account_id, is_line, item_id))
                if number is not None:
                    self._remove(number)

    def find(
        self, tenant_id: str, account_id: str, is_line: bool, item_id: str
    ) -> UnmatchedPart | None:
        number = self.part_of.get((tenant_id, account_id, is_line, item_id))
        return None if number is None else self.parts[number]

    def _add(self, part: UnmatchedPart) -> None:
        # an item is in one part at most: a newer unmatched result naming it supersedes the older
        self.discard_named(
            part.tenant_id,
            part.account_id,
            part.item_ids if part.is_line else (),
            () if part.is_line else part.item_ids,
        )
        number = self.next_part
        self.next_part += 1
        self.parts[number] = part
        for item_id in part.item_ids:
            self.part_of[(part.tenant_id, part.account_id, part.is_line, item_id)] = number
        while len(self.part_of) > self.items_max:
            oldest = next(iter(self.parts))
            self.forgotten_items += len(self.parts[oldest].item_ids)
            self._remove(oldest)

    def _remove(self, number: int) -> None:
        part = self.parts.pop(number)
        for item_id in part.item_ids:
            del self.part_of[(part.tenant_id, part.account_id, part.is_line, item_id)]


@dataclass(frozen=True, slots=True)
class NamedUnmatched:
    """The decided-unmatched parts a manual match names, or why it cannot take them."""

    parts: tuple[UnmatchedPart, ...]
    problem: str | None


def named_parts(
    index: DecidedUnmatched,
    tenant_id: str,
    account_id: str,
    line_ids: Sequence[str],
    movement_ids: Sequence[str],
) -> tuple[NamedUnmatched, list[str], list[str]]:
    """The parts of the named items found in ``index`` (each once) and the line and movement ids
    not found there; a problem when a part is named only in part."""
    parts: dict[tuple[bool, str], UnmatchedPart] = {}
    missing_lines: list[str] = []
    missing_movements: list[str] = []
    for is_line, item_ids, missing in (
        (True, line_ids, missing_lines),
        (False, movement_ids, missing_movements),
    ):
        for item_id in item_ids:
            part = index.find(tenant_id, account_id, is_line, item_id)
            if part is None:
                missing.append(item_id)
            else:
                parts[(is_line, part.item_ids[0])] = part
    named = set(line_ids) | set(movement_ids)
    for part in parts.values():
        left_out = [item_id for item_id in part.item_ids if item_id not in named]
        if left_out:
            together = ", ".join(part.item_ids)
            return (
                NamedUnmatched((), f"unmatched together ({together}): name them all"),
                missing_lines,
                missing_movements,
            )
    return NamedUnmatched(tuple(parts.values()), None), missing_lines, missing_movements
