"""The matcher's results are written by hand (``records.encode_result``, issue 20 throughput):
the same bytes fastavro writes for every result, and ``encode`` leaves what does not fit an Avro
long to fastavro."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciliation.matching import MatchRule, ReconciliationResult, ReconciliationState
from reconciliation.records import (
    LONG_MAX,
    LONG_MIN,
    decode,
    encode,
    encode_result,
    encode_with_fastavro,
)

texts = st.text(max_size=40)  # any code point fastavro writes, the empty string too
longs = st.one_of(
    st.integers(LONG_MIN, LONG_MAX),
    st.sampled_from([0, -1, 63, -64, 64, -65, 8191, -8192, LONG_MIN, LONG_MAX]),
)
results = st.builds(
    ReconciliationResult,
    tenant_id=texts,
    account_id=texts,
    state=st.sampled_from(ReconciliationState),
    rule=st.one_of(st.none(), st.sampled_from(MatchRule)),
    reason=texts,
    line_ids=st.lists(texts, max_size=6).map(tuple),
    movement_ids=st.lists(texts, max_size=6).map(tuple),
    line_amount=longs,
    movement_amount=longs,
    decided_at_us=longs,
)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(result=results)
def test_the_hand_written_result_is_fastavros_bytes(result: ReconciliationResult) -> None:
    written = encode_result(result)
    assert written == encode_with_fastavro(result)
    assert encode(result) == written
    assert decode(written) == result


@pytest.mark.parametrize("amount", [LONG_MAX + 1, LONG_MIN - 1])
def test_a_sum_beyond_a_long_is_left_to_fastavro(amount: int) -> None:
    result = ReconciliationResult(
        tenant_id="t", account_id="bank", state=ReconciliationState.MATCHED,
        rule=MatchRule.SUM, reason="matched", line_ids=("l",), movement_ids=("m",),
        line_amount=amount, movement_amount=0, decided_at_us=0,
    )  # fmt: skip
    with pytest.raises(Exception) as by_fastavro:
        encode_with_fastavro(result)
    with pytest.raises(type(by_fastavro.value)):
        encode(result)
