-- 0016_reconciliation_refusals: manual requests the matcher refused, as rows (issue 20 §3,
-- reconciliation contract v1.2, docs/decisions/0107-a-refused-manual-request-is-a-record.md).
--
-- A ManualRefusal on ledger.reconciliation names the request it answers (its position on
-- ledger.statements, the 202's request_id) and the matcher's reason; it decides nothing, so it
-- is not a row of reconciliation_results. Written by the reconciliation projection with the
-- other rows of its batch and the batch's offsets in one transaction; its position is its
-- identity, as for results.
CREATE TABLE reconciliation_refusals (
    tenant_id text NOT NULL CHECK (char_length(tenant_id) BETWEEN 1 AND 255),
    account_id text NOT NULL CHECK (char_length(account_id) BETWEEN 1 AND 128),
    record_partition integer NOT NULL CHECK (record_partition >= 0),
    record_offset bigint NOT NULL CHECK (record_offset >= 0),
    request_id text NOT NULL CHECK (request_id ~ '^[0-9]{1,9}:[0-9]{1,19}$'),
    request_type text NOT NULL CHECK (request_type IN ('ManualMatch', 'ManualUnmatch')),
    actor text NOT NULL,
    line_ids text[] NOT NULL,
    movement_ids text[] NOT NULL,
    reason text NOT NULL,
    refused_at timestamptz NOT NULL,
    CONSTRAINT reconciliation_refusals_pkey
        PRIMARY KEY (tenant_id, record_partition, record_offset)
);

-- a client holding a request_id (the 202 of POST /v1/reconciliation/matches) looks it up
CREATE INDEX reconciliation_refusals_request_idx
    ON reconciliation_refusals (tenant_id, request_id);

ALTER TABLE reconciliation_refusals ENABLE ROW LEVEL SECURITY;
ALTER TABLE reconciliation_refusals FORCE ROW LEVEL SECURITY;

CREATE POLICY reconciliation_refusals_tenant_isolation ON reconciliation_refusals FOR SELECT
    TO streamledger_reader
    USING (tenant_id = current_setting('streamledger.tenant_id', true));
CREATE POLICY reconciliation_refusals_api_key_tenant ON reconciliation_refusals FOR SELECT
    TO streamledger_api
    USING (tenant_id = (SELECT streamledger_auth.api_key_tenant()));

GRANT SELECT ON reconciliation_refusals TO streamledger_reader, streamledger_api;
