"""``POST /v1/monitors`` and ``DELETE /v1/monitors/{monitor_id}`` (issue 18, decision 0058), their
pure parts: strict bodies, the commands they become (tenant and key from the request, the
monitor id of a DELETE from the path), limits as 422s naming the field, the OpenAPI entries."""

from __future__ import annotations

import json

import pytest

from api.app import ROUTES, resource_path
from api.bodies import DeleteMonitorBody, MonitorBody, check_limits, decode_body, to_command
from api.openapi import build_openapi
from api.problems import ApiProblemError
from schemas.model import CreateMonitor, DeleteMonitor


def raw_body(**changes: object) -> bytes:
    document: dict[str, object] = {
        "monitor_id": "low-alice",
        "account_id": "alice",
        "field": "available",
        "operator": "<",
        "threshold": 5000,
        "metadata": {"owner": "treasury"},
    }
    return json.dumps(document | changes).encode()


def test_a_monitor_body_becomes_create_monitor() -> None:
    body = decode_body(MonitorBody, raw_body())
    made = to_command(body, tenant_id="acme", idempotency_key="k-1", submitted_at_us=7)
    assert made == CreateMonitor(
        tenant_id="acme",
        idempotency_key="k-1",
        submitted_at_us=7,
        metadata=(("owner", "treasury"),),
        monitor_id="low-alice",
        account_id="alice",
        field="available",
        operator="<",
        threshold=5000,
    )
    check_limits(made)


def test_delete_needs_no_body_and_takes_the_id_from_the_path() -> None:
    body = decode_body(DeleteMonitorBody, b"")
    made = to_command(
        body, tenant_id="acme", idempotency_key="d-1", submitted_at_us=7, transfer_id="low-alice"
    )
    assert made == DeleteMonitor(
        tenant_id="acme", idempotency_key="d-1", submitted_at_us=7, monitor_id="low-alice"
    )


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (raw_body(field="balance"), "field"),
        (raw_body(operator="!="), "operator"),
        (raw_body(monitor_id="a/b"), "monitor_id"),
        (raw_body(account_id=""), "account_id"),
    ],
)
def test_a_monitor_breaking_a_limit_is_a_422_naming_the_field(raw: bytes, field: str) -> None:
    made = to_command(
        decode_body(MonitorBody, raw), tenant_id="acme", idempotency_key="k", submitted_at_us=1
    )
    with pytest.raises(ApiProblemError) as caught:
        check_limits(made)
    assert caught.value.kind.status == 422 and caught.value.extensions == {"field": field}


def test_a_malformed_monitor_body_is_a_400_naming_the_member() -> None:
    with pytest.raises(ApiProblemError) as caught:
        decode_body(MonitorBody, raw_body(threshold="5000"))
    assert caught.value.kind.status == 400 and caught.value.extensions["field"] == "threshold"
    with pytest.raises(ApiProblemError) as caught:
        decode_body(MonitorBody, raw_body(tenant_id="other"))
    assert caught.value.extensions["field"] == "tenant_id"


def test_the_openapi_entries_exist() -> None:
    paths = build_openapi()["paths"]
    create = paths["/v1/monitors"]["post"]
    reference = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert reference.endswith("/MonitorBody")
    assert "200" in paths["/v1/monitors"]["get"]["responses"]
    delete = paths["/v1/monitors/{monitor_id}"]["delete"]
    assert "200" in delete["responses"] and not delete["requestBody"]["required"]


def test_the_routes_exist_and_answer_with_the_status_url() -> None:
    methods = {(route.path, method) for route in ROUTES for method in (route.methods or set())}
    assert ("/v1/monitors", "POST") in methods
    assert ("/v1/monitors/{monitor_id}", "DELETE") in methods
    assert resource_path(decode_body(MonitorBody, raw_body()), None) is None
