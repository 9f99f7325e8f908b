"""The psycopg internals ``api.reads.run_bound`` relies on are still there (review finding).

``run_bound`` skips the cursor (bench/README.md, "API balance read against pgbench"): it
quotes with ``AsyncClientCursor.mogrify`` (unless ``quoted_text`` may), sends through
``conn.pgconn.send_query`` under ``conn.lock``, drives ``generators.execute(pgconn)`` on the
event loop with ``waiting.Wait``/``Ready`` on ``pgconn.socket`` (``api.reads.results_of``; on a
cancelled request ``cancel_safe`` then ``conn.wait`` while ``pgconn.transaction_status`` is
ACTIVE), maps an error result with ``errors.error_from_result`` and loads rows with
``adapt.Transformer``. None of that is
psycopg's documented API beyond the cursor; a psycopg release that moves one of them must fail
here, naming it and the version, before any read does. What each does is pinned against
PostgreSQL by tests/system/test_api_run_bound.py.
"""

from __future__ import annotations

import inspect

import psycopg
import pytest
from psycopg import AsyncClientCursor, AsyncConnection, generators, pq, waiting
from psycopg._connection_base import BaseConnection
from psycopg.adapt import Transformer

# (owner, attribute, parameter names it must accept in this order; None: not checked)
INTERNALS: list[tuple[object, str, tuple[str, ...] | None]] = [
    (AsyncClientCursor, "mogrify", ("self", "query", "params")),
    (AsyncConnection, "wait", ("self", "gen")),
    (AsyncConnection, "cancel_safe", ("self",)),
    (pq.PGconn, "socket", None),
    (pq.PGconn, "transaction_status", None),
    (pq.TransactionStatus, "ACTIVE", None),
    (waiting, "Wait", None),
    (waiting, "Ready", None),
    (pq.PGconn, "send_query", None),  # the chosen implementation's (C or Python) libpq handle
    (generators, "execute", ("pgconn",)),
    (psycopg.errors, "error_from_result", ("result",)),
    (Transformer, "set_pgresult", None),
    (Transformer, "load_rows", None),
    (pq.ExecStatus, "FATAL_ERROR", None),
]
INSTANCE_ATTRIBUTES = ("pgconn", "lock")  # set per connection by its __init__


def described(owner: object) -> str:
    return getattr(owner, "__qualname__", getattr(owner, "__name__", repr(owner)))


@pytest.mark.parametrize(
    ("owner", "attribute", "parameters"),
    INTERNALS,
    ids=[f"{described(owner)}.{attribute}" for owner, attribute, _ in INTERNALS],
)
def test_psycopg_still_has_what_run_bound_calls(
    owner: object, attribute: str, parameters: tuple[str, ...] | None
) -> None:
    where = f"psycopg {psycopg.__version__} ({pq.__impl__} libpq wrapper)"
    assert hasattr(owner, attribute), f"{described(owner)}.{attribute} is gone in {where}"
    if parameters is not None:
        found = tuple(inspect.signature(getattr(owner, attribute)).parameters)
        assert found[: len(parameters)] == parameters, (
            f"{described(owner)}.{attribute}{found} in {where}: run_bound calls it as {parameters}"
        )


def test_a_connection_still_keeps_its_handle_and_lock_on_itself() -> None:
    """``pgconn`` and ``lock`` are set by the connections' ``__init__``; ``info`` is a property."""
    source = inspect.getsource(AsyncConnection.__init__)
    source += inspect.getsource(BaseConnection.__init__)
    for attribute in INSTANCE_ATTRIBUTES:
        assert f"self.{attribute} = " in source, (
            f"AsyncConnection.{attribute} is no longer set in psycopg {psycopg.__version__}"
        )
    assert isinstance(inspect.getattr_static(AsyncConnection, "info"), property)
