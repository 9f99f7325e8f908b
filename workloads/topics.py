"""Deleting test and benchmark topics, so a shared stack stays small."""

from __future__ import annotations

from kafka_adapter.admin import admin_client
from streamledger.settings import Settings

TOPIC_DELETE_TIMEOUT_S = 30.0


def delete_topics(settings: Settings, names: list[str]) -> None:
    """Delete test topics (ignoring ones that were never created) so the test stack stays small."""
    client = admin_client(settings)
    existing = set(client.list_topics(timeout=TOPIC_DELETE_TIMEOUT_S).topics)
    doomed = [name for name in names if name in existing]
    if not doomed:
        return
    futures = client.delete_topics(doomed, operation_timeout=TOPIC_DELETE_TIMEOUT_S)
    for future in futures.values():
        future.result(timeout=TOPIC_DELETE_TIMEOUT_S)
