"""The matcher's pure core: statement lines and ledger movements in, final states out.

Per tenant and bank-mirror account, every statement line and every ledger movement on the account
ends in exactly one ``ReconciliationResult``: ``matched``, ``mismatched`` (the reference matches,
the amount or direction does not) or ``unmatched`` (its window closed without a partner). The
rules, tried in this order when an item arrives (decision 0054):

1. **external reference**: a movement's ``metadata[external_ref_key]`` equals one of the line's
   references (EndToEndId, AcctSvcrRef, NtryRef);
2. **amount and date**: same amount, same direction, dates at most ``date_window_days`` apart
   (the nearest date wins, then the earliest on its topic);
3. **sum**: one item equals the sum of 2..``sum_items_max`` items of the other side within the
   window, searched among the ``sum_candidates_max`` nearest (bounded, first found wins).

An item nobody matched closes (``unmatched``) only when no match can come any more, whatever the
order the two topics are read in (decision 0089): a line (``no_ledger_movement``) once the
tenant's ledger time has passed its booking date + the window (every movement of its window has
arrived: a tenant's effective times never go back), a movement on a mirror account
(``not_on_statement``) once the account's statements cover its date + the window (every line of
its window has arrived) — and in both cases only when it cannot still be part of a sum: no open
item of the other side in its window is larger, of the same direction, and still able to receive
more of the item's side (a line still receives movements until the ledger passes its window, a
movement lines until the statements cover it). Closing is tried when a statement header arrives,
when the tenant's ledger reaches a new day, and after every decision on the account (for the
items a removed item held open). An account becomes a mirror account with its first imported
statement; movements of other accounts are kept ``movement_retention_days`` (ledger time) in case
a first statement arrives, then forgotten.

Direction: a statement line's ``direction`` is the bank's; a movement's is translated to it — a
debit of the mirror account (an asset) is money in, a ``credit`` on the statement (decision 0053).
No clock, no I/O: time is the ledger's effective time and the input records' timestamps, order
is each item's offset on its topic, so the same inputs give the same results.
"""

from __future__ import annotations

import enum
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

from reconciliation.decided_unmatched import (
    DECIDED_UNMATCHED_MAX_DEFAULT,
    DecidedUnmatched,
    UnmatchedPart,
    named_parts,
)
from reconciliation.statement import Direction, Statement, StatementLine
from schemas.model import (
    Event,
    PendingPosted,
    TransactionPendingPosted,
    TransactionPosted,
    TransferPosted,
)
from streamledger.errors import InvariantViolationError

MICROSECONDS_PER_DAY: Final = 86_400_000_000
DEFAULT_EXTERNAL_REFERENCE_KEY: Final = "external_ref"


class ReconciliationState(enum.Enum):
    MATCHED = "matched"
    UNMATCHED = "unmatched"
    MISMATCHED = "mismatched"


class MatchRule(enum.Enum):
    EXTERNAL_REFERENCE = "external_reference"
    AMOUNT_AND_DATE = "amount_and_date"
    SUM = "sum"
    MANUAL = "manual"


@dataclass(frozen=True, slots=True, kw_only=True)
class MatchingRules:
    """The named, finite limits of matching (one per matcher, from its settings)."""

    date_window_days: int = 2
    sum_items_max: int = 4  # items on the "many" side of a sum match
    sum_candidates_max: int = 16  # nearest candidates searched for a sum (2^16 subsets at most)
    open_items_max: int = 1_000_000  # open lines + movements per partition; more stops the matcher
    movement_retention_days: int = 7  # movements of accounts without statements, ledger time
    # line ids remembered against a line written twice, while their booking date is at most this
    # far behind the tenant's ledger day (re-imports are refused by the importer, decision 0052)
    line_identity_days: int = 400
    external_reference_key: str = DEFAULT_EXTERNAL_REFERENCE_KEY
    # decided-unmatched items remembered per partition for a manual match (decision 0106)
    decided_unmatched_max: int = DECIDED_UNMATCHED_MAX_DEFAULT

    def __post_init__(self) -> None:
        assert 0 <= self.date_window_days <= 366
        assert 2 <= self.sum_items_max <= 8
        assert self.sum_items_max <= self.sum_candidates_max <= 24
        assert self.open_items_max > 0 and self.movement_retention_days >= self.date_window_days
        assert self.line_identity_days >= self.date_window_days
        assert self.decided_unmatched_max > 0


# The values the matcher makes per input record (``Movement``, ``Item``, ``Wanted``, ``Match``,
# ``ReconciliationResult``) are dataclasses with a hand-written ``__init__`` instead of frozen ones
# (decision 0097): compiled (scripts/build_native.py), mypyc runs it as C, 0.06 µs, where a frozen
# dataclass's generated ``__init__`` stays interpreted, 2.2 µs (one ``object.__setattr__`` per
# field), about a fifth of the matcher's work per line. They are values all the same: never
# assigned after construction; equal and hashed by their fields (``unsafe_hash``), as the frozen
# ones were.


