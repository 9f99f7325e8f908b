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
    if type(value) is str and 0 < len(value) <= length_max and pattern.fullmatch(value):
        return None  # the common case, in one test
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


def _boolean_problem(value: object) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


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


# Each check below returns at the first problem, in the documented field order, and evaluates
# nothing after it: ``first_violation`` runs on every command the processor decides.


def _header_violation(command: CommandHeader) -> Violation | None:
    if (problem := tenant_id_problem(command.tenant_id)) is not None:
        return "tenant_id", problem
    if (problem := idempotency_key_problem(command.idempotency_key)) is not None:
        return "idempotency_key", problem
    submitted_at_us = command.submitted_at_us
    if not (
        type(submitted_at_us) is int and TIMESTAMP_US_MIN <= submitted_at_us <= TIMESTAMP_US_MAX
    ):
        problem = _integer(submitted_at_us, TIMESTAMP_US_MIN, TIMESTAMP_US_MAX)
        if problem is not None:
            return "submitted_at_us", problem
    if command.metadata and (problem := metadata_problem(command.metadata)) is not None:
        return "metadata", problem
    return None


def _open_account_violation(command: OpenAccount) -> Violation | None:
    if (problem := entity_id_problem(command.account_id)) is not None:
        return "account_id", problem
    if (problem := currency_problem(command.currency)) is not None:
        return "currency", problem
    if (problem := _integer(command.asset_scale, ASSET_SCALE_MIN, ASSET_SCALE_MAX)) is not None:
        return "asset_scale", problem
    if command.debits_must_not_exceed_credits and command.credits_must_not_exceed_debits:
        return (
            "credits_must_not_exceed_debits",
            "cannot be set together with debits_must_not_exceed_credits",
        )
    if command.overdraft_limit is not None:
        problem = _integer(command.overdraft_limit, OVERDRAFT_LIMIT_MIN, OVERDRAFT_LIMIT_MAX)
        flags = int(command.debits_must_not_exceed_credits) + int(
            command.credits_must_not_exceed_debits
        )
        if problem is None and flags != 1:
            problem = "needs exactly one of the two balance flags"
        if problem is not None:
            return "overdraft_limit", problem
    return None


def _transfer_violation(command: Transfer) -> Violation | None:
    if (problem := entity_id_problem(command.transfer_id)) is not None:
        return "transfer_id", problem
    if (problem := entity_id_problem(command.debit_account_id)) is not None:
        return "debit_account_id", problem
    if (problem := entity_id_problem(command.credit_account_id)) is not None:
        return "credit_account_id", problem
    amount = command.amount
    if not (type(amount) is int and AMOUNT_MIN <= amount <= AMOUNT_MAX):
        problem = amount_problem(amount)
        if problem is not None:
            return "amount", problem
    if (problem := currency_problem(command.currency)) is not None:
        return "currency", problem
    if (problem := _boolean_problem(command.pending)) is not None:
        return "pending", problem
    return _transfer_option_violation(command)


def _transfer_option_violation(command: Transfer) -> Violation | None:
    """The optional fields of a Transfer, after its required ones."""
    if command.pending_timeout_s is not None:
        problem = (
            _integer(command.pending_timeout_s, PENDING_TIMEOUT_S_MIN, PENDING_TIMEOUT_S_MAX)
            if command.pending
            else "only allowed with pending=true"
        )
        if problem is not None:
            return "pending_timeout_s", problem
    if command.reverses is not None:
        problem = entity_id_problem(command.reverses)
        if problem is None and command.pending:
            problem = "a reversal is posted at once, not pending"
        elif problem is None and command.reverses == command.transfer_id:
            problem = "a transfer cannot reverse itself"
        if problem is not None:
            return "reverses", problem
    return None


def _post_pending_violation(command: PostPending) -> Violation | None:
    if (problem := entity_id_problem(command.transfer_id)) is not None:
        return "transfer_id", problem
    if command.amount is not None and (problem := amount_problem(command.amount)) is not None:
        return "amount", problem
    return None


def _void_pending_violation(command: VoidPending) -> Violation | None:
    if (problem := entity_id_problem(command.transfer_id)) is not None:
        return "transfer_id", problem
    return None


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
