"""``GET /v1/accounts/{id}/balance-history`` (decision 0057) without a database: a bad parameter is
a one-line 400 naming it before any read; a series renders every bucket with its last event."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from api.app import ROUTES
from api.openapi import build_openapi
from api.problems import ApiProblemError
from api.reports import balance_history_response

DAY0 = datetime(2026, 3, 28, tzinfo=UTC)


class ScriptedReader:
    """Answers each read with the next prepared rows, and records the reads."""

    def __init__(self, *answers: list[Any]) -> None:
        self.answers = list(answers)
        self.reads: list[tuple[str, tuple[Any, ...]]] = []

    async def read(self, tenant_id: str, statement: str, parameters: tuple[Any, ...]) -> Any:
        self.reads.append((statement, parameters))
        return self.answers.pop(0)


def answer(query: dict[str, str], reader: ScriptedReader) -> Any:
    response = asyncio.run(balance_history_response(reader, "acme", "cash", query))  # type: ignore[arg-type]
    return json.loads(response.body)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"from": "2026-03-28", "to": "2026-03-29"}, "interval"),
        ({"from": "2026-03-28", "to": "2026-03-29", "interval": "1w"}, "interval"),
        ({"from": "2026-03-28T00:30:00Z", "to": "2026-03-29", "interval": "1h"}, "from"),
        ({"to": "2026-03-29", "interval": "1d"}, "from"),
        ({"from": "2026-03-29", "to": "2026-03-28", "interval": "1d"}, "from"),
        ({"from": "2026-01-01", "to": "2026-03-29", "interval": "1h"}, "to"),
    ],
)
def test_bad_parameters_are_a_400_naming_them(query: dict[str, str], field: str) -> None:
    reader = ScriptedReader()
    with pytest.raises(ApiProblemError) as raised:
        answer(query, reader)
    problem = json.loads(raised.value.body(None))
    assert (problem["status"], problem["field"]) == (400, field)
    assert "\n" not in problem["detail"]
    assert reader.reads == []


def test_a_series_renders_every_bucket() -> None:
    account = [("USD", 2, "credit", DAY0, 7, 1)]
    buckets = [
        (DAY0 + timedelta(days=1), None, None, None, None, None, 2, b"\x01" * 32, DAY0),
        (DAY0 + timedelta(days=2), 0, 500, 0, 100, 5, 6, b"\x02" * 32, DAY0),
    ]
    reader = ScriptedReader(account, buckets)
    document = answer({"from": "2026-03-28", "to": "2026-03-30", "interval": "1d"}, reader)
    first, second = document["buckets"]
    assert (first["posted"], first["account_sequence"], first["last_event"]["sequence"]) == (
        0,
        None,
        2,
    )
    assert (second["posted"], second["pending"], second["available"]) == (500, 100, 500)
    assert second["last_event"]["hash"] == "02" * 32
    assert second["start"].startswith("2026-03-29T00:00:00")
    assert reader.reads[1][1][2] == "86400 seconds"  # UTC days, whatever the session's zone


def test_the_routes_and_their_openapi_entries_exist() -> None:
    paths = build_openapi()["paths"]
    for path in ("/v1/transfers", "/v1/accounts", "/v1/accounts/{account_id}/balance-history"):
        assert any(
            route.path == path and "GET" in (route.methods or set())  # type: ignore[attr-defined]
            for route in ROUTES
        ), path
        assert "get" in paths[path], path
    assert "post" in paths["/v1/transfers"] and "post" in paths["/v1/accounts"]
