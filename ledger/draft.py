"""A decision's draft: the records one decision changes, read through to the state.

``decide`` never writes to the ``LedgerState``; it builds its events and new records here and
returns them as ``StateChanges``, which ``LedgerState.stage`` writes if the caller so chooses.
"""

from __future__ import annotations

from typing import Final

from ledger._generated_records import new_state_changes
from ledger.decisions import StateChanges
from ledger.effects import balance_of
from ledger.state import LedgerState
from schemas._generated_records import EventHeaderValues, new_tenant_head
from schemas.model import (
    GENESIS_HASH,
    HASH_BYTES,
    SYSTEM_ACTOR,
    AccountState,
    CommandHeader,
    Event,
    Outcome,
    TenantHead,
    TransactionState,
    TransferState,
)

HASH_PLACEHOLDER: Final = bytes(HASH_BYTES)  # ``hash`` of an event being built (never hashed)
# ``decide`` and the fold make their records with the typed builders (``new_*``: the classes'
# keywords, about half the cost of calling the class; decision 0034).


class Draft:
    """The records one decision changes, read through to the state. Never shared."""

    __slots__ = (
        "accounts",
        "actor",
        "encoded_events",
        "events",
        "heads",
        "seal",
        "state",
        "transactions",
        "transfers",
    )

    def __init__(self, state: LedgerState, actor: str) -> None:
        self.state = state
        self.actor = actor  # who issued the decision's command (v1.7); expiries: SYSTEM_ACTOR
        self.seal = state.wire_format.seal
        self.accounts: dict[tuple[str, str], AccountState] = {}
        self.transfers: dict[tuple[str, str], TransferState] = {}
        self.transactions: dict[tuple[str, str], TransactionState] = {}
        self.heads: dict[str, TenantHead] = {}
        self.events: list[Event] = []
        self.encoded_events: list[bytes] = []

    def account(self, tenant_id: str, account_id: str) -> AccountState | None:
        key = (tenant_id, account_id)
        found = self.accounts.get(key)
        return found if found is not None else self.state._accounts.get(key)

    def transfer(self, tenant_id: str, transfer_id: str) -> TransferState | None:
        key = (tenant_id, transfer_id)
        found = self.transfers.get(key)
        return found if found is not None else self.state.transfer(tenant_id, transfer_id)

    def transaction(self, tenant_id: str, transaction_id: str) -> TransactionState | None:
        key = (tenant_id, transaction_id)
        found = self.transactions.get(key)
        return found if found is not None else self.state._transactions.get(key)

    def id_taken(self, tenant_id: str, transfer_or_transaction_id: str) -> bool:
        """Whether a transfer or a transaction has this id (they share one namespace)."""
        return (
            self.transfer(tenant_id, transfer_or_transaction_id) is not None
            or self.transaction(tenant_id, transfer_or_transaction_id) is not None
        )

    def next_link(self, tenant_id: str) -> tuple[int, bytes]:
        """(the tenant's next sequence, the hash it chains from)."""
        head = self.heads.get(tenant_id) or self.state._heads.get(tenant_id)
        if head is None:
            return 1, GENESIS_HASH
        return head.last_sequence + 1, head.last_hash

    def effective_floor_us(self, tenant_id: str) -> int:
        """The effective time of the tenant's last event: no later event is effective earlier."""
        head = self.heads.get(tenant_id) or self.state._heads.get(tenant_id)
        return 0 if head is None else head.last_effective_at_us

    def put_account(self, account: AccountState) -> None:
        self.accounts[(account.tenant_id, account.account_id)] = account

    def put_transfer(self, transfer: TransferState) -> None:
        self.transfers[(transfer.tenant_id, transfer.transfer_id)] = transfer

    def put_transaction(self, transaction: TransactionState) -> None:
        self.transactions[(transaction.tenant_id, transaction.transaction_id)] = transaction

    def record(self, event: Event) -> None:
        """Seal an event of this decision, built with ``hash=HASH_PLACEHOLDER``: set its hash,
        keep its bytes, and move its tenant's head.

        The canonical bytes do not cover ``hash``, so the event is built once with a placeholder
        and the digest is written into it before the object leaves the core: the one place the
        core writes to a frozen record, and only to one nobody else has seen yet (half the cost
        of building the event twice on the hot path). The state's ``WireFormat.seal`` hashes
        and encodes it in one pass, so no event is encoded twice.
        """
        assert event.hash is HASH_PLACEHOLDER
        digest, encoded = self.seal(event)
        object.__setattr__(event, "hash", digest)
        self.heads[event.tenant_id] = new_tenant_head(
            tenant_id=event.tenant_id,
            last_sequence=event.sequence,
            last_hash=digest,
            last_effective_at_us=event.effective_at_us,
        )
        self.events.append(event)
        self.encoded_events.append(encoded)

    def changes(self, outcome: Outcome | None, stream_time_us: int) -> StateChanges:
        return new_state_changes(
            accounts=tuple(self.accounts.values()),
            transfers=tuple(self.transfers.values()),
            heads=tuple(self.heads.values()),
            outcome=outcome,
            stream_time_us=stream_time_us,
            transactions=tuple(self.transactions.values()),
        )


def event_header(
    tenant_id: str,
    link: tuple[int, bytes],
    cause: CommandHeader | None,
    effective_at_us: int,
    accounts: tuple[AccountState, ...],
    *,
    actor: str,
) -> EventHeaderValues:
    """The fields every event has, for the event at ``link`` (its sequence, its prev_hash), for
    the builders ``new_<event>_with_header`` (an object, not a dict unpacked into the builder's
    keywords: decision 0145).

    ``cause`` is the command the event answers (``None`` for an expiry, caused by time): the
    event carries its idempotency key and, since schemas v1.4, its metadata (decision 0055);
    since v1.7, ``actor``, who issued it (``SYSTEM_ACTOR`` for an expiry, decision 0093)."""
    sequence, prev_hash = link
    return EventHeaderValues(
        tenant_id=tenant_id,
        sequence=sequence,
        event_id=f"{tenant_id}:{sequence}",
        idempotency_key=None if cause is None else cause.idempotency_key,
        effective_at_us=effective_at_us,
        balances=tuple([balance_of(account) for account in accounts]),
        prev_hash=prev_hash,
        hash=HASH_PLACEHOLDER,
        metadata=() if cause is None else cause.metadata,
        actor=SYSTEM_ACTOR if cause is None else actor,
    )
