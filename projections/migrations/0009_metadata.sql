-- 0009_metadata: searchable metadata on accounts, transfers and transactions (issue 19 §3,
-- docs/decisions/0056-metadata-search.md).
--
-- Since schemas v1.4 every event carries its command's metadata (decision 0055). The projection
-- keeps it as a JSON object of strings, written once at creation and never changed:
--   * accounts.metadata      the OpenAccount's (AccountOpened);
--   * transfers.metadata     the creating Transfer's (TransferPosted / TransferPending); a
--                            transaction's posting rows `{transaction_id}/{i}` carry the
--                            PostTransaction's, so a search of transfers finds its postings;
--   * transactions.metadata  the PostTransaction's.
-- (A PostPending's or VoidPending's own metadata stays in its event, in the log.) Events written
-- before v1.4 have none: '{}'.
--
-- The index is not a GIN index on those columns. Every read of these tables runs under FORCEd
-- row-level security (0005), and PostgreSQL uses a condition as an index condition under a policy
-- only when its functions are LEAKPROOF. `jsonb @> jsonb` (jsonb_contains) and `->>` are not, so
-- a GIN (jsonb_ops or jsonb_path_ops) or an expression index on the JSONB is never used by the
-- API's or the operators' reads: measured, a sequential scan of 300k rows, 150-540 ms, whatever
-- the index (the decision record has the figures). Text and bigint comparisons are LEAKPROOF, so
-- each (key, value) pair is also a row of a plain table whose primary key is the search's order:
-- "tenant, key, value, newest first" is one backward range scan of a btree, and a page of 100
-- stops after 100 index entries, under row-level security.

ALTER TABLE accounts ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}'::jsonb
    CONSTRAINT accounts_metadata_object CHECK (jsonb_typeof(metadata) = 'object');
ALTER TABLE transfers ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}'::jsonb
    CONSTRAINT transfers_metadata_object CHECK (jsonb_typeof(metadata) = 'object');
ALTER TABLE transactions ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}'::jsonb
    CONSTRAINT transactions_metadata_object CHECK (jsonb_typeof(metadata) = 'object');

-- One row per (transfer, metadata key). Keys are 1-64 ASCII characters, values at most 512
-- characters (schemas/limits.py), so a key of this index stays under btree's ~2.7 kB limit.
CREATE TABLE transfer_metadata (
    tenant_id text NOT NULL CHECK (char_length(tenant_id) BETWEEN 1 AND 255),
    key text NOT NULL CHECK (char_length(key) BETWEEN 1 AND 64),
    value text NOT NULL CHECK (char_length(value) <= 512),
    created_sequence bigint NOT NULL CHECK (created_sequence > 0),
    transfer_id text NOT NULL,
    CONSTRAINT transfer_metadata_pkey
        PRIMARY KEY (tenant_id, key, value, created_sequence, transfer_id)
);

CREATE TABLE account_metadata (
    tenant_id text NOT NULL CHECK (char_length(tenant_id) BETWEEN 1 AND 255),
    key text NOT NULL CHECK (char_length(key) BETWEEN 1 AND 64),
    value text NOT NULL CHECK (char_length(value) <= 512),
    opened_sequence bigint NOT NULL CHECK (opened_sequence > 0),
    account_id text NOT NULL,
    CONSTRAINT account_metadata_pkey
        PRIMARY KEY (tenant_id, key, value, opened_sequence, account_id)
);

-- Listing without a metadata filter pages in creation order, newest first: the keyset of
-- GET /v1/transfers is (created_sequence, transfer_id), of GET /v1/accounts
-- (opened_sequence, account_id).
CREATE INDEX transfers_created_idx ON transfers (tenant_id, created_sequence, transfer_id);
CREATE INDEX accounts_opened_idx ON accounts (tenant_id, opened_sequence, account_id);

-- Row-level security as on every tenant table (0001, 0005): FORCEd; the operators' reader role
-- sees the tenant it names, the API's role the tenant of the API key the request binds.
ALTER TABLE transfer_metadata ENABLE ROW LEVEL SECURITY;
ALTER TABLE transfer_metadata FORCE ROW LEVEL SECURITY;
ALTER TABLE account_metadata ENABLE ROW LEVEL SECURITY;
ALTER TABLE account_metadata FORCE ROW LEVEL SECURITY;

CREATE POLICY transfer_metadata_tenant_isolation ON transfer_metadata FOR SELECT
    TO streamledger_reader
    USING (tenant_id = current_setting('streamledger.tenant_id', true));
CREATE POLICY transfer_metadata_api_key_tenant ON transfer_metadata FOR SELECT
    TO streamledger_api
    USING (tenant_id = (SELECT streamledger_auth.api_key_tenant()));
CREATE POLICY account_metadata_tenant_isolation ON account_metadata FOR SELECT
    TO streamledger_reader
    USING (tenant_id = current_setting('streamledger.tenant_id', true));
CREATE POLICY account_metadata_api_key_tenant ON account_metadata FOR SELECT
    TO streamledger_api
    USING (tenant_id = (SELECT streamledger_auth.api_key_tenant()));

GRANT SELECT ON transfer_metadata, account_metadata TO streamledger_reader, streamledger_api;
