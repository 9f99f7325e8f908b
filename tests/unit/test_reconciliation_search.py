"""The sum rule's bounded search (issue 20, throughput): ``Side.nearest`` and ``subset_with_sum``
give what their plain definitions give — sort every candidate of the window by date distance,
then order, and take the first ones; try every subset in candidate order, smallest first."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciliation.matching import Item, Side, Wanted, subset_with_sum
from reconciliation.statement import Direction

open_items = st.lists(
    st.tuples(st.integers(0, 12), st.integers(1, 9), st.booleans(), st.sampled_from(["", "a"])),
    max_size=60,
)


def item(number: int, day: int, amount: int, credit: bool, reference: str) -> Item:
    return Item(
        item_id=f"i{number}",
        amount=amount,
        date_days=day,
        order=number // 2,  # two items share an order (postings of one event), in arrival order
        direction=Direction.CREDIT if credit else Direction.DEBIT,
        references=(),
        end_to_end=reference or None,
    )


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    items=open_items,
    search=st.tuples(
        st.integers(0, 12),  # the probe's day
        st.integers(0, 4),  # the window
        st.integers(1, 20),  # how many
        st.integers(0, 10),  # accepted: amounts below this
        st.sampled_from(["", "a", "b"]),  # the probe's end-to-end reference
    ),
)
def test_nearest_is_the_head_of_every_candidate_sorted(
    items: list[tuple[int, int, bool, str]], search: tuple[int, int, int, int, str]
) -> None:
    day, window, count, threshold, reference = search
    side = Side()
    for number, (date_days, amount, credit, end_to_end) in enumerate(items):
        side.add(item(number, date_days, amount, credit, end_to_end))
    for number in range(0, len(items), 4):
        side.remove(f"i{number}")
    probe = item(1_000, day, 5, True, reference)
    partner = item(1_001, day, 5, True, "b")  # the many-to-one's new item: may pair with both
    for wanted in (
        Wanted(amount_below=threshold),
        Wanted(amount_above=threshold),
        Wanted(amount_below=threshold, also_pairs_with=partner, excluded_id="i3"),
    ):

        def accept(other: Item, wanted: Wanted = wanted) -> bool:
            return (
                wanted.amount_above < other.amount < wanted.amount_below
                and (wanted.also_pairs_with is None or other.may_pair(wanted.also_pairs_with))
                and other.item_id != wanted.excluded_id
            )

        everything = sorted(
            (other for other in side.within(probe, window) if accept(other)),
            key=lambda other: (abs(other.date_days - probe.date_days), other.order),
        )
        assert side.nearest(probe, window, count, wanted) == everything[:count]


@settings(max_examples=500, deadline=None, derandomize=True)
@given(
    amounts=st.lists(st.integers(1, 12), max_size=12),
    total=st.integers(1, 40),
    size_min=st.integers(1, 3),
    extra=st.integers(0, 3),
)
def test_the_first_subset_is_the_first_of_every_subset_in_order(
    amounts: list[int], total: int, size_min: int, extra: int
) -> None:
    candidates = [item(number, 0, amount, True, "") for number, amount in enumerate(amounts)]
    size_max = size_min + extra
    expected = next(
        (
            subset
            for size in range(size_min, size_max + 1)
            for subset in itertools.combinations(candidates, size)
            if sum(candidate.amount for candidate in subset) == total
        ),
        None,
    )
    assert subset_with_sum(candidates, total, size_min, size_max) == expected