@dataclass(slots=True, kw_only=True, init=False, unsafe_hash=True)
class Movement:
    """One posting of a posted ledger event on one account, in the statement's terms."""

    tenant_id: str
    account_id: str
    movement_id: str  # "{event_id}#{posting index}"
    amount: int
    direction: Direction  # credit = the mirror account was debited (money into the bank)
    date_days: int
    external_reference: str | None

    def __init__(
        self,
        *,
        tenant_id: str,
        account_id: str,
        movement_id: str,
        amount: int,
        direction: Direction,
        date_days: int,
        external_reference: str | None,
    ) -> None:
        self.tenant_id = tenant_id
        self.account_id = account_id
        self.movement_id = movement_id
        self.amount = amount
        self.direction = direction
        self.date_days = date_days
        self.external_reference = external_reference


@dataclass(slots=True, kw_only=True, init=False, unsafe_hash=True)
class ReconciliationResult:
    """One ``ledger.reconciliation`` record (schema ``ReconciliationResult``): a value, built
    once per decision with a hand-written ``__init__`` (decision 0097), never assigned after."""

    tenant_id: str
    account_id: str
    state: ReconciliationState
    rule: MatchRule | None
    reason: str
    line_ids: tuple[str, ...]
    movement_ids: tuple[str, ...]
    line_amount: int  # signed: credit > 0
    movement_amount: int  # signed, statement side: credit (mirror debited) > 0
    decided_at_us: int

    def __init__(
        self,
        *,
        tenant_id: str,
        account_id: str,
        state: ReconciliationState,
        rule: MatchRule | None,
        reason: str,
        line_ids: tuple[str, ...],
        movement_ids: tuple[str, ...],
        line_amount: int,
        movement_amount: int,
        decided_at_us: int,
    ) -> None:
        self.tenant_id = tenant_id
        self.account_id = account_id
        self.state = state
        self.rule = rule
        self.reason = reason
        self.line_ids = line_ids
        self.movement_ids = movement_ids
        self.line_amount = line_amount
        self.movement_amount = movement_amount
        self.decided_at_us = decided_at_us


@dataclass(frozen=True, slots=True, kw_only=True)
class ManualMatch:
    """A ``ledger.statements`` record: open lines and open movements matched by a person."""

    tenant_id: str
    account_id: str
    line_ids: tuple[str, ...]
    movement_ids: tuple[str, ...]
    actor: str
    note: str
    requested_at_us: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ManualUnmatch:
    """A ``ledger.statements`` record: a person undoes a decided match or mismatch (the result at
    ``result_id``, whose items and amounts the request repeats, as the command read them)."""

    tenant_id: str
    account_id: str
    result_id: str  # "{partition}:{offset}" on ledger.reconciliation
    line_ids: tuple[str, ...]
    movement_ids: tuple[str, ...]
    line_amount: int
    movement_amount: int
    actor: str
    note: str
    requested_at_us: int


MANUAL_UNMATCH_REASON: Final = "manual_unmatch"


def movements_of(event: Event, reference_key: str) -> tuple[Movement, ...]:
    """The movements a ledger event makes: one per posting and account; none for events that
    reserve or release (pending, voided, expired) or open accounts."""
    pairs: tuple[tuple[str, str, int], ...]  # (debited, credited, amount) per posting
    if isinstance(event, TransferPosted | PendingPosted):
        pairs = ((event.debit_account_id, event.credit_account_id, event.amount),)
    elif isinstance(event, TransactionPosted | TransactionPendingPosted):
        pairs = tuple(
            (posting.debit_account_id, posting.credit_account_id, posting.amount)
            for posting in event.postings
        )
    else:
        return ()
    # metadata is on events from contract v1.4 on (decision 0055); older events have none
    metadata = getattr(event, "metadata", ())
    reference = (dict(metadata).get(reference_key) or None) if metadata else None
    return posting_movements(
        event.tenant_id, event.event_id, event.effective_at_us, pairs, reference
    )


def posting_movements(
    tenant_id: str,
    event_id: str,
    effective_at_us: int,
    pairs: Sequence[tuple[str, str, int]],
    reference: str | None,
) -> tuple[Movement, ...]:
    """Per non-zero posting ``(debited, credited, amount)``, the debited account's movement
    (money in: a credit on its statement), then the credited one's; the posting's index in the
    event names both (``EVENT_ID#INDEX``)."""
    date_days = effective_at_us // MICROSECONDS_PER_DAY
    movements = []
    for index, (debited, credited, amount) in enumerate(pairs):
        if amount == 0:
            continue
        movement_id = f"{event_id}#{index}"
        for account_id, direction in ((debited, Direction.CREDIT), (credited, Direction.DEBIT)):
            movements.append(
                Movement(
                    tenant_id=tenant_id,
                    account_id=account_id,
                    movement_id=movement_id,
                    amount=amount,
                    direction=direction,
                    date_days=date_days,
                    external_reference=reference,
                )
            )
    return tuple(movements)


def _group(result: ReconciliationResult) -> tuple[str, str, frozenset[str], frozenset[str]]:
    return (
        result.tenant_id,
        result.account_id,
        frozenset(result.line_ids),
        frozenset(result.movement_ids),
    )


# --------------------------------------------------------------------------- the two sides


