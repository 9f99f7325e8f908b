"""The restore's fold over consumed records: the latest value (and named header value) per key.

``processors.restore._keep_latest`` calls ``keep_latest`` for each consumed batch. It runs once
per restored record, most of a restore's Python CPU after the client's own ``Message`` building,
so it is compiled with the core (``scripts/build_native.py``, decision 0129): same result
compiled and as Python (``STREAMLEDGER_PURE_PYTHON=1``). It takes the records as any object with
``confluent_kafka.Message``'s accessors and imports nothing of the client: what is not a plain
record (a client event or error, a record without a key) is handed back to the caller, who
decides.

Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

TopicPartitionKey = tuple[str, int]  # (topic, partition)


def keep_latest(
    messages: list[Any],
    *,
    values_by_partition: dict[TopicPartitionKey, dict[bytes, bytes]],
    header_values_by_partition: dict[TopicPartitionKey, dict[bytes, bytes]],
    header_name: str | None,
    records_read: dict[TopicPartitionKey, int],
    unusual: list[Any],
) -> int:
    """Fold ``messages`` (in order) into the dicts of their topic partition; returns the records
    folded. A record with a value keeps it under its key (and ``header_name``'s value, when the
    record carries it as bytes, in ``header_values_by_partition``; otherwise the key's header
    value goes); a tombstone removes the key from both. ``records_read`` counts each topic
    partition's records. A message with an error or without a key is appended to ``unusual``,
    not folded. The records of one topic partition come in runs: its dicts are looked up once
    a run."""
    folded = run_read = 0
    values: dict[bytes, bytes] = {}
    header_values: dict[bytes, bytes] = {}
    run_topic = ""
    run_partition = -1
    for message in messages:
        if message.error() is not None:  # the end of a partition, or the client's error
            unusual.append(message)
            continue
        key: bytes | None = message.key()
        if key is None:
            unusual.append(message)
            continue
        topic: str = message.topic()  # set on every fetched record
        partition: int = message.partition()
        if partition != run_partition or topic != run_topic:
            if run_read:
                records_read[run_topic, run_partition] += run_read
                folded += run_read
            run_topic, run_partition, run_read = topic, partition, 0
            values = values_by_partition[topic, partition]
            header_values = header_values_by_partition[topic, partition]
        run_read += 1
        value: bytes | None = message.value()
        if value is None:
            values.pop(key, None)  # a tombstone removes its key
            header_values.pop(key, None)
            continue
        values[key] = value
        if header_name is not None:
            header = _header_value(message.headers(), header_name)
            if header is None:
                if header_values:
                    header_values.pop(key, None)
            else:
                header_values[key] = header
    if run_read:
        records_read[run_topic, run_partition] += run_read
        folded += run_read
    return folded


def _header_value(headers: Any, name: str) -> bytes | None:
    """The value of header ``name`` if it is bytes: ``headers`` is None, a list of (name,
    value) or a dict, as the client hands them over."""
    if headers is None:
        return None
    if isinstance(headers, list):
        if len(headers) == 1:  # the processor writes its one header alone
            only = headers[0]
            if only[0] == name:
                value = only[1]
                return value if isinstance(value, bytes) else None
            return None
    elif isinstance(headers, dict):
        found = headers.get(name)
        return found if isinstance(found, bytes) else None
    for header, value in headers:
        if header == name and isinstance(value, bytes):
            return value
    return None
