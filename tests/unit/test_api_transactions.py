"""``POST /v1/transactions`` (issue 16 phase 4), its pure parts: the strict body, the command it
becomes, problems naming ``postings[i].<member>``, key reuse naming the posting field, and the
OpenAPI entry built from the same body type."""

from __future__ import annotations

import json

import pytest

from api.app import ROUTES, resource_path
from api.bodies import TransactionBody, check_limits, decode_body, to_command
from api.gateway import check_same_command
from api.openapi import build_openapi
from api.problems import ApiProblemError
from ledger import command_fingerprint
from schemas.model import Outcome, OutcomeStatus, Posting, PostTransaction

POSTINGS = [
    {
        "debit_account_id": "card",
        "credit_account_id": "merchant",
        "amount": 9710,
        "currency": "USD",
    },
    {"debit_account_id": "card", "credit_account_id": "platform", "amount": 260, "currency": "USD"},
    {"debit_account_id": "card", "credit_account_id": "network", "amount": 30, "currency": "USD"},
]


def raw_body(**changes: object) -> bytes:
    document: dict[str, object] = {
        "transaction_id": "pay-1",
        "postings": POSTINGS,
        "metadata": {"order": "A-17"},
    }
    return json.dumps(document | changes).encode()


def command_of(raw: bytes, key: str = "k-1") -> PostTransaction:
    body = decode_body(TransactionBody, raw)
    made = to_command(body, tenant_id="acme", idempotency_key=key, submitted_at_us=1)
    assert isinstance(made, PostTransaction)
    return made


def test_a_transaction_body_becomes_the_command_with_every_posting_in_order() -> None:
    made = command_of(raw_body())
    assert (made.tenant_id, made.idempotency_key, made.transaction_id) == ("acme", "k-1", "pay-1")
    assert made.postings[0] == Posting(
        debit_account_id="card", credit_account_id="merchant", amount=9710, currency="USD"
    )
    assert [posting.amount for posting in made.postings] == [9710, 260, 30]
    assert made.metadata == (("order", "A-17"),) and not made.pending
    check_limits(made)
    assert resource_path(decode_body(TransactionBody, raw_body()), None) == (
        "/v1/transactions/pay-1"
    )


def broken_posting(index: int, **changes: object) -> list[dict[str, object]]:
    postings: list[dict[str, object]] = [dict(posting) for posting in POSTINGS]
    postings[index] = postings[index] | changes
    return postings


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (raw_body(postings=broken_posting(2, amount=1.5)), "postings[2].amount"),
        (raw_body(postings=broken_posting(1, amount="260")), "postings[1].amount"),
        (raw_body(postings=broken_posting(0, currency=None)), "postings[0].currency"),
        (raw_body(postings=broken_posting(2, memo="x")), "postings[2].memo"),
        (
            raw_body(postings=[*POSTINGS, {"debit_account_id": "card"}]),
            "postings[3].credit_account_id",
        ),
        (raw_body(postings={"0": POSTINGS[0]}), "postings"),
        (raw_body(postings=[*POSTINGS, 7]), "postings[3]"),
        (raw_body(tenant_id="other"), "tenant_id"),
        (b'{"postings": []}', "transaction_id"),
    ],
)
def test_a_malformed_transaction_body_is_a_400_naming_the_member(raw: bytes, field: str) -> None:
    with pytest.raises(ApiProblemError) as caught:
        decode_body(TransactionBody, raw)
    assert caught.value.kind.status == 400
    assert caught.value.extensions.get("field") == field


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (raw_body(postings=[*POSTINGS, broken_posting(0, amount=0)[0]]), "postings[3].amount"),
        (
            raw_body(postings=broken_posting(1, credit_account_id="a/b")),
            "postings[1].credit_account_id",
        ),
        (raw_body(postings=broken_posting(2, currency="usd")), "postings[2].currency"),
        (raw_body(postings=[]), "postings"),
        (raw_body(postings=POSTINGS * 22), "postings"),  # 66 > postings_max
        (raw_body(pending_timeout_s=60), "pending_timeout_s"),
        (raw_body(reverses="pay-1"), "reverses"),
    ],
)
def test_a_transaction_breaking_a_limit_is_a_422_naming_the_field(raw: bytes, field: str) -> None:
    with pytest.raises(ApiProblemError) as caught:
        check_limits(command_of(raw))
    assert caught.value.kind.status == 422
    assert caught.value.extensions == {"field": field}


def test_a_reused_key_with_another_posting_is_a_409_naming_the_posting_field() -> None:
    stored_command = command_of(raw_body())
    fingerprint, fields = command_fingerprint(stored_command)
    stored = Outcome(
        tenant_id="acme",
        idempotency_key="k-1",
        command_type="PostTransaction",
        fingerprint=fingerprint,
        field_fingerprints=fields,
        status=OutcomeStatus.ACCEPTED,
        event_sequences=(3,),
        decided_at_us=10,
    )
    check_same_command(stored, command_of(raw_body()))  # a retry: no error
    with pytest.raises(ApiProblemError) as caught:
        check_same_command(stored, command_of(raw_body(postings=broken_posting(2, amount=31))))
    assert caught.value.kind.status == 409
    assert caught.value.extensions["field"] == "postings[2].amount"


def test_the_route_and_its_openapi_entry_exist() -> None:
    assert any(
        route.path == "/v1/transactions" and "POST" in (route.methods or set()) for route in ROUTES
    )
    document = build_openapi()
    operation = document["paths"]["/v1/transactions"]["post"]
    reference = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert reference.endswith("/TransactionBody")
    schemas = document["components"]["schemas"]
    assert schemas["TransactionBody"]["properties"]["postings"]["type"] == "array"
    assert set(schemas["PostingBody"]["required"]) == {
        "debit_account_id",
        "credit_account_id",
        "amount",
        "currency",
    }
