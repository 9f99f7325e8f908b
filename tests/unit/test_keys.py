"""Record keys and the Java-compatible murmur2 partitioner."""

from __future__ import annotations

import pytest

from schemas import keys
from schemas.model import (
    AccountState,
    Posting,
    TenantHead,
    TransactionState,
    TransferState,
    TransferStatus,
)

# Apache Kafka clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java, testMurmur2
JAVA_MURMUR2_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("data", "expected"), JAVA_MURMUR2_VECTORS.items())
def test_murmur2_matches_java(data: bytes, expected: int) -> None:
    assert keys.murmur2(data) == expected


def test_partition_is_to_positive_modulo() -> None:
    for data, hashed in JAVA_MURMUR2_VECTORS.items():
        for partitions in (1, 3, 12, 100):
            assert keys.partition_for(data, partitions) == (hashed & 0x7FFFFFFF) % partitions


def test_partition_needs_partitions() -> None:
    with pytest.raises(ValueError, match="partitions"):
        keys.partition_for(b"a", 0)


def test_keys_start_with_the_tenant_and_split_back() -> None:
    built = [
        keys.command_key("acme"),
        keys.event_key("acme", 7),
        keys.outcome_key("acme", "k/with/slashes"),
        keys.account_state_key("acme", "cash"),
        keys.transfer_state_key("acme", "t-1"),
        keys.transaction_state_key("acme", "tx-1"),
        keys.tenant_head_key("acme"),
    ]
    assert all(keys.tenant_of_key(key) == "acme" for key in built)
    assert keys.event_key("acme", 7) == b"acme/00000000000000000007"
    assert keys.event_key("acme", 10) > keys.event_key("acme", 9)


def test_state_keys() -> None:
    head = TenantHead(tenant_id="t", last_sequence=1)
    account = AccountState(
        tenant_id="t", account_id="a", currency="USD", asset_scale=2,
        debits_must_not_exceed_credits=False, credits_must_not_exceed_debits=False,
        overdraft_limit=None, debits_posted=0, credits_posted=0, debits_pending=0,
        credits_pending=0, last_sequence=1,
    )  # fmt: skip
    transfer = TransferState(
        tenant_id="t", transfer_id="x", debit_account_id="a", credit_account_id="b",
        currency="USD", amount=1, status=TransferStatus.PENDING, amount_posted=0,
        amount_reversed=0, reverses=None, expires_at_us=None, last_sequence=2,
    )  # fmt: skip
    assert keys.state_key(head) == b"t/head"
    assert keys.state_key(account) == b"t/account/a"
    assert keys.state_key(transfer) == b"t/transfer/x"
    posting = Posting(debit_account_id="a", credit_account_id="b", amount=1, currency="USD")
    transaction = TransactionState(
        tenant_id="t", transaction_id="y", postings=(posting,), status=TransferStatus.POSTED,
        amounts_posted=(1,), amounts_reversed=(0,), reverses=None, expires_at_us=None,
        last_sequence=3,
    )  # fmt: skip
    assert keys.state_key(transaction) == b"t/transaction/y"
