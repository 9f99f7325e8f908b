-- 0001_ledger_schema: the projection tables (issue 6).
--
-- Conventions (docs/decisions/0004-projection-schema.md explains the choices):
--   * every tenant table's primary key starts with tenant_id; tenant_id is never empty, so an
--     unset or reset tenant setting ('' or NULL) can never match a row under row-level security;
--   * money is BIGINT minor units with CHECKs; never float. The derived `available` balance is
--     NUMERIC because the difference of three int64 counters can leave the int64 range;
--   * times are timestamptz with microsecond precision, taken from the events (never now());
--   * names are unqualified: the runner sets search_path to the target schema (`ledger`, or a
--     fresh schema for a blue/green rebuild), so the same file builds either;
--   * the table owner (the app role `streamledger`, used by the projection) sees every tenant;
--     the read role `streamledger_reader` sees only the tenant in `streamledger.tenant_id`.

CREATE TABLE accounts (
    tenant_id text NOT NULL CHECK (char_length(tenant_id) BETWEEN 1 AND 255),
    account_id text NOT NULL CHECK (char_length(account_id) BETWEEN 1 AND 255),
    currency text NOT NULL CHECK (char_length(currency) BETWEEN 1 AND 32),
    asset_scale smallint NOT NULL CHECK (asset_scale BETWEEN 0 AND 255),
    debits_must_not_exceed_credits boolean NOT NULL,
    credits_must_not_exceed_debits boolean NOT NULL,
    overdraft_limit bigint CHECK (overdraft_limit >= 0),
    -- Which side the account's balance grows on; decides `balances.available`.
    -- debits_must_not_exceed_credits (a customer's funds) and unflagged accounts: credit;
    -- credits_must_not_exceed_debits alone: debit.
    normal_side text GENERATED ALWAYS AS (
        CASE
            WHEN credits_must_not_exceed_debits AND NOT debits_must_not_exceed_credits
                THEN 'debit'
            ELSE 'credit'
        END
    ) STORED,
    opened_sequence bigint NOT NULL CHECK (opened_sequence > 0),
    opened_at timestamptz NOT NULL,
    CONSTRAINT accounts_pkey PRIMARY KEY (tenant_id, account_id),
    -- Lets balances reference (account, normal_side) so the two can never disagree.
    CONSTRAINT accounts_normal_side_key UNIQUE (tenant_id, account_id, normal_side)
);

-- Current balances: one row per account, updated in place (fillfactor leaves room for HOT
-- updates, since no indexed column ever changes).
CREATE TABLE balances (
    tenant_id text NOT NULL CHECK (char_length(tenant_id) BETWEEN 1 AND 255),
    account_id text NOT NULL,
    normal_side text NOT NULL CHECK (normal_side IN ('debit', 'credit')),
    debits_posted bigint NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
    credits_posted bigint NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
    debits_pending bigint NOT NULL DEFAULT 0 CHECK (debits_pending >= 0),
    credits_pending bigint NOT NULL DEFAULT 0 CHECK (credits_pending >= 0),
    -- What the owner can use now: posted on the normal side, minus posted and pending on the
    -- other side. Pending inflows do not count until posted; the overdraft limit is not added.
    available numeric(21, 0) GENERATED ALWAYS AS (
        CASE normal_side
            WHEN 'credit' THEN credits_posted::numeric - debits_posted - debits_pending
            ELSE debits_posted::numeric - credits_posted - credits_pending
        END
    ) STORED,
    last_sequence bigint NOT NULL CHECK (last_sequence > 0),
    updated_at timestamptz NOT NULL,
    CONSTRAINT balances_pkey PRIMARY KEY (tenant_id, account_id),
    CONSTRAINT balances_account_fkey FOREIGN KEY (tenant_id, account_id, normal_side)
        REFERENCES accounts (tenant_id, account_id, normal_side)
) WITH (fillfactor = 80);

CREATE TABLE transfers (
    tenant_id text NOT NULL CHECK (char_length(tenant_id) BETWEEN 1 AND 255),
    transfer_id text NOT NULL CHECK (char_length(transfer_id) BETWEEN 1 AND 255),
    debit_account_id text NOT NULL,
    credit_account_id text NOT NULL,
    currency text NOT NULL CHECK (char_length(currency) BETWEEN 1 AND 32),
    amount bigint NOT NULL CHECK (amount > 0),  -- as created (reserved, when pending)
    pending boolean NOT NULL,  -- created as a two-phase (pending) transfer
    status text NOT NULL CHECK (status IN ('pending', 'posted', 'voided', 'expired')),
    amount_posted bigint NOT NULL DEFAULT 0 CHECK (amount_posted >= 0),
    amount_reversed bigint NOT NULL DEFAULT 0 CHECK (amount_reversed >= 0),
    reverses text,  -- the posted transfer this one corrects
    expires_at timestamptz,
    created_sequence bigint NOT NULL CHECK (created_sequence > 0),
    last_sequence bigint NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    CONSTRAINT transfers_pkey PRIMARY KEY (tenant_id, transfer_id),
    CONSTRAINT transfers_debit_account_fkey FOREIGN KEY (tenant_id, debit_account_id)
        REFERENCES accounts (tenant_id, account_id),
    CONSTRAINT transfers_credit_account_fkey FOREIGN KEY (tenant_id, credit_account_id)
        REFERENCES accounts (tenant_id, account_id),
    CONSTRAINT transfers_reverses_fkey FOREIGN KEY (tenant_id, reverses)
        REFERENCES transfers (tenant_id, transfer_id),
    CONSTRAINT transfers_different_accounts CHECK (debit_account_id <> credit_account_id),
    CONSTRAINT transfers_sequence_order CHECK (last_sequence >= created_sequence),
    CONSTRAINT transfers_posted_within_amount CHECK (amount_posted <= amount),
    CONSTRAINT transfers_reversed_within_posted CHECK (amount_reversed <= amount_posted),
    CONSTRAINT transfers_not_self_reversing CHECK (reverses IS NULL OR reverses <> transfer_id),
    -- A single-phase transfer is born posted in full, never expires and is never pending.
    CONSTRAINT transfers_single_phase CHECK (
        pending OR (status = 'posted' AND amount_posted = amount AND expires_at IS NULL)
    ),
    -- Only a posted transfer can be reversed, and a reversal is single-phase.
    CONSTRAINT transfers_reversal_single_phase CHECK (reverses IS NULL OR NOT pending),
    CONSTRAINT transfers_status_amounts CHECK (
        CASE status
            WHEN 'posted' THEN amount_posted > 0
            ELSE amount_posted = 0
        END
    )
) WITH (fillfactor = 80);

-- Reversal links: "which transfers correct this one".
CREATE INDEX transfers_reverses_idx ON transfers (tenant_id, reverses)
    WHERE reverses IS NOT NULL;

-- The append-only journal: one row per posting. A transfer event writes one row per account
-- and kind:
--   pending  (TransferPending)                 the side's pending counter grew by amount
--   posted   (TransferPosted, PendingPosted)   the side's posted counter grew by amount
--   released (PendingPosted, PendingVoided, PendingExpired)
--                                              the side's pending counter shrank by amount
-- Each row carries the account's four counters after the whole event, so the balance as of a
-- time is the newest row at or before it: one backward index lookup, no fold.
CREATE TABLE entries (
    tenant_id text NOT NULL CHECK (char_length(tenant_id) BETWEEN 1 AND 255),
    account_id text NOT NULL,
    sequence bigint NOT NULL CHECK (sequence > 0),
    kind text NOT NULL CHECK (kind IN ('pending', 'posted', 'released')),
    side text NOT NULL CHECK (side IN ('debit', 'credit')),
    transfer_id text NOT NULL,
    event_type text NOT NULL,
    currency text NOT NULL CHECK (char_length(currency) BETWEEN 1 AND 32),
    amount bigint NOT NULL CHECK (amount > 0),
    debits_posted_after bigint NOT NULL CHECK (debits_posted_after >= 0),
    credits_posted_after bigint NOT NULL CHECK (credits_posted_after >= 0),
    debits_pending_after bigint NOT NULL CHECK (debits_pending_after >= 0),
    credits_pending_after bigint NOT NULL CHECK (credits_pending_after >= 0),
    effective_at timestamptz NOT NULL,
    CONSTRAINT entries_pkey PRIMARY KEY (tenant_id, account_id, sequence, kind),
    CONSTRAINT entries_account_fkey FOREIGN KEY (tenant_id, account_id)
        REFERENCES accounts (tenant_id, account_id),
    CONSTRAINT entries_transfer_fkey FOREIGN KEY (tenant_id, transfer_id)
        REFERENCES transfers (tenant_id, transfer_id),
    CONSTRAINT entries_kind_matches_event CHECK (
        CASE event_type
            WHEN 'TransferPending' THEN kind = 'pending'
            WHEN 'TransferPosted' THEN kind = 'posted'
            WHEN 'PendingPosted' THEN kind IN ('posted', 'released')
            WHEN 'PendingVoided' THEN kind = 'released'
            WHEN 'PendingExpired' THEN kind = 'released'
            ELSE false
        END
    )
);

-- Balance as of T: WHERE tenant_id = $1 AND account_id = $2 AND effective_at <= $3
--   ORDER BY effective_at DESC, sequence DESC, kind DESC LIMIT 1.
-- History, keyset-paginated: ... AND (effective_at, sequence, kind) < ($t, $s, $k)
--   ORDER BY effective_at DESC, sequence DESC, kind DESC LIMIT $page.
-- (sequence, kind) makes the order total; the processor keeps effective_at non-decreasing
-- in sequence per tenant and the projection asserts it (tenant_heads.last_effective_at).
CREATE INDEX entries_account_time_idx
    ON entries (tenant_id, account_id, effective_at, sequence, kind);

-- Where each tenant's projected sequence stands: the next event must be last_sequence + 1
-- and chain onto last_hash, and must not go back in time.
CREATE TABLE tenant_heads (
    tenant_id text NOT NULL CHECK (char_length(tenant_id) BETWEEN 1 AND 255),
    last_sequence bigint NOT NULL CHECK (last_sequence > 0),
    last_hash bytea NOT NULL CHECK (octet_length(last_hash) = 32),
    last_effective_at timestamptz NOT NULL,
    CONSTRAINT tenant_heads_pkey PRIMARY KEY (tenant_id)
) WITH (fillfactor = 80);

-- The next Kafka offset to read per (projection, topic, partition), written in the same
-- transaction as the rows it produced. Not tenant data: the read role has no access.
CREATE TABLE projection_offsets (
    projection_name text NOT NULL CHECK (char_length(projection_name) BETWEEN 1 AND 255),
    topic text NOT NULL CHECK (char_length(topic) BETWEEN 1 AND 249),
    partition integer NOT NULL CHECK (partition >= 0),
    next_offset bigint NOT NULL CHECK (next_offset >= 0),
    -- Wall-clock time of the write (operations only, e.g. "is the projection stuck?").
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT projection_offsets_pkey PRIMARY KEY (projection_name, topic, partition)
) WITH (fillfactor = 80);

-- Row-level security: the read role sees the rows of the tenant named in the session setting
-- `streamledger.tenant_id` and nothing else; with no setting, current_setting(..., true) is
-- NULL (or '' after a reset) and matches no row. Policies are combined with AND with any
-- query's own conditions, so no WHERE clause can widen them.
ALTER TABLE accounts ENABLE ROW LEVEL SECURITY;
ALTER TABLE balances ENABLE ROW LEVEL SECURITY;
ALTER TABLE transfers ENABLE ROW LEVEL SECURITY;
ALTER TABLE entries ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_heads ENABLE ROW LEVEL SECURITY;

CREATE POLICY accounts_tenant_isolation ON accounts FOR SELECT TO streamledger_reader
    USING (tenant_id = current_setting('streamledger.tenant_id', true));
CREATE POLICY balances_tenant_isolation ON balances FOR SELECT TO streamledger_reader
    USING (tenant_id = current_setting('streamledger.tenant_id', true));
CREATE POLICY transfers_tenant_isolation ON transfers FOR SELECT TO streamledger_reader
    USING (tenant_id = current_setting('streamledger.tenant_id', true));
CREATE POLICY entries_tenant_isolation ON entries FOR SELECT TO streamledger_reader
    USING (tenant_id = current_setting('streamledger.tenant_id', true));
CREATE POLICY tenant_heads_tenant_isolation ON tenant_heads FOR SELECT TO streamledger_reader
    USING (tenant_id = current_setting('streamledger.tenant_id', true));

-- SELECT only: the read role can never write, whatever it sets.
GRANT SELECT ON accounts, balances, transfers, entries, tenant_heads TO streamledger_reader;

-- The read role must be able to reach this schema (`ledger`, or a rebuild's fresh schema).
DO $grant$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO streamledger_reader', current_schema());
END
$grant$;
