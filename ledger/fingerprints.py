"""Command fingerprints: what makes a retry "the same command" under an idempotency key.

``reference_command_fingerprint`` is the definition (docs/contract.md): one 8-byte SHA-256 prefix
per fingerprinted field, in declared order, and a SHA-256 over the type name and those. The hot
path calls ``command_fingerprint``: per command type a function generated from
``fingerprint_source`` (no per-field loop, no ``getattr``), equal to the reference by construction
and by test (tests/unit/test_generated_checks.py). It is compiled by
``schemas.generated_code``: registered with ``linecache`` (a traceback through it shows the
line) and printed by ``streamledger debug generated ledger.fingerprints.<Type>``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from typing import Any, Final

from schemas.generated_code import compile_generated
from schemas.model import COMMAND_TYPES, Command, Outcome, Posting, PostTransaction

FIELD_FINGERPRINT_BYTES: Final = 8
COMMAND_TYPE_FIELD: Final = "command_type"  # named when a key is reused for another command type
EXCLUDED_FROM_FINGERPRINT: Final = frozenset({"tenant_id", "idempotency_key", "submitted_at_us"})
Fingerprint = tuple[bytes, bytes]  # (overall SHA-256, the concatenated field hashes)


def _fingerprint_fields(command_type: type[Command]) -> tuple[str, ...]:
    names = (field.name for field in dataclasses.fields(command_type))
    return tuple(name for name in names if name not in EXCLUDED_FROM_FINGERPRINT)


FINGERPRINT_FIELDS: Final[dict[type[Command], tuple[str, ...]]] = {
    command_type: _fingerprint_fields(command_type) for command_type in COMMAND_TYPES
}
_FINGERPRINT_FIELDS_BY_NAME: Final[dict[str, tuple[str, ...]]] = {
    command_type.__name__: names for command_type, names in FINGERPRINT_FIELDS.items()
}
# A PostTransaction's field hashes go on after its own fields: per posting, in order, one per
# posting field (``postings[2].amount``), so a reused key names the posting field that differs.
POSTINGS_FIELD: Final = "postings"
POSTING_FIELDS: Final = ("debit_account_id", "credit_account_id", "amount", "currency")


def _encode_value(value: object) -> bytes:
    """An unambiguous byte encoding of a command field value (type tag + content)."""
    if type(value) is str:
        return b"S" + value.encode("utf-8", "surrogatepass")
    if value is None:
        return b"N"
    if value is True:
        return b"T"
    if value is False:
        return b"F"
    if type(value) is int:
        return b"I%d" % value
    if type(value) is tuple:
        parts = [_encode_value(item) for item in value]
        return b"L" + b"".join(len(part).to_bytes(4, "big") + part for part in parts)
    if type(value) is Posting:  # the list of its four fields, in declared order
        return _encode_value(
            (value.debit_account_id, value.credit_account_id, value.amount, value.currency)
        )
    return b"R" + repr(value).encode("utf-8", "surrogatepass")  # a decoder bug; still stable


# Fields whose values repeat across commands: their (name, hash) pairs are computed once and
# shared by every outcome holding them (speed, and memory per million stored keys).
LOW_CARDINALITY_FIELDS: Final = frozenset(
    {
        "currency",
        "asset_scale",
        "debits_must_not_exceed_credits",
        "credits_must_not_exceed_debits",
        "overdraft_limit",
        "pending",
        "pending_timeout_s",
        # a tenant's accounts appear in transfer after transfer
        "debit_account_id",
        "credit_account_id",
    }
)
FIELD_FINGERPRINT_CACHE_SIZE_MAX: Final = 65_536
_field_fingerprint_cache: dict[tuple[str, type, object], bytes] = {}


def _field_fingerprint(value: object) -> bytes:
    # SHA-256 truncated: as strong per bit as BLAKE2b and, with SHA-NI, faster to call.
    return hashlib.sha256(_encode_value(value)).digest()[:FIELD_FINGERPRINT_BYTES]


def _shared_field_fingerprint(name: str, value: object) -> bytes:
    """The cached digest of a repeating value (a pure function; the cache is bounded)."""
    key = (name, type(value), value)
    digest = _field_fingerprint_cache.get(key)
    if digest is None:
        if len(_field_fingerprint_cache) >= FIELD_FINGERPRINT_CACHE_SIZE_MAX:
            _field_fingerprint_cache.clear()
        digest = _field_fingerprint_cache[key] = _field_fingerprint(value)
    return digest


def reference_command_fingerprint(command: Command) -> tuple[bytes, bytes]:
    """(SHA-256 over type + field hashes, the field hashes) of a command: the definition.

    The field hashes are one 8-byte SHA-256 prefix per ``FINGERPRINT_FIELDS[type(command)]``
    field, concatenated in that (declared) order: ``Outcome.field_fingerprints``.
    Fingerprinted: every field but tenant_id and idempotency_key (the key's scope) and
    submitted_at_us (a retry may be re-stamped); metadata is included.
    """
    digests = []
    cache = _field_fingerprint_cache
    for name in FINGERPRINT_FIELDS[type(command)]:
        value = getattr(command, name)
        if value is None or value == () or name in LOW_CARDINALITY_FIELDS:
            digest = cache.get((name, type(value), value))
            digests.append(digest if digest is not None else _shared_field_fingerprint(name, value))
        else:
            digests.append(_field_fingerprint(value))
    if type(command) is PostTransaction:
        digests.append(_posting_field_fingerprints(command.postings))
    joined = b"".join(digests)
    overall = hashlib.sha256(type(command).__name__.encode() + b"\0" + joined).digest()
    return overall, joined


def _posting_field_fingerprints(postings: tuple[Posting, ...]) -> bytes:
    """Per posting, in order, the field hashes of its debit and credit account, amount and
    currency (the same hashes a Transfer's fields of those names get)."""
    digests = []
    for posting in postings:
        for name in POSTING_FIELDS:
            value = getattr(posting, name)
            if name in LOW_CARDINALITY_FIELDS:
                digests.append(_shared_field_fingerprint(name, value))
            else:
                digests.append(_field_fingerprint(value))
    return b"".join(digests)


# A string of a posting (an account id, a currency) -> (its field hash, its length-prefixed
# ``_encode_value`` bytes): a field hash does not depend on the field's name, so a debit and a
# credit account share one entry. The same bounded-cache rule as ``_field_fingerprint_cache``.
_posting_string_cache: dict[str, tuple[bytes, bytes]] = {}


def _posting_string(value: str) -> tuple[bytes, bytes]:
    """(``_field_fingerprint(value)``, ``_encode_value(value)`` with its 4-byte length)."""
    found = _posting_string_cache.get(value)
    if found is not None:
        return found
    encoded = b"S" + value.encode("utf-8", "surrogatepass")
    digest = hashlib.sha256(encoded).digest()[:FIELD_FINGERPRINT_BYTES]
    if len(_posting_string_cache) >= FIELD_FINGERPRINT_CACHE_SIZE_MAX:
        _posting_string_cache.clear()
    found = _posting_string_cache[value] = (digest, len(encoded).to_bytes(4, "big") + encoded)
    return found


def _postings_fingerprints(postings: tuple[Posting, ...]) -> tuple[bytes, bytes]:
    """(the field hash of ``postings``, the per-posting field hashes) in one pass: what
    ``_field_fingerprint(postings)`` and ``_posting_field_fingerprints(postings)`` give (the
    property test compares them with the reference), for the hot path of a multi-leg
    transaction. A posting whose fields do not have their declared types takes the definition.
    """
    sha256 = hashlib.sha256
    size = FIELD_FINGERPRINT_BYTES
    parts: list[bytes] = [b"L"]  # the postings field: the list of each posting's list
    digests: list[bytes] = []
    for posting in postings:
        if not _plain_posting(posting):
            return (
                _other_field_fingerprint(POSTINGS_FIELD, postings),
                _posting_field_fingerprints(postings),
            )
        debit = _posting_string(posting.debit_account_id)
        credit = _posting_string(posting.credit_account_id)
        currency = _posting_string(posting.currency)
        amount = b"I%d" % posting.amount
        amount_digest = sha256(amount).digest()[:size]
        encoded = b"".join(
            (b"L", debit[1], credit[1], len(amount).to_bytes(4, "big"), amount, currency[1])
        )
        parts.append(len(encoded).to_bytes(4, "big"))
        parts.append(encoded)
        digests.extend((debit[0], credit[0], amount_digest, currency[0]))
    return sha256(b"".join(parts)).digest()[:size], b"".join(digests)


def _plain_posting(posting: object) -> bool:
    """A posting whose fields have their declared types (anything else takes the definition)."""
    return (
        type(posting) is Posting
        and type(posting.debit_account_id) is str
        and type(posting.credit_account_id) is str
        and type(posting.amount) is int
        and type(posting.currency) is str
    )


def _other_field_fingerprint(name: str, value: object) -> bytes:
    """A field hash as ``reference_command_fingerprint`` computes one that is not a string."""
    if value is None or value == () or name in LOW_CARDINALITY_FIELDS:
        return _shared_field_fingerprint(name, value)
    return _field_fingerprint(value)


def _string_field_fingerprint(value: str) -> bytes:
    return hashlib.sha256(b"S" + value.encode("utf-8", "surrogatepass")).digest()[
        :FIELD_FINGERPRINT_BYTES
    ]


def _shared_string_field_fingerprint(value: str) -> bytes:
    """``_string_field_fingerprint`` of a repeating string, from the bounded cache the
    postings use (a string's field hash does not depend on its field's name)."""
    return _posting_string(value)[0]


def _integer_field_fingerprint(value: int) -> bytes:
    """A field hash as ``reference_command_fingerprint`` computes one of an ``int`` (not a
    ``bool``: ``type(value) is int`` is checked by the caller)."""
    return hashlib.sha256(b"I%d" % value).digest()[:FIELD_FINGERPRINT_BYTES]


def fingerprint_source(command_type: type[Command]) -> str:
    """The generated fingerprint function of one command type (shown by tests).

    ``reference_command_fingerprint`` without its per-field loop and ``getattr``: a value
    whose field hash is a constant (``None``, ``()``, ``True``, ``False``) is that constant; a
    string is hashed inline (or, if its field repeats, looked up by the string alone); an int
    that changes from command to command is hashed inline; every other value goes through the
    reference's own choice of cache or hash, so the bytes are the same by construction.
    """
    digests = []
    for name in FINGERPRINT_FIELDS[command_type]:
        if command_type is PostTransaction and name == POSTINGS_FIELD:
            digests.append("postings_digests[0]")
        else:
            digests.append(_field_source(name, _declared_type(command_type, name)))
    first = ""
    if command_type is PostTransaction:  # both from one pass over the postings
        first = "    postings_digests = postings_fingerprints(command.postings)\n"
        digests.append("postings_digests[1]")
    items = "".join(f"            {digest},\n" for digest in digests)
    return (
        "def fingerprint(command):\n"
        f"{first}"
        f"    joined = b''.join((\n{items}    ))\n"
        "    return sha256(type_prefix + joined).digest(), joined\n"
    )


def _declared_type(command_type: type[Command], name: str) -> str:
    """A field's declared type as written in ``schemas.model`` (``"int | None"``)."""
    declared = {field.name: field.type for field in dataclasses.fields(command_type)}[name]
    return declared if isinstance(declared, str) else getattr(declared, "__name__", "")


def _field_source(name: str, declared: str) -> str:
    """The expression of one field hash in a generated fingerprint (``fingerprint_source``):
    the constant hashes first, by the field's declared type, then the value's own path."""
    value = f"command.{name}"
    other = f"other({name!r}, {value})"
    if declared == "bool":
        return f"FALSE_DIGEST if {value} is False else TRUE_DIGEST if {value} is True else {other}"
    if name in LOW_CARDINALITY_FIELDS and declared.startswith("str"):
        expression = f"shared_string({value}) if type({value}) is str else {other}"
    elif name in LOW_CARDINALITY_FIELDS:
        expression = f"cache_get(({name!r}, type({value}), {value})) or {other}"
    elif declared.startswith("int"):
        expression = f"integer({value}) if type({value}) is int else {other}"
    else:
        expression = f"string({value}) if type({value}) is str else {other}"
    if declared.startswith("tuple"):
        empty = f"type({value}) is tuple and not {value}"
        expression = f"EMPTY_TUPLE_DIGEST if {empty} else {expression}"
    if declared.endswith("| None"):
        expression = f"NONE_DIGEST if {value} is None else {expression}"
    return expression


def generated_name(command_type: type[Command]) -> str:
    """The name of a generated fingerprint function (``streamledger debug generated NAME``)."""
    return f"ledger.fingerprints.{command_type.__name__}"


def _generated_fingerprint(command_type: type[Command]) -> Callable[[Command], Fingerprint]:
    """Compile ``fingerprint_source(command_type)`` (this module's own tables, never input);
    its source is registered with ``linecache``, so tracebacks and debuggers show its lines."""
    namespace: dict[str, Any] = {
        "cache_get": _field_fingerprint_cache.get,
        "other": _other_field_fingerprint,
        "string": _string_field_fingerprint,
        "shared_string": _shared_string_field_fingerprint,
        "integer": _integer_field_fingerprint,
        "NONE_DIGEST": _field_fingerprint(None),
        "EMPTY_TUPLE_DIGEST": _field_fingerprint(()),
        "TRUE_DIGEST": _field_fingerprint(True),
        "FALSE_DIGEST": _field_fingerprint(False),
        "postings_fingerprints": _postings_fingerprints,
        "sha256": hashlib.sha256,
        "type_prefix": command_type.__name__.encode() + b"\0",
    }
    function: Callable[[Command], Fingerprint] = compile_generated(
        fingerprint_source(command_type), "fingerprint", namespace, generated_name(command_type)
    )
    return function


_FINGERPRINTS: Final = {
    command_type: _generated_fingerprint(command_type) for command_type in COMMAND_TYPES
}


def command_fingerprint(command: Command) -> tuple[bytes, bytes]:
    """(SHA-256 over type + field hashes, the field hashes) of a command.

    The field hashes are one 8-byte SHA-256 prefix per ``FINGERPRINT_FIELDS[type(command)]``
    field, concatenated in that (declared) order: ``Outcome.field_fingerprints``.
    Fingerprinted: every field but tenant_id and idempotency_key (the key's scope) and
    submitted_at_us (a retry may be re-stamped); metadata is included. Generated per type
    (``fingerprint_source``); ``reference_command_fingerprint`` is the definition.
    """
    return _FINGERPRINTS[type(command)](command)


def field_fingerprint_pairs(
    command_type: str, field_fingerprints: bytes
) -> tuple[tuple[str, bytes], ...]:
    """``Outcome.field_fingerprints`` as (field name, 8-byte hash) pairs, for reading."""
    size = FIELD_FINGERPRINT_BYTES
    names = _field_names(command_type, len(field_fingerprints) // size)
    return tuple(
        (
            names[index] if index < len(names) else f"#{index}",
            field_fingerprints[start : start + size],
        )
        for index, start in enumerate(range(0, len(field_fingerprints), size))
    )


def _field_names(command_type: str, count: int) -> tuple[str, ...]:
    """The names of ``count`` field hashes of a command type (with a transaction's postings)."""
    names = _FINGERPRINT_FIELDS_BY_NAME.get(command_type, ())
    if command_type != PostTransaction.__name__ or count <= len(names):
        return names
    posting_count = (count - len(names)) // len(POSTING_FIELDS)
    return names + tuple(
        f"{POSTINGS_FIELD}[{index}].{name}"
        for index in range(posting_count)
        for name in POSTING_FIELDS
    )


def first_differing_field(stored: Outcome, command: Command) -> str:
    """The first fingerprinted field in which ``command`` differs from the stored command."""
    if stored.command_type != type(command).__name__:
        return COMMAND_TYPE_FIELD
    _, field_fingerprints = command_fingerprint(command)
    old = stored.field_fingerprints
    names = FINGERPRINT_FIELDS[type(command)]
    size = FIELD_FINGERPRINT_BYTES
    for index, start in enumerate(range(0, min(len(old), len(field_fingerprints)), size)):
        if index >= len(names):
            break
        if old[start : start + size] != field_fingerprints[start : start + size]:
            if names[index] == POSTINGS_FIELD:
                return _first_differing_posting_field(old, field_fingerprints, len(names))
            return names[index]
    shorter = min(len(old), len(field_fingerprints)) // size
    if len(old) != len(field_fingerprints) and shorter < len(names):
        return names[shorter]
    return COMMAND_TYPE_FIELD


def _first_differing_posting_field(old: bytes, new: bytes, fixed_fields: int) -> str:
    """``postings[i].<field>`` of the first posting field hash that differs, or
    ``postings[i]`` for the first posting only one of the two transactions has."""
    size = FIELD_FINGERPRINT_BYTES
    start = fixed_fields * size
    old_postings, new_postings = old[start:], new[start:]
    for offset in range(0, min(len(old_postings), len(new_postings)), size):
        if old_postings[offset : offset + size] != new_postings[offset : offset + size]:
            index, field = divmod(offset // size, len(POSTING_FIELDS))
            return f"{POSTINGS_FIELD}[{index}].{POSTING_FIELDS[field]}"
    shorter = min(len(old_postings), len(new_postings)) // size // len(POSTING_FIELDS)
    return f"{POSTINGS_FIELD}[{shorter}]"
