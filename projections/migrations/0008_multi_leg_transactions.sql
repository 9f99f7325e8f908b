-- 0008_multi_leg_transactions: the projection of multi-leg transactions (issue 16 phase 3,
-- docs/decisions/0040-multi-leg-rules.md, 0042-multi-leg-projection.md).
--
-- A transaction event (TransactionPosted, TransactionPending, TransactionPendingPosted,
-- TransactionPendingVoided, TransactionPendingExpired) is projected as
--   * one `transactions` row per transaction (below): what a reader asks of the whole;
--   * one `transfers` row per posting, id `{transaction_id}/{index}` (index from 0; no real id
--     contains "/", schemas/limits.py), with the posting's accounts, amount, currency, status and
--     per-posting amount_posted / amount_reversed: the same rules, the same fold as a transfer;
--   * one `entries` row per posting side and kind, transfer_id `{transaction_id}/{index}`,
--     event_type the transaction event's, carrying the account's counters after the whole event
--     (a transaction is one change: what the event's `balances` hold), so the newest row at or
--     before T is still the exact balance as of T.
-- A payout touches its source account once per posting in one event: the entries key gains
-- transfer_id, so (sequence, kind) is no longer unique per account.

ALTER TABLE entries DROP CONSTRAINT entries_pkey;
ALTER TABLE entries ADD CONSTRAINT entries_pkey
    PRIMARY KEY (tenant_id, account_id, sequence, kind, transfer_id);

-- Balance as of T and statements: ... ORDER BY effective_at DESC, sequence DESC, kind DESC,
-- transfer_id DESC (a total order again). Every row of one event carries the same balances
-- after, so which of an event's rows comes first never changes a balance.
DROP INDEX entries_account_time_idx;
CREATE INDEX entries_account_time_idx
    ON entries (tenant_id, account_id, effective_at, sequence, kind, transfer_id);

ALTER TABLE entries DROP CONSTRAINT entries_kind_matches_event;
ALTER TABLE entries ADD CONSTRAINT entries_kind_matches_event CHECK (
    CASE event_type
        WHEN 'TransferPending' THEN kind = 'pending'
        WHEN 'TransferPosted' THEN kind = 'posted'
        WHEN 'PendingPosted' THEN kind IN ('posted', 'released')
        WHEN 'PendingVoided' THEN kind = 'released'
        WHEN 'PendingExpired' THEN kind = 'released'
        WHEN 'TransactionPending' THEN kind = 'pending'
        WHEN 'TransactionPosted' THEN kind = 'posted'
        WHEN 'TransactionPendingPosted' THEN kind IN ('posted', 'released')
        WHEN 'TransactionPendingVoided' THEN kind = 'released'
        WHEN 'TransactionPendingExpired' THEN kind = 'released'
        ELSE false
    END
);

-- One row per transaction. Its postings are the transfers `{transaction_id}/0` …
-- `{transaction_id}/{posting_count - 1}` (primary-key lookups, no pattern match). Status moves
-- like a transfer's (pending -> posted | voided | expired, once), for every posting together.
CREATE TABLE transactions (
    tenant_id text NOT NULL CHECK (char_length(tenant_id) BETWEEN 1 AND 255),
    transaction_id text NOT NULL CHECK (
        char_length(transaction_id) BETWEEN 1 AND 128 AND strpos(transaction_id, '/') = 0
    ),
    posting_count integer NOT NULL CHECK (posting_count > 0),
    -- Each currency the postings move, once, in first-posting order (two or more: FX).
    currencies text[] NOT NULL CHECK (cardinality(currencies) BETWEEN 1 AND posting_count),
    pending boolean NOT NULL,  -- created as a two-phase (pending) transaction
    status text NOT NULL CHECK (status IN ('pending', 'posted', 'voided', 'expired')),
    reverses text,  -- the posted transaction this one corrects, posting by posting
    expires_at timestamptz,
    created_sequence bigint NOT NULL CHECK (created_sequence > 0),
    last_sequence bigint NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    CONSTRAINT transactions_pkey PRIMARY KEY (tenant_id, transaction_id),
    CONSTRAINT transactions_reverses_fkey FOREIGN KEY (tenant_id, reverses)
        REFERENCES transactions (tenant_id, transaction_id),
    CONSTRAINT transactions_sequence_order CHECK (last_sequence >= created_sequence),
    CONSTRAINT transactions_not_self_reversing CHECK (
        reverses IS NULL OR reverses <> transaction_id
    ),
    CONSTRAINT transactions_single_phase CHECK (
        pending OR (status = 'posted' AND expires_at IS NULL)
    ),
    CONSTRAINT transactions_reversal_single_phase CHECK (reverses IS NULL OR NOT pending)
) WITH (fillfactor = 80);

CREATE INDEX transactions_reverses_idx ON transactions (tenant_id, reverses)
    WHERE reverses IS NOT NULL;

-- Row-level security as on every tenant table (0001, 0005): FORCEd; the operators' reader role
-- sees the tenant it names, the API's role the tenant of the API key the request binds.
ALTER TABLE transactions ENABLE ROW LEVEL SECURITY;
ALTER TABLE transactions FORCE ROW LEVEL SECURITY;

CREATE POLICY transactions_tenant_isolation ON transactions FOR SELECT TO streamledger_reader
    USING (tenant_id = current_setting('streamledger.tenant_id', true));
CREATE POLICY transactions_api_key_tenant ON transactions FOR SELECT TO streamledger_api
    USING (tenant_id = (SELECT streamledger_auth.api_key_tenant()));

GRANT SELECT ON transactions TO streamledger_reader, streamledger_api;
