"""Balance-monitor notifications as webhook bodies and subscription kinds (decision 0068)."""

from __future__ import annotations

import json

from notifications.payloads import (
    event_types_problem,
    notification_body,
    notification_kind,
    subscribes_to,
)
from schemas.model import MonitorCleared, MonitorTriggered

TRIGGERED = MonitorTriggered(
    tenant_id="acme",
    notification_id="acme:42:low-cash",
    monitor_id="low-cash",
    account_id="cash",
    currency="USD",
    field="available",
    operator="<",
    threshold=5000,
    value=2000,
    sequence=42,
    event_hash=bytes(range(32)),
    effective_at_us=1_700_000_000_200_000,
    metadata=(("owner", "treasury"),),
)


def test_a_notification_body_has_the_event_bodys_shape_with_its_id_and_kind() -> None:
    document = json.loads(notification_body(TRIGGERED))
    assert document == {
        "id": "acme:42:low-cash",
        "type": "monitor.triggered",
        "tenant_id": "acme",
        "sequence": 42,
        "effective_at_us": 1_700_000_000_200_000,
        "data": {
            "monitor_id": "low-cash",
            "account_id": "cash",
            "currency": "USD",
            "field": "available",
            "operator": "<",
            "threshold": 5000,
            "value": 2000,
            "event_hash": bytes(range(32)).hex(),
            "metadata": {"owner": "treasury"},
        },
    }
    fields = {name: getattr(TRIGGERED, name) for name in TRIGGERED.__dataclass_fields__}
    cleared = MonitorCleared(**fields)
    assert notification_kind(cleared) == "monitor.cleared"
    assert json.loads(notification_body(cleared))["type"] == "monitor.cleared"


def test_monitor_kinds_are_subscribable_and_star_covers_them() -> None:
    assert event_types_problem(["monitor.triggered", "monitor.cleared"]) is None
    assert event_types_problem(["monitor.triggered", "TransferPosted"]) is None
    assert event_types_problem(["monitor.fired"]) is not None
    assert subscribes_to(("*",), "monitor.cleared")
    assert subscribes_to(("monitor.cleared",), "monitor.cleared")
    assert not subscribes_to(("monitor.triggered",), "monitor.cleared")
