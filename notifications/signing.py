"""The webhook signature, Stripe-style: who sent this body, and when.

A delivery carries the header ``StreamLedger-Signature: t=<unix seconds>,v1=<hex>`` where
``v1 = HMAC-SHA256(secret, "<t>." || body)`` with the endpoint's secret (its UTF-8 bytes, the
whole ``whsec_…`` string). A receiver recomputes it over the raw body it received, compares in
constant time, and refuses a ``t`` further than its tolerance from its own clock (a replayed
old request). Several ``v1=`` entries may appear (a rotated secret); one match is enough.

Pure: the time is an argument.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Final

SIGNATURE_HEADER: Final = "StreamLedger-Signature"
DELIVERY_ID_HEADER: Final = "StreamLedger-Delivery-Id"
EVENT_TYPE_HEADER: Final = "StreamLedger-Event-Type"
SECRET_PREFIX: Final = "whsec_"  # noqa: S105  a prefix, not a secret
SECRET_BYTES: Final = 32
SECRET_PATTERN: Final = re.compile(r"^whsec_[A-Za-z0-9_-]{43}$")
SCHEME: Final = "v1"
TOLERANCE_S_DEFAULT: Final = 300  # five minutes, as Stripe's libraries
HEADER_LENGTH_MAX: Final = 1_024


def new_secret() -> str:
    """A fresh endpoint secret: 256 random bits, URL-safe base64, shown to the tenant once."""
    secret = SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)
    assert SECRET_PATTERN.match(secret), "secret format and pattern disagree"
    return secret


def signature(secret: str, timestamp_s: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp_s>." || body`` under ``secret``."""
    signed = str(timestamp_s).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp_s: int, body: bytes) -> str:
    return f"t={timestamp_s},{SCHEME}={signature(secret, timestamp_s, body)}"


def parse_header(header: str) -> tuple[int, list[str]] | None:
    """``(t, [v1 signatures])`` or None when the header is malformed."""
    if len(header) > HEADER_LENGTH_MAX:
        return None
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, separator, value = part.strip().partition("=")
        if not separator:
            return None
        if name == "t" and value.isascii() and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif name == SCHEME:
            signatures.append(value)
    if timestamp is None or not signatures:
        return None
    return timestamp, signatures


def signature_problem(
    secret: str, header: str, body: bytes, *, now_s: int, tolerance_s: int = TOLERANCE_S_DEFAULT
) -> str | None:
    """None when ``header`` signs ``body`` under ``secret`` within ``tolerance_s`` of ``now_s``;
    else why not (one line). ``tolerance_s`` 0 skips the time check (checking a stored
    delivery later, ``streamledger webhooks verify``)."""
    parsed = parse_header(header)
    if parsed is None:
        return f"the {SIGNATURE_HEADER} header is malformed (expected t=<seconds>,v1=<hex>)"
    timestamp_s, candidates = parsed
    if tolerance_s > 0 and abs(now_s - timestamp_s) > tolerance_s:
        return f"the timestamp {timestamp_s} is more than {tolerance_s} s from now ({now_s})"
    expected = signature(secret, timestamp_s, body)
    if any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        return None
    return "no signature matches the body under this secret"
