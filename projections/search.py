"""Metadata search of transfers, transactions and accounts (issue 19 §3, decisions 0056, 0077):
parsing and SQL.

Pure: query parameters in, a frozen search (or ``QueryError`` naming the parameter) out, and the
statement with its parameters for it; the API (``api.searches``) and tests run the statement as
the tenant, so row-level security applies as to every read.

``GET /v1/transfers`` takes ``metadata[<key>]=<value>`` (each key once, at most
``METADATA_FILTERS_MAX``; all must match), ``from`` / ``to`` (creation time in ``[from, to)``:
``to`` is the point in time, "as the ledger stood then"), ``account`` (debit or credit side),
``status``, ``limit`` (1..``SEARCH_PAGE_MAX``, default ``SEARCH_PAGE_DEFAULT``) and ``after``
(the ``next_cursor`` of the previous page). ``GET /v1/accounts`` takes ``metadata[<key>]``,
``currency``, ``limit`` and ``after``. ``GET /v1/transactions`` takes the transfers' parameters
and returns multi-leg transactions, one row each (``account``: either side of any posting;
``status``: the transaction's). Newest first; keyset pagination on (creation sequence,
id), which is unique per tenant and follows ``transfers_created_idx`` / ``accounts_opened_idx``
/ ``transactions_created_idx`` (migration 0013).

Every filter is one fixed SQL fragment, added only when its parameter is given, so each
statement is one the planner sees whole (no ``$1 IS NULL OR ...``, which defeats indexes). A
metadata search walks the ``transfer_metadata`` / ``account_metadata`` (migration 0009) /
``transaction_metadata`` (0013) index of its first (key, value) pair: under row-level security
PostgreSQL uses only LEAKPROOF conditions as index conditions, and ``jsonb @>`` is not one
(decision 0056 has the figures).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from projections.queries import QueryError, parse_moment
from schemas.limits import (
    CURRENCY_PATTERN,
    METADATA_ENTRIES_MAX,
    METADATA_KEY_LENGTH_MAX,
    METADATA_KEY_PATTERN,
    METADATA_VALUE_FORBIDDEN,
    METADATA_VALUE_LENGTH_MAX,
    POSTINGS_MAX,
    entity_id_problem,
)
from schemas.model import TransferStatus

SEARCH_PAGE_DEFAULT: Final = 100
SEARCH_PAGE_MAX: Final = 1_000  # rows per page: bounds one statement's work and one response
METADATA_FILTERS_MAX: Final = METADATA_ENTRIES_MAX  # a command carries at most this many keys
PARAMETER_SHOWN_MAX: Final = 64  # characters of a bad parameter name echoed back
METADATA_PARAMETER: Final = re.compile(r"metadata\[(.*)\]", re.DOTALL)
CURSOR_PATTERN: Final = re.compile(r"([0-9]{1,19}):(.+)", re.DOTALL)
SEQUENCE_MAX: Final = 2**63 - 1
TRANSFER_PARAMETERS: Final = ("from", "to", "account", "status", "limit", "after")
TRANSACTION_PARAMETERS: Final = TRANSFER_PARAMETERS  # the same filters (decision 0077)
ACCOUNT_PARAMETERS: Final = ("currency", "limit", "after")
STATUSES: Final = tuple(status.value for status in TransferStatus)

TRANSFER_COLUMNS: Final = (
    "transfer_id, debit_account_id, credit_account_id, currency, amount, pending, status,"
    " amount_posted, amount_reversed, reverses, expires_at, created_sequence, last_sequence,"
    " created_at, updated_at, metadata"
)
TRANSACTION_COLUMNS: Final = (
    "transaction_id, posting_count, currencies, pending, status, reverses, expires_at,"
    " created_sequence, last_sequence, created_at, updated_at, metadata"
)
ACCOUNT_COLUMNS: Final = (
    "account_id, currency, asset_scale, normal_side, debits_must_not_exceed_credits,"
    " credits_must_not_exceed_debits, overdraft_limit, opened_sequence, opened_at, metadata"
)
# One fragment per filter; each takes the parameters listed with it, in order. The searched
# table is ``t`` (transfers) or ``a`` (accounts); ``m`` is its metadata index (migration 0009).
FROM_FILTER: Final = " AND t.created_at >= %s"
TO_FILTER: Final = " AND t.created_at < %s"
ACCOUNT_FILTER: Final = " AND (t.debit_account_id = %s OR t.credit_account_id = %s)"
STATUS_FILTER: Final = " AND t.status = %s"
CURRENCY_FILTER: Final = " AND a.currency = %s"
# Transactions (``x``): the same filters on the transaction's row. ``account`` is either side of
# any posting: the postings are the transfers ``{transaction_id}/0 .. /{posting_count - 1}``,
# each found by primary key. The ids are built in a subquery kept apart (``OFFSET 0``), so the
# join condition on ``p.transfer_id`` is a plain text equality, an index condition under
# row-level security; the series runs over the constant ``0..POSTINGS_MAX - 1``, whose size the
# planner knows (``generate_series(0, x.posting_count - 1)`` counts as 1,000 rows, which prices
# a page high enough to be JIT-compiled: 170 ms on a 200k-transfer table).
TRANSACTION_FROM_FILTER: Final = " AND x.created_at >= %s"
TRANSACTION_TO_FILTER: Final = " AND x.created_at < %s"
TRANSACTION_STATUS_FILTER: Final = " AND x.status = %s"
TRANSACTION_ACCOUNT_FILTER: Final = (
    " AND EXISTS (SELECT 1 FROM (SELECT x.transaction_id || '/' || i::text AS transfer_id"
    f" FROM generate_series(0, {POSTINGS_MAX - 1}) AS i WHERE i < x.posting_count OFFSET 0)"
    " AS posting JOIN ledger.transfers AS p"
    " ON p.tenant_id = x.tenant_id AND p.transfer_id = posting.transfer_id"
    " WHERE p.debit_account_id = %s OR p.credit_account_id = %s)"
)
# The creation-time bounds again as bounds on the keyset's sequence (decision 0077): a tenant's
# events never go back in time (a log where they do is quarantined, decision 0019), so "created
# before T" is "created before the first event at or after T", one probe of
# event_chain_time_idx. A search with ``from`` or ``to`` first reads these two sequences
# (``bounds_statement``: one more round trip of ~0.1 ms), then passes them as constants: a
# range of the metadata index's sequence column (and of the *_created_idx), so a point in time
# starts the scan there instead of walking every newer entry, and the planner sees the real
# range. (Inside the search's statement, a subquery in a condition is not LEAKPROOF and stays a
# filter under row-level security, and a joined one-row relation loses the index's order.) The
# created_at filters stay: they define the result; these only narrow the scan. A chain that
# lacks its first links (a generation migrated after its events, decision 0032) could name a
# later event for ``from``: its bound is used only when the chain starts at 1 (the bound for
# ``to`` can only be looser).
FIRST_SEQUENCE_AT_OR_AFTER: Final = (
    "(SELECT c.sequence FROM ledger.event_chain AS c WHERE c.tenant_id = %s"
    " AND c.effective_at >= %s ORDER BY c.effective_at, c.sequence LIMIT 1)"
)
SEQUENCE_LOW: Final = (
    "(SELECT CASE WHEN min(f.sequence) = 1 THEN coalesce("
    + FIRST_SEQUENCE_AT_OR_AFTER
    + f", {SEQUENCE_MAX}) ELSE 0 END FROM ledger.event_chain AS f WHERE f.tenant_id = %s)"
)
SEQUENCE_HIGH: Final = "coalesce(" + FIRST_SEQUENCE_AT_OR_AFTER + f", {SEQUENCE_MAX})"
SELECT_SEQUENCE_BOUNDS: Final = "SELECT {low}, {high}"
SEQUENCE_BOUNDED: Final = " AND {table}.created_sequence >= %s AND {table}.created_sequence < %s"
# Every filter pair but the first: checked on the row's own JSONB (a filter, not an index
# condition: the first pair already narrowed the rows to its matches).
MORE_METADATA_FILTER: Final = " AND {table}.metadata @> %s::jsonb"
AFTER: Final = " AND ({keyset}) < (%s, %s)"
ORDER: Final = " ORDER BY {descending} LIMIT %s"
# Without a metadata filter: the table in creation order (transfers_created_idx,
# accounts_opened_idx). With one: its first (key, value) pair's range of the metadata index,
# newest first, each entry joined to its row by primary key. The index conditions are text and
# bigint comparisons, which PostgreSQL may use under row-level security (they are LEAKPROOF;
# ``jsonb @>`` is not, so no JSONB index is ever used by these reads: decision 0056).
TRANSFERS_ALL: Final = "SELECT {columns} FROM ledger.transfers AS t WHERE t.tenant_id = %s"
TRANSFERS_BY_METADATA: Final = (
    "SELECT {columns} FROM ledger.transfer_metadata AS m"
    " JOIN ledger.transfers AS t ON t.tenant_id = m.tenant_id AND t.transfer_id = m.transfer_id"
    " WHERE m.tenant_id = %s AND m.key = %s AND m.value = %s"
)
TRANSACTIONS_ALL: Final = "SELECT {columns} FROM ledger.transactions AS x WHERE x.tenant_id = %s"
TRANSACTIONS_BY_METADATA: Final = (
    "SELECT {columns} FROM ledger.transaction_metadata AS m"
    " JOIN ledger.transactions AS x"
    " ON x.tenant_id = m.tenant_id AND x.transaction_id = m.transaction_id"
    " WHERE m.tenant_id = %s AND m.key = %s AND m.value = %s"
)
ACCOUNTS_ALL: Final = "SELECT {columns} FROM ledger.accounts AS a WHERE a.tenant_id = %s"
ACCOUNTS_BY_METADATA: Final = (
    "SELECT {columns} FROM ledger.account_metadata AS m"
    " JOIN ledger.accounts AS a ON a.tenant_id = m.tenant_id AND a.account_id = m.account_id"
    " WHERE m.tenant_id = %s AND m.key = %s AND m.value = %s"
)


def qualified(columns: str, table: str) -> str:
    return ", ".join(f"{table}.{name.strip()}" for name in columns.split(","))


def keyset(table: str, sequence: str, identifier: str) -> tuple[str, str]:
    """(the keyset columns, the descending order over them) of ``table``."""
    return (
        f"{table}.{sequence}, {table}.{identifier}",
        f"{table}.{sequence} DESC, {table}.{identifier} DESC",
    )


def searched(
    tenant_id: str,
    metadata: tuple[tuple[str, str], ...],
    table: str,
    statements: tuple[str, str],
    columns: str,
) -> tuple[str, list[Any]]:
    """The statement's start: every row of the tenant, or the first metadata pair's matches
    (then the other pairs as a filter on ``table``'s JSONB)."""
    everything, by_metadata = statements
    if not metadata:
        return everything.format(columns=qualified(columns, table)), [tenant_id]
    (key, value), rest = metadata[0], metadata[1:]
    text = by_metadata.format(columns=qualified(columns, table))
    parameters: list[Any] = [tenant_id, key, value]
    if rest:
        text += MORE_METADATA_FILTER.format(table=table)
        parameters.append(metadata_json(rest))
    return text, parameters


Cursor = tuple[int, str]  # (creation sequence, id) of the last row of the previous page
Statement = tuple[str, tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class TransferSearch:
    metadata: tuple[tuple[str, str], ...] = ()  # sorted by key; all must match
    created_from: datetime | None = None  # created at or after
    created_to: datetime | None = None  # created before: the point in time
    account: str | None = None  # on either side
    status: str | None = None
    limit: int = SEARCH_PAGE_DEFAULT
    after: Cursor | None = None


@dataclass(frozen=True, slots=True)
class TransactionSearch:
    """Like ``TransferSearch``, of multi-leg transactions: ``account`` on either side of any
    posting, ``status`` the transaction's (decision 0077)."""

    metadata: tuple[tuple[str, str], ...] = ()
    created_from: datetime | None = None
    created_to: datetime | None = None
    account: str | None = None
    status: str | None = None
    limit: int = SEARCH_PAGE_DEFAULT
    after: Cursor | None = None


@dataclass(frozen=True, slots=True)
class AccountSearch:
    metadata: tuple[tuple[str, str], ...] = ()
    currency: str | None = None
    limit: int = SEARCH_PAGE_DEFAULT
    after: Cursor | None = None


# --------------------------------------------------------------------------- parameters


def split_parameters(
    items: Sequence[tuple[str, str]], allowed: tuple[str, ...]
) -> tuple[tuple[tuple[str, str], ...], dict[str, str]]:
    """(metadata filters sorted by key, the other parameters by name); ``QueryError`` naming the
    first parameter that is unknown, repeated or malformed."""
    metadata: dict[str, str] = {}
    plain: dict[str, str] = {}
    for name, value in items:
        shown = name[:PARAMETER_SHOWN_MAX]
        found = METADATA_PARAMETER.fullmatch(name)
        if found is not None:
            key = found.group(1)
            check_metadata_filter(shown, key, value)
            if key in metadata:
                raise QueryError(f"{shown}: given more than once")
            metadata[key] = value
            if len(metadata) > METADATA_FILTERS_MAX:
                raise QueryError(f"{shown}: at most {METADATA_FILTERS_MAX} metadata filters")
        elif name in allowed:
            if name in plain:
                raise QueryError(f"{name}: given more than once")
            plain[name] = value
        else:
            takes = ", ".join(("metadata[<key>]", *allowed))
            raise QueryError(f"{shown}: unknown query parameter (this search takes {takes})")
    return tuple(sorted(metadata.items())), plain


def check_metadata_filter(shown: str, key: str, value: str) -> None:
    """A filter no command's metadata could ever match is a mistake: say so, naming it."""
    if not 0 < len(key) <= METADATA_KEY_LENGTH_MAX or not METADATA_KEY_PATTERN.fullmatch(key):
        raise QueryError(
            f"{shown}: the key must be 1-{METADATA_KEY_LENGTH_MAX} of A-Z a-z 0-9 . _ -"
        )
    if len(value) > METADATA_VALUE_LENGTH_MAX:
        raise QueryError(f"{shown}: the value is longer than {METADATA_VALUE_LENGTH_MAX}")
    if METADATA_VALUE_FORBIDDEN.search(value) is not None:
        raise QueryError(f"{shown}: the value contains a control character")


def parse_limit(text: str | None) -> int:
    if text is None:
        return SEARCH_PAGE_DEFAULT
    digits = text.isascii() and text.isdigit() and len(text) <= len(str(SEARCH_PAGE_MAX))
    if not digits or not 1 <= int(text) <= SEARCH_PAGE_MAX:
        raise QueryError(f"limit: {text[:16]!r} is not a whole number in 1..{SEARCH_PAGE_MAX}")
    return int(text)


def parse_search_cursor(text: str | None) -> Cursor | None:
    """``"<sequence>:<id>"`` as a page's ``next_cursor`` gives it."""
    if text is None:
        return None
    found = CURSOR_PATTERN.fullmatch(text)
    if found is None or int(found.group(1)) > SEQUENCE_MAX or not id_shaped(found.group(2)):
        raise QueryError(f"after: {text[:PARAMETER_SHOWN_MAX]!r} is not a cursor of this list")
    return int(found.group(1)), found.group(2)


def id_shaped(text: str) -> bool:
    """An account or transfer id, or a transaction posting's transfer id ``{id}/{index}``."""
    if entity_id_problem(text) is None:
        return True
    head, separator, index = text.rpartition("/")
    return bool(separator) and index.isascii() and index.isdigit() and not entity_id_problem(head)


def parse_id(parameters: dict[str, str], name: str) -> str | None:
    value = parameters.get(name)
    if value is not None and entity_id_problem(value) is not None:
        raise QueryError(f"{name}: {entity_id_problem(value)}")
    return value


def parse_time(parameters: dict[str, str], name: str) -> datetime | None:
    value = parameters.get(name)
    return None if value is None else parse_moment(value, name)


def parse_transfer_search(items: Sequence[tuple[str, str]]) -> TransferSearch:
    metadata, parameters = split_parameters(items, TRANSFER_PARAMETERS)
    return TransferSearch(metadata=metadata, **movement_filters(parameters))


def parse_transaction_search(items: Sequence[tuple[str, str]]) -> TransactionSearch:
    metadata, parameters = split_parameters(items, TRANSACTION_PARAMETERS)
    return TransactionSearch(metadata=metadata, **movement_filters(parameters))


def movement_filters(parameters: dict[str, str]) -> dict[str, Any]:
    """The filters a transfer and a transaction search share, by field name."""
    status = parameters.get("status")
    if status is not None and status not in STATUSES:
        raise QueryError(f"status: {status[:16]!r} is not one of {', '.join(STATUSES)}")
    created_from, created_to = parse_time(parameters, "from"), parse_time(parameters, "to")
    if created_from is not None and created_to is not None and created_to < created_from:
        raise QueryError("to: before from")
    return {
        "created_from": created_from,
        "created_to": created_to,
        "account": parse_id(parameters, "account"),
        "status": status,
        "limit": parse_limit(parameters.get("limit")),
        "after": parse_search_cursor(parameters.get("after")),
    }


def parse_account_search(items: Sequence[tuple[str, str]]) -> AccountSearch:
    metadata, parameters = split_parameters(items, ACCOUNT_PARAMETERS)
    currency = parameters.get("currency")
    if currency is not None and CURRENCY_PATTERN.fullmatch(currency) is None:
        raise QueryError(f"currency: {currency[:16]!r} is not 3-12 of A-Z 0-9 (e.g. USD)")
    return AccountSearch(
        metadata=metadata,
        currency=currency,
        limit=parse_limit(parameters.get("limit")),
        after=parse_search_cursor(parameters.get("after")),
    )


# --------------------------------------------------------------------------- statements


def metadata_json(metadata: tuple[tuple[str, str], ...]) -> str:
    return json.dumps(dict(metadata), separators=(",", ":"), sort_keys=True)


SequenceBounds = tuple[int, int]  # created_sequence in [low, high)


def bounds_statement(
    tenant_id: str, search: TransferSearch | TransactionSearch
) -> Statement | None:
    """The statement reading the creation-sequence bounds of ``search``'s period (one row:
    low, high), or None without ``from`` and ``to``."""
    if search.created_from is None and search.created_to is None:
        return None
    low, high, parameters = "0", str(SEQUENCE_MAX), []
    if search.created_from is not None:
        low = SEQUENCE_LOW
        parameters += [tenant_id, search.created_from, tenant_id]
    if search.created_to is not None:
        high = SEQUENCE_HIGH
        parameters += [tenant_id, search.created_to]
    return SELECT_SEQUENCE_BOUNDS.format(low=low, high=high), tuple(parameters)


def sequence_bounds(rows: Sequence[Sequence[Any]]) -> SequenceBounds:
    ((low, high),) = rows
    return int(low), int(high)


def bounded(
    text: str, parameters: list[Any], table: str, bounds: SequenceBounds | None
) -> tuple[str, list[Any]]:
    if bounds is None:
        return text, parameters
    return text + SEQUENCE_BOUNDED.format(table=table), [*parameters, *bounds]


@dataclass(frozen=True, slots=True)
class MovementShape:
    """What differs between the transfer and the transaction search: their statements, the
    table alias, columns, filters and the id of the keyset."""

    statements: tuple[str, str]  # (all, by metadata)
    alias: str
    columns: str
    from_filter: str
    to_filter: str
    status_filter: str
    account_filter: str
    identifier: str


def movement_statement(
    tenant_id: str,
    search: TransferSearch | TransactionSearch,
    bounds: SequenceBounds | None,
    shape: MovementShape,
) -> Statement:
    """The page's statement; ``bounds`` (from ``bounds_statement``) narrow the scan to the
    period's sequences (the result is the same without them)."""
    keyed = "m" if search.metadata else shape.alias
    start = searched(tenant_id, search.metadata, shape.alias, shape.statements, shape.columns)
    text, parameters = bounded(*start, keyed, bounds)
    for fragment, value in (
        (shape.from_filter, search.created_from),
        (shape.to_filter, search.created_to),
        (shape.status_filter, search.status),
    ):
        if value is not None:
            text += fragment
            parameters.append(value)
    if search.account is not None:
        text += shape.account_filter
        parameters += [search.account, search.account]
    columns, descending = keyset(keyed, "created_sequence", shape.identifier)
    if search.after is not None:
        text += AFTER.format(keyset=columns)
        parameters += [*search.after]
    return text + ORDER.format(descending=descending), (*parameters, search.limit)


TRANSFER_SHAPE: Final = MovementShape(
    statements=(TRANSFERS_ALL, TRANSFERS_BY_METADATA), alias="t", columns=TRANSFER_COLUMNS,
    from_filter=FROM_FILTER, to_filter=TO_FILTER, status_filter=STATUS_FILTER,
    account_filter=ACCOUNT_FILTER, identifier="transfer_id",
)  # fmt: skip
TRANSACTION_SHAPE: Final = MovementShape(
    statements=(TRANSACTIONS_ALL, TRANSACTIONS_BY_METADATA), alias="x",
    columns=TRANSACTION_COLUMNS, from_filter=TRANSACTION_FROM_FILTER,
    to_filter=TRANSACTION_TO_FILTER, status_filter=TRANSACTION_STATUS_FILTER,
    account_filter=TRANSACTION_ACCOUNT_FILTER, identifier="transaction_id",
)  # fmt: skip


def transfer_statement(
    tenant_id: str, search: TransferSearch, bounds: SequenceBounds | None = None
) -> Statement:
    return movement_statement(tenant_id, search, bounds, TRANSFER_SHAPE)


def transaction_statement(
    tenant_id: str, search: TransactionSearch, bounds: SequenceBounds | None = None
) -> Statement:
    return movement_statement(tenant_id, search, bounds, TRANSACTION_SHAPE)


def account_statement(tenant_id: str, search: AccountSearch) -> Statement:
    statements = (ACCOUNTS_ALL, ACCOUNTS_BY_METADATA)
    text, parameters = searched(tenant_id, search.metadata, "a", statements, ACCOUNT_COLUMNS)
    if search.currency is not None:
        text += CURRENCY_FILTER
        parameters.append(search.currency)
    columns, descending = keyset("m" if search.metadata else "a", "opened_sequence", "account_id")
    if search.after is not None:
        text += AFTER.format(keyset=columns)
        parameters += [*search.after]
    return text + ORDER.format(descending=descending), (*parameters, search.limit)


# --------------------------------------------------------------------------- pages


@dataclass(frozen=True, slots=True)
class SearchPage:
    """Rows as dicts (column name → value), and the cursor of the next page (``None``: none)."""

    rows: tuple[dict[str, Any], ...]
    next_cursor: str | None


def page_of(rows: Sequence[Sequence[Any]], columns: str, limit: int) -> SearchPage:
    """The page of ``rows`` read with ``columns``; a full page has a next cursor (its last row's
    creation sequence and id: the ``*_sequence`` column and column 0)."""
    names = [name.strip() for name in columns.split(",")]
    found = tuple(dict(zip(names, row, strict=True)) for row in rows)
    next_cursor = None
    if found and len(found) == limit:
        last = found[-1]
        sequence = last.get("created_sequence", last.get("opened_sequence"))
        identifier = last[names[0]]  # transfer_id, transaction_id or account_id
        next_cursor = f"{sequence}:{identifier}"
    return SearchPage(found, next_cursor)
