"""Generated hot-path code agrees with the readable definitions it stands in for.

- ``schemas.limits.first_violation`` (a generated "certainly valid" check per command type, then
  the reference) equals ``reference_first_violation`` on valid commands and on commands breaking
  every limit, and the generated check is sound (it never passes a command with a violation);
- ``ledger.command_fingerprint`` (generated per type) equals
  ``reference_command_fingerprint``, and both equal fingerprints pinned before the change;
- the typed builders (``schemas._generated_records``, ``ledger._generated_records``, written by
  scripts/generate_record_code.py) give the same records as calling the classes (fields,
  defaults, frozen, required keywords).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Final

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ledger
from ledger._generated_records import BUILDERS as DECISION_BUILDERS
from schemas import limits
from schemas._generated_records import (
    BUILDERS,
    BUILDERS_WITH_HEADER,
    EventHeaderValues,
    new_post_pending,
    new_tenant_head,
)
from schemas.model import (
    INT64_MAX,
    RECORD_TYPES,
    Command,
    EventHeader,
    OpenAccount,
    PostPending,
    TenantHead,
    Transfer,
    VoidPending,
)
from tests.unit.contract_strategies import commands, events, outcomes, states

EXAMPLES = settings(max_examples=400, deadline=None, derandomize=True)

# Values that break (or nearly break) some limit, for any field: wrong types, empty, too long,
# characters outside every set, out-of-range numbers, bools where numbers go, unsorted metadata.
_BAD_VALUES: tuple[object, ...] = (
    None,
    "",
    " ",
    "a/b",
    "x" * 65,
    "x" * 129,
    "k" * 256,
    "has space",
    "usd",
    "US",
    "USD",
    "é",
    "-lead",
    0,
    -1,
    1,
    19,
    INT64_MAX,
    INT64_MAX + 1,
    limits.PENDING_TIMEOUT_S_MAX + 1,
    limits.TIMESTAMP_US_MAX + 1,
    True,
    False,
    1.5,
    b"bytes",
    (),
    (("b", "1"), ("a", "2")),
    (("k", "line\nbreak"),),
    (("k", "v" * 513),),
    (("bad key", "v"),),
    tuple((f"k{index:02d}", "v") for index in range(17)),
    (("k", "v"),),
    ("not", "pairs"),
)


@st.composite
def commands_with_one_field_changed(draw: st.DrawFn) -> Command:
    command = draw(commands)
    names = [field.name for field in dataclasses.fields(command)]  # type: ignore[arg-type]
    changes = {
        name: draw(st.sampled_from(_BAD_VALUES))
        for name in draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True))
    }
    return dataclasses.replace(command, **changes)


@EXAMPLES
@given(st.one_of(commands, commands_with_one_field_changed()))
def test_first_violation_equals_the_reference(command: Command) -> None:
    expected = limits.reference_first_violation(command)
    assert limits.first_violation(command) == expected
    if limits.FAST_CHECKS[type(command)](command):
        assert expected is None, "the generated check passed a command that breaks a limit"


# Idempotency keys around the edges of IDEMPOTENCY_KEY_PATTERN (0x21-0x7E, 1-255 characters):
# the generated check tests them with string methods, not the pattern.
_IDEMPOTENCY_KEYS: Final = st.one_of(
    st.sampled_from(
        (
            "",
            " ",
            "!",
            "~",
            "\x20a",
            "a\x20",
            "\x7f",
            "\x00",
            "\t",
            "a\n",
            "é",
            "\u00a0",
            "\u2028",
            "\ud800",
            "k" * limits.IDEMPOTENCY_KEY_LENGTH_MAX,
            "k" * (limits.IDEMPOTENCY_KEY_LENGTH_MAX + 1),
        )
    ),
    st.text(max_size=limits.IDEMPOTENCY_KEY_LENGTH_MAX + 2),
    st.text(st.characters(max_codepoint=0x80), max_size=limits.IDEMPOTENCY_KEY_LENGTH_MAX + 2),
    st.from_regex(r"[\x21-\x7e]{1,256}", fullmatch=True),
)


@EXAMPLES
@given(commands, _IDEMPOTENCY_KEYS)
def test_fast_check_takes_exactly_the_idempotency_keys_the_pattern_takes(
    command: Command, key: str
) -> None:
    changed = dataclasses.replace(command, idempotency_key=key)
    key_is_valid = limits.idempotency_key_problem(key) is None
    assert limits.first_violation(changed) == limits.reference_first_violation(changed)
    fast_check = limits.FAST_CHECKS[type(command)]
    if fast_check(command):  # every other field certainly valid: the key alone decides
        assert fast_check(changed) == key_is_valid, key


def test_every_violation_kind_reaches_the_reference() -> None:
    """Each kind of broken limit, one at a time, gives the reference's answer (not None)."""
    transfer = Transfer(
        tenant_id="acme",
        idempotency_key="k-1",
        submitted_at_us=0,
        transfer_id="t-1",
        debit_account_id="a",
        credit_account_id="b",
        amount=5,
        currency="USD",
    )
    account = OpenAccount(
        tenant_id="acme", idempotency_key="k", submitted_at_us=0, account_id="a", currency="USD",
        asset_scale=2,
    )  # fmt: skip
    post = PostPending(tenant_id="acme", idempotency_key="k", submitted_at_us=0, transfer_id="t")
    void = VoidPending(tenant_id="acme", idempotency_key="k", submitted_at_us=0, transfer_id="t")
    broken: list[tuple[Command, dict[str, Any]]] = [
        (transfer, {"tenant_id": "a/b"}),
        (transfer, {"idempotency_key": "has space"}),
        (transfer, {"submitted_at_us": -1}),
        (transfer, {"metadata": (("b", "1"), ("a", "2"))}),
        (transfer, {"transfer_id": ""}),
        (transfer, {"debit_account_id": "x" * 129}),
        (transfer, {"credit_account_id": "/x"}),
        (transfer, {"amount": 0}),
        (transfer, {"amount": True}),
        (transfer, {"currency": "usd"}),
        (transfer, {"pending": 1}),
        (transfer, {"pending_timeout_s": 10}),
        (transfer, {"pending": True, "pending_timeout_s": 0}),
        (transfer, {"pending": True, "reverses": "t-0"}),
        (transfer, {"reverses": "t-1"}),
        (account, {"account_id": "a b"}),
        (account, {"currency": "1AB"}),
        (account, {"asset_scale": 19}),
        (account, {"debits_must_not_exceed_credits": True, "credits_must_not_exceed_debits": True}),
        (account, {"overdraft_limit": 10}),
        (post, {"transfer_id": "t 1"}),
        (post, {"amount": 0}),
        (void, {"transfer_id": ""}),
    ]
    for command, changes in broken:
        changed = dataclasses.replace(command, **changes)
        assert not limits.FAST_CHECKS[type(changed)](changed), changes
        violation = limits.first_violation(changed)
        assert violation is not None and violation == limits.reference_first_violation(changed)


