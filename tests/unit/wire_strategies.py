"""Hypothesis strategies over all the Avro wire carries, and fastavro as the reference, for the
tests of the hand-written writers and readers (``tests/unit/test_avro_*.py``).

Unlike ``contract_strategies`` (values the contract accepts), these values only have to fit the
schemas: longs up to the int64 bounds and on every varint length boundary, any Unicode text
(past the readers' shared-string bound too), None in each optional field, metadata with a key
written twice. The record shapes shared with it are its (``contract_strategies.Leaves``), drawn
from ``WIRE``. The hand-written code must agree with fastavro on all of it: the same bytes, the
same value, or (for bytes changed at random) the same answer as the generic path.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from hypothesis import settings
from hypothesis import strategies as st

from schemas import codec
from schemas.avro_schemas import without_logical_types
from schemas.model import (
    INT64_MIN,
    OpenAccount,
    Posting,
    PostPending,
    PostTransaction,
    Transfer,
    VoidPending,
)
from tests.unit.contract_strategies import (
    Leaves,
    account_states_of,
    balances_of,
    hashes,
    int64,
    tenant_heads_of,
    transfer_states_of,
)

EXAMPLES = settings(max_examples=300, deadline=None)
int32 = st.integers(-(2**31), 2**31 - 1)
# The whole int64 range, small values of both signs, and the varint length boundaries (1, 2, 5
# and more bytes; zig-zag: 63 and -64 take one byte, 64 and -65 two).
longs = st.one_of(
    int64,
    st.integers(-200, 20_000),
    st.sampled_from([0, -1, 63, 64, -64, -65, 8191, 8192, 2**34, -(2**34), 2**35, INT64_MIN]),
)
optional_longs = st.none() | longs
texts = st.text(max_size=80)  # any code point but surrogates; past the shared-string bound too
optional_texts = st.none() | texts
# Metadata as the model holds it (sorted pairs): a key may repeat (written as it is, decoded
# once) ...
metadata_pairs = st.lists(st.tuples(texts, texts), max_size=4).map(
    lambda pairs: tuple(sorted(pairs))
)
# ... or not (what a decoder gives back as it was).
metadata_maps = st.dictionaries(texts, texts, max_size=4).map(
    lambda pairs: tuple(sorted(pairs.items()))
)
WIRE = Leaves.by_avro_type(texts, longs, int32, hashes)
balances = balances_of(WIRE)
transfer_states = transfer_states_of(WIRE)
account_states = account_states_of(WIRE)
tenant_heads = tenant_heads_of(WIRE)


def single_leg_commands(metadata: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``Transfer``, ``PostPending``, ``VoidPending`` and ``OpenAccount`` with ``metadata``."""
    head = {
        "tenant_id": texts,
        "idempotency_key": texts,
        "submitted_at_us": longs,
        "metadata": metadata,
    }
    return st.one_of(
        st.builds(
            Transfer,
            transfer_id=texts,
            debit_account_id=texts,
            credit_account_id=texts,
            amount=longs,
            currency=texts,
            pending=st.booleans(),
            pending_timeout_s=optional_longs,
            reverses=optional_texts,
            **head,
        ),
        st.builds(PostPending, transfer_id=texts, amount=optional_longs, **head),
        st.builds(VoidPending, transfer_id=texts, **head),
        st.builds(
            OpenAccount,
            account_id=texts,
            currency=texts,
            asset_scale=int32,
            debits_must_not_exceed_credits=st.booleans(),
            credits_must_not_exceed_debits=st.booleans(),
            overdraft_limit=optional_longs,
            **head,
        ),
    )


# Account ids and currencies of postings: any text, or a few that repeat within and across
# transactions (the readers' shared strings).
posting_texts = texts | st.sampled_from(["acct-1", "acct-2", "USD", "EUR", ""])
wire_postings = st.builds(
    Posting,
    debit_account_id=posting_texts,
    credit_account_id=posting_texts,
    amount=longs,
    currency=posting_texts,
)


def post_transactions(metadata: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``PostTransaction`` with ``metadata`` and 0..20 postings (the wire takes any count)."""
    return st.builds(
        PostTransaction,
        tenant_id=texts,
        idempotency_key=texts,
        submitted_at_us=longs,
        metadata=metadata,
        transaction_id=texts,
        postings=st.lists(wire_postings, max_size=20).map(tuple),
        pending=st.booleans(),
        pending_timeout_s=optional_longs,
        reverses=optional_texts,
    )


def public_fastavro_bytes(family: codec.RecordFamily, value: Any) -> bytes:
    """fastavro's public writer on the whole envelope, with the single-object header."""
    branch = family.by_type[type(value)]
    body = codec.to_avro(value, branch.field_names)
    record = (
        body if family.envelope_field is None else {family.envelope_field: (branch.full_name, body)}
    )
    buffer = io.BytesIO()
    schemaless_writer(buffer, parse_schema(dict(family.current.expanded)), record)
    return codec.MARKER + family.current.fingerprint + buffer.getvalue()


def public_fastavro_value(family: codec.RecordFamily, data: bytes) -> Any:
    """fastavro's public reader on the whole envelope (all of it read), as the model value."""
    schema = parse_schema(without_logical_types(dict(family.current.expanded)))
    body = io.BytesIO(data[codec.HEADER_BYTES :])
    record = schemaless_reader(
        body, schema, None, return_record_name=True, return_record_name_override=True
    )
    assert body.tell() == len(data) - codec.HEADER_BYTES
    if family.envelope_field is None:
        return codec._to_model(family.branches[0], record)
    full_name, fields = record[family.envelope_field]
    return codec._to_model(family.by_name[full_name], fields)


def changed_at_random(data: st.DataObject, encoded: bytes, prefix_bytes: int) -> bytes:
    """``encoded`` with, past its ``prefix_bytes``, one byte replaced, the end cut off, bytes
    added at the end, or bytes inserted."""
    changed = bytearray(encoded)
    change = data.draw(st.sampled_from(["replace", "cut", "extend", "insert"]))
    position = data.draw(st.integers(prefix_bytes, max(len(changed) - 1, 0)))
    if change == "replace":
        changed[position] = data.draw(st.integers(0, 255))
    elif change == "cut":
        del changed[position:]
    elif change == "extend":
        changed += data.draw(st.binary(min_size=1, max_size=4))
    else:
        changed[position:position] = data.draw(st.binary(min_size=1, max_size=4))
    return bytes(changed)


def answer(
    decode: Callable[[bytes], Any], data: bytes, caught: type[Exception] = codec.DecodeError
) -> tuple[str, Any]:
    """A decoder's value, or the type and message of its error (of the ``caught`` kind: any
    other error fails the test)."""
    try:
        return "value", decode(data)
    except caught as exc:
        return "error", (type(exc), str(exc))
