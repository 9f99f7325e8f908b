"""Record keys of every ledger topic, and Kafka's Java default partitioner (murmur2).

Every key starts with the tenant, and ``/`` separates the parts (no tenant, account or transfer
id may contain ``/``, see ``schemas.limits``), so a key splits back unambiguously:

=====================  ===================================================  ==================
topic                  key (UTF-8)                                          compaction keeps
=====================  ===================================================  ==================
``ledger.commands``    ``{tenant}``                                         (not compacted)
``ledger.events``      ``{tenant}/{sequence:020d}``                         every event
``ledger.outcomes``    ``{tenant}/{idempotency_key}``                       one per key
``ledger.balances``    ``{tenant}/account/{id}``, ``{tenant}/transfer/{id}``,  the latest state
                       ``{tenant}/transaction/{id}``, ``{tenant}/head``,
                       ``{tenant}/monitor/{id}`` (a tombstone once deleted)
``ledger.notifications`` ``{tenant}/{sequence:020d}/{monitor_id}``         every notification
=====================  ===================================================  ==================

The events key is zero-padded so keys sort like sequences. ``partition_for`` places a key like
the Java client's default partitioner (``Utils.toPositive(Utils.murmur2(key)) % partitions``),
which librdkafka's default (``consistent_random``, CRC32) does not; the SDK sets the partition
explicitly so every client in every language puts a tenant on the same partition.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final

from schemas.model import (
    AccountState,
    MonitorState,
    Notification,
    StateRecord,
    TenantHead,
    TransactionState,
    TransferState,
)

KEY_SEPARATOR: Final = "/"
SEQUENCE_DIGITS: Final = 20
MURMUR2_SEED: Final = 0x9747B28C
MURMUR2_MULTIPLIER: Final = 0x5BD1E995
MURMUR2_SHIFT: Final = 24
UINT32_MASK: Final = 0xFFFFFFFF
INT32_SIGN_BIT: Final = 0x80000000
POSITIVE_MASK: Final = 0x7FFFFFFF
PARTITION_CACHE_SIZE: Final = 65_536  # tenants remembered per partition count


def command_key(tenant_id: str) -> bytes:
    return tenant_id.encode("utf-8")


def event_key(tenant_id: str, sequence: int) -> bytes:
    return f"{tenant_id}{KEY_SEPARATOR}{sequence:0{SEQUENCE_DIGITS}d}".encode()


def outcome_key(tenant_id: str, idempotency_key: str) -> bytes:
    return f"{tenant_id}{KEY_SEPARATOR}{idempotency_key}".encode()


def account_state_key(tenant_id: str, account_id: str) -> bytes:
    return f"{tenant_id}{KEY_SEPARATOR}account{KEY_SEPARATOR}{account_id}".encode()


def transfer_state_key(tenant_id: str, transfer_id: str) -> bytes:
    return f"{tenant_id}{KEY_SEPARATOR}transfer{KEY_SEPARATOR}{transfer_id}".encode()


def transaction_state_key(tenant_id: str, transaction_id: str) -> bytes:
    return f"{tenant_id}{KEY_SEPARATOR}transaction{KEY_SEPARATOR}{transaction_id}".encode()


def monitor_state_key(tenant_id: str, monitor_id: str) -> bytes:
    return f"{tenant_id}{KEY_SEPARATOR}monitor{KEY_SEPARATOR}{monitor_id}".encode()


def notification_key(notification: Notification) -> bytes:
    """``{tenant}/{sequence:020d}/{monitor_id}``: unique per notification (a monitor has at
    most one edge per event), so compaction keeps every one; sorts by sequence."""
    return (
        f"{notification.tenant_id}{KEY_SEPARATOR}{notification.sequence:0{SEQUENCE_DIGITS}d}"
        f"{KEY_SEPARATOR}{notification.monitor_id}"
    ).encode()


def tenant_head_key(tenant_id: str) -> bytes:
    return f"{tenant_id}{KEY_SEPARATOR}head".encode()


def state_key(state: StateRecord) -> bytes:
    """The ``ledger.balances`` key of a state record."""
    if isinstance(state, AccountState):
        return account_state_key(state.tenant_id, state.account_id)
    if isinstance(state, TransferState):
        return transfer_state_key(state.tenant_id, state.transfer_id)
    if isinstance(state, TransactionState):
        return transaction_state_key(state.tenant_id, state.transaction_id)
    if isinstance(state, MonitorState):
        return monitor_state_key(state.tenant_id, state.monitor_id)
    assert isinstance(state, TenantHead)
    return tenant_head_key(state.tenant_id)


def tenant_of_key(key: bytes) -> str:
    """The tenant a key of any ledger topic belongs to."""
    return key.decode("utf-8").split(KEY_SEPARATOR, 1)[0]


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2``: the 32-bit MurmurHash2 of ``data`` as a signed Java int."""
    length = len(data)
    value = (MURMUR2_SEED ^ length) & UINT32_MASK
    whole_words = length - length % 4
    for offset in range(0, whole_words, 4):
        word = int.from_bytes(data[offset : offset + 4], "little")
        word = (word * MURMUR2_MULTIPLIER) & UINT32_MASK
        word ^= word >> MURMUR2_SHIFT
        word = (word * MURMUR2_MULTIPLIER) & UINT32_MASK
        value = ((value * MURMUR2_MULTIPLIER) & UINT32_MASK) ^ word
    tail = data[whole_words:]
    if tail:
        value ^= int.from_bytes(tail, "little")  # Java's fall-through over bytes 2, 1, 0
        value = (value * MURMUR2_MULTIPLIER) & UINT32_MASK
    value ^= value >> 13
    value = (value * MURMUR2_MULTIPLIER) & UINT32_MASK
    value ^= value >> 15
    return value - (1 << 32) if value & INT32_SIGN_BIT else value


def to_positive(value: int) -> int:
    """Kafka's ``Utils.toPositive``: clear the sign bit (not ``abs``)."""
    return value & POSITIVE_MASK


@lru_cache(maxsize=PARTITION_CACHE_SIZE)
def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's Java default partitioner picks for a non-empty ``key``."""
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    return to_positive(murmur2(key)) % partitions
