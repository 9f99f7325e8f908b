"""scripts/balance_history_chart.py: a balance-history document (as the API returns it) becomes a
PNG of the chart's size, the same bytes for the same document, also for an empty series."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path
from types import ModuleType
from typing import Any

from PIL import Image

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "balance_history_chart.py"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chart_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("balance_history_chart", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def document(buckets: int) -> dict[str, Any]:
    return {
        "account_id": "cash",
        "currency": "USD",
        "asset_scale": 2,
        "normal_side": "credit",
        "interval": "1d",
        "buckets": [
            {
                "start": f"2026-03-{10 + index:02d}T00:00:00Z",
                "posted": index * 1_000 - 500,
                "available": index * 900 - 500,
                "last_event": {"sequence": index + 1, "hash": f"{index:02x}" * 32},
            }
            for index in range(buckets)
        ],
    }


def test_a_document_becomes_the_same_png_every_time() -> None:
    module = chart_module()
    first = module.render_chart(document(12))
    assert first.startswith(PNG_SIGNATURE)
    assert first == module.render_chart(document(12))
    assert Image.open(io.BytesIO(first)).size == (module.WIDTH, module.HEIGHT)
    assert first != module.render_chart(document(11))


def test_an_empty_or_flat_series_still_draws() -> None:
    module = chart_module()
    assert module.render_chart(document(0)).startswith(PNG_SIGNATURE)
    flat = document(3)
    for bucket in flat["buckets"]:
        bucket["posted"] = bucket["available"] = 0
    assert module.render_chart(flat).startswith(PNG_SIGNATURE)
