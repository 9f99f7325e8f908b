"""The notification tests' HTTP receiver records only requests to its own path: a delivery to
an endpoint an earlier test left subscribed on the same (reused) port is answered 404 and not
counted (CI stop 33: a redelivered ``initech:42`` was taken for the next test's first)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.system.webhook_receivers import Receiver, start_receiver, stop_receiver


@pytest.fixture
def two_receivers() -> Iterator[tuple[Receiver, Receiver]]:
    first, second = start_receiver(), start_receiver()
    yield first, second
    stop_receiver(first)
    stop_receiver(second)


def test_a_receiver_records_its_own_path_and_refuses_another(
    two_receivers: tuple[Receiver, Receiver],
) -> None:
    first, second = two_receivers
    assert first.path != second.path
    mine = httpx.post(first.url, content=b"{}", headers={"StreamLedger-Delivery-Id": "a:1"})
    assert mine.status_code == 204
    port = first.url.split("/")[2]
    stale = httpx.post(f"http://{port}/hooks", content=b"{}")
    assert stale.status_code == 404
    another = httpx.post(f"http://{port}{second.path}", content=b"{}")
    assert another.status_code == 404
    assert [item.delivery_id for item in first.snapshot()] == ["a:1"]
    assert second.snapshot() == []
