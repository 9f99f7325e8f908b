"""The projection's write-path shortcuts (issue 17) give exactly what they replace.

``projections.batch`` converts effective times and tenants' home partitions once per value
(bounded caches) and reads statuses and posting kinds as text from tables; ``projections.store``
COPYs empty metadata as ``jsonb`` without ``json.dumps``. Each must equal the function it stands
for, for any input, and the caches must stay within their bounds.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg.types.json import JsonbBinaryDumper

from ledger.effects import PostingKind
from projections import batch
from projections.store import EMPTY_JSONB, MetadataJsonbDumper
from schemas.event_time import to_datetime as event_time_to_datetime
from schemas.keys import command_key, partition_for
from schemas.model import TransferStatus

EXAMPLES = settings(max_examples=300, deadline=None)
MICROSECONDS = st.integers(-(2**52), 2**52) | st.sampled_from([0, -1, 1, 1_700_000_000_000_000])


@EXAMPLES
@given(microseconds=MICROSECONDS)
def test_the_cached_effective_time_is_the_contracts(microseconds: int) -> None:
    first = batch.to_datetime(microseconds)
    assert first == event_time_to_datetime(microseconds)
    assert batch.to_datetime(microseconds) is first  # the second call is the cached value


def test_the_effective_time_cache_stays_within_its_bound() -> None:
    start = 1_700_000_000_000_000
    for offset in range(batch.EFFECTIVE_TIMES_CACHED_MAX + 10):
        assert batch.to_datetime(start + offset) == event_time_to_datetime(start + offset)
        assert len(batch._effective_times) <= batch.EFFECTIVE_TIMES_CACHED_MAX


@EXAMPLES
@given(tenant_id=st.text(min_size=1, max_size=40), partitions=st.integers(1, 64))
def test_the_cached_home_partition_is_the_partitioners(tenant_id: str, partitions: int) -> None:
    expected = partition_for(command_key(tenant_id), partitions)
    assert batch.home_partition_of(tenant_id, partitions) == expected
    assert batch.home_partition_of(tenant_id, partitions) == expected
    context = batch.PlanContext(partitions=partitions)
    assert context.home_partition(tenant_id) == expected
    assert len(batch._home_partitions) <= batch.HOME_PARTITIONS_CACHED_MAX


def test_status_and_kind_texts_are_the_enums_values() -> None:
    for status in TransferStatus:
        assert batch.STATUS_TEXT[status] == status.value
        assert batch.STATUS_BY_TEXT[status.value] is status
    for kind in PostingKind:
        assert batch.KIND_TEXT[kind] == kind.value


metadata_values = st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=5)


@EXAMPLES
@given(metadata=metadata_values)
def test_the_metadata_dumper_writes_psycopgs_bytes(metadata: dict[str, str]) -> None:
    ours = MetadataJsonbDumper(dict).dump(metadata)
    theirs = JsonbBinaryDumper(dict).dump(metadata)
    assert ours is not None and theirs is not None
    assert bytes(ours) == bytes(theirs)
    assert bytes(ours)[1:].decode() == json.dumps(metadata)


def test_empty_metadata_is_jsonb_version_1_and_an_empty_object() -> None:
    assert MetadataJsonbDumper(dict).dump({}) == EMPTY_JSONB == b"\x01{}"
    assert MetadataJsonbDumper.oid == JsonbBinaryDumper.oid