@dataclass(slots=True, kw_only=True, init=False, unsafe_hash=True)
class Item:
    """A line or a movement, as the rules see it (a value: never assigned after construction,
    the indexes of ``Side`` hold it by its amount, day and references)."""

    item_id: str
    amount: int
    direction: Direction
    date_days: int
    order: int  # the item's offset on its topic: ties go to the earliest
    references: tuple[str, ...]
    # the payer's end-to-end reference (a line's EndToEndId, a movement's external reference):
    # two items that both have one, and different ones, are different payments, never fuzzy-matched
    end_to_end: str | None

    def __init__(
        self,
        *,
        item_id: str,
        amount: int,
        direction: Direction,
        date_days: int,
        order: int,
        references: tuple[str, ...],
        end_to_end: str | None,
    ) -> None:
        self.item_id = item_id
        self.amount = amount
        self.direction = direction
        self.date_days = date_days
        self.order = order
        self.references = references
        self.end_to_end = end_to_end

    def may_pair(self, other: Item) -> bool:
        return self.end_to_end is None or other.end_to_end in (None, self.end_to_end)

    def signed_amount(self) -> int:
        return self.amount if self.direction is Direction.CREDIT else -self.amount


BY_ORDER: Final = operator.attrgetter("order")
EMPTY: Final[dict[str, Item]] = {}  # an index's missing key (never written to)


@dataclass(slots=True)
class Side:
    """The open items of one side of one account, indexed for the rules."""

    items: dict[str, Item] = field(default_factory=dict)
    # the indexes hold the items themselves (id -> item, in arrival order): no lookup per visit
    by_amount: dict[tuple[Direction, int], dict[str, Item]] = field(default_factory=dict)
    by_reference: dict[str, str] = field(default_factory=dict)
    # (direction, date_days) -> item ids in arrival order: the date-window rules read only the
    # window's days of the direction they look for
    by_day: dict[tuple[Direction, int], dict[str, Item]] = field(default_factory=dict)

    def add(self, item: Item) -> None:
        assert item.item_id not in self.items, item
        self.items[item.item_id] = item
        self.by_amount.setdefault((item.direction, item.amount), {})[item.item_id] = item
        self.by_day.setdefault((item.direction, item.date_days), {})[item.item_id] = item
        for reference in item.references:
            self.by_reference.setdefault(reference, item.item_id)

    def remove(self, item_id: str) -> Item:
        item = self.items.pop(item_id)
        same_amount = self.by_amount[(item.direction, item.amount)]
        del same_amount[item_id]
        if not same_amount:
            del self.by_amount[(item.direction, item.amount)]
        same_day = self.by_day[(item.direction, item.date_days)]
        del same_day[item_id]
        if not same_day:
            del self.by_day[(item.direction, item.date_days)]
        for reference in item.references:
            if self.by_reference.get(reference) == item_id:
                del self.by_reference[reference]
        return item

    def within(self, item: Item, window_days: int) -> Iterator[Item]:
        """The open items of ``item``'s direction dated within the window that may pair with it,
        in no particular order across days (every caller ranks them by distance, then offset; a
        day's items stay in arrival order, so ties rank as before)."""
        first, last = item.date_days - window_days, item.date_days + window_days
        days: Iterable[int] = range(first, last + 1)
        if len(self.by_day) <= last - first:  # fewer open days than the window has: scan those
            days = [day for direction, day in self.by_day if first <= day <= last
                    and direction is item.direction]  # fmt: skip
        for day in days:
            for other in self.by_day.get((item.direction, day), EMPTY).values():
                if other.may_pair(item):
                    yield other

    def nearest(self, item: Item, window_days: int, count: int, wanted: Wanted) -> list[Item]:
        """The first ``count`` of ``within(item, window_days)`` that ``wanted`` takes, ranked by
        date distance to ``item``, then order — what sorting all of them would give, visiting
        the window's days nearest first and each day only until enough are found (a day's items
        are in arrival order, which is their order on their topic). The sum rule's cost: the
        filter is inlined, no call per item."""
        found: list[Item] = []
        direction, center, reference = item.direction, item.date_days, item.end_to_end
        above, below, excluded = wanted.amount_above, wanted.amount_below, wanted.excluded_id
        second = wanted.also_pairs_with
        second_reference = None if second is None else second.end_to_end
        for distance in range(window_days + 1):
            missing = count - len(found)
            if missing <= 0:
                break
            days = (center,) if distance == 0 else (center - distance, center + distance)
            ring: list[Item] = []
            for day in days:
                taken = 0
                for other in self.by_day.get((direction, day), EMPTY).values():
                    amount, own_reference = other.amount, other.end_to_end
                    if (
                        above < amount < below
                        and (own_reference is None or reference in (None, own_reference))
                        and (
                            second is None
                            or own_reference is None
                            or second_reference in (None, own_reference)
                        )
                        and other.item_id != excluded
                    ):
                        ring.append(other)
                        taken += 1
                        if taken == missing:
                            break
            if len(ring) > 1 and len(days) == 2:
                ring.sort(key=BY_ORDER)
            found += ring[:missing]
        return found


AMOUNT_BELOW_ANY: Final = 1 << 63


