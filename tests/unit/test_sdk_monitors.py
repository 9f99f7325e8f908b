"""The SDK's balance-monitor builders (issue 18): checked like every command before sending."""

from __future__ import annotations

import pytest

from producers.errors import CommandValidationError
from producers.sdk import create_monitor, delete_monitor
from schemas.limits import first_violation
from schemas.model import CreateMonitor, DeleteMonitor


def test_create_monitor_builds_a_checked_command_with_sorted_metadata() -> None:
    command = create_monitor(
        tenant_id="acme",
        idempotency_key="m-1",
        monitor_id="low-cash",
        account_id="cash",
        field="available",
        operator="<",
        threshold=5_000,
        submitted_at_us=1_700_000_000_000_000,
        metadata={"team": "treasury", "owner": "ops"},
    )
    assert command == CreateMonitor(
        tenant_id="acme",
        idempotency_key="m-1",
        submitted_at_us=1_700_000_000_000_000,
        metadata=(("owner", "ops"), ("team", "treasury")),
        monitor_id="low-cash",
        account_id="cash",
        field="available",
        operator="<",
        threshold=5_000,
    )
    assert first_violation(command) is None


def test_a_broken_monitor_is_refused_naming_the_field() -> None:
    with pytest.raises(CommandValidationError) as raised:
        create_monitor(
            tenant_id="acme",
            idempotency_key="m-2",
            monitor_id="low-cash",
            account_id="cash",
            field="balance",
            operator="<",
            threshold=1,
        )
    assert "field" in str(raised.value)


def test_delete_monitor_builds_a_checked_command() -> None:
    command = delete_monitor(tenant_id="acme", idempotency_key="d-1", monitor_id="low-cash")
    assert isinstance(command, DeleteMonitor) and command.monitor_id == "low-cash"
    assert command.submitted_at_us > 0
