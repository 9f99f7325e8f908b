"""``api.reads.quoted_text``: the balance read's hand-quoted literals (decision 0117).

Only a ``str`` made of ``QUOTE_FREE_TEXT`` is quoted by hand, as psycopg quotes it; anything
else (a quote, a backslash, a placeholder, any other character, a non-``str``) makes it answer
None, so psycopg quotes. The same text against PostgreSQL, and the same rows for hostile strings:
tests/system/test_api_reads.py.
"""

from __future__ import annotations

import enum
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st
from psycopg import sql

from api.reads import BIND_REQUEST, QUOTE_FREE_TEXT, quoted_text
from projections.queries import SELECT_BALANCE
from schemas.limits import ENTITY_ID_PATTERN

QUOTE_FREE_ALPHABET = "ABCXYZabcxyz0189._:@-"
quote_free = st.text(alphabet=QUOTE_FREE_ALPHABET, max_size=40)
BALANCE_READ = BIND_REQUEST + "; " + SELECT_BALANCE
HOSTILE = ("'", "''", "\\", "\\'", "%s", "%", ";", "-- x", "\x00", "é", " ", "\n", "'; DROP --")


def psycopg_quoted(statement: str, parameters: tuple[Any, ...]) -> str:
    return statement % tuple(sql.quote(value) for value in parameters)


@settings(max_examples=200, deadline=None)
@given(st.tuples(quote_free, quote_free, quote_free, quote_free))
def test_quote_free_strings_are_quoted_as_psycopg_quotes_them(parameters: tuple[str, ...]) -> None:
    assert quoted_text(BALANCE_READ, parameters) == psycopg_quoted(BALANCE_READ, parameters)


@settings(max_examples=200, deadline=None)
@given(quote_free, st.text(min_size=1), quote_free)
@example("acct-", "'", "")
@example("a", "\\", "b")
@example("a", "%s", "b")
def test_any_other_character_is_left_to_psycopg(before: str, other: str, after: str) -> None:
    value = before + other + after
    if QUOTE_FREE_TEXT.fullmatch(value) is None:
        assert quoted_text(BALANCE_READ, ("acme", "ab12", "acme", value)) is None


def test_hostile_strings_are_never_quoted_by_hand() -> None:
    for value in HOSTILE:
        assert quoted_text(BALANCE_READ, ("acme", "ab12", "acme", value)) is None, value


class Kind(enum.StrEnum):
    CASH = "cash"


def test_only_plain_str_values_are_quoted_by_hand() -> None:
    for value in (1, None, b"cash", Kind.CASH, 1.5):
        assert quoted_text(BALANCE_READ, ("acme", "ab12", "acme", value)) is None, value


def test_a_statement_with_another_percent_or_another_count_is_left_to_psycopg() -> None:
    assert quoted_text("SELECT %s, '%%'", ("a",)) is None
    assert quoted_text("SELECT %s", ("a", "b")) is None
    assert quoted_text("SELECT %s, %s", ("a",)) is None
    assert quoted_text("SELECT %(name)s", ("a",)) is None
    assert quoted_text("SELECT 1", ()) == "SELECT 1"


@given(st.from_regex(ENTITY_ID_PATTERN, fullmatch=True))
def test_every_entity_id_and_hex_digest_is_quote_free(entity_id: str) -> None:
    """Account ids (checked by ``path_id``) and key digests take the fast path."""
    assert QUOTE_FREE_TEXT.fullmatch(entity_id) is not None
    assert QUOTE_FREE_TEXT.fullmatch(bytes(range(32)).hex()) is not None