@dataclass(slots=True, kw_only=True, init=False, unsafe_hash=True)
class Wanted:
    """Which items ``Side.nearest`` takes: ``amount_above < amount < amount_below``, that may
    pair with ``also_pairs_with`` too (when given), other than ``excluded_id``."""

    amount_above: int
    amount_below: int
    also_pairs_with: Item | None
    excluded_id: str | None

    def __init__(
        self,
        *,
        amount_above: int = 0,
        amount_below: int = AMOUNT_BELOW_ANY,
        also_pairs_with: Item | None = None,
        excluded_id: str | None = None,
    ) -> None:
        self.amount_above = amount_above
        self.amount_below = amount_below
        self.also_pairs_with = also_pairs_with
        self.excluded_id = excluded_id


@dataclass(slots=True, kw_only=True, init=False, unsafe_hash=True)
class Match:
    rule: MatchRule
    state: ReconciliationState
    reason: str
    partners: tuple[Item, ...]  # on the other side
    companions: tuple[Item, ...]  # on the new item's own side (many-to-one)

    def __init__(
        self,
        *,
        rule: MatchRule,
        state: ReconciliationState,
        reason: str,
        partners: tuple[Item, ...],
        companions: tuple[Item, ...] = (),
    ) -> None:
        self.rule = rule
        self.state = state
        self.reason = reason
        self.partners = partners
        self.companions = companions


def find_match(new: Item, own: Side, other: Side, rules: MatchingRules) -> Match | None:
    """The first rule that pairs ``new`` with open items, or None. Pure and deterministic."""
    for reference in new.references:
        partner_id = other.by_reference.get(reference)
        if partner_id is not None:
            return _reference_match(new, other.items[partner_id])
    window = rules.date_window_days
    same = other.by_amount.get((new.direction, new.amount), EMPTY)
    near = [
        item
        for item in same.values()
        if abs(item.date_days - new.date_days) <= window and new.may_pair(item)
    ]
    if near:
        best = min(near, key=lambda item: (abs(item.date_days - new.date_days), item.order))
        return Match(
            rule=MatchRule.AMOUNT_AND_DATE,
            state=ReconciliationState.MATCHED,
            reason="matched",
            partners=(best,),
        )
    return _sum_match(new, own, other, rules)


def _reference_match(new: Item, partner: Item) -> Match:
    if partner.amount == new.amount and partner.direction is new.direction:
        state, reason = ReconciliationState.MATCHED, "matched"
    elif partner.direction is not new.direction:
        state, reason = ReconciliationState.MISMATCHED, "direction_differs"
    else:
        state, reason = ReconciliationState.MISMATCHED, "amount_differs"
    return Match(rule=MatchRule.EXTERNAL_REFERENCE, state=state, reason=reason, partners=(partner,))


def _sum_match(new: Item, own: Side, other: Side, rules: MatchingRules) -> Match | None:
    if not other.items:
        return None  # both shapes need open items on the other side (most arrivals: none)
    window, limit = rules.date_window_days, rules.sum_candidates_max
    # one (new) to many (other side)
    smaller = other.nearest(new, window, limit, Wanted(amount_below=new.amount))
    found = (
        None if len(smaller) < 2 else subset_with_sum(smaller, new.amount, 2, rules.sum_items_max)
    )
    if found is not None:
        return Match(
            rule=MatchRule.SUM, state=ReconciliationState.MATCHED, reason="matched", partners=found
        )
    # many (new and companions of its own side) to one (other side)
    for target in other.nearest(new, window, limit, Wanted(amount_above=new.amount)):
        rest_total = target.amount - new.amount
        companions = Wanted(
            amount_below=rest_total + 1, also_pairs_with=new, excluded_id=new.item_id
        )
        candidates = own.nearest(target, window, limit - 1, companions)
        rest = (
            subset_with_sum(candidates, rest_total, 1, rules.sum_items_max - 1)
            if candidates
            else None
        )
        if rest is not None:
            return Match(
                rule=MatchRule.SUM,
                state=ReconciliationState.MATCHED,
                reason="matched",
                partners=(target,),
                companions=rest,
            )
    return None


def subset_with_sum(
    candidates: list[Item], total: int, size_min: int, size_max: int
) -> tuple[Item, ...] | None:
    """The first subset (in candidate order, smallest size first) of ``size_min..size_max`` items
    whose amounts add up to ``total``; bounded by the caller's candidate count."""
    positions: dict[int, list[int]] = {}  # amount -> the candidates' indexes, ascending
    for index, candidate in enumerate(candidates):
        positions.setdefault(candidate.amount, []).append(index)
    for size in range(size_min, size_max + 1):
        found = _subset_of_size(candidates, positions, 0, size, total)
        if found is not None:
            return found
    return None


def _subset_of_size(
    candidates: list[Item], positions: dict[int, list[int]], start: int, size: int, total: int
) -> tuple[Item, ...] | None:
    """The first ``size`` candidates from ``start`` on, in candidate order, adding up to
    ``total``: the last one found by its amount (``positions``), not by trying each."""
    if size == 1:
        for index in positions.get(total, ()):
            if index >= start:
                return (candidates[index],)
        return None
    for index in range(start, len(candidates) - size + 1):
        item = candidates[index]
        if item.amount > total:
            continue
        if size == 2:  # the partner by its amount: the earliest after this one
            for partner in positions.get(total - item.amount, ()):
                if partner > index:
                    return (item, candidates[partner])
            continue
        rest = _subset_of_size(candidates, positions, index + 1, size - 1, total - item.amount)
        if rest is not None:
            return (item, *rest)
    return None


