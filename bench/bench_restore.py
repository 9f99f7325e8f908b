"""Restore time and memory per million live idempotency keys, on one partition.

    python -m bench.bench_restore [--keys 200000] [--transfers-per-key 0.81] [--profile]
                                  [--partitions 1]

1. fills ``--partitions`` partitions (a tenant's records on one, as the processor writes them)
   of a fresh ``ledger.outcomes`` with ``--keys`` outcomes in all (and
   ``ledger.balances`` with one head per tenant and, as the standard run leaves them, one
   posted ``TransferState`` for the first ``--transfers-per-key`` times ``--keys`` outcomes)
   through a transactional producer, one transaction per ``--batch`` records, each outcome with the
   record timestamp the processor gives it (its ``decided_at``), so the topic looks like the
   processor wrote it;
2. restores the partitions as on assignment (``restore_ledgers``, one reader and one connected
   admin client for all, as the processor's ``_restore``), timing the Kafka read and the
   rebuild of the state separately (wall and this process's CPU time), and measuring the RSS
   growth. ``make bench`` restores 4 partitions of ~4.6k keys: ``--keys 18500 --partitions 4``
   shows its fixed cost per restore (decision 0112);
3. decides one duplicate against the restored state (the lazy path must still answer);
4. rebuilds the state once more from a copy of the same snapshot made under ``tracemalloc``:
   the bytes the state holds per key, with what it keeps of the snapshot (the encoded outcomes
   and settled transfers and their record keys, decision 0102). The RSS
   growth of step 2 is lower whenever the process reuses memory it freed before (in
   ``make bench`` the processor's run): this is the figure to compare.

Uses the shared settings (``STREAMLEDGER_*``) and a unique topic prefix, deleted at the end.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import resource
import time
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

import ledger
from bench.bench_processor import delete_topics, traced_state_bytes
from infra import topics
from kafka_adapter.security import ADMIN_PRINCIPAL, client_config
from processors.loop import tune_garbage_collection
from processors.partition_ledger import (
    OUTCOME_TIMES_HEADER,
    PartitionLedger,
    ledger_from_snapshot,
    outcome_times,
)
from processors.processor_settings import ProcessorSettings, build_processor_settings
from processors.restore import PartitionSnapshot, admin_for, read_partitions, restore_consumer
from schemas.codec import encode_outcome, encode_state
from schemas.keys import outcome_key, state_key
from schemas.model import (
    Outcome,
    OutcomeStatus,
    TenantHead,
    Transfer,
    TransferState,
    TransferStatus,
)
from streamledger.settings import Settings, load_settings, replace

KEYS_PER_MILLION = 1_000_000
FILL_TIMEOUT_S = 600.0
TENANTS = 200
ACCOUNTS_PER_TENANT = 20  # the standard mix's opening
START_US = 1_700_000_000_000_000
TRANSFER_AMOUNT = 1_000_000_000  # the standard mix's (a five-byte long)


def restore_bench_settings(
    prefix: str, partitions: int, instance_id: str
) -> tuple[Settings, ProcessorSettings]:
    """The stack's settings on fresh topics (``prefix`` and a random tail) of ``partitions``
    partitions, created, and a processor's settings on them that never expires a key."""
    settings = replace(
        load_settings(),
        topic_prefix=f"{prefix}{uuid.uuid4().hex[:6]}.",
        partitions=partitions,
    )
    topics.apply(settings)
    processor_settings = build_processor_settings(
        settings,
        instance_id=instance_id,
        metrics_port=0,
        limits={"idempotency_retention_s": 100 * 365 * 86_400},
    )
    return settings, processor_settings


