"""The ledger on Quix Streams, exactly-once (run by ``bench.peers.runner`` in its own venv).

    python -m bench.peers.quix_ledger

Configured by ``BENCH_*`` environment variables. A stateful ``apply`` calls the pure core per
command and stores the changed state records in Quix's state store (RocksDB, changelogged),
then ``expand`` turns the decision into output records and ``to_topic`` routes each to the
events or outcomes topic. ``processing_guarantee="exactly-once"``: Quix commits the outputs,
the changelog and the offsets in one transaction per checkpoint: every ``BENCH_COMMIT_EVERY``
records (StreamLedger's transaction size under a backlog) or its default 5 s, whichever first.
"""

from __future__ import annotations

import os

from quixstreams import Application, message_context
from quixstreams.kafka.configuration import ConnectionConfig
from quixstreams.models.serializers import Serializer

from bench.peers.peer_core import PeerLedger

EVENT, OUTCOME = 0, 1


class RecordValue(Serializer):  # type: ignore[misc]
    """Output values are (kind, key, bytes) tuples; the wire value is the bytes."""

    def __call__(self, value, ctx):  # type: ignore[no-untyped-def]
        return value[2]


class RecordKey(Serializer):  # type: ignore[misc]
    def __call__(self, value, ctx):  # type: ignore[no-untyped-def]
        return value


def connection() -> ConnectionConfig:
    """BENCH_BOOTSTRAP, with SASL/SCRAM when the bench stack runs it (bench.peers.runner)."""
    if "BENCH_SASL_MECHANISM" not in os.environ:
        return ConnectionConfig(bootstrap_servers=os.environ["BENCH_BOOTSTRAP"])
    return ConnectionConfig(
        bootstrap_servers=os.environ["BENCH_BOOTSTRAP"],
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism=os.environ["BENCH_SASL_MECHANISM"],
        sasl_username=os.environ["BENCH_SASL_USERNAME"],
        sasl_password=os.environ["BENCH_SASL_PASSWORD"],
    )


def main() -> None:
    app = Application(
        broker_address=connection(),
        consumer_group=os.environ["BENCH_GROUP"],
        processing_guarantee="exactly-once",
        commit_every=int(os.environ["BENCH_COMMIT_EVERY"]),
        auto_offset_reset="earliest",
        state_dir=os.environ.get("BENCH_STATE_DIR", "/tmp/bench-quix"),
        use_changelog_topics=True,
        loglevel="WARNING",
    )
    commands = app.topic(
        os.environ["BENCH_COMMANDS_TOPIC"], key_deserializer="bytes", value_deserializer="bytes"
    )
    events = app.topic(
        os.environ["BENCH_EVENTS_TOPIC"], key_serializer=RecordKey(), value_serializer=RecordValue()
    )
    outcomes = app.topic(
        os.environ["BENCH_OUTCOMES_TOPIC"], key_serializer=RecordKey(),
        value_serializer=RecordValue(),
    )  # fmt: skip
    peer = PeerLedger()

    def decide(value, key, timestamp, headers, state):  # type: ignore[no-untyped-def]
        partition = message_context().partition
        produced, stored, records = peer.handle(partition, value, timestamp)
        for record_key, data in records:
            state.set(record_key.hex(), data.hex())
        return [(EVENT, k, v) for k, v in produced] + [(OUTCOME, k, v) for k, v in stored]

    frame = app.dataframe(commands)
    frame = frame.apply(decide, stateful=True, expand=True, metadata=True)
    frame.to_topic(
        lambda value, key, timestamp, headers: events if value[0] == EVENT else outcomes,
        key=lambda value: value[1],
    )
    app.run()


if __name__ == "__main__":
    main()