def _manual_match_result(
    request: ManualMatch,
    parts: tuple[UnmatchedPart, ...],
    lines: tuple[Item, ...],
    movements: tuple[Item, ...],
    at_us: int,
) -> ReconciliationResult:
    """The ``matched`` result of a manual match of open items and decided-unmatched parts."""
    line_ids = [item.item_id for item in lines]
    movement_ids = [item.item_id for item in movements]
    line_amount = sum(item.signed_amount() for item in lines)
    movement_amount = sum(item.signed_amount() for item in movements)
    for part in parts:
        if part.is_line:
            line_ids += part.item_ids
            line_amount += part.signed_amount
        else:
            movement_ids += part.item_ids
            movement_amount += part.signed_amount
    return ReconciliationResult(
        tenant_id=request.tenant_id,
        account_id=request.account_id,
        state=ReconciliationState.MATCHED,
        rule=MatchRule.MANUAL,
        reason="manual",
        line_ids=tuple(sorted(line_ids)),
        movement_ids=tuple(sorted(movement_ids)),
        line_amount=line_amount,
        movement_amount=movement_amount,
        decided_at_us=at_us,
    )


# --------------------------------------------------------------------------- the state


@dataclass(slots=True)
class AccountBook:
    """What is open on one bank-mirror account (or one that may become one)."""

    tenant_id: str
    account_id: str
    lines: Side = field(default_factory=Side)
    movements: Side = field(default_factory=Side)
    mirror: bool = False  # a statement was imported for it
    statements_through_days: int | None = None  # the last day the statements cover


