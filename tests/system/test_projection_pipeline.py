"""The pipelined sink on the real broker and database: a batch prepared ahead of a write whose
position moved is dropped, never written, and the projection still equals the model.

Two sinks write the same schema from the same log (as a zombie instance and its successor
would). The first one has a batch in flight and the next one prepared when the second one
commits past it; the first one's write fails its position check, the prepared batch (which
assumed that write) is dropped, and the first one continues from the stored offsets.
"""

from __future__ import annotations

import logging
import time

import pytest

from projections.sink import ProjectionSink
from projections.store import LIVE_SCHEMA, read_offsets
from streamledger.settings import Settings
from tests.system.projection_checks import assert_matches_model, event_count, projection_for
from workloads.projection_events import generate, produce_events

pytestmark = pytest.mark.system
SEED = 16_016
CATCH_UP_TIMEOUT_S = 120.0
BATCH_RECORDS_MAX = 150


def sink_for(settings: Settings) -> ProjectionSink:
    projection = projection_for(settings, batch_records_max=BATCH_RECORDS_MAX)
    sink = ProjectionSink(settings, projection, schema=LIVE_SCHEMA, subscribe=False)
    sink.start()
    return sink


def test_a_batch_prepared_before_a_moved_position_is_dropped(
    projection_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    workload = generate(SEED, tenants=4, commands=1_500)
    half = len(workload.events) // 2
    produce_events(projection_settings, workload.events[:half], transactional_id="pipeline-1")
    first = sink_for(projection_settings)
    second: ProjectionSink | None = None
    try:
        write_a_batch(first)
        assert has_prepared(first)  # the next batch waits, prepared ahead
        second = sink_for(projection_settings)  # takes over from the stored offsets
        catch_up(second, projection_settings, half)
        with caplog.at_level(logging.WARNING, logger="streamledger.projection"):
            assert first.run_once().events == 0  # its write met the moved position
        assert "re-seeked" in caplog.text
        assert not has_prepared(first)  # what it prepared after that write is gone
        assert first.positions == read_offsets(first.connection, first.target)
        produce_events(projection_settings, workload.events[half:], transactional_id="pipeline-2")
        catch_up(first, projection_settings, len(workload.events))
        assert first.positions == read_offsets(first.connection, first.target)
    finally:
        first.close()
        if second is not None:
            second.close()
    assert_matches_model(projection_settings, workload.expected)


def write_a_batch(sink: ProjectionSink) -> None:
    """``run_once`` until it writes a batch (bounded): a batch waits ``batch_interval_ms`` for
    its first record, and the first fetch after the assignment can take longer than two such
    waits on a loaded machine."""
    deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
    while sink.run_once().events == 0:
        assert time.monotonic() < deadline, "no batch written"


def has_prepared(sink: ProjectionSink) -> bool:
    return sink.prepared is not None


def catch_up(sink: ProjectionSink, settings: Settings, events: int) -> None:
    deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
    while event_count(settings) < events:
        assert time.monotonic() < deadline, f"projected {event_count(settings)} of {events}"
        sink.run_once()
    assert event_count(settings) == events
