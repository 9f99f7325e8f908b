"""Which command records a partition may decide (decision 0026). Pure.

A tenant's commands live on partition ``murmur2(tenant_id) % partitions`` (Kafka's Java default
partitioner for the key ``tenant_id``). A record elsewhere, or whose key is not its body's
tenant, would start a second hash chain for the tenant on another partition: it is never decided
and goes to the DLQ with the reason and the partition it belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass

from processors.dead_letters import KIND_KEY_MISMATCH, KIND_WRONG_PARTITION
from schemas.keys import command_key, partition_for


@dataclass(frozen=True, slots=True)
class Misrouted:
    """Why a decodable command record is not this partition's to decide."""

    kind: str  # KIND_KEY_MISMATCH or KIND_WRONG_PARTITION
    expected_partition: int
    message: str


def misrouting(
    key: bytes | None, partition: int, tenant_id: str, partition_count: int
) -> Misrouted | None:
    """None when the record at ``partition`` with ``key`` may be decided for ``tenant_id``."""
    tenant_key = command_key(tenant_id)
    expected = partition_for(tenant_key, partition_count)
    if key != tenant_key:
        return Misrouted(
            KIND_KEY_MISMATCH,
            expected,
            f"the record key {key!r} is not the command's tenant_id {tenant_id!r}",
        )
    if partition != expected:
        return Misrouted(
            KIND_WRONG_PARTITION,
            expected,
            f"tenant {tenant_id!r} belongs to partition {expected}, not {partition}",
        )
    return None
