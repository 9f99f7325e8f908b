"""Statement lines are read by hand (``records.read_line``, issue 20 throughput): the line
fastavro reads for every line, and anything unusual (a changed byte, a cut, an extra byte) is
left to fastavro, which reads it or refuses it as before."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciliation.records import (
    INT_MAX,
    INT_MIN,
    LONG_MAX,
    LONG_MIN,
    decode,
    decode_with_fastavro,
    encode,
    read_line,
)
from reconciliation.statement import Direction, StatementLine
from schemas.codec import DecodeError

texts = st.text(max_size=30)
optional_texts = st.one_of(st.none(), texts)
ints = st.one_of(st.integers(INT_MIN, INT_MAX), st.sampled_from([0, -1, 63, -64, 20_000]))
lines = st.builds(
    StatementLine,
    tenant_id=texts, account_id=texts, line_id=texts, file_sha256=texts,
    statement_id=optional_texts, line_number=ints,
    amount=st.one_of(st.integers(LONG_MIN, LONG_MAX), st.integers(-200, 200)),
    currency=texts, direction=st.sampled_from(Direction), reversal=st.booleans(),
    booking_date_days=ints, value_date_days=st.one_of(st.none(), ints),
    bank_reference=optional_texts, entry_reference=optional_texts,
    end_to_end_reference=optional_texts, counterparty_name=optional_texts,
    counterparty_account=optional_texts, remittance_information=optional_texts,
)  # fmt: skip


@settings(max_examples=500, deadline=None, derandomize=True)
@given(line=lines)
def test_a_line_reads_as_fastavro_reads_it(line: StatementLine) -> None:
    value = encode(line)
    assert read_line(value) == line
    assert decode(value) == decode_with_fastavro(value) == line


def _outcome(read: object, value: bytes) -> object:
    try:
        return read(value)  # type: ignore[operator]
    except DecodeError as refused:
        return type(refused)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(
    line=lines,
    change=st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)),
    cut=st.integers(0, 8),
    extra=st.binary(max_size=2),
)
def test_a_damaged_line_reads_as_before(
    line: StatementLine, change: tuple[int, int], cut: int, extra: bytes
) -> None:
    value = bytearray(encode(line))
    index = 10 + change[0] % (len(value) - 10)  # a body byte
    value[index] = change[1]
    for damaged in (bytes(value), bytes(value[: len(value) - cut]), bytes(value) + extra):
        by_hand = read_line(damaged)
        assert by_hand is None or by_hand == decode_with_fastavro(damaged)
        assert _outcome(decode, damaged) == _outcome(decode_with_fastavro, damaged)