@pytest.mark.parametrize("command_type", [OpenAccount, Transfer, PostPending, VoidPending])
def test_fast_check_source_names_every_header_field(command_type: type[object]) -> None:
    source = limits.fast_check_source(command_type)
    for name in ("tenant_id", "idempotency_key", "submitted_at_us", "metadata"):
        assert f"command.{name}" in source


# --------------------------------------------------------------------------- fingerprints

_PINNED_COMMANDS: tuple[Command, ...] = (
    OpenAccount(
        tenant_id="acme", idempotency_key="open-1", submitted_at_us=0, account_id="cash",
        currency="USD", asset_scale=2,
    ),
    OpenAccount(
        tenant_id="acme", idempotency_key="open-2", submitted_at_us=5, account_id="card",
        currency="EUR", asset_scale=2, debits_must_not_exceed_credits=True, overdraft_limit=500,
        metadata=(("a", "1"),),
    ),
    Transfer(
        tenant_id="acme", idempotency_key="order-17", submitted_at_us=1_700_000_000_000_000,
        transfer_id="t-17", debit_account_id="cash", credit_account_id="sales", amount=1250,
        currency="USD",
    ),
    Transfer(
        tenant_id="acme", idempotency_key="order-18", submitted_at_us=1, transfer_id="t-18",
        debit_account_id="cash", credit_account_id="sales", amount=7, currency="USD",
        pending=True, pending_timeout_s=60, metadata=(("channel", "web"), ("z", "é\u00ff")),
    ),
    Transfer(
        tenant_id="acme", idempotency_key="order-19", submitted_at_us=1, transfer_id="t-19",
        debit_account_id="sales", credit_account_id="cash", amount=7, currency="USD",
        reverses="t-17",
    ),
    PostPending(tenant_id="acme", idempotency_key="post-1", submitted_at_us=2, transfer_id="t-18"),
    PostPending(
        tenant_id="acme", idempotency_key="post-2", submitted_at_us=2, transfer_id="t-18", amount=3
    ),
    VoidPending(tenant_id="acme", idempotency_key="void-1", submitted_at_us=3, transfer_id="t-18"),
)  # fmt: skip
# (fingerprint, field fingerprints) as the loop over fields computed them before generation
_PINNED_FINGERPRINTS: tuple[tuple[str, str], ...] = (
    (
        "c0796d51ea14394a75a1f5bff6bc74a003ed3bf69aea597012645b0fc663cf74",
        "72dfcfb0c470ac255c6d72b2f9a87a5f8286de0926dfa699626d01cde512b039"
        "f67ab10ad4e4c531f67ab10ad4e4c5318ce86a6ae65d3692",
    ),
    (
        "f189f60cb928667f2270abf4b82ad7aa45beb9bee3410b02cd17343d1cdddc55",
        "d18b650bc1b61d1d3acba3c7dec9db0d351d2f20a3c42368626d01cde512b039"
        "e632b7095b0bf32cf67ab10ad4e4c531a642eeeac38f99e3",
    ),
    (
        "c6e49b85d913bfff001535a2e629fed2c71091fde601b8dc5275af003087d7a0",
        "72dfcfb0c470ac253cdddab5167c995b5c6d72b2f9a87a5f234006cda083e238"
        "2d41020712f7e3478286de0926dfa699f67ab10ad4e4c5318ce86a6ae65d3692"
        "8ce86a6ae65d3692",
    ),
    (
        "b38e0beaf0db4dd53a110d1f6867c1c0d2f188ceef637181a97849aac582464e",
        "772736cb94573f41a19c041f98c481bd5c6d72b2f9a87a5f234006cda083e238"
        "4d505b0a417894cb8286de0926dfa699e632b7095b0bf32cb3263cf5eb25f5e0"
        "8ce86a6ae65d3692",
    ),
    (
        "c76886e811ab166450e382b5ca2c2eb24b7f4b3d6958cdc359619191c61d790d",
        "72dfcfb0c470ac258d91b0d864a48008234006cda083e2385c6d72b2f9a87a5f"
        "4d505b0a417894cb8286de0926dfa699f67ab10ad4e4c5318ce86a6ae65d3692"
        "3cdddab5167c995b",
    ),
    (
        "296ed86efb05d8dcb7dfaf6e46ac41fa8907dff4d832724793afb5eb68fb290d",
        "72dfcfb0c470ac25a19c041f98c481bd8ce86a6ae65d3692",
    ),
    (
        "faa9f6e288908b1eff39ff0db3202aa690c015023976aab2d6039b289d84ef90",
        "72dfcfb0c470ac25a19c041f98c481bd09ab280b762f8ad1",
    ),
    (
        "a8b3d3ea645549b00e0b020d7a729824851730f4eb464e0cd608c15b6e38bb8c",
        "72dfcfb0c470ac25a19c041f98c481bd",
    ),
)


