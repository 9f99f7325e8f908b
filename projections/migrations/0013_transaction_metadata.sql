-- 0013_transaction_metadata: metadata search of multi-leg transactions (issue 19 §3,
-- docs/decisions/0077-transaction-search.md).
--
-- `transactions.metadata` (0009) holds each transaction's PostTransaction metadata, and each of
-- its posting rows in `transfers` carries the same map, so GET /v1/transfers finds postings.
-- GET /v1/transactions returns the transactions themselves, one row each. Its index is a table
-- for the reason 0009 gives (under FORCEd row-level security only LEAKPROOF conditions are index
-- conditions; `jsonb @>` is not one): one row per (transaction, metadata key), primary key in the
-- search's order, written by the projection in the batch's transaction like transfer_metadata.
-- Searching transfer_metadata for posting 0 instead would walk every plain transfer of a common
-- value to find the few transactions among them.

CREATE TABLE transaction_metadata (
    tenant_id text NOT NULL CHECK (char_length(tenant_id) BETWEEN 1 AND 255),
    key text NOT NULL CHECK (char_length(key) BETWEEN 1 AND 64),
    value text NOT NULL CHECK (char_length(value) <= 512),
    created_sequence bigint NOT NULL CHECK (created_sequence > 0),
    transaction_id text NOT NULL,
    CONSTRAINT transaction_metadata_pkey
        PRIMARY KEY (tenant_id, key, value, created_sequence, transaction_id)
);

-- Transactions projected before this migration: their metadata is already in the table.
INSERT INTO transaction_metadata (tenant_id, key, value, created_sequence, transaction_id)
SELECT x.tenant_id, entry.key, entry.value, x.created_sequence, x.transaction_id
FROM transactions AS x CROSS JOIN LATERAL jsonb_each_text(x.metadata) AS entry;

-- Listing without a metadata filter pages in creation order, newest first: the keyset of
-- GET /v1/transactions is (created_sequence, transaction_id).
CREATE INDEX transactions_created_idx ON transactions (tenant_id, created_sequence, transaction_id);

-- Row-level security as on every tenant table (0001, 0005): FORCEd; the operators' reader role
-- sees the tenant it names, the API's role the tenant of the API key the request binds.
ALTER TABLE transaction_metadata ENABLE ROW LEVEL SECURITY;
ALTER TABLE transaction_metadata FORCE ROW LEVEL SECURITY;

CREATE POLICY transaction_metadata_tenant_isolation ON transaction_metadata FOR SELECT
    TO streamledger_reader
    USING (tenant_id = current_setting('streamledger.tenant_id', true));
CREATE POLICY transaction_metadata_api_key_tenant ON transaction_metadata FOR SELECT
    TO streamledger_api
    USING (tenant_id = (SELECT streamledger_auth.api_key_tenant()));

GRANT SELECT ON transaction_metadata TO streamledger_reader, streamledger_api;