class Reconciler:
    """The open items of the partitions one matcher owns, and the rules that close them.

    ``add_*`` return the results their input decides, in the order decided. ``restoring=True``
    rebuilds the state after a restart from the inputs and the results already written: items
    already decided are skipped, nothing is decided again (the results topic holds them).
    """

    def __init__(self, rules: MatchingRules) -> None:
        self.rules = rules
        self.books: dict[tuple[str, str], AccountBook] = {}
        self.ledger_days: dict[str, int] = {}  # per tenant: the day of its latest event
        # line ids are unique within a tenant (they start with the account id): keyed by tenant,
        # each with its booking day; forgotten by day once the ledger is line_identity_days past
        self.seen_line_ids: dict[tuple[str, str], int] = {}
        self.seen_line_days: dict[str, dict[int, list[str]]] = {}  # tenant -> day -> line ids
        self.decided_line_ids: set[tuple[str, str]] = set()  # restore only
        self.decided_movement_ids: set[tuple[str, str, str]] = set()  # restore only
        # the groups a person unmatched, per tenant and account (a request each: a human scale)
        self.unmatched_groups: set[tuple[str, str, frozenset[str], frozenset[str]]] = set()
        self.open_items = 0
        # the items whose latest result is unmatched, for a manual match (decision 0106)
        self.decided_unmatched = DecidedUnmatched(rules.decided_unmatched_max)

    def book(self, tenant_id: str, account_id: str) -> AccountBook:
        key = (tenant_id, account_id)
        book = self.books.get(key)
        if book is None:
            book = self.books[key] = AccountBook(tenant_id=tenant_id, account_id=account_id)
        return book

    def remember_decided(self, result: ReconciliationResult) -> None:
        """Restore: ``result`` was written before the restart."""
        if result.reason == MANUAL_UNMATCH_REASON:
            self.unmatched_groups.add(_group(result))
        self.decided_line_ids.update((result.tenant_id, line_id) for line_id in result.line_ids)
        self.decided_movement_ids.update(
            (result.tenant_id, result.account_id, movement_id)
            for movement_id in result.movement_ids
        )
        self._note_decided(result)

    def _note_decided(self, result: ReconciliationResult) -> None:
        """Keep the decided-unmatched index current: a result supersedes what named its items."""
        unmatched = self.decided_unmatched
        if result.state is ReconciliationState.UNMATCHED:
            unmatched.add_result(
                result.tenant_id,
                result.account_id,
                line_ids=result.line_ids,
                line_amount=result.line_amount,
                movement_ids=result.movement_ids,
                movement_amount=result.movement_amount,
            )
        else:
            unmatched.discard_named(
                result.tenant_id, result.account_id, result.line_ids, result.movement_ids
            )
            # matched again (by hand): the group may be unmatched again
            self.unmatched_groups.discard(_group(result))

    def add_statement(
        self, statement: Statement, at_us: int, *, restoring: bool = False
    ) -> list[ReconciliationResult]:
        book = self.book(statement.tenant_id, statement.account_id)
        book.mirror = True
        through = statement.to_date_days
        if through is None or (
            book.statements_through_days is not None and through <= book.statements_through_days
        ):
            return []
        book.statements_through_days = through
        if restoring:
            return []
        return self._close(book, at_us, book.lines.items.values(), book.movements.items.values())

    def add_line(
        self, line: StatementLine, offset: int, at_us: int, *, restoring: bool = False
    ) -> list[ReconciliationResult]:
        identity = (line.tenant_id, line.line_id)
        if identity in self.seen_line_ids:
            return []  # the same line written twice (the importer writes a line identity once)
        self._remember_line(line)
        book = self.book(line.tenant_id, line.account_id)
        book.mirror = True
        item = Item(
            item_id=line.line_id,
            amount=line.amount,
            direction=line.direction,
            date_days=line.booking_date_days,
            order=offset,
            references=line.references(),
            end_to_end=line.end_to_end_reference,
        )
        if restoring:
            if identity not in self.decided_line_ids:
                self._open(book.lines, item)
            return []
        match = find_match(item, book.lines, book.movements, self.rules)
        if match is None:
            self._open(book.lines, item)
            return self._close(book, at_us, (item,), ()) if self._line_closed(book, item) else []
        return self._decide(book, match, new_line=item, at_us=at_us)

    def add_movement(
        self, movement: Movement, offset: int, at_us: int, *, restoring: bool = False
    ) -> list[ReconciliationResult]:
        book = self.book(movement.tenant_id, movement.account_id)
        item = Item(
            item_id=movement.movement_id,
            amount=movement.amount,
            direction=movement.direction,
            date_days=movement.date_days,
            order=offset,
            references=()
            if movement.external_reference is None
            else (movement.external_reference,),
            end_to_end=movement.external_reference,
        )
        if restoring:
            key = (movement.tenant_id, movement.account_id, movement.movement_id)
            if key not in self.decided_movement_ids:
                self._open(book.movements, item)
            return []
        if not book.mirror:  # no line yet (a line makes its account a mirror), no statement
            self._open(book.movements, item)  # nothing to match, nothing closes it
            return []
        match = find_match(item, book.movements, book.lines, self.rules)
        if match is not None:
            return self._decide(book, match, new_movement=item, at_us=at_us)
        self._open(book.movements, item)
        if not self._movement_closed(book, item):
            return []  # most arrivals: the other side's time has not passed the window yet
        return self._close(book, at_us, (), (item,))

    def add_manual_match(
        self, request: ManualMatch, at_us: int, *, restoring: bool = False
    ) -> list[ReconciliationResult] | str:
        """The result, or why the request is refused (a value: an item not open, or nothing to
        match). Restoring, nothing: a manual match that was decided is in the results."""
        if restoring:
            return []
        if request.line_ids and request.movement_ids:
            decided = self._manual_match_of_unmatched(request, at_us)
            if decided is not None:
                return decided  # it names decided-unmatched items (decision 0106)
        book = self.books.get((request.tenant_id, request.account_id))
        if book is None or not request.line_ids or not request.movement_ids:
            return "a manual match needs open lines and open movements of a known account"
        if len(set(request.line_ids)) != len(request.line_ids) or len(
            set(request.movement_ids)
        ) != len(request.movement_ids):
            return "an item is named twice"
        missing = [item for item in request.line_ids if item not in book.lines.items] + [
            item for item in request.movement_ids if item not in book.movements.items
        ]
        if missing:
            return self._neither_open_nor_unmatched(missing)
        lines = tuple(self._remove(book.lines, item) for item in request.line_ids)
        movements = tuple(self._remove(book.movements, item) for item in request.movement_ids)
        freed = self._close(
            book, at_us, self._freed_lines(book, movements), self._freed_movements(book, lines)
        )
        return [
            ReconciliationResult(
                tenant_id=book.tenant_id,
                account_id=book.account_id,
                state=ReconciliationState.MATCHED,
                rule=MatchRule.MANUAL,
                reason="manual",
                line_ids=tuple(sorted(item.item_id for item in lines)),
                movement_ids=tuple(sorted(item.item_id for item in movements)),
                line_amount=sum(item.signed_amount() for item in lines),
                movement_amount=sum(item.signed_amount() for item in movements),
                decided_at_us=at_us,
            ),
            *freed,
        ]

    def add_manual_unmatch(
        self, request: ManualUnmatch, at_us: int, *, restoring: bool = False
    ) -> list[ReconciliationResult] | str:
        """An ``unmatched`` result (rule ``manual``, reason ``manual_unmatch``) naming the undone
        result's items, which supersedes it; or why it is refused (a value: nothing named, an item
        still open, the same group unmatched before). The items stay decided: no rule pairs them
        again. Restoring, nothing: a decided unmatch is in the results."""
        if restoring:
            return []
        if not request.line_ids and not request.movement_ids:
            return "a manual unmatch needs the items of a decided result"
        book = self.books.get((request.tenant_id, request.account_id))
        still_open = [] if book is None else [
            item
            for item in (*request.line_ids, *request.movement_ids)
            if item in book.lines.items or item in book.movements.items
        ]  # fmt: skip
        if still_open:
            return f"not decided yet: {', '.join(sorted(still_open))}"
        result = ReconciliationResult(
            tenant_id=request.tenant_id,
            account_id=request.account_id,
            state=ReconciliationState.UNMATCHED,
            rule=MatchRule.MANUAL,
            reason=MANUAL_UNMATCH_REASON,
            line_ids=tuple(sorted(request.line_ids)),
            movement_ids=tuple(sorted(request.movement_ids)),
            line_amount=request.line_amount,
            movement_amount=request.movement_amount,
            decided_at_us=at_us,
        )
        if _group(result) in self.unmatched_groups:
            return f"already unmatched (result {request.result_id})"
        self.unmatched_groups.add(_group(result))
        self._note_decided(result)
        return [result]

    def _manual_match_of_unmatched(
        self, request: ManualMatch, at_us: int
    ) -> list[ReconciliationResult] | str | None:
        """A manual match naming decided-unmatched items (decision 0106): one ``matched`` result
        (rule ``manual``) naming them and the open items named with them, which supersedes their
        ``unmatched`` results; or why it is refused. None when it names none (the open case)."""
        named, missing_lines, missing_movements = named_parts(
            self.decided_unmatched,
            request.tenant_id,
            request.account_id,
            request.line_ids,
            request.movement_ids,
        )
        if named.problem is not None:
            return named.problem
        if not named.parts:
            return None
        if len(set(request.line_ids)) != len(request.line_ids) or len(
            set(request.movement_ids)
        ) != len(request.movement_ids):
            return "an item is named twice"
        book = self.book(request.tenant_id, request.account_id)
        missing = [item for item in missing_lines if item not in book.lines.items] + [
            item for item in missing_movements if item not in book.movements.items
        ]
        if missing:
            return self._neither_open_nor_unmatched(missing)
        lines = tuple(self._remove(book.lines, item) for item in missing_lines)
        movements = tuple(self._remove(book.movements, item) for item in missing_movements)
        result = _manual_match_result(request, named.parts, lines, movements, at_us)
        self._note_decided(result)  # its parts leave the index, as a restore would see it
        freed = self._close(
            book, at_us, self._freed_lines(book, movements), self._freed_movements(book, lines)
        )
        return [result, *freed]

    def _neither_open_nor_unmatched(self, item_ids: list[str]) -> str:
        return (
            f"neither open nor unmatched: {', '.join(sorted(item_ids))} (matched or mismatched"
            " items need an unmatch first; past decided_unmatched_max"
            f" ({self.rules.decided_unmatched_max}) the oldest unmatched are forgotten)"
        )

    def advance_ledger_time(
        self, tenant_id: str, effective_at_us: int, at_us: int, *, restoring: bool = False
    ) -> list[ReconciliationResult]:
        """The tenant's ledger reached ``effective_at_us``: close the lines whose window ended,
        forget old movements of accounts without statements (once per new day)."""
        day = effective_at_us // MICROSECONDS_PER_DAY
        if day <= self.ledger_days.get(tenant_id, day - 1):
            return []
        self.ledger_days[tenant_id] = day
        self._forget_line_ids(tenant_id, day - self.rules.line_identity_days)
        results: list[ReconciliationResult] = []
        for book in self.books.values():
            if book.tenant_id != tenant_id:
                continue
            if not book.mirror:
                self._forget_old_movements(book, day)
            elif not restoring:
                lines, movements = book.lines.items.values(), book.movements.items.values()
                results.extend(self._close(book, at_us, lines, movements))
        return results

    # ----------------------------------------------------------------------- internals

    def _open(self, side: Side, item: Item) -> None:
        if self.open_items >= self.rules.open_items_max:
            raise InvariantViolationError(
                f"open_items_max ({self.rules.open_items_max}) open items: the matcher stops"
                " rather than drop one (raise the limit or look at what never matches)"
            )
        side.add(item)
        self.open_items += 1

    def _remove(self, side: Side, item_id: str) -> Item:
        self.open_items -= 1
        return side.remove(item_id)

    def _line_closed(self, book: AccountBook, line: Item) -> bool:
        """No movement can match ``line`` any more: every movement of its window has arrived (the
        ledger passed it) and no larger movement there may still take it into a sum (lines may
        still arrive for that movement's window: the statements do not cover it yet)."""
        window = self.rules.date_window_days
        ledger_day = self.ledger_days.get(book.tenant_id)
        if ledger_day is None or ledger_day <= line.date_days + window:
            return False
        through = book.statements_through_days
        if through is not None and through >= line.date_days + 2 * window:
            return True  # every movement of the window is covered: none can receive lines
        return not any(
            through is None or through < target.date_days + window
            for target in book.movements.within(line, window)
            if target.amount > line.amount
        )

    def _movement_closed(self, book: AccountBook, movement: Item) -> bool:
        """No line can match ``movement`` any more: the statements cover its window (every line
        of it has arrived) and no larger line there may still take it into a sum (movements may
        still arrive for that line's window: the ledger has not passed it)."""
        window = self.rules.date_window_days
        through = book.statements_through_days
        if through is None or through < movement.date_days + window:
            return False
        ledger_day = self.ledger_days.get(book.tenant_id)
        if ledger_day is not None and ledger_day > movement.date_days + 2 * window:
            return True  # the ledger passed every line's window: no movement can join a sum
        return not any(
            ledger_day is None or ledger_day <= target.date_days + window
            for target in book.lines.within(movement, window)
            if target.amount > movement.amount
        )

    def _close(
        self, book: AccountBook, at_us: int, lines: Iterable[Item], movements: Iterable[Item]
    ) -> list[ReconciliationResult]:
        """Close those of the given open items no match can reach any more, then those the
        closed ones held open, until none is left (the closable set does not depend on the
        order: closing only removes what could hold an item open)."""
        results: list[ReconciliationResult] = []
        pending_lines, pending_movements = list(lines), list(movements)
        while pending_lines or pending_movements:
            closed_lines = self._closable(book.lines, pending_lines, self._line_closed, book)
            closed_movements = self._closable(
                book.movements, pending_movements, self._movement_closed, book
            )
            results += [
                self._unmatched(book, item, is_line=True, at_us=at_us) for item in closed_lines
            ]
            results += [
                self._unmatched(book, item, is_line=False, at_us=at_us) for item in closed_movements
            ]
            pending_lines = self._freed_lines(book, closed_movements)
            pending_movements = self._freed_movements(book, closed_lines)
        return results

    @staticmethod
    def _closable(
        side: Side,
        candidates: list[Item],
        closed: Callable[[AccountBook, Item], bool],
        book: AccountBook,
    ) -> list[Item]:
        unique = {item.item_id: item for item in candidates if item.item_id in side.items}
        return sorted(
            (item for item in unique.values() if closed(book, item)), key=lambda item: item.order
        )

    def _freed_lines(self, book: AccountBook, removed: Iterable[Item]) -> list[Item]:
        """The open lines a removed movement may have held open (smaller, in its window)."""
        ledger_day = self.ledger_days.get(book.tenant_id)
        window = self.rules.date_window_days
        return [
            line
            for movement in removed
            if ledger_day is not None and ledger_day > movement.date_days  # else none can close
            for line in book.lines.within(movement, window)
            if line.amount < movement.amount
        ]

    def _freed_movements(self, book: AccountBook, removed: Iterable[Item]) -> list[Item]:
        """The open movements a removed line may have held open (smaller, in its window)."""
        through = book.statements_through_days
        window = self.rules.date_window_days
        return [
            movement
            for line in removed
            if through is not None and through >= line.date_days  # else none can close
            for movement in book.movements.within(line, window)
            if movement.amount < line.amount
        ]

    def _remember_line(self, line: StatementLine) -> None:
        ledger_day = self.ledger_days.get(line.tenant_id)
        if ledger_day is not None and (
            line.booking_date_days < ledger_day - self.rules.line_identity_days
        ):
            return  # older than what is remembered: a copy of it would not be recognized either
        self.seen_line_ids[(line.tenant_id, line.line_id)] = line.booking_date_days
        days = self.seen_line_days.setdefault(line.tenant_id, {})
        days.setdefault(line.booking_date_days, []).append(line.line_id)

    def _forget_line_ids(self, tenant_id: str, horizon_day: int) -> None:
        """Forget the ids of the tenant's lines booked before ``horizon_day`` (once per day)."""
        days = self.seen_line_days.get(tenant_id, {})
        for day in [day for day in days if day < horizon_day]:
            for line_id in days.pop(day):
                del self.seen_line_ids[(tenant_id, line_id)]

    def _forget_old_movements(self, book: AccountBook, ledger_day: int) -> None:
        horizon = ledger_day - self.rules.movement_retention_days
        for movement in [
            item for item in book.movements.items.values() if item.date_days < horizon
        ]:
            self._remove(book.movements, movement.item_id)

    def _unmatched(
        self, book: AccountBook, item: Item, *, is_line: bool, at_us: int
    ) -> ReconciliationResult:
        self._remove(book.lines if is_line else book.movements, item.item_id)
        result = ReconciliationResult(
            tenant_id=book.tenant_id,
            account_id=book.account_id,
            state=ReconciliationState.UNMATCHED,
            rule=None,
            reason="no_ledger_movement" if is_line else "not_on_statement",
            line_ids=(item.item_id,) if is_line else (),
            movement_ids=() if is_line else (item.item_id,),
            line_amount=item.signed_amount() if is_line else 0,
            movement_amount=0 if is_line else item.signed_amount(),
            decided_at_us=at_us,
        )
        self._note_decided(result)
        return result

    def _decide(
        self,
        book: AccountBook,
        match: Match,
        *,
        at_us: int,
        new_line: Item | None = None,
        new_movement: Item | None = None,
    ) -> list[ReconciliationResult]:
        """The match's result, then the items its removals let close."""
        if new_line is not None:
            lines = (new_line, *match.companions)
            movements = match.partners
            for companion in match.companions:
                self._remove(book.lines, companion.item_id)
            for partner in movements:
                self._remove(book.movements, partner.item_id)
        else:
            assert new_movement is not None
            movements = (new_movement, *match.companions)
            lines = match.partners
            for companion in match.companions:
                self._remove(book.movements, companion.item_id)
            for partner in lines:
                self._remove(book.lines, partner.item_id)
        result = ReconciliationResult(
            tenant_id=book.tenant_id,
            account_id=book.account_id,
            state=match.state,
            rule=match.rule,
            reason=match.reason,
            line_ids=tuple(sorted(item.item_id for item in lines)),
            movement_ids=tuple(sorted(item.item_id for item in movements)),
            line_amount=sum(item.signed_amount() for item in lines),
            movement_amount=sum(item.signed_amount() for item in movements),
            decided_at_us=at_us,
        )
        freed_lines = self._freed_lines(book, movements)
        return [result, *self._close(book, at_us, freed_lines, self._freed_movements(book, lines))]