def main() -> None:
    arguments = parse_arguments()
    # as `streamledger process` does (and make bench's restore, after its processor run): with
    # CPython's default thresholds the collector's passes over the consumed messages cost ~1 s
    # of CPU per million keys more (5.2 against 4.2 s/M of read, decision 0112)
    tune_garbage_collection()
    settings, processor_settings = restore_bench_settings(
        "benchr", arguments.partitions, "bench-restore"
    )
    try:
        fill(
            settings,
            processor_settings.topics,
            arguments.keys,
            arguments.batch,
            with_header=not arguments.without_header,
            transfers=int(arguments.keys * arguments.transfers_per_key),
            partitions=arguments.partitions,
        )
        reader = restore_consumer(processor_settings)
        admin = admin_for(processor_settings)
        admin.list_topics(processor_settings.topics.outcomes, 30)  # connected, as a processor's
        reader.list_topics(processor_settings.topics.balances, 30)  # the same (decision 0124)
        gc.collect()
        rss_before = _rss_bytes()
        profiler = cProfile.Profile() if arguments.profile else None
        started, cpu_started = time.perf_counter(), time.process_time()
        if profiler is not None:
            profiler.enable()
        restored, rebuild_s, rebuild_cpu_s = restore(processor_settings, reader, admin, arguments)
        if profiler is not None:
            profiler.disable()
        elapsed, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
        rss_growth = _rss_bytes() - rss_before
        reader.close()
        check_duplicate(restored[partition_of(7, arguments.partitions)][0])
    finally:
        delete_topics(settings)
    snapshots = [snapshot for _, snapshot in restored]
    state_bytes = traced_state_bytes(snapshots, processor_settings)
    keys = sum(partition_ledger.live_idempotency_keys() for partition_ledger, _ in restored)
    assert keys == arguments.keys, (keys, arguments.keys)
    records_read = sum(snapshot.records_read for snapshot in snapshots)
    per_million = KEYS_PER_MILLION / keys
    print(f"live keys:           {keys:,} ({records_read:,} records read)")
    print(f"restore:             {elapsed:.2f} s = {elapsed * per_million:.2f} s/M keys")
    read_s, read_cpu_s = elapsed - rebuild_s, cpu_s - rebuild_cpu_s
    print(
        f"  read from Kafka:   {read_s:.2f} s = {read_s * per_million:.2f} s/M keys"
        f" (CPU {read_cpu_s * per_million:.2f} s/M)"
    )
    print(
        f"  rebuild state:     {rebuild_s:.2f} s = {rebuild_s * per_million:.2f} s/M"
        f" (CPU {rebuild_cpu_s * per_million:.2f} s/M)"
    )
    print(f"CPU (this process):  {cpu_s:.2f} s = {cpu_s * per_million:.2f} s/M keys")
    print(
        f"state memory:        {state_bytes * KEYS_PER_MILLION / keys / 2**20:,.0f} MiB per M keys"
        f" ({state_bytes / keys:,.0f} bytes per key, traced)"
    )
    print(
        f"RSS growth:          {rss_growth * KEYS_PER_MILLION / keys / 2**20:,.0f} MiB per M keys"
    )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS:            {peak_mb:,.0f} MiB (whole process)")
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)


def restore(
    processor_settings: ProcessorSettings,
    reader: Consumer,
    admin: AdminClient,
    arguments: argparse.Namespace,
) -> tuple[list[tuple[PartitionLedger, PartitionSnapshot]], float, float]:
    """The partitions restored as the processor's loop restores an assignment (small ones read
    in one pass, decision 0124); with the wall and CPU seconds the rebuilds took."""
    restored = []
    rebuild_s = rebuild_cpu_s = 0.0
    for snapshot in read_partitions(
        reader,
        admin,
        topics=(processor_settings.topics.balances, processor_settings.topics.outcomes),
        partitions=range(arguments.partitions),
        timeout_s=processor_settings.restore_timeout_s,
        header_name=OUTCOME_TIMES_HEADER,
        known_topics=set(),
    ):
        started, cpu_started = time.perf_counter(), time.process_time()
        restored.append((ledger_from_snapshot(snapshot, processor_settings), snapshot))
        rebuild_s += time.perf_counter() - started
        rebuild_cpu_s += time.process_time() - cpu_started
    return restored, rebuild_s, rebuild_cpu_s


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=200_000, help="outcomes in all partitions")
    parser.add_argument("--partitions", type=int, default=1, help="restored one after the other")
    parser.add_argument("--batch", type=int, default=5_000, help="records per transaction")
    parser.add_argument("--profile", action="store_true", help="cProfile the restore")
    parser.add_argument(
        "--transfers-per-key",
        type=float,
        default=0.81,
        help="posted TransferState records per outcome (0.81 after the standard run)",
    )
    parser.add_argument(
        "--without-header",
        action="store_true",
        help="outcomes without their times header (as written before it): decoded at restore",
    )
    return parser.parse_args()