@pytest.mark.parametrize(
    ("command", "pinned"), list(zip(_PINNED_COMMANDS, _PINNED_FINGERPRINTS, strict=True))
)
def test_fingerprints_are_pinned(command: Command, pinned: tuple[str, str]) -> None:
    for fingerprint in (ledger.command_fingerprint, ledger.reference_command_fingerprint):
        overall, fields = fingerprint(command)
        assert (overall.hex(), fields.hex()) == pinned


@EXAMPLES
@given(st.one_of(commands, commands_with_one_field_changed()))
def test_generated_fingerprint_equals_the_reference(command: Command) -> None:
    assert ledger.command_fingerprint(command) == ledger.reference_command_fingerprint(command)


def test_fingerprint_source_covers_every_fingerprinted_field() -> None:
    for command_type, names in ledger.FINGERPRINT_FIELDS.items():
        source = ledger.fingerprint_source(command_type)
        assert all(f"command.{name}" in source for name in names)


# --------------------------------------------------------------------------- record construction


def _fields_of(record: Any) -> dict[str, Any]:
    return {field.name: getattr(record, field.name) for field in dataclasses.fields(record)}


@EXAMPLES
@given(st.one_of(commands, events, outcomes, states))
def test_builders_store_every_field(record: Any) -> None:
    values = _fields_of(record)
    built = BUILDERS[type(record)](**values)
    called = type(record)(**values)
    assert type(built) is type(record) is type(called)
    assert _fields_of(built) == _fields_of(called) == values
    assert built == called == record and hash(built) == hash(record)


