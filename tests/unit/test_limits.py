"""The contract's limits: every rule names its field, and valid commands pass."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given

from schemas.limits import first_violation
from schemas.model import (
    INT64_MAX,
    OpenAccount,
    Posting,
    PostPending,
    PostTransaction,
    Transfer,
    VoidPending,
)
from tests.unit.contract_strategies import commands

TRANSFER = Transfer(
    tenant_id="acme",
    idempotency_key="order-17",
    submitted_at_us=1_700_000_000_000_000,
    transfer_id="t-17",
    debit_account_id="cash",
    credit_account_id="sales",
    amount=1250,
    currency="USD",
)
ACCOUNT = OpenAccount(
    tenant_id="acme",
    idempotency_key="open-1",
    submitted_at_us=0,
    account_id="cash",
    currency="USD",
    asset_scale=2,
)


@given(commands)
def test_valid_commands_pass(command: Any) -> None:
    assert first_violation(command) is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"tenant_id": ""}, "tenant_id"),
        ({"tenant_id": "a/b"}, "tenant_id"),
        ({"tenant_id": "x" * 65}, "tenant_id"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"idempotency_key": "k" * 256}, "idempotency_key"),
        ({"idempotency_key": "has space"}, "idempotency_key"),
        ({"submitted_at_us": -1}, "submitted_at_us"),
        ({"metadata": (("b", "1"), ("a", "2"))}, "metadata"),
        ({"metadata": tuple((f"k{i:02d}", "v") for i in range(17))}, "metadata"),
        ({"metadata": (("k", "line\nbreak"),)}, "metadata"),
        ({"metadata": (("k", "v" * 513),)}, "metadata"),
        ({"transfer_id": "t 1"}, "transfer_id"),
        ({"debit_account_id": "a" * 129}, "debit_account_id"),
        ({"credit_account_id": "/x"}, "credit_account_id"),
        ({"amount": 0}, "amount"),
        ({"amount": -5}, "amount"),
        ({"amount": INT64_MAX + 1}, "amount"),
        ({"amount": True}, "amount"),
        ({"currency": "usd"}, "currency"),
        ({"currency": "US"}, "currency"),
        ({"pending_timeout_s": 10}, "pending_timeout_s"),
        ({"pending": True, "pending_timeout_s": 0}, "pending_timeout_s"),
        ({"pending": True, "reverses": "t-1"}, "reverses"),
        ({"reverses": "t-17"}, "reverses"),
    ],
)
def test_transfer_violations_name_the_field(changes: dict[str, Any], field: str) -> None:
    violation = first_violation(dataclasses.replace(TRANSFER, **changes))
    assert violation is not None
    assert violation[0] == field, violation


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"asset_scale": 19}, "asset_scale"),
        ({"asset_scale": -1}, "asset_scale"),
        (
            {"debits_must_not_exceed_credits": True, "credits_must_not_exceed_debits": True},
            "credits_must_not_exceed_debits",
        ),
        ({"overdraft_limit": 10}, "overdraft_limit"),
        ({"overdraft_limit": -1, "debits_must_not_exceed_credits": True}, "overdraft_limit"),
        ({"currency": "1AB"}, "currency"),
        # not a boolean (Hypothesis found the check crashing on int(""))
        (
            {"debits_must_not_exceed_credits": "", "overdraft_limit": 0},
            "debits_must_not_exceed_credits",
        ),
        ({"credits_must_not_exceed_debits": None}, "credits_must_not_exceed_debits"),
    ],
)
def test_open_account_violations(changes: dict[str, Any], field: str) -> None:
    violation = first_violation(dataclasses.replace(ACCOUNT, **changes))
    assert violation is not None
    assert violation[0] == field, violation


def test_overdraft_with_one_flag_is_fine() -> None:
    account = dataclasses.replace(ACCOUNT, overdraft_limit=0, credits_must_not_exceed_debits=True)
    assert first_violation(account) is None


def test_post_and_void() -> None:
    post = PostPending(tenant_id="a", idempotency_key="k", submitted_at_us=0, transfer_id="t")
    assert first_violation(post) is None
    assert first_violation(dataclasses.replace(post, amount=0)) == (
        "amount",
        "0 is outside 1..9223372036854775807",
    )
    void = VoidPending(tenant_id="a", idempotency_key="k", submitted_at_us=0, transfer_id="")
    assert first_violation(void) is not None


def test_header_is_checked_before_the_body() -> None:
    violation = first_violation(dataclasses.replace(TRANSFER, tenant_id="", amount=0))
    assert violation is not None and violation[0] == "tenant_id"


def test_not_a_command() -> None:
    assert first_violation("nope") == ("command", "str is not a command")  # type: ignore[arg-type]


def test_transfers_and_transactions_share_their_option_rules_word_for_word() -> None:
    posting = Posting(debit_account_id="cash", credit_account_id="sales", amount=1, currency="USD")
    transaction = PostTransaction(
        tenant_id="acme",
        idempotency_key="tx-1",
        submitted_at_us=0,
        transaction_id="tx-1",
        postings=(posting,),
    )
    for command, noun in ((TRANSFER, "transfer"), (transaction, "transaction")):
        own_id = "t-17" if noun == "transfer" else "tx-1"
        cases: list[tuple[dict[str, Any], tuple[str, str] | None]] = [
            ({"reverses": own_id}, ("reverses", f"a {noun} cannot reverse itself")),
            ({"reverses": "x", "pending": True}, ("reverses", "a reversal is posted at once, not pending")),  # noqa: E501
            ({"pending_timeout_s": 60}, ("pending_timeout_s", "only allowed with pending=true")),
            ({"pending_timeout_s": 60, "pending": True}, None),
        ]  # fmt: skip
        for changes, expected in cases:
            assert first_violation(dataclasses.replace(command, **changes)) == expected, changes
