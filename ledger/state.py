"""The state of one partition: records by key, expiry indexes, stream time, an undo log.

``LedgerState`` is the one mutable object of the core: plain dicts of frozen model records
(``AccountState``, ``TransferState``, ``TenantHead``, ``Outcome``) plus an undo log. ``stage``
writes a decision's changes and remembers the previous values; ``abort`` puts them back (cost:
the batch's size), ``commit`` forgets them. Reads are one dict lookup, which is what the hot loop
needs. ``decide`` only reads; everything it would change sits in a small per-decision draft
(``ledger.draft``); staging a decision or folding an event (``ledger.fold.apply``) is the only
thing that changes a state.

Bytes are not the core's business. The partition adapter hands each state a ``WireFormat``: how
an event is sealed (hashed and encoded in one pass, ``schemas.codec.seal_event``) and how a stored
outcome is decoded. An outcome ``restore`` was given encoded stays an opaque ``bytes`` value,
in a dict of its own keyed by its ``ledger.outcomes`` record key (decision 0102: one ``bytes`` key
and one ``bytes`` value per idempotency key, no tuple, no strings), until a decision replaces it
or it expires; reading it decodes a copy and never writes it back, so a read is a read. A
transfer ``restore`` was given encoded (one that is not pending: settled, it only changes when a
decision reverses or refunds it) is kept the same way, by its ``ledger.balances`` record key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from ledger.decisions import StateChanges
from ledger.expiry import ExpiryEntry, ExpiryIndex, OutcomeExpiryIndex
from ledger.monitors import (
    NO_WATCH,
    AccountWatch,
    WatchEntry,
    account_is_credit_normal,
    monitor_watch_entry,
)
from schemas.event_time import US_PER_S
from schemas.keys import outcome_key, transfer_state_key
from schemas.model import (
    AccountState,
    Event,
    MonitorState,
    Outcome,
    StateRecord,
    TenantHead,
    TransactionState,
    TransferState,
    TransferStatus,
)
from streamledger.errors import InvariantViolationError

DEFAULT_IDEMPOTENCY_RETENTION_S: Final = 30 * 86_400


@dataclass(frozen=True, slots=True, kw_only=True)
class WireFormat:
    """How this partition's events and outcomes are bytes; supplied by the partition adapter
    (``processors.partition_ledger.WIRE_FORMAT``), never imported by the core.

    ``seal(event)`` -> ``(hash, encoded bytes)`` from one encode, ignoring ``event.hash``: the
    hash is SHA-256(prev_hash || the event's canonical bytes) and the bytes are the record to
    produce for the event carrying that hash. ``decode_outcome(bytes)`` -> the stored outcome.
    ``decode_state(bytes)`` -> a ``ledger.balances`` record: needed only by a state restored
    with transfers kept encoded.
    """

    seal: Callable[[Event], tuple[bytes, bytes]]
    decode_outcome: Callable[[bytes], Outcome]
    decode_state: Callable[[bytes], StateRecord] | None = None


class LedgerState:
    """The state of one partition: records by key, expiry indexes, stream time, an undo log.

    Keys start with the tenant: accounts and transfers by (tenant_id, id), outcomes by
    (tenant_id, idempotency_key), heads by tenant_id; what a restore kept encoded by record key
    (``_encoded_outcomes``, ``_encoded_transfers``, decoded by ``outcome``/``transfer``).
    Records are frozen; the dicts change only through ``stage``/``apply``/``forget_outcomes``
    (undoable) and ``abort``/``commit``.
    """

    __slots__ = (
        "_account_monitors",
        "_accounts",
        "_batch_start_stream_time_us",
        "_encoded_outcomes",
        "_encoded_transfers",
        "_heads",
        "_monitors",
        "_outcome_index",
        "_outcomes",
        "_pending_index",
        "_stream_time_us",
        "_tenant_monitor_counts",
        "_touched",
        "_transactions",
        "_transfers",
        "_undo",
        "idempotency_retention_us",
        "wire_format",
    )

    def __init__(
        self,
        *,
        wire_format: WireFormat,
        idempotency_retention_s: int = DEFAULT_IDEMPOTENCY_RETENTION_S,
    ) -> None:
        if type(idempotency_retention_s) is not int or idempotency_retention_s < 0:
            raise ValueError("idempotency_retention_s must be an int >= 0 (0 = forever)")
        self.wire_format = wire_format
        self.idempotency_retention_us = idempotency_retention_s * US_PER_S
        self._accounts: dict[tuple[str, str], AccountState] = {}
        self._transfers: dict[tuple[str, str], TransferState] = {}
        # settled transfers restored encoded, by record key (``schemas.keys.transfer_state_key``):
        # bytes until a decision changes them (``transfer``); a key is in at most one of the two
        self._encoded_transfers: dict[bytes, bytes] = {}
        # multi-leg transactions; their ids share the tenant's namespace with transfer ids
        self._transactions: dict[tuple[str, str], TransactionState] = {}
        self._outcomes: dict[tuple[str, str], Outcome] = {}
        # outcomes restored encoded, by record key (``schemas.keys.outcome_key``): bytes until
        # replaced or forgotten (``outcome``); a key is in at most one of the two dicts
        self._encoded_outcomes: dict[bytes, bytes] = {}
        self._heads: dict[str, TenantHead] = {}
        # balance monitors (decision 0058) by (tenant_id, monitor_id); per account, their ids in
        # creation order (the order ``ledger.monitor_steps.watch`` evaluates them in); per tenant,
        # how many (``MONITORS_PER_TENANT_MAX``)
        self._monitors: dict[tuple[str, str], MonitorState] = {}
        self._account_monitors: dict[tuple[str, str], AccountWatch] = {}
        self._tenant_monitor_counts: dict[str, int] = {}
        self._stream_time_us = 0
        self._batch_start_stream_time_us = 0
        self._pending_index = ExpiryIndex()
        self._outcome_index = OutcomeExpiryIndex(encoded=self._encoded_outcomes)
        self._undo: list[tuple[dict[Any, Any], Any, Any]] = []
        self._touched: dict[tuple[str, str, str], None] = {}

    # ---- reads
    @property
    def stream_time_us(self) -> int:
        return self._stream_time_us

    def account(self, tenant_id: str, account_id: str) -> AccountState | None:
        return self._accounts.get((tenant_id, account_id))

    def transfer(self, tenant_id: str, transfer_id: str) -> TransferState | None:
        """The transfer; one restore kept encoded is decoded (a copy, as ``outcome``)."""
        found = self._transfers.get((tenant_id, transfer_id))
        if found is not None or not self._encoded_transfers:
            return found
        encoded = self._encoded_transfers.get(transfer_state_key(tenant_id, transfer_id))
        if encoded is None:
            return None
        decode_state = self.wire_format.decode_state
        assert decode_state is not None, "transfers kept encoded need wire_format.decode_state"
        transfer = decode_state(encoded)
        if (
            type(transfer) is not TransferState
            or (transfer.tenant_id, transfer.transfer_id) != (tenant_id, transfer_id)
            or transfer.status is TransferStatus.PENDING
        ):
            raise InvariantViolationError(
                f"the record kept under {(tenant_id, transfer_id)} is not that settled transfer"
            )
        return transfer

    def transaction(self, tenant_id: str, transaction_id: str) -> TransactionState | None:
        return self._transactions.get((tenant_id, transaction_id))

    def outcome(self, tenant_id: str, idempotency_key: str) -> Outcome | None:
        """The outcome stored under the key; one restore kept encoded is decoded (a copy: the
        state keeps the bytes, so reading never changes it)."""
        stored = self._outcomes.get((tenant_id, idempotency_key))
        if stored is not None or not self._encoded_outcomes:
            return stored
        encoded = self._encoded_outcomes.get(outcome_key(tenant_id, idempotency_key))
        if encoded is None:
            return None
        outcome = self.wire_format.decode_outcome(encoded)
        if (outcome.tenant_id, outcome.idempotency_key) != (tenant_id, idempotency_key):
            raise InvariantViolationError(
                f"the outcome stored under {(tenant_id, idempotency_key)} names another key"
            )
        return outcome

    def head(self, tenant_id: str) -> TenantHead | None:
        return self._heads.get(tenant_id)

    def monitor(self, tenant_id: str, monitor_id: str) -> MonitorState | None:
        return self._monitors.get((tenant_id, monitor_id))

    def account_monitor_ids(self, tenant_id: str, account_id: str) -> tuple[str, ...]:
        """The ids of the account's monitors, in creation order."""
        return tuple(entry[0] for entry in self.account_watch_entries(tenant_id, account_id))

    def account_watch_entries(self, tenant_id: str, account_id: str) -> tuple[WatchEntry, ...]:
        """The account's monitors as the hot path compares them, in creation order."""
        return self._account_monitors.get((tenant_id, account_id), NO_WATCH).entries

    def tenant_monitor_count(self, tenant_id: str) -> int:
        return self._tenant_monitor_counts.get(tenant_id, 0)

    @property
    def outcome_count(self) -> int:
        return len(self._outcomes) + len(self._encoded_outcomes)

    @property
    def has_staged_changes(self) -> bool:
        return bool(self._undo) or self._stream_time_us != self._batch_start_stream_time_us

    # ---- staged writes
    def _put(self, table: dict[Any, Any], key: Any, value: Any) -> None:
        self._undo.append((table, key, table.get(key)))
        table[key] = value

    def stage(self, changes: StateChanges | None) -> None:
        """Write one decision's changes into the open batch (undone by ``abort``)."""
        if changes is None:
            return
        undo, touched = self._undo.append, self._touched
        accounts, transfers, heads = self._accounts, self._transfers, self._heads
        for account in changes.accounts:
            key = (account.tenant_id, account.account_id)
            undo((accounts, key, accounts.get(key)))  # what _put does, without the call
            accounts[key] = account
            touched[("account", *key)] = None
        for transfer in changes.transfers:
            key = (transfer.tenant_id, transfer.transfer_id)
            previous = transfers.get(key)
            undo((transfers, key, previous))
            transfers[key] = transfer
            if previous is None and self._encoded_transfers:  # it replaces one kept encoded
                self._drop_encoded_transfer(*key)
            touched[("transfer", *key)] = None
            is_pending = transfer.status is TransferStatus.PENDING
            if previous is None and is_pending and transfer.expires_at_us:
                self._pending_index.push((transfer.expires_at_us, *key))
        if changes.transactions:
            self._stage_transactions(changes.transactions)
        if changes.monitors or changes.deleted_monitors:
            self._stage_monitors(changes.monitors, changes.deleted_monitors)
        for head in changes.heads:
            undo((heads, head.tenant_id, heads.get(head.tenant_id)))
            heads[head.tenant_id] = head
            touched[("head", head.tenant_id, "")] = None
        outcome = changes.outcome
        if outcome is not None:
            self._put(self._outcomes, (outcome.tenant_id, outcome.idempotency_key), outcome)
            if self._encoded_outcomes:  # it replaces one kept encoded since restore, if any
                self._drop_encoded_outcome(outcome.tenant_id, outcome.idempotency_key)
            if outcome.expires_at_us is not None:
                self._outcome_index.push(
                    (outcome.expires_at_us, outcome.tenant_id, outcome.idempotency_key)
                )
        self._stream_time_us = max(self._stream_time_us, changes.stream_time_us)
        if changes.transfers or changes.transactions:
            self._pending_index.prune(self._pending_is_live)

    def _stage_transactions(self, transactions: tuple[TransactionState, ...]) -> None:
        """``stage`` for transaction records: undoable, touched, a new pending one indexed."""
        table = self._transactions
        for transaction in transactions:
            key = (transaction.tenant_id, transaction.transaction_id)
            previous = table.get(key)
            self._undo.append((table, key, previous))
            table[key] = transaction
            self._touched[("transaction", *key)] = None
            is_pending = transaction.status is TransferStatus.PENDING
            if previous is None and is_pending and transaction.expires_at_us:
                self._pending_index.push((transaction.expires_at_us, *key))

    def _stage_monitors(
        self, monitors: tuple[MonitorState, ...], deleted: tuple[tuple[str, str], ...]
    ) -> None:
        """``stage`` for monitors: new versions, then deletions; the indexes follow, undoably."""
        table = self._monitors
        for monitor in monitors:
            key = (monitor.tenant_id, monitor.monitor_id)
            previous = table.get(key)
            self._put(table, key, monitor)
            self._touched[("monitor", *key)] = None
            if previous is None:
                self._index_monitor(monitor, added=True)
            elif previous.holds != monitor.holds:
                self._reflag_monitor(monitor)
        for key in deleted:
            previous = table.get(key)
            assert previous is not None, f"deleting monitor {key}, which does not exist"
            self._undo.append((table, key, previous))
            del table[key]
            self._touched[("monitor", *key)] = None
            self._index_monitor(previous, added=False)

    def _index_monitor(self, monitor: MonitorState, *, added: bool) -> None:
        """Add (at the end: creation order) or remove the monitor's watch entry; count it."""
        tenant_id, monitor_id = monitor.tenant_id, monitor.monitor_id
        account_key = (tenant_id, monitor.account_id)
        watched = self._account_monitors.get(account_key)
        if watched is None:
            account = self._accounts.get(account_key)
            assert account is not None, "a monitor watches an account the state does not have"
            entries: tuple[WatchEntry, ...] = ()
            credit_normal = account_is_credit_normal(account)
        else:
            entries, credit_normal = watched.entries, watched.credit_normal
        if added:
            entries = (*entries, monitor_watch_entry(monitor))
        else:
            entries = tuple(entry for entry in entries if entry[0] != monitor_id)
        self._put(
            self._account_monitors, account_key, AccountWatch(entries, credit_normal=credit_normal)
        )
        count = self._tenant_monitor_counts.get(tenant_id, 0) + (1 if added else -1)
        self._put(self._tenant_monitor_counts, tenant_id, count)

    def _reflag_monitor(self, monitor: MonitorState) -> None:
        """The monitor's watch entry with its new ``holds``, in place (creation order stays)."""
        account_key = (monitor.tenant_id, monitor.account_id)
        watched = self._account_monitors[account_key]
        entries = tuple(
            monitor_watch_entry(monitor) if entry[0] == monitor.monitor_id else entry
            for entry in watched.entries
        )
        self._put(
            self._account_monitors,
            account_key,
            AccountWatch(entries, credit_normal=watched.credit_normal),
        )

    def forget_outcomes(self, outcomes: Iterable[Outcome]) -> None:
        """Drop expired outcomes (their tombstones go to ledger.outcomes in the same batch).

        ``outcomes`` come from ``expired_outcomes`` of this batch: an outcome still held as
        bytes was never replaced since restore, so it is the one that expired."""
        for outcome in outcomes:
            key = (outcome.tenant_id, outcome.idempotency_key)
            stored = self._outcomes.get(key)
            if stored is outcome:
                self._undo.append((self._outcomes, key, stored))
                del self._outcomes[key]
            elif stored is None and self._encoded_outcomes:
                self._drop_encoded_outcome(outcome.tenant_id, outcome.idempotency_key)

    def _drop_encoded_transfer(self, tenant_id: str, transfer_id: str) -> None:
        """Remove the transfer kept encoded under the key, if any (undoable)."""
        record_key = transfer_state_key(tenant_id, transfer_id)
        encoded = self._encoded_transfers.pop(record_key, None)
        if encoded is not None:
            self._undo.append((self._encoded_transfers, record_key, encoded))

    def _drop_encoded_outcome(self, tenant_id: str, idempotency_key: str) -> None:
        """Remove the outcome kept encoded under the key, if any (undoable)."""
        record_key = outcome_key(tenant_id, idempotency_key)
        encoded = self._encoded_outcomes.pop(record_key, None)
        if encoded is not None:
            self._undo.append((self._encoded_outcomes, record_key, encoded))

    def staged_records(self) -> tuple[StateRecord, ...]:
        """The current version of every record the open batch changed (for ledger.balances)."""
        records: list[StateRecord] = []
        for kind, tenant_id, name in self._touched:
            if kind == "account":
                records.append(self._accounts[(tenant_id, name)])
            elif kind == "transfer":
                records.append(self._transfers[(tenant_id, name)])
            elif kind == "transaction":
                records.append(self._transactions[(tenant_id, name)])
            elif kind == "monitor":
                monitor = self._monitors.get((tenant_id, name))
                if monitor is not None:  # else deleted: ``staged_deleted_monitors``
                    records.append(monitor)
            else:
                records.append(self._heads[tenant_id])
        return tuple(records)

    def staged_deleted_monitors(self) -> tuple[tuple[str, str], ...]:
        """(tenant_id, monitor_id) of each monitor the open batch deleted: the tombstones of
        ``{tenant}/monitor/{monitor_id}`` in ledger.balances."""
        return tuple(
            (tenant_id, name)
            for kind, tenant_id, name in self._touched
            if kind == "monitor" and (tenant_id, name) not in self._monitors
        )

    def commit(self) -> None:
        """The batch's transaction committed: its changes become the base."""
        self._undo.clear()
        self._touched.clear()
        self._batch_start_stream_time_us = self._stream_time_us
        self._pending_index.commit(self._pending_is_live)
        self._outcome_index.commit(self._outcome_is_live)

    def abort(self) -> None:
        """The batch's transaction aborted: put every staged change back."""
        # a reversed copy, not reversed(): mypyc (decision 0048) fails on reversed() of this list
        for table, key, previous in self._undo[::-1]:
            if previous is None:
                del table[key]
            else:
                table[key] = previous
        self._undo.clear()
        self._touched.clear()
        self._stream_time_us = self._batch_start_stream_time_us
        self._pending_index.abort()
        self._outcome_index.abort()

    # ---- expiry liveness
    def _pending_is_live(self, entry: ExpiryEntry) -> bool:
        transfer: TransferState | TransactionState | None = self._transfers.get(
            (entry[1], entry[2])
        )
        if transfer is None:  # the index holds pending transactions too (one id namespace)
            transfer = self._transactions.get((entry[1], entry[2]))
        return (
            transfer is not None
            and transfer.status is TransferStatus.PENDING
            and transfer.expires_at_us == entry[0]
        )

    def _outcome_is_live(self, entry: ExpiryEntry) -> bool:
        """For the heap's entries: outcomes kept encoded have their own part of the index."""
        outcome = self._outcomes.get((entry[1], entry[2]))
        return outcome is not None and outcome.expires_at_us == entry[0]
