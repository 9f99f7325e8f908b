"""The ledger on faust-streaming, exactly-once (run by ``bench.peers.runner`` in its own venv).

    python -m bench.peers.faust_ledger worker -l warning

Configured by ``BENCH_*`` environment variables (broker, topics, group, partitions). One agent
consumes the commands; per command it calls the pure core, sends the events and the stored
outcome to their topics on the input's partition, and writes the changed state records into a
faust ``Table`` (its changelog is faust's state store). ``processing_guarantee="exactly_once"``:
faust's transactional producers commit the outputs, the changelog and the offsets together:
every ``BENCH_COMMIT_EVERY`` records (StreamLedger's transaction size under a backlog) or its
default 2.8 s, whichever first.
"""

from __future__ import annotations

import os

import faust

from bench.peers.peer_core import PeerLedger

BOOTSTRAP = os.environ["BENCH_BOOTSTRAP"]
PARTITIONS = int(os.environ["BENCH_PARTITIONS"])
# SASL/SCRAM when the bench stack runs it (bench.peers.runner.peer_connection_environment)
CREDENTIALS = (
    faust.SASLCredentials(
        username=os.environ["BENCH_SASL_USERNAME"],
        password=os.environ["BENCH_SASL_PASSWORD"],
        mechanism=os.environ["BENCH_SASL_MECHANISM"],
    )
    if "BENCH_SASL_MECHANISM" in os.environ
    else None
)

app = faust.App(
    os.environ["BENCH_GROUP"],
    broker=f"kafka://{BOOTSTRAP}",
    broker_credentials=CREDENTIALS,
    processing_guarantee="exactly_once",
    broker_commit_every=int(os.environ["BENCH_COMMIT_EVERY"]),
    store="memory://",
    topic_partitions=PARTITIONS,
    topic_replication_factor=1,
    consumer_auto_offset_reset="earliest",
    web_enabled=False,
    key_serializer="raw",
    value_serializer="raw",
    table_standby_replicas=0,
    datadir=os.environ.get("BENCH_STATE_DIR", "/tmp/bench-faust"),
)
raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
commands = app.topic(os.environ["BENCH_COMMANDS_TOPIC"], partitions=PARTITIONS, **raw)
events = app.topic(os.environ["BENCH_EVENTS_TOPIC"], partitions=PARTITIONS, **raw)
outcomes = app.topic(os.environ["BENCH_OUTCOMES_TOPIC"], partitions=PARTITIONS, **raw)
state_table = app.Table("ledger-state", partitions=PARTITIONS, key_type=bytes, value_type=bytes)
peer = PeerLedger()


@app.agent(commands)
async def decide(stream):  # type: ignore[no-untyped-def]
    async for event in stream.events():
        message = event.message
        partition = message.partition
        timestamp_ms = round(message.timestamp * 1000)
        produced, stored, records = peer.handle(partition, event.value, timestamp_ms)
        for key, value in produced:
            await events.send(key=key, value=value, partition=partition)
        for key, value in stored:
            await outcomes.send(key=key, value=value, partition=partition)
        for key, value in records:
            state_table[key] = value


if __name__ == "__main__":
    app.main()
