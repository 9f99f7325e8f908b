"""Draw an account's balance history, as the API returns it, into a PNG (issue 19 §4).

    .venv/bin/python scripts/balance_history_chart.py \\
        --url 'http://127.0.0.1:8080/v1/accounts/cash/balance-history?from=…&to=…&interval=1d' \\
        --output docs/images/balance-history.png        # the key in STREAMLEDGER_API_KEY
    .venv/bin/python scripts/balance_history_chart.py --document history.json --output chart.png

The document is ``GET /v1/accounts/{id}/balance-history`` (or ``streamledger balance-history
… --format json``, the same document). The chart shows, per bucket, the posted and the available
balance on the account's normal side in major units (decimals by the asset scale), and under it
the last event the series covers: ``(sequence, hash)`` of the last bucket, which anyone can check
against the hash chain. Drawn with Pillow (installed with reportlab); the same document gives the
same bytes.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import urllib.request
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

WIDTH, HEIGHT = 960, 480
LEFT, RIGHT, TOP, BOTTOM = 110, 30, 50, 90
BACKGROUND, AXIS, GRID, TEXT = "#ffffff", "#333333", "#e5e5e5", "#222222"
SERIES = (("posted", "#1f6fb2"), ("available", "#d9822b"))
Y_TICKS = 5
X_LABELS_MAX = 8
REQUEST_TIMEOUT_S = 30


def major_units(minor: int, scale: int) -> float:
    return minor / float(10**scale)  # for drawing only: the document keeps exact minor units


def scaled(value: float, low: float, high: float, start: int, end: int) -> float:
    return start if high == low else start + (value - low) / (high - low) * (end - start)


def render_chart(document: dict[str, Any]) -> bytes:
    """The PNG of one balance-history document."""
    buckets = document["buckets"]
    scale = int(document["asset_scale"])
    image = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(image)
    values = [major_units(b[name], scale) for b in buckets for name, _ in SERIES] or [0.0]
    low, high = min(0.0, *values), max(0.0, *values)
    plot = (LEFT, TOP, WIDTH - RIGHT, HEIGHT - BOTTOM)
    draw_axes(draw, plot, (low, high), document)
    for name, colour in SERIES:
        points = [
            (
                scaled(index + 0.5, 0, max(len(buckets), 1), plot[0], plot[2]),
                scaled(major_units(bucket[name], scale), low, high, plot[3], plot[1]),
            )
            for index, bucket in enumerate(buckets)
        ]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for x, y in points:
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=colour)
    draw_labels(draw, plot, buckets)
    output = io.BytesIO()
    image.save(output, format="PNG", optimize=True)
    return output.getvalue()


def draw_axes(
    draw: ImageDraw.ImageDraw,
    plot: tuple[int, int, int, int],
    bounds: tuple[float, float],
    document: dict[str, Any],
) -> None:
    left, top, right, bottom = plot
    low, high = bounds
    for tick in range(Y_TICKS + 1):
        value = low + (high - low) * tick / Y_TICKS
        y = scaled(value, low, high, bottom, top)
        draw.line((left, y, right, y), fill=GRID)
        draw.text((8, y - 6), f"{value:,.2f}", fill=TEXT)
    draw.line((left, top, left, bottom), fill=AXIS)
    draw.line((left, bottom, right, bottom), fill=AXIS)
    title = (
        f"Balance history of {document['account_id']} ({document['currency']}),"
        f" closing balance per {document['interval']}, UTC"
    )
    draw.text((left, 14), title, fill=TEXT)
    for index, (name, colour) in enumerate(SERIES):
        draw.rectangle((right - 170, 14 + index * 14, right - 160, 24 + index * 14), fill=colour)
        draw.text((right - 154, 13 + index * 14), name, fill=TEXT)


def draw_labels(
    draw: ImageDraw.ImageDraw, plot: tuple[int, int, int, int], buckets: list[dict[str, Any]]
) -> None:
    left, _, right, bottom = plot
    every = max(1, -(-len(buckets) // X_LABELS_MAX))
    for index in range(0, len(buckets), every):
        x = scaled(index + 0.5, 0, max(len(buckets), 1), left, right)
        draw.text((x - 40, bottom + 8), str(buckets[index]["start"])[:16], fill=TEXT)
    if buckets:
        last = buckets[-1]["last_event"]
        line = f"covers the tenant's events 1..{last['sequence']}; SHA-256 of event"
        draw.text((left, HEIGHT - 40), f"{line} {last['sequence']}: {last['hash']}", fill=TEXT)


def fetch(url: str, api_key: str) -> dict[str, Any]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {api_key}"})  # noqa: S310 - an operator's URL
    with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:  # noqa: S310
        document: dict[str, Any] = json.loads(response.read())
    return document


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--url", help="GET …/balance-history?… (key in STREAMLEDGER_API_KEY)")
    source.add_argument("--document", type=Path, help="a saved balance-history JSON document")
    parser.add_argument("--output", type=Path, required=True, help="the PNG to write")
    arguments = parser.parse_args()
    if arguments.url is not None:
        api_key = os.environ.get("STREAMLEDGER_API_KEY")
        if not api_key:
            print("--url: set STREAMLEDGER_API_KEY to the tenant's API key", file=sys.stderr)
            return 2
        document = fetch(arguments.url, api_key)
    else:
        document = json.loads(arguments.document.read_text(encoding="utf-8"))
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_bytes(render_chart(document))
    return 0


if __name__ == "__main__":
    sys.exit(main())
