"""Hypothesis strategies for valid contract values (commands, events, outcomes, state records).

The records' shapes that ``wire_strategies`` draws too (balances, account, transfer and tenant
state) are built here once from ``Leaves``, what each kind of field draws: ``CONTRACT`` for
valid values; ``wire_strategies.WIRE`` for anything the Avro schemas carry.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

from schemas import limits
from schemas.model import (
    HASH_BYTES,
    INT64_MAX,
    INT64_MIN,
    AccountBalance,
    AccountOpened,
    AccountState,
    Command,
    CreateMonitor,
    DeleteMonitor,
    Event,
    MonitorCleared,
    MonitorCreated,
    MonitorDeleted,
    MonitorState,
    MonitorTriggered,
    Notification,
    OpenAccount,
    Outcome,
    OutcomeStatus,
    PendingExpired,
    PendingPosted,
    PendingVoided,
    Posting,
    PostPending,
    PostTransaction,
    RejectReason,
    StateRecord,
    TenantHead,
    TransactionPending,
    TransactionPendingExpired,
    TransactionPendingPosted,
    TransactionPendingVoided,
    TransactionPosted,
    TransactionState,
    Transfer,
    TransferPending,
    TransferPosted,
    TransferState,
    TransferStatus,
    VoidPending,
)

ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
tenant_ids = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(ALNUM),
    st.text(ALNUM + "._-", max_size=limits.TENANT_ID_LENGTH_MAX - 1),
)
entity_ids = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(ALNUM),
    st.text(ALNUM + "._:@-", max_size=40),
)
idempotency_keys = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E),
    min_size=1,
    max_size=limits.IDEMPOTENCY_KEY_LENGTH_MAX,
)
currencies = st.from_regex(limits.CURRENCY_PATTERN, fullmatch=True)
amounts = st.integers(limits.AMOUNT_MIN, limits.AMOUNT_MAX)
timestamps = st.integers(limits.TIMESTAMP_US_MIN, limits.TIMESTAMP_US_MAX)
metadata_values = st.dictionaries(
    st.text(ALNUM + "._-", min_size=1, max_size=limits.METADATA_KEY_LENGTH_MAX),
    st.text(
        st.characters(blacklist_categories=("Cc", "Cs")),
        max_size=limits.METADATA_VALUE_LENGTH_MAX,
    ),
    max_size=limits.METADATA_ENTRIES_MAX,
).map(lambda mapping: tuple(sorted(mapping.items())))
headers = st.fixed_dictionaries(
    {
        "tenant_id": tenant_ids,
        "idempotency_key": idempotency_keys,
        "submitted_at_us": timestamps,
        "metadata": metadata_values,
    }
)


@st.composite
def open_accounts(draw: st.DrawFn) -> OpenAccount:
    flag = draw(st.sampled_from(["none", "debits", "credits"]))
    overdraft = draw(st.none() | st.integers(0, INT64_MAX)) if flag != "none" else None
    return OpenAccount(
        **draw(headers),
        account_id=draw(entity_ids),
        currency=draw(currencies),
        asset_scale=draw(st.integers(limits.ASSET_SCALE_MIN, limits.ASSET_SCALE_MAX)),
        debits_must_not_exceed_credits=flag == "debits",
        credits_must_not_exceed_debits=flag == "credits",
        overdraft_limit=overdraft,
    )


@st.composite
def transfers(draw: st.DrawFn) -> Transfer:
    pending = draw(st.booleans())
    timeout = st.integers(limits.PENDING_TIMEOUT_S_MIN, limits.PENDING_TIMEOUT_S_MAX)
    transfer_id = draw(entity_ids)
    reverses = None if pending else draw(st.none() | entity_ids.filter(lambda i: i != transfer_id))
    return Transfer(
        **draw(headers),
        transfer_id=transfer_id,
        debit_account_id=draw(entity_ids),
        credit_account_id=draw(entity_ids),
        amount=draw(amounts),
        currency=draw(currencies),
        pending=pending,
        pending_timeout_s=draw(st.none() | timeout) if pending else None,
        reverses=reverses,
    )


post_pendings = st.builds(
    lambda header, transfer_id, amount: PostPending(
        **header, transfer_id=transfer_id, amount=amount
    ),
    headers,
    entity_ids,
    st.none() | amounts,
)
void_pendings = st.builds(
    lambda header, transfer_id: VoidPending(**header, transfer_id=transfer_id), headers, entity_ids
)


postings = st.builds(
    Posting,
    debit_account_id=entity_ids,
    credit_account_id=entity_ids,
    amount=amounts,
    currency=currencies,
)
posting_lists = st.lists(postings, min_size=limits.POSTINGS_MIN, max_size=5).map(tuple)


@st.composite
def post_transactions(draw: st.DrawFn) -> PostTransaction:
    pending = draw(st.booleans())
    timeout = st.integers(limits.PENDING_TIMEOUT_S_MIN, limits.PENDING_TIMEOUT_S_MAX)
    transaction_id = draw(entity_ids)
    reverses = (
        None if pending else draw(st.none() | entity_ids.filter(lambda i: i != transaction_id))
    )
    return PostTransaction(
        **draw(headers),
        transaction_id=transaction_id,
        postings=draw(posting_lists),
        pending=pending,
        pending_timeout_s=draw(st.none() | timeout) if pending else None,
        reverses=reverses,
    )


monitor_fields = st.sampled_from(limits.MONITOR_FIELDS)
monitor_operators = st.sampled_from(limits.MONITOR_OPERATORS)
create_monitors = st.builds(
    CreateMonitor,
    tenant_id=tenant_ids,
    idempotency_key=idempotency_keys,
    submitted_at_us=timestamps,
    metadata=metadata_values,
    monitor_id=entity_ids,
    account_id=entity_ids,
    field=monitor_fields,
    operator=monitor_operators,
    threshold=st.integers(limits.MONITOR_THRESHOLD_MIN, limits.MONITOR_THRESHOLD_MAX),
)
delete_monitors = st.builds(
    DeleteMonitor,
    tenant_id=tenant_ids,
    idempotency_key=idempotency_keys,
    submitted_at_us=timestamps,
    metadata=metadata_values,
    monitor_id=entity_ids,
)
commands: st.SearchStrategy[Command] = st.one_of(
    open_accounts(),
    transfers(),
    post_pendings,
    void_pendings,
    post_transactions(),
    create_monitors,
    delete_monitors,
)

int64 = st.integers(INT64_MIN, INT64_MAX)
hashes = st.binary(min_size=HASH_BYTES, max_size=HASH_BYTES)


@dataclass(frozen=True, slots=True)
class Leaves:
    """What each kind of field of the shared record shapes draws."""

    tenant_ids: st.SearchStrategy[str]
    entity_ids: st.SearchStrategy[str]  # account, transfer ids
    currencies: st.SearchStrategy[str]
    amounts: st.SearchStrategy[int]
    counters: st.SearchStrategy[int]  # balances' counters, overdraft limits: signed
    sequences: st.SearchStrategy[int]  # last sequences, amounts posted and reversed
    timestamps: st.SearchStrategy[int]  # expiries, effective times
    asset_scales: st.SearchStrategy[int]
    hashes: st.SearchStrategy[bytes]

    @classmethod
    def by_avro_type(
        cls,
        strings: st.SearchStrategy[str],
        longs: st.SearchStrategy[int],
        ints: st.SearchStrategy[int],
        fixed_hashes: st.SearchStrategy[bytes],
    ) -> Leaves:
        """Each field drawn by its Avro type alone: what the schema carries, valid or not."""
        return cls(strings, strings, strings, longs, longs, longs, longs, ints, fixed_hashes)


CONTRACT = Leaves(
    tenant_ids=tenant_ids,
    entity_ids=entity_ids,
    currencies=currencies,
    amounts=amounts,
    counters=int64,
    sequences=st.integers(0, INT64_MAX),
    timestamps=timestamps,
    asset_scales=st.integers(0, 18),
    hashes=hashes,
)


def balances_of(leaves: Leaves) -> st.SearchStrategy[AccountBalance]:
    return st.builds(
        AccountBalance,
        account_id=leaves.entity_ids,
        currency=leaves.currencies,
        debits_posted=leaves.counters,
        credits_posted=leaves.counters,
        debits_pending=leaves.counters,
        credits_pending=leaves.counters,
    )


def account_states_of(leaves: Leaves) -> st.SearchStrategy[AccountState]:
    return st.builds(
        AccountState,
        tenant_id=leaves.tenant_ids,
        account_id=leaves.entity_ids,
        currency=leaves.currencies,
        asset_scale=leaves.asset_scales,
        debits_must_not_exceed_credits=st.booleans(),
        credits_must_not_exceed_debits=st.booleans(),
        overdraft_limit=st.none() | leaves.counters,
        debits_posted=leaves.counters,
        credits_posted=leaves.counters,
        debits_pending=leaves.counters,
        credits_pending=leaves.counters,
        last_sequence=leaves.sequences,
    )


def transfer_states_of(leaves: Leaves) -> st.SearchStrategy[TransferState]:
    return st.builds(
        TransferState,
        tenant_id=leaves.tenant_ids,
        transfer_id=leaves.entity_ids,
        debit_account_id=leaves.entity_ids,
        credit_account_id=leaves.entity_ids,
        currency=leaves.currencies,
        amount=leaves.amounts,
        status=st.sampled_from(TransferStatus),
        amount_posted=leaves.sequences,
        amount_reversed=leaves.sequences,
        reverses=st.none() | leaves.entity_ids,
        expires_at_us=st.none() | leaves.timestamps,
        last_sequence=leaves.sequences,
    )


def tenant_heads_of(leaves: Leaves) -> st.SearchStrategy[TenantHead]:
    return st.builds(
        TenantHead,
        tenant_id=leaves.tenant_ids,
        last_sequence=leaves.sequences,
        last_hash=leaves.hashes,
        last_effective_at_us=leaves.timestamps,
    )


balances = balances_of(CONTRACT)
event_headers = st.fixed_dictionaries(
    {
        "tenant_id": tenant_ids,
        "sequence": st.integers(1, INT64_MAX),
        "event_id": st.text(max_size=80),
        "idempotency_key": st.none() | idempotency_keys,
        "effective_at_us": timestamps,
        "balances": st.lists(balances, max_size=3).map(tuple),
        "prev_hash": hashes,
        "hash": hashes,
        "metadata": metadata_values,  # since v1.4
        "actor": st.sampled_from(("", "system", "payments-gw:v1")) | st.text(max_size=80),  # v1.7
    }
)
movement = {
    "transfer_id": entity_ids,
    "debit_account_id": entity_ids,
    "credit_account_id": entity_ids,
    "amount": amounts,
    "currency": currencies,
}


def _event(event_type: type[Event], **extra: st.SearchStrategy[object]) -> st.SearchStrategy[Event]:
    return st.builds(
        lambda header, body: event_type(**header, **body),
        event_headers,
        st.fixed_dictionaries(extra),
    )


events: st.SearchStrategy[Event] = st.one_of(
    _event(
        AccountOpened,
        account_id=entity_ids,
        currency=currencies,
        asset_scale=st.integers(0, 18),
        debits_must_not_exceed_credits=st.booleans(),
        credits_must_not_exceed_debits=st.booleans(),
        overdraft_limit=st.none() | int64,
    ),
    _event(TransferPosted, **movement, reverses=st.none() | entity_ids),
    _event(TransferPending, **movement, expires_at_us=st.none() | timestamps),
    _event(PendingPosted, **movement, pending_amount=amounts),
    _event(PendingVoided, **movement),
    _event(PendingExpired, **movement),
    _event(
        TransactionPosted,
        transaction_id=entity_ids,
        postings=posting_lists,
        reverses=st.none() | entity_ids,
    ),
    _event(
        TransactionPending,
        transaction_id=entity_ids,
        postings=posting_lists,
        expires_at_us=st.none() | timestamps,
    ),
    _event(
        TransactionPendingPosted,
        transaction_id=entity_ids,
        postings=posting_lists,
        pending_amounts=st.lists(amounts, max_size=5).map(tuple),
    ),
    _event(TransactionPendingVoided, transaction_id=entity_ids, postings=posting_lists),
    _event(TransactionPendingExpired, transaction_id=entity_ids, postings=posting_lists),
    _event(
        MonitorCreated,
        monitor_id=entity_ids,
        account_id=entity_ids,
        field=monitor_fields,
        operator=monitor_operators,
        threshold=int64,
        holds=st.booleans(),
    ),
    _event(MonitorDeleted, monitor_id=entity_ids, account_id=entity_ids),
)

outcomes = st.builds(
    Outcome,
    tenant_id=tenant_ids,
    idempotency_key=idempotency_keys,
    command_type=st.sampled_from(
        [
            "OpenAccount",
            "Transfer",
            "PostPending",
            "VoidPending",
            "PostTransaction",
            "CreateMonitor",
            "DeleteMonitor",
        ]
    ),
    fingerprint=hashes,
    field_fingerprints=st.lists(st.binary(min_size=8, max_size=8), max_size=9).map(b"".join),
    status=st.sampled_from(OutcomeStatus),
    event_sequences=st.lists(st.integers(1, INT64_MAX), max_size=3).map(tuple),
    reason=st.none() | st.sampled_from(RejectReason),
    detail=st.text(max_size=100),
    decided_at_us=timestamps,
    expires_at_us=st.none() | timestamps,
)

states: st.SearchStrategy[StateRecord] = st.one_of(
    account_states_of(CONTRACT),
    transfer_states_of(CONTRACT),
    tenant_heads_of(CONTRACT),
    st.builds(
        TransactionState,
        tenant_id=tenant_ids,
        transaction_id=entity_ids,
        postings=posting_lists,
        status=st.sampled_from(TransferStatus),
        amounts_posted=st.lists(st.integers(0, INT64_MAX), max_size=5).map(tuple),
        amounts_reversed=st.lists(st.integers(0, INT64_MAX), max_size=5).map(tuple),
        reverses=st.none() | entity_ids,
        expires_at_us=st.none() | timestamps,
        last_sequence=st.integers(0, INT64_MAX),
    ),
    st.builds(
        MonitorState,
        tenant_id=tenant_ids,
        monitor_id=entity_ids,
        account_id=entity_ids,
        field=monitor_fields,
        operator=monitor_operators,
        threshold=int64,
        metadata=metadata_values,
        holds=st.booleans(),
        created_sequence=st.integers(1, INT64_MAX),
        last_sequence=st.integers(1, INT64_MAX),
    ),
)


def _notification(kind: type[Notification]) -> st.SearchStrategy[Notification]:
    return st.builds(
        kind,
        tenant_id=tenant_ids,
        notification_id=st.text(max_size=80),
        monitor_id=entity_ids,
        account_id=entity_ids,
        currency=currencies,
        field=monitor_fields,
        operator=monitor_operators,
        threshold=int64,
        value=int64,
        sequence=st.integers(1, INT64_MAX),
        event_hash=hashes,
        effective_at_us=timestamps,
        metadata=metadata_values,
    )


notifications: st.SearchStrategy[Notification] = st.one_of(
    _notification(MonitorTriggered), _notification(MonitorCleared)
)