def sample_outcome(index: int) -> tuple[bytes, bytes, int, bytes]:
    """A realistic accepted Transfer outcome: key, value, timestamp in ms, times header."""
    tenant_id = f"tenant-{index % TENANTS:04d}"
    decided_at_us = START_US + index * 1_000
    fields = len(ledger.FINGERPRINT_FIELDS[Transfer])
    outcome = Outcome(
        tenant_id=tenant_id,
        idempotency_key=uuid.UUID(int=index).hex,
        command_type=Transfer.__name__,
        fingerprint=index.to_bytes(32, "big"),
        field_fingerprints=index.to_bytes(8, "big") * fields,
        status=OutcomeStatus.ACCEPTED,
        event_sequences=(index // TENANTS + 1,),
        decided_at_us=decided_at_us,
        expires_at_us=decided_at_us + 100 * 365 * 86_400 * 1_000_000,
    )
    key = outcome_key(tenant_id, outcome.idempotency_key)
    return key, encode_outcome(outcome), decided_at_us // 1000, outcome_times(outcome)


def sample_transfer_state(index: int) -> tuple[bytes, bytes]:
    """The posted transfer of outcome ``index`` as ``ledger.balances`` holds it: key, value."""
    tenant = index % TENANTS
    state = TransferState(
        tenant_id=f"tenant-{tenant:04d}",
        transfer_id=f"tr-{index:08d}",
        debit_account_id="funding",
        credit_account_id=f"acct-{index % ACCOUNTS_PER_TENANT:04d}",
        currency="USD",
        amount=TRANSFER_AMOUNT,
        status=TransferStatus.POSTED,
        amount_posted=TRANSFER_AMOUNT,
        amount_reversed=0,
        reverses=None,
        expires_at_us=None,
        last_sequence=index // TENANTS + 1,
    )
    return state_key(state), encode_state(state)


def partition_of(index: int, partitions: int) -> int:
    """The partition of outcome ``index``: its tenant's (every record of a tenant on one)."""
    return (index % TENANTS) % partitions


def fill(
    settings: object,
    names: object,
    keys: int,
    batch: int,
    *,
    with_header: bool,
    transfers: int,
    partitions: int = 1,
) -> None:
    started = time.perf_counter()
    producer = Producer(
        {
            **client_config(settings, ADMIN_PRINCIPAL),  # type: ignore[arg-type]
            "transactional.id": f"bench-restore-{uuid.uuid4().hex[:6]}",
            "linger.ms": 20,
        }
    )
    producer.init_transactions(60)
    outcomes_topic = names.outcomes  # type: ignore[attr-defined]
    balances_topic = names.balances  # type: ignore[attr-defined]
    for first in range(0, keys, batch):
        producer.begin_transaction()
        for index in range(first, min(first + batch, keys)):
            key, value, timestamp_ms, times = sample_outcome(index)
            headers = [(OUTCOME_TIMES_HEADER, times)] if with_header else None
            partition = partition_of(index, partitions)
            producer.produce(
                outcomes_topic, value, key, partition, timestamp=timestamp_ms, headers=headers
            )
            if index < transfers:
                state_key_bytes, state_value = sample_transfer_state(index)
                producer.produce(balances_topic, state_value, state_key_bytes, partition)
        if first == 0:
            for tenant in range(TENANTS):
                head = TenantHead(tenant_id=f"tenant-{tenant:04d}", last_sequence=keys)
                partition = partition_of(tenant, partitions)
                producer.produce(balances_topic, encode_state(head), state_key(head), partition)
        producer.commit_transaction(FILL_TIMEOUT_S)
    print(f"filled {keys:,} outcomes in {time.perf_counter() - started:.1f} s")


def check_duplicate(partition_ledger: object) -> None:
    """The restored state still answers a known key and a posted transfer (decoded on
    demand: a restore keeps them encoded)."""
    state = partition_ledger.state  # type: ignore[attr-defined]
    _, value, _, _ = sample_outcome(7)
    stored = state.outcome(f"tenant-{7 % TENANTS:04d}", uuid.UUID(int=7).hex)
    assert stored is not None and stored.fingerprint == (7).to_bytes(32, "big"), stored
    del value
    transfer = state.transfer(f"tenant-{7 % TENANTS:04d}", f"tr-{7:08d}")  # kept encoded too
    assert transfer is not None and transfer.last_sequence == 7 // TENANTS + 1, transfer


def _rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


if __name__ == "__main__":
    main()
