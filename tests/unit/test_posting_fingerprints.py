"""A multi-leg transaction's postings fingerprinted in one pass equal the definition.

``ledger.fingerprints._postings_fingerprints`` (the hot path: the ``postings`` field hash and
the per-posting field hashes from one loop, strings' hashes cached) must give what
``reference_command_fingerprint`` computes, for any text (non-ASCII, lone surrogates, which the
definition encodes with ``surrogatepass``) and any int.
"""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import fingerprints
from schemas.model import Posting, PostTransaction

EXAMPLES = settings(max_examples=300, deadline=None)
texts = st.text(st.characters(), max_size=20)  # surrogates included
postings = st.builds(
    Posting,
    debit_account_id=texts,
    credit_account_id=texts,
    amount=st.integers(-(2**70), 2**70),
    currency=texts,
)
# Postings whose fields are not of their declared types are left out: the compiled core (mypyc)
# refuses to read such a field as its declared type, with or without this fast path.


@EXAMPLES
@given(st.lists(postings, min_size=1, max_size=12).map(tuple))
def test_one_pass_equals_the_definition(posting_tuple: tuple[Posting, ...]) -> None:
    field_hash, posting_hashes = fingerprints._postings_fingerprints(posting_tuple)
    assert field_hash == fingerprints._field_fingerprint(posting_tuple)
    assert posting_hashes == fingerprints._posting_field_fingerprints(posting_tuple)


@EXAMPLES
@given(st.lists(postings, min_size=1, max_size=12).map(tuple), texts)
def test_transaction_fingerprint_equals_the_reference(
    posting_tuple: tuple[Posting, ...], transaction_id: str
) -> None:
    command = PostTransaction(
        tenant_id="acme",
        idempotency_key="k",
        submitted_at_us=1,
        transaction_id=transaction_id,
        postings=posting_tuple,
    )
    assert fingerprints.command_fingerprint(command) == (
        fingerprints.reference_command_fingerprint(command)
    )
    # a second time: now from the cache of posting strings
    changed = dataclasses.replace(command, postings=posting_tuple[::-1])
    assert fingerprints.command_fingerprint(changed) == (
        fingerprints.reference_command_fingerprint(changed)
    )
