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

from schemas.generated_code import compile_generated
from schemas.model import (
    INT64_MAX,
    Command,
    CommandHeader,
    CreateMonitor,
    DeleteMonitor,
    OpenAccount,
    Posting,
    PostPending,
    PostTransaction,
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
POSTINGS_MIN: Final = 1  # a PostTransaction's postings
POSTINGS_MAX: Final = 64  # bounds one event's size and one decision's work (issue 16)

# --- time ---
PENDING_TIMEOUT_S_MIN: Final = 1
PENDING_TIMEOUT_S_MAX: Final = 366 * 24 * 3600  # a pending transfer expires within a year
TIMESTAMP_US_MIN: Final = 0
TIMESTAMP_US_MAX: Final = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999Z

# --- balance monitors (decision 0058) ---
# the contract's strings for a monitor's field and operator (``ledger.monitors`` has them as
# enums; a test checks the two agree)
MONITOR_FIELDS: Final = (
    "debits_posted",
    "credits_posted",
    "debits_pending",
    "credits_pending",
    "posted",
    "pending",
    "available",
)
MONITOR_OPERATORS: Final = ("<", "<=", ">", ">=", "==")
MONITOR_THRESHOLD_MIN: Final = -INT64_MAX - 1
MONITOR_THRESHOLD_MAX: Final = INT64_MAX
# bound the comparisons one event causes (16 per touched account) and a tenant's processor memory
MONITORS_PER_ACCOUNT_MAX: Final = 16
MONITORS_PER_TENANT_MAX: Final = 1_000

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
    for flag in ("debits_must_not_exceed_credits", "credits_must_not_exceed_debits"):
        if (problem := _boolean_problem(getattr(command, flag))) is not None:
            return flag, problem
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
    return _option_violation(command, command.transfer_id, "transfer")


def _option_violation(
    command: Transfer | PostTransaction, own_id: str, noun: str
) -> Violation | None:
    """The optional fields a Transfer and a PostTransaction share (``pending_timeout_s``,
    ``reverses``), after their required ones; ``own_id`` is the command's transfer or
    transaction id, which it cannot reverse (``noun`` names it in the problem)."""
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
        elif problem is None and command.reverses == own_id:
            problem = f"a {noun} cannot reverse itself"
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


def _create_monitor_violation(command: CreateMonitor) -> Violation | None:
    if (problem := entity_id_problem(command.monitor_id)) is not None:
        return "monitor_id", problem
    if (problem := entity_id_problem(command.account_id)) is not None:
        return "account_id", problem
    if command.field not in MONITOR_FIELDS:
        return "field", f"{command.field!r} is not one of {', '.join(MONITOR_FIELDS)}"
    if command.operator not in MONITOR_OPERATORS:
        return "operator", f"{command.operator!r} is not one of {' '.join(MONITOR_OPERATORS)}"
    problem = _integer(command.threshold, MONITOR_THRESHOLD_MIN, MONITOR_THRESHOLD_MAX)
    if problem is not None:
        return "threshold", problem
    return None


def _delete_monitor_violation(command: DeleteMonitor) -> Violation | None:
    if (problem := entity_id_problem(command.monitor_id)) is not None:
        return "monitor_id", problem
    return None


def _posting_violation(index: int, posting: object) -> Violation | None:
    """One posting's fields in declared order, named ``postings[index].<field>``."""
    if not isinstance(posting, Posting):
        return f"postings[{index}]", f"must be a Posting, got {type(posting).__name__}"
    checks = (
        ("debit_account_id", entity_id_problem(posting.debit_account_id)),
        ("credit_account_id", entity_id_problem(posting.credit_account_id)),
        ("amount", amount_problem(posting.amount)),
        ("currency", currency_problem(posting.currency)),
    )
    for name, problem in checks:
        if problem is not None:
            return f"postings[{index}].{name}", problem
    return None


def postings_violation(postings: object) -> Violation | None:
    """The first limit a list of postings breaks: its length, then each posting in order."""
    if not isinstance(postings, tuple):
        return "postings", f"must be a tuple of postings, got {type(postings).__name__}"
    if not POSTINGS_MIN <= len(postings) <= POSTINGS_MAX:
        return "postings", f"{len(postings)} postings; {POSTINGS_MIN}..{POSTINGS_MAX} allowed"
    for index, posting in enumerate(postings):
        if (violation := _posting_violation(index, posting)) is not None:
            return violation
    return None


def _post_transaction_violation(command: PostTransaction) -> Violation | None:
    if (problem := entity_id_problem(command.transaction_id)) is not None:
        return "transaction_id", problem
    if (violation := postings_violation(command.postings)) is not None:
        return violation
    if (problem := _boolean_problem(command.pending)) is not None:
        return "pending", problem
    return _option_violation(command, command.transaction_id, "transaction")


_BODY_CHECKS: dict[type[object], Callable[..., Violation | None]] = {
    OpenAccount: _open_account_violation,
    Transfer: _transfer_violation,
    PostPending: _post_pending_violation,
    VoidPending: _void_pending_violation,
    PostTransaction: _post_transaction_violation,
    CreateMonitor: _create_monitor_violation,
    DeleteMonitor: _delete_monitor_violation,
}


def reference_first_violation(command: Command) -> Violation | None:
    """The checks above, field by field: the definition ``first_violation`` must agree with."""
    body_check = _BODY_CHECKS.get(type(command))
    if body_check is None:
        return ("command", f"{type(command).__name__} is not a command")
    return _header_violation(command) or body_check(command)


# --------------------------------------------------------------------------- generated fast path
#
# Almost every command breaks no limit. For each command type, one generated boolean expression
# says "certainly valid" from the same named limits without a call per field; when it says
# anything else, ``reference_first_violation`` runs and finds the first problem. So the fast
# path only has to be sound (True implies no violation), and a test checks it is, with
# Hypothesis, on valid commands and on commands breaking every limit.

# Tenant ids, account ids and currencies repeat from command to command: the ones found valid
# are remembered (a bounded memo of a pure check), so a repeat costs a set lookup, not a regex.
KNOWN_VALID_CACHE_SIZE_MAX: Final = 65_536


class _KnownValid:
    """Strings that passed one check; ``known(value)`` answers from the set or runs the check."""

    __slots__ = ("check", "seen")

    def __init__(self, check: Callable[[str], bool]) -> None:
        self.check = check
        self.seen: set[str] = set()

    def known(self, value: str) -> bool:
        if value in self.seen:
            return True
        if not self.check(value):
            return False
        if len(self.seen) >= KNOWN_VALID_CACHE_SIZE_MAX:
            self.seen.clear()
        self.seen.add(value)
        return True


_KNOWN_TENANT_IDS: Final = _KnownValid(lambda value: tenant_id_problem(value) is None)
_KNOWN_ACCOUNT_IDS: Final = _KnownValid(lambda value: entity_id_problem(value) is None)
_KNOWN_CURRENCIES: Final = _KnownValid(lambda value: currency_problem(value) is None)

# One expression template per kind of field; ``{v}`` is the field's value (``known_*`` only
# ever see an exact ``str``).
_FAST_RULES: Final[dict[str, str]] = {
    "tenant_id": "type({v}) is str and ({v} in KNOWN_TENANT_IDS or known_tenant_id({v}))",
    "account_id": "type({v}) is str and ({v} in KNOWN_ACCOUNT_IDS or known_account_id({v}))",
    # IDEMPOTENCY_KEY_PATTERN without the regex: ASCII, printable (0x20-0x7E) and no space is
    # exactly 0x21-0x7E (three C string methods, half the match's time; a test checks it).
    "idempotency_key": "type({v}) is str and 0 < len({v}) <= IDEMPOTENCY_KEY_LENGTH_MAX"
    " and {v}.isascii() and {v}.isprintable() and ' ' not in {v}",
    "entity_id": "type({v}) is str and 0 < len({v}) <= ENTITY_ID_LENGTH_MAX"
    " and ENTITY_ID_MATCH({v}) is not None",
    "timestamp_us": "type({v}) is int and TIMESTAMP_US_MIN <= {v} <= TIMESTAMP_US_MAX",
    "metadata": "(not {v} or metadata_problem({v}) is None)",
    "currency": "type({v}) is str and ({v} in KNOWN_CURRENCIES or known_currency({v}))",
    "amount": "type({v}) is int and AMOUNT_MIN <= {v} <= AMOUNT_MAX",
    "optional_amount": "({v} is None or (type({v}) is int and AMOUNT_MIN <= {v} <= AMOUNT_MAX))",
    "asset_scale": "type({v}) is int and ASSET_SCALE_MIN <= {v} <= ASSET_SCALE_MAX",
    "false": "{v} is False",
    "boolean": "({v} is True or {v} is False)",
    "none": "{v} is None",
    "pending_timeout_s": "({v} is None or (command.pending is True and type({v}) is int"
    " and PENDING_TIMEOUT_S_MIN <= {v} <= PENDING_TIMEOUT_S_MAX))",
    "postings": "postings_certainly_valid({v})",
    "monitor_field": "{v} in MONITOR_FIELDS",
    "monitor_operator": "{v} in MONITOR_OPERATORS",
    "monitor_threshold": "type({v}) is int"
    " and MONITOR_THRESHOLD_MIN <= {v} <= MONITOR_THRESHOLD_MAX",
}
_HEADER_RULES: Final = (
    ("tenant_id", "tenant_id"),
    ("idempotency_key", "idempotency_key"),
    ("submitted_at_us", "timestamp_us"),
    ("metadata", "metadata"),
)
# The common shape of each type; anything else (flags, overdraft, reversals) takes the reference.
_FAST_BODY_RULES: Final[dict[type[object], tuple[tuple[str, str], ...]]] = {
    OpenAccount: (
        ("account_id", "account_id"),
        ("currency", "currency"),
        ("asset_scale", "asset_scale"),
        ("debits_must_not_exceed_credits", "boolean"),
        ("credits_must_not_exceed_debits", "false"),
        ("overdraft_limit", "none"),
    ),
    Transfer: (
        ("transfer_id", "entity_id"),
        ("debit_account_id", "account_id"),
        ("credit_account_id", "account_id"),
        ("amount", "amount"),
        ("currency", "currency"),
        ("pending", "boolean"),
        ("pending_timeout_s", "pending_timeout_s"),
        ("reverses", "none"),
    ),
    PostPending: (("transfer_id", "entity_id"), ("amount", "optional_amount")),
    VoidPending: (("transfer_id", "entity_id"),),
    PostTransaction: (
        ("transaction_id", "entity_id"),
        ("postings", "postings"),
        ("pending", "boolean"),
        ("pending_timeout_s", "pending_timeout_s"),
        ("reverses", "none"),
    ),
    CreateMonitor: (
        ("monitor_id", "entity_id"),
        ("account_id", "account_id"),
        ("field", "monitor_field"),
        ("operator", "monitor_operator"),
        ("threshold", "monitor_threshold"),
    ),
    DeleteMonitor: (("monitor_id", "entity_id"),),
}


def _postings_certainly_valid(postings: object) -> bool:
    """A PostTransaction's postings break no limit (the fast path's one loop)."""
    if type(postings) is not tuple or not POSTINGS_MIN <= len(postings) <= POSTINGS_MAX:
        return False
    for posting in postings:
        if type(posting) is not Posting:
            return False
        debit, credit = posting.debit_account_id, posting.credit_account_id
        amount, currency = posting.amount, posting.currency
        if not (
            type(debit) is str
            and _KNOWN_ACCOUNT_IDS.known(debit)
            and type(credit) is str
            and _KNOWN_ACCOUNT_IDS.known(credit)
            and type(amount) is int
            and AMOUNT_MIN <= amount <= AMOUNT_MAX
            and type(currency) is str
            and _KNOWN_CURRENCIES.known(currency)
        ):
            return False
    return True


_FAST_NAMESPACE: Final[dict[str, object]] = {
    "KNOWN_TENANT_IDS": _KNOWN_TENANT_IDS.seen,
    "known_tenant_id": _KNOWN_TENANT_IDS.known,
    "KNOWN_ACCOUNT_IDS": _KNOWN_ACCOUNT_IDS.seen,
    "known_account_id": _KNOWN_ACCOUNT_IDS.known,
    "KNOWN_CURRENCIES": _KNOWN_CURRENCIES.seen,
    "known_currency": _KNOWN_CURRENCIES.known,
    "IDEMPOTENCY_KEY_LENGTH_MAX": IDEMPOTENCY_KEY_LENGTH_MAX,
    "ENTITY_ID_LENGTH_MAX": ENTITY_ID_LENGTH_MAX,
    "ENTITY_ID_MATCH": ENTITY_ID_PATTERN.fullmatch,
    "TIMESTAMP_US_MIN": TIMESTAMP_US_MIN,
    "TIMESTAMP_US_MAX": TIMESTAMP_US_MAX,
    "metadata_problem": metadata_problem,
    "AMOUNT_MIN": AMOUNT_MIN,
    "AMOUNT_MAX": AMOUNT_MAX,
    "ASSET_SCALE_MIN": ASSET_SCALE_MIN,
    "ASSET_SCALE_MAX": ASSET_SCALE_MAX,
    "PENDING_TIMEOUT_S_MIN": PENDING_TIMEOUT_S_MIN,
    "PENDING_TIMEOUT_S_MAX": PENDING_TIMEOUT_S_MAX,
    "postings_certainly_valid": _postings_certainly_valid,
    "MONITOR_FIELDS": MONITOR_FIELDS,
    "MONITOR_OPERATORS": MONITOR_OPERATORS,
    "MONITOR_THRESHOLD_MIN": MONITOR_THRESHOLD_MIN,
    "MONITOR_THRESHOLD_MAX": MONITOR_THRESHOLD_MAX,
}


def fast_check_source(command_type: type[object]) -> str:
    """The generated ``is_certainly_valid(command)`` of one command type (shown by tests)."""
    rules = (*_HEADER_RULES, *_FAST_BODY_RULES[command_type])
    conditions = "\n        and ".join(
        _FAST_RULES[kind].format(v=f"command.{name}") for name, kind in rules
    )
    return f"def is_certainly_valid(command):\n    return (\n        {conditions}\n    )\n"


def _fast_check(command_type: type[object]) -> Callable[[Command], bool]:
    namespace = dict(_FAST_NAMESPACE)
    source = fast_check_source(command_type)
    check: Callable[[Command], bool] = compile_generated(
        source,
        "is_certainly_valid",
        namespace,
        f"schemas.limits.is_certainly_valid.{command_type.__name__}",
    )
    return check


FAST_CHECKS: Final[dict[type[object], Callable[[Command], bool]]] = {
    command_type: _fast_check(command_type) for command_type in _BODY_CHECKS
}


def first_violation(command: Command) -> Violation | None:
    """The first limit ``command`` breaks as ``(field name, reason)``, or ``None`` if none.

    Header fields are checked first, then the command's own fields in declared order
    (``reference_first_violation``; a generated check answers first for valid commands).
    """
    fast_check = FAST_CHECKS.get(type(command))
    if fast_check is not None and fast_check(command):
        return None
    return reference_first_violation(command)
