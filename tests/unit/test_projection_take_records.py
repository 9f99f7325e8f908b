"""How the projection takes its next batch (decision 0109): never held back to fill up; while a
write is in flight, everything that arrives until it finishes, unless the batch holds the ramp's
start already and nothing more arrives (caught up, decision 0119); records from before a
rebalance inside ``consume`` are dropped. The sink's Kafka and PostgreSQL clients are not built
here: a scripted consumer stands in for librdkafka's (the system tests run the real ones)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any, cast

from projections.settings import ProjectionSettings
from projections.sink import InFlight, PreparedBatch, ProjectionSink


class ScriptedConsumer:
    """Answers each ``consume`` from a script; a step may run a side effect first (a write that
    finishes, a rebalance)."""

    def __init__(self, steps: list[tuple[list[str], Callable[[], None] | None]]) -> None:
        self.steps = steps
        self.calls: list[tuple[int, float]] = []

    def consume(self, num_messages: int, timeout: float) -> list[str]:
        self.calls.append((num_messages, timeout))
        if not self.steps:
            return []
        records, effect = self.steps.pop(0)
        if effect is not None:
            effect()
        return list(records)


def sink_with(consumer: ScriptedConsumer, *, records_max: int = 10) -> ProjectionSink:
    sink = object.__new__(ProjectionSink)  # no Kafka or PostgreSQL client: only what it reads
    sink.projection = ProjectionSettings(batch_records_max=records_max, batch_interval_ms=20)
    sink.consumer = cast(Any, consumer)
    sink.seek_epoch = 0
    sink.in_flight = None
    return sink


def taken(sink: ProjectionSink) -> list[object]:
    """The records of ``take_records`` at the batch maximum (here the script's strings, not
    librdkafka messages)."""
    return list(sink.take_records(sink.projection.batch_records_max))


def write_in_flight(sink: ProjectionSink) -> Future[Any]:
    written: Future[Any] = Future()
    sink.in_flight = InFlight(cast(Any, None), written)
    return written


def test_idle_takes_what_is_fetched_without_waiting_to_fill() -> None:
    consumer = ScriptedConsumer([(["a", "b"], None)])
    sink = sink_with(consumer)
    assert taken(sink) == ["a", "b"]
    assert consumer.calls == [(10, 0)]  # no wait: a partial batch is never held back


def test_idle_and_nothing_fetched_waits_for_the_first() -> None:
    consumer = ScriptedConsumer([([], None), (["a"], None), (["b"], None)])
    sink = sink_with(consumer)
    assert taken(sink) == ["a", "b"]
    assert consumer.calls == [(10, 0), (1, 0.02), (9, 0)]


def test_a_write_in_flight_collects_until_it_finishes() -> None:
    consumer = ScriptedConsumer([(["a"], None), ([], None), (["b", "c"], None), (["d"], None)])
    sink = sink_with(consumer, records_max=80)  # below the ramp's start (10): no early stop
    written = write_in_flight(sink)
    consumer.steps[2] = (["b", "c"], lambda: written.set_result(None))  # finishes in that wait
    assert taken(sink) == ["a", "b", "c"]
    assert consumer.steps == [(["d"], None)]  # the write finished: the batch is handed over
    assert consumer.calls[1][1] <= 0.002  # short waits, so the hand-over is prompt


def test_a_write_in_flight_stops_at_the_batch_maximum() -> None:
    consumer = ScriptedConsumer([(["a", "b"], None), (["c", "d"], None)])
    sink = sink_with(consumer, records_max=4)
    write_in_flight(sink)  # never finishes here
    assert taken(sink) == ["a", "b", "c", "d"]
    assert consumer.calls[1][0] == 2  # never asks for more than the batch has room for


def test_a_write_in_flight_stops_once_caught_up_with_the_ramps_start() -> None:
    """The end of a backlog: the batch is planned beside the write, not after it."""
    consumer = ScriptedConsumer([(["a"] * 9, None), (["b"], None), ([], None), (["c"], None)])
    sink = sink_with(consumer, records_max=80)  # the ramp's start: 10 records
    write_in_flight(sink)  # never finishes here
    assert taken(sink) == ["a"] * 9 + ["b"]
    assert consumer.steps == [(["c"], None)]  # the empty poll ended it


def test_a_small_batch_waits_for_the_write_when_caught_up() -> None:
    """A trickle (decision 0109): what arrives during the write still goes into the next one."""
    consumer = ScriptedConsumer([(["a"] * 9, None), ([], None), ([], None), (["b"], None)])
    sink = sink_with(consumer, records_max=80)
    written = write_in_flight(sink)
    consumer.steps[2] = ([], lambda: written.set_result(None))
    assert taken(sink) == ["a"] * 9
    assert consumer.steps == [(["b"], None)]  # polled until the write finished


def test_records_from_before_a_rebalance_are_dropped() -> None:
    consumer = ScriptedConsumer([(["old-1"], None), (["old-2"], None), (["new-1"], None)])
    sink = sink_with(consumer)
    written = write_in_flight(sink)

    def rebalance() -> None:  # what on_assign does: settle the write, then a new epoch
        written.set_result(None)
        sink.in_flight = None
        sink.seek_epoch += 1

    consumer.steps[2] = (["new-1"], rebalance)
    assert taken(sink) == ["new-1"]


def test_a_written_batch_is_freed_in_slices_once_the_next_write_is_under_way() -> None:
    """``release_retired`` (decision 0119): the batch written before the one in flight is
    emptied a slice at a time, its plan's lists first (they hold the records too)."""
    sink = sink_with(ScriptedConsumer([]))
    events: list[Any] = [{"sequence": index} for index in range(1000)]
    lists = {"entries": list(range(2000)), "chain": list(events), "transfer_events": list(events)}
    plan = cast(Any, SimpleNamespace(**lists, transfer_locations=[(0, 1)]))
    batch = PreparedBatch(0, events, [(0, i) for i in range(1000)], {}, {}, {}, plan)
    sink.retired = InFlight(batch, Future())
    sink.release_retired()
    assert sink.retired is None
    assert (batch.events, batch.locations, plan.entries, plan.chain) == ([], [], [], [])
    assert (plan.transfer_events, plan.transfer_locations) == ([], [])
    sink.release_retired()  # nothing retired: nothing to do
