"""Commands as JSON lines: the format of ``streamledger produce`` and ``loadgen --record``.

One JSON object per line; ``"type"`` names the command and the other members are the model's
field names (see ``docs/producing.md``)::

    {"type": "Transfer", "tenant_id": "acme", "idempotency_key": "t-1", "transfer_id": "t-1",
     "debit_account_id": "cash", "credit_account_id": "sales", "amount": 1250, "currency": "USD"}

``submitted_at_us`` may be left out: the reader fills in the time it read the line.
``metadata`` is a JSON object of strings. Integers must be JSON integers (no floats, no strings),
booleans JSON booleans; optional fields may be ``null`` or absent. Parsing is pure and raises
``CommandFormatError`` naming the member; the contract limits are checked separately
(``schemas.limits.first_violation``).
"""

from __future__ import annotations

import json
from dataclasses import MISSING, fields
from typing import Any, Final

from producers.errors import CommandFormatError
from schemas.model import COMMAND_TYPES, Command, Posting

TYPE_MEMBER: Final = "type"
SUBMITTED_AT_MEMBER: Final = "submitted_at_us"
# The model's annotations are strings (``from __future__ import annotations``).
INTEGER_TYPES: Final = frozenset({"int", "int | None"})
BOOLEAN_TYPES: Final = frozenset({"bool"})
POSTINGS_MEMBER: Final = "postings"  # PostTransaction: an array of posting objects
POSTING_MEMBERS: Final = {
    "debit_account_id": str,
    "credit_account_id": str,
    "amount": int,
    "currency": str,
}
JSON_KINDS: Final = {str: "string", int: "integer"}
COMMANDS_BY_NAME: Final = {command_type.__name__: command_type for command_type in COMMAND_TYPES}


def _fields_typed(types: frozenset[str]) -> frozenset[str]:
    """The names of the command fields declared with one of ``types``, over every command type
    (so a command added to the contract is read with its integers and booleans checked)."""
    names = frozenset(
        item.name
        for command_type in COMMAND_TYPES
        for item in fields(command_type)
        if str(item.type) in types
    )
    for command_type in COMMAND_TYPES:  # one name, one JSON kind, in every command
        for item in fields(command_type):
            assert item.name not in names or str(item.type) in types, item
    return names


INTEGER_FIELDS: Final = _fields_typed(INTEGER_TYPES)
BOOLEAN_FIELDS: Final = _fields_typed(BOOLEAN_TYPES)


def _field_table(command_type: type[Any]) -> dict[str, bool]:
    """Field name → whether it may be null or absent (it has a default)."""
    return {item.name: item.default is not MISSING for item in fields(command_type)}


FIELD_TABLES: Final = {name: _field_table(kind) for name, kind in COMMANDS_BY_NAME.items()}


def _postings(value: Any) -> tuple[Posting, ...]:
    """``[{"debit_account_id": ..., "credit_account_id": ..., "amount": ..., "currency": ...}]``
    as postings; a problem names ``postings[<index>].<member>`` (limits are checked later)."""
    if not isinstance(value, list):
        raise CommandFormatError(POSTINGS_MEMBER, "must be an array of posting objects")
    postings = []
    for index, item in enumerate(value):
        where = f"{POSTINGS_MEMBER}[{index}]"
        if not isinstance(item, dict) or set(item) != set(POSTING_MEMBERS):
            members = ", ".join(POSTING_MEMBERS)
            raise CommandFormatError(where, f"must be an object with exactly {members}")
        for member, kind in POSTING_MEMBERS.items():
            if not isinstance(item[member], kind) or isinstance(item[member], bool):
                raise CommandFormatError(
                    f"{where}.{member}",
                    f"must be a JSON {JSON_KINDS[kind]}, got {json.dumps(item[member])}",
                )
        postings.append(Posting(**item))
    return tuple(postings)


def _check_member(name: str, value: Any) -> Any:
    if name == POSTINGS_MEMBER:
        return _postings(value)
    if name == "metadata":
        if not isinstance(value, dict) or not all(
            isinstance(key, str) and isinstance(text, str) for key, text in value.items()
        ):
            raise CommandFormatError(name, "must be an object of string values")
        return tuple(sorted(value.items()))
    if name in INTEGER_FIELDS:
        if not isinstance(value, int) or isinstance(value, bool):
            raise CommandFormatError(name, f"must be a JSON integer, got {json.dumps(value)}")
    elif name in BOOLEAN_FIELDS:
        if not isinstance(value, bool):
            raise CommandFormatError(name, f"must be true or false, got {json.dumps(value)}")
    elif not isinstance(value, str):
        raise CommandFormatError(name, f"must be a string, got {json.dumps(value)}")
    return value


def command_from_object(document: Any, *, default_submitted_at_us: int) -> Command:
    """The command a parsed JSON value describes; raises ``CommandFormatError``."""
    if not isinstance(document, dict):
        raise CommandFormatError("line", "must be a JSON object")
    type_name = document.get(TYPE_MEMBER)
    command_type = COMMANDS_BY_NAME.get(type_name) if isinstance(type_name, str) else None
    if command_type is None:
        raise CommandFormatError(TYPE_MEMBER, f"must be one of {', '.join(COMMANDS_BY_NAME)}")
    table = FIELD_TABLES[command_type.__name__]
    values: dict[str, Any] = {}
    for name, value in document.items():
        if name == TYPE_MEMBER:
            continue
        if name not in table:
            raise CommandFormatError(name, f"is not a field of {command_type.__name__}")
        if value is None and table[name]:
            continue
        values[name] = _check_member(name, value)
    values.setdefault(SUBMITTED_AT_MEMBER, default_submitted_at_us)
    for name, optional in table.items():
        if not optional and name not in values:
            raise CommandFormatError(name, "is required")
    command: Command = command_type(**values)
    return command


def command_from_line(line: str, *, default_submitted_at_us: int) -> Command:
    """The command on one JSON line; raises ``CommandFormatError``."""
    try:
        document = json.loads(line)
    except ValueError as exc:
        raise CommandFormatError("line", f"not JSON: {exc}") from None
    return command_from_object(document, default_submitted_at_us=default_submitted_at_us)


def command_to_object(command: Command) -> dict[str, Any]:
    """The JSON object of a command: every field, ``metadata`` as an object."""
    document: dict[str, Any] = {TYPE_MEMBER: type(command).__name__}
    for item in fields(command):
        value = getattr(command, item.name)
        if item.name == "metadata":
            value = dict(value)
        elif item.name == POSTINGS_MEMBER:
            value = [
                {member: getattr(posting, member) for member in POSTING_MEMBERS}
                for posting in value
            ]
        document[item.name] = value
    return document


def command_to_line(command: Command) -> str:
    """One JSON line (no newline) that ``command_from_line`` reads back to an equal command."""
    return json.dumps(command_to_object(command), separators=(",", ":"), ensure_ascii=False)
