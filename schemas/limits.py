"""The contract's character sets and length limits, and the one check of a command against them.

``first_violation(command)`` is pure and returns the first broken limit as ``(field, reason)``
in the command's declared field order, or ``None``. The producer SDK raises
``CommandValidationError`` with it before sending; the ledger core rejects with
``RejectReason.INVALID_COMMAND`` and the same text, so both ends enforce one contract.
The limits are documented for upstream teams in ``docs/contract.md``.

Limits are structural only. Rules that need the ledger's state or compare two accounts
(unknown account, currency mismatch, the same account on both sides, funds) are business
rejections decided by the core.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from schemas.model import (
    INT64_MAX,
    Command,
    CommandHeader,
    OpenAccount,
    PostPending,
    Transfer,
    VoidPending,
)

# --- identifiers. None may contain "/", which separates the parts of record keys. ---
TENANT_ID_LENGTH_MAX: Final = 64
TENANT_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
ENTITY_ID_LENGTH_MAX: Final = 128  # account_id, transfer_id, reverses
ENTITY_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]*")
IDEMPOTENCY_KEY_LENGTH_MAX: Final = 255
IDEMPOTENCY_KEY_PATTERN: Final = re.compile(r"[\x21-\x7e]+")  # visible ASCII, no space

# --- money ---
CURRENCY_PATTERN: Final = re.compile(r"[A-Z][A-Z0-9]{2,11}")  # ISO 4217 "USD" or "USDC"
ASSET_SCALE_MIN: Final = 0
ASSET_SCALE_MAX: Final = 18
AMOUNT_MIN: Final = 1
AMOUNT_MAX: Final = INT64_MAX
OVERDRAFT_LIMIT_MIN: Final = 0
OVERDRAFT_LIMIT_MAX: Final = INT64_MAX

# --- time ---
PENDING_TIMEOUT_S_MIN: Final = 1
PENDING_TIMEOUT_S_MAX: Final = 366 * 24 * 3600  # a pending transfer expires within a year
TIMESTAMP_US_MIN: Final = 0
TIMESTAMP_US_MAX: Final = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999Z

# --- metadata ---
METADATA_ENTRIES_MAX: Final = 16
METADATA_KEY_LENGTH_MAX: Final = 64
METADATA_KEY_PATTERN: Final = re.compile(r"[A-Za-z0-9._-]+")
METADATA_VALUE_LENGTH_MAX: Final = 512
METADATA_VALUE_FORBIDDEN: Final = re.compile(r"[\x00-\x1f\x7f]")  # control characters

Violation = tuple[str, str]


def _text(value: object, length_max: int, pattern: re.Pattern[str], charset: str) -> str | None:
    if not isinstance(value, str):
        return f"must be a string, got {type(value).__name__}"
    if not 1 <= len(value) <= length_max:
        return f"length {len(value)} is outside 1..{length_max}"
    if pattern.fullmatch(value) is None:
        return f"{value!r} uses characters outside {charset}"
    return None


def _integer(value: object, minimum: int, maximum: int) -> str | None:
    if not isinstance(value, int) or isinstance(value, bool):
        return f"must be a whole number, got {type(value).__name__}"
    if not minimum <= value <= maximum:
        return f"{value} is outside {minimum}..{maximum}"
    return None


def tenant_id_problem(value: object) -> str | None:
    return _text(
        value, TENANT_ID_LENGTH_MAX, TENANT_ID_PATTERN, "A-Z a-z 0-9 . _ - (first A-Z a-z 0-9)"
    )


def entity_id_problem(value: object) -> str | None:
    return _text(
        value, ENTITY_ID_LENGTH_MAX, ENTITY_ID_PATTERN, "A-Z a-z 0-9 . _ : @ - (first A-Z a-z 0-9)"
    )


def idempotency_key_problem(value: object) -> str | None:
    return _text(
        value, IDEMPOTENCY_KEY_LENGTH_MAX, IDEMPOTENCY_KEY_PATTERN, "visible ASCII (0x21-0x7E)"
    )


def currency_problem(value: object) -> str | None:
    if not isinstance(value, str) or CURRENCY_PATTERN.fullmatch(value) is None:
        return f"{value!r} is not 3-12 of A-Z 0-9 starting with a letter (e.g. USD)"
    return None


def amount_problem(value: object) -> str | None:
    return _integer(value, AMOUNT_MIN, AMOUNT_MAX)


def metadata_problem(value: object) -> str | None:
    if not isinstance(value, tuple):
        return "must be a tuple of (key, value) pairs"
    if len(value) > METADATA_ENTRIES_MAX:
        return f"{len(value)} entries; at most {METADATA_ENTRIES_MAX}"
    previous_key = ""
    for entry in value:
        if not isinstance(entry, tuple) or len(entry) != 2:
            return "each entry must be a (key, value) pair"
        key, text = entry
        problem = _text(key, METADATA_KEY_LENGTH_MAX, METADATA_KEY_PATTERN, "A-Z a-z 0-9 . _ -")
        if problem is not None:
            return f"key: {problem}"
        if key <= previous_key:
            return f"keys must be sorted and unique ({key!r} after {previous_key!r})"
        previous_key = key
        if not isinstance(text, str) or len(text) > METADATA_VALUE_LENGTH_MAX:
            return f"value of {key!r} must be a string of at most {METADATA_VALUE_LENGTH_MAX}"
        if METADATA_VALUE_FORBIDDEN.search(text) is not None:
            return f"value of {key!r} contains a control character"
    return None


def _header_violation(command: CommandHeader) -> Violation | None:
    checks: tuple[tuple[str, str | None], ...] = (
        ("tenant_id", tenant_id_problem(command.tenant_id)),
        ("idempotency_key", idempotency_key_problem(command.idempotency_key)),
        (
            "submitted_at_us",
            _integer(command.submitted_at_us, TIMESTAMP_US_MIN, TIMESTAMP_US_MAX),
        ),
        ("metadata", metadata_problem(command.metadata) if command.metadata else None),
    )
    return _first(checks)


def _first(checks: tuple[tuple[str, str | None], ...]) -> Violation | None:
    for field_name, problem in checks:
        if problem is not None:
            return field_name, problem
    return None


def _open_account_violation(command: OpenAccount) -> Violation | None:
    both_flags = command.debits_must_not_exceed_credits and command.credits_must_not_exceed_debits
    flags = int(command.debits_must_not_exceed_credits) + int(
        command.credits_must_not_exceed_debits
    )
    overdraft_problem = None
    if command.overdraft_limit is not None:
        overdraft_problem = _integer(
            command.overdraft_limit, OVERDRAFT_LIMIT_MIN, OVERDRAFT_LIMIT_MAX
        )
        if overdraft_problem is None and flags != 1:
            overdraft_problem = "needs exactly one of the two balance flags"
    return _first(
        (
            ("account_id", entity_id_problem(command.account_id)),
            ("currency", currency_problem(command.currency)),
            ("asset_scale", _integer(command.asset_scale, ASSET_SCALE_MIN, ASSET_SCALE_MAX)),
            (
                "credits_must_not_exceed_debits",
                "cannot be set together with debits_must_not_exceed_credits"
                if both_flags
                else None,
            ),
            ("overdraft_limit", overdraft_problem),
        )
    )


def _transfer_violation(command: Transfer) -> Violation | None:
    timeout_problem = None
    if command.pending_timeout_s is not None:
        timeout_problem = (
            _integer(command.pending_timeout_s, PENDING_TIMEOUT_S_MIN, PENDING_TIMEOUT_S_MAX)
            if command.pending
            else "only allowed with pending=true"
        )
    reverses_problem = None
    if command.reverses is not None:
        reverses_problem = entity_id_problem(command.reverses)
        if reverses_problem is None and command.pending:
            reverses_problem = "a reversal is posted at once, not pending"
        elif reverses_problem is None and command.reverses == command.transfer_id:
            reverses_problem = "a transfer cannot reverse itself"
    return _first(
        (
            ("transfer_id", entity_id_problem(command.transfer_id)),
            ("debit_account_id", entity_id_problem(command.debit_account_id)),
            ("credit_account_id", entity_id_problem(command.credit_account_id)),
            ("amount", amount_problem(command.amount)),
            ("currency", currency_problem(command.currency)),
            ("pending", None if isinstance(command.pending, bool) else "must be true or false"),
            ("pending_timeout_s", timeout_problem),
            ("reverses", reverses_problem),
        )
    )


def _post_pending_violation(command: PostPending) -> Violation | None:
    return _first(
        (
            ("transfer_id", entity_id_problem(command.transfer_id)),
            ("amount", None if command.amount is None else amount_problem(command.amount)),
        )
    )


def _void_pending_violation(command: VoidPending) -> Violation | None:
    return _first((("transfer_id", entity_id_problem(command.transfer_id)),))


_BODY_CHECKS: dict[type[object], Callable[..., Violation | None]] = {
    OpenAccount: _open_account_violation,
    Transfer: _transfer_violation,
    PostPending: _post_pending_violation,
    VoidPending: _void_pending_violation,
}


def first_violation(command: Command) -> Violation | None:
    """The first limit ``command`` breaks as ``(field name, reason)``, or ``None`` if none.

    Header fields are checked first, then the command's own fields in declared order.
    """
    body_check = _BODY_CHECKS.get(type(command))
    if body_check is None:
        return ("command", f"{type(command).__name__} is not a command")
    return _header_violation(command) or body_check(command)