_HEADER_NAMES: Final = frozenset(field.name for field in dataclasses.fields(EventHeader))


@EXAMPLES
@given(events)
def test_event_builders_with_a_header_store_every_field(event: Any) -> None:
    """``new_<event>_with_header`` (decision 0145) gives the record the class gives."""
    values = _fields_of(event)
    header = EventHeaderValues(**{n: v for n, v in values.items() if n in _HEADER_NAMES})
    own = {name: value for name, value in values.items() if name not in _HEADER_NAMES}
    built = BUILDERS_WITH_HEADER[type(event)](header, **own)
    assert type(built) is type(event)
    assert _fields_of(built) == values
    assert built == event and hash(built) == hash(event)


@pytest.mark.parametrize("record_type", RECORD_TYPES)
def test_records_stay_frozen_and_keyword_only(record_type: type[Any]) -> None:
    required = [
        field.name
        for field in dataclasses.fields(record_type)
        if field.default is dataclasses.MISSING
    ]
    with pytest.raises(TypeError, match="required keyword-only"):
        record_type()
    with pytest.raises(TypeError, match="required keyword-only"):
        BUILDERS[record_type]()
    with pytest.raises(TypeError):
        record_type(*([None] * len(required)))
    head = TenantHead(tenant_id="t", last_sequence=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        head.last_sequence = 2  # type: ignore[misc]


def test_defaults_are_the_declared_ones() -> None:
    for build in (TenantHead, new_tenant_head):
        head = build(tenant_id="t", last_sequence=1)
        assert head.last_hash == bytes(32)
    post = new_post_pending(tenant_id="a", idempotency_key="k", submitted_at_us=0, transfer_id="t")
    assert post.amount is None and post.metadata == ()


def test_every_record_and_decision_type_has_a_builder() -> None:
    assert set(BUILDERS) == set(RECORD_TYPES)
    assert set(BUILDERS_WITH_HEADER) == {
        record_type for record_type in RECORD_TYPES if issubclass(record_type, EventHeader)
    }
    for decision_type, build in DECISION_BUILDERS.items():
        required = [
            field.name
            for field in dataclasses.fields(decision_type)
            if field.default is dataclasses.MISSING
        ]
        with pytest.raises(TypeError, match="required keyword-only"):
            build()
        values = {name: () for name in required}
        assert _fields_of(build(**values)) == _fields_of(decision_type(**values))
