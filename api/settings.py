"""``ApiSettings``: the HTTP API's limits, one frozen object built once at start-up.

``streamledger.settings.Settings`` holds the addresses (Kafka, PostgreSQL, topic prefix); this
module adds what only the API needs, from command-line flags. Every limit is finite and checked
here: a bad value raises ``SettingError`` naming the flag before anything starts.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from psycopg.conninfo import make_conninfo

from streamledger.errors import SettingError
from streamledger.settings import Settings, host_problem

READER_URL_PATTERN: Final = re.compile(r"^postgres(ql)?://")
# The API's read role on the local stack (infra/postgres_server.py API_ROLE, API_PASSWORD).
API_ROLE: Final = "streamledger_api"
API_PASSWORD: Final = "streamledger_api"  # noqa: S105

# (name, default, minimum, maximum): each one a flag ``--name-with-dashes``.
LIMITS: Final[tuple[tuple[str, int, int, int], ...]] = (
    ("port", 8080, 0, 65_535),
    ("wait_timeout_ms", 5_000, 0, 60_000),
    ("body_bytes_max", 16_384, 256, 1_048_576),
    ("outcome_cache_entries_max", 250_000, 1_000, 10_000_000),
    ("outcome_catch_up_timeout_s", 60, 1, 3_600),
    ("api_key_cache_ttl_s", 30, 0, 3_600),
    ("api_key_cache_entries_max", 10_000, 1, 1_000_000),
    ("pool_size_max", 16, 1, 128),
    ("pool_timeout_ms", 2_000, 10, 60_000),
    ("statement_timeout_ms", 2_000, 10, 600_000),
    ("history_page_max", 1_000, 1, 10_000),
    ("submits_in_flight_max", 10_000, 1, 1_000_000),
    ("readiness_timeout_ms", 1_000, 100, 30_000),
    ("readiness_cache_ms", 1_000, 0, 60_000),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiSettings:
    """Limits of ``streamledger api``; units are in the names."""

    host: str = "127.0.0.1"
    port: int = 8080  # 0 = let the OS choose (tests)
    reader_dsn: str  # the read role's DSN (default: the app's database, streamledger_api's login)
    wait_timeout_ms: int = 5_000  # how long a POST waits for its outcome before 202
    body_bytes_max: int = 16_384  # larger request bodies get 413
    outcome_cache_entries_max: int = 250_000  # outcomes kept in memory (oldest evicted)
    outcome_catch_up_timeout_s: int = 60  # start-up: read ledger.outcomes to its end within this
    api_key_cache_ttl_s: int = 30  # a revoked key stops working within this (0 = no cache)
    api_key_cache_entries_max: int = 10_000
    pool_size_max: int = 16  # reader connections to PostgreSQL
    pool_timeout_ms: int = 2_000  # waiting for a free connection, then 503
    statement_timeout_ms: int = 2_000  # one read statement, then 503
    history_page_max: int = 1_000  # largest ``limit`` of an entries page
    submits_in_flight_max: int = 10_000  # POSTs waiting for outcomes at once, then 503
    readiness_timeout_ms: int = 1_000  # one /readyz probe of the broker or the database
    readiness_cache_ms: int = 1_000  # a probe's answer is reused this long (0 = every request)

    def __post_init__(self) -> None:
        for name, _, minimum, maximum in LIMITS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise SettingError(
                    f"setting {name} ({flag(name)}): {value!r} is not a whole number"
                )
            if not minimum <= value <= maximum:
                raise SettingError(
                    f"setting {name} ({flag(name)}): {value} is outside {minimum}..{maximum}"
                )
        problem = host_problem(self.host)
        if problem is not None:
            raise SettingError(f"setting host (--host): {problem}")
        if not self.reader_dsn:
            raise SettingError("setting reader_url (--reader-url): empty")

    @property
    def wait_timeout_s(self) -> float:
        return self.wait_timeout_ms / 1000

    @property
    def readiness_timeout_s(self) -> float:
        return self.readiness_timeout_ms / 1000

    @property
    def readiness_cache_s(self) -> float:
        return self.readiness_cache_ms / 1000


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_api_settings(
    settings: Settings,
    *,
    host: str | None = None,
    reader_url: str | None = None,
    limits: Mapping[str, int | None] | None = None,
) -> ApiSettings:
    """The API settings from the shared settings and flags (``None`` = the default).

    The read DSN is ``--reader-url`` or the app's database with the API role's login
    (``streamledger_api``: it sees only the tenant of the bound API key, decision 0024).
    """
    if reader_url is not None and not READER_URL_PATTERN.match(reader_url):
        raise SettingError("setting reader_url (--reader-url): expected a postgresql:// URL")
    changes: dict[str, object] = {
        name: value for name, value in (limits or {}).items() if value is not None
    }
    changes["reader_dsn"] = reader_url or make_conninfo(
        settings.database_dsn, user=API_ROLE, password=API_PASSWORD
    )
    if host is not None:
        changes["host"] = host
    unknown = set(changes) - {field.name for field in dataclasses.fields(ApiSettings)}
    if unknown:
        raise SettingError(f"unknown API settings: {sorted(unknown)}")
    return ApiSettings(**changes)  # type: ignore[arg-type]
