"""``ApiSettings``: the HTTP API's limits, one frozen object built once at start-up.

``streamledger.settings.Settings`` holds the addresses (Kafka, PostgreSQL, topic prefix); this
module adds what only the API needs, from command-line flags derived from the fields'
declarations (decision 0035). Every limit is finite and checked however the object is built: a
bad value raises ``SettingError`` naming the setting and its flag before anything starts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from psycopg.conninfo import make_conninfo

from api.read_routing import ReadFrom, parse_read_from
from streamledger.errors import SettingError
from streamledger.setting_fields import (
    Declaration,
    build_declared,
    check_declared,
    declarations,
    limit,
    text_setting,
)
from streamledger.settings import Settings, parse_host

READER_URL_PATTERN: Final = re.compile(r"^postgres(ql)?://")
# The API's read role on the local stack (infra/postgres_server.py API_ROLE, API_PASSWORD).
API_ROLE: Final = "streamledger_api"
API_PASSWORD: Final = "streamledger_api"  # noqa: S105


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiSettings:
    """Limits of ``streamledger api``, each declared once on its field: the flag, its help and
    its check derive from it (decision 0035); ``__post_init__`` checks every value."""

    host: str = field(
        default="127.0.0.1", metadata=text_setting(parse_host, "address to listen on")
    )
    port: int = field(
        default=8080, metadata=limit(0, 65_535, "port", "port to listen on (0 = the OS chooses)")
    )
    # The read role's DSN (default: the app's database, streamledger_api's login); --reader-url.
    reader_dsn: str
    wait_timeout_ms: int = field(
        default=5_000,
        metadata=limit(0, 60_000, "ms", "how long a POST waits for its outcome before 202"),
    )
    body_bytes_max: int = field(
        default=16_384,
        metadata=limit(256, 1_048_576, "bytes", "larger request bodies get 413"),
    )
    outcome_cache_entries_max: int = field(
        default=250_000,
        metadata=limit(1_000, 10_000_000, "outcomes", "kept in memory, the oldest evicted"),
    )
    outcome_catch_up_timeout_s: int = field(
        default=60,
        metadata=limit(1, 3_600, "s", "at start, read ledger.outcomes to its end within this"),
    )
    api_key_cache_ttl_s: int = field(
        default=30,
        metadata=limit(0, 3_600, "s", "a revoked key stops working within this (0 = no cache)"),
    )
    api_key_cache_entries_max: int = field(
        default=10_000, metadata=limit(1, 1_000_000, "keys", "API keys kept in memory")
    )
    pool_size_max: int = field(
        default=16, metadata=limit(1, 128, "connections", "reader connections to PostgreSQL")
    )
    pool_timeout_ms: int = field(
        default=2_000,
        metadata=limit(10, 60_000, "ms", "waiting for a free connection, then 503"),
    )
    statement_timeout_ms: int = field(
        default=2_000, metadata=limit(10, 600_000, "ms", "one read statement, then 503")
    )
    history_page_max: int = field(
        default=1_000, metadata=limit(1, 10_000, "entries", "largest limit of an entries page")
    )
    submits_in_flight_max: int = field(
        default=10_000,
        metadata=limit(1, 1_000_000, "requests", "POSTs waiting for outcomes at once, then 503"),
    )
    readiness_timeout_ms: int = field(
        default=1_000,
        metadata=limit(100, 30_000, "ms", "one /readyz probe of the broker or the database"),
    )
    readiness_cache_ms: int = field(
        default=1_000,
        metadata=limit(0, 60_000, "ms", "a probe's answer is reused this long (0 = never)"),
    )
    # Reads from the PostgreSQL hot standby (api/read_routing.py, decision 0037).
    read_from: str = field(
        default="primary",
        metadata=text_setting(
            parse_read_from,
            "where reads go: primary, standby (503 when too stale) or standby-with-fallback"
            " (the primary when too stale)",
        ),
    )
    standby_staleness_max_ms: int = field(
        default=5_000,
        metadata=limit(
            100, 600_000, "ms", "a standby staler than this serves no read (503 or the primary)"
        ),
    )
    # The read role's DSN on the standby (default: the local standby, streamledger_api's login).
    standby_reader_dsn: str = ""

    def __post_init__(self) -> None:
        check_declared(self)
        if not self.reader_dsn:
            raise SettingError("setting reader_url (--reader-url): empty")
        if self.read_from != ReadFrom.PRIMARY and not self.standby_reader_dsn:
            raise SettingError(
                f"setting read_from (--read-from): {self.read_from} needs a standby: set"
                " STREAMLEDGER_POSTGRES_STANDBY_PORT (or --postgres-standby-port) or"
                " --standby-reader-url"
            )

    @property
    def standby_staleness_max_s(self) -> float:
        return self.standby_staleness_max_ms / 1000

    @property
    def wait_timeout_s(self) -> float:
        return self.wait_timeout_ms / 1000

    @property
    def readiness_timeout_s(self) -> float:
        return self.readiness_timeout_ms / 1000

    @property
    def readiness_cache_s(self) -> float:
        return self.readiness_cache_ms / 1000


def build_api_settings(
    settings: Settings,
    *,
    host: str | None = None,
    reader_url: str | None = None,
    limits: Mapping[str, int | None] | None = None,
    read_from: str | None = None,
    standby_reader_url: str | None = None,
) -> ApiSettings:
    """The API settings from the shared settings and flags (``None`` = the default).

    The read DSN is ``--reader-url`` or the app's database with the API role's login
    (``streamledger_api``: it sees only the tenant of the bound API key, decision 0024).
    """
    if reader_url is not None and not READER_URL_PATTERN.match(reader_url):
        raise SettingError("setting reader_url (--reader-url): expected a postgresql:// URL")
    reader_dsn = reader_url or make_conninfo(
        settings.database_dsn, user=API_ROLE, password=API_PASSWORD
    )
    if standby_reader_url is not None and not READER_URL_PATTERN.match(standby_reader_url):
        raise SettingError(
            "setting standby_reader_url (--standby-reader-url): expected a postgresql:// URL"
        )
    return build_declared(
        ApiSettings,
        {"host": host, "read_from": read_from, **(limits or {})},
        reader_dsn=reader_dsn,
        standby_reader_dsn=standby_reader_url or local_standby_dsn(settings),
    )


def local_standby_dsn(settings: Settings) -> str:
    """The API role on the local hot standby, or "" when the stack has none."""
    if settings.database_url or not settings.postgres_standby_port:
        return ""
    return make_conninfo(
        f"postgresql://127.0.0.1:{settings.postgres_standby_port}/streamledger",
        user=API_ROLE,
        password=API_PASSWORD,
    )


# The limits (every declared setting but --host), each a flag ``--name-with-dashes``.
LIMITS: Final[tuple[Declaration, ...]] = tuple(
    declaration for declaration in declarations(ApiSettings) if declaration.is_limit
)
