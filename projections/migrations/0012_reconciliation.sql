-- 0012_reconciliation: bank statements and reconciliation results as PostgreSQL tables (issue 20,
-- docs/decisions/0074-reconciliation-tables-by-a-projection.md), for GET /v1/reconciliation.
--
-- Written by the reconciliation projection (`streamledger reconcile project`), which reads
-- ledger.statements and ledger.reconciliation read_committed and stores each batch's rows with
-- its next offsets (projection_offsets, projection 'reconciliation') in ONE transaction. Every
-- row is a copy of one Kafka record: its position (partition, offset) is its identity, so a
-- batch written twice is refused by the offset check, never duplicated.

-- One row per imported statement file (the Statement record).
CREATE TABLE statements (
    tenant_id text NOT NULL CHECK (char_length(tenant_id) BETWEEN 1 AND 255),
    account_id text NOT NULL CHECK (char_length(account_id) BETWEEN 1 AND 128),
    file_sha256 text NOT NULL CHECK (file_sha256 ~ '^[0-9a-f]{64}$'),
    format text NOT NULL CHECK (format IN ('camt.053', 'csv', 'bai2')),
    statement_id text,
    currency text NOT NULL,
    opening_balance bigint,
    opening_balance_date date,
    closing_balance bigint,
    closing_balance_date date,
    from_date date,
    to_date date,
    line_count integer NOT NULL CHECK (line_count >= 0),
    new_line_count integer NOT NULL CHECK (new_line_count BETWEEN 0 AND line_count),
    entries_not_booked integer NOT NULL CHECK (entries_not_booked >= 0),
    imported_at timestamptz NOT NULL,
    record_partition integer NOT NULL CHECK (record_partition >= 0),
    record_offset bigint NOT NULL CHECK (record_offset >= 0),
    CONSTRAINT statements_pkey PRIMARY KEY (tenant_id, account_id, file_sha256)
);

-- One row per imported statement line (the StatementLine record); amounts are positive minor
-- units, the direction is the bank's (credit = into the bank account, decision 0053).
CREATE TABLE statement_lines (
    tenant_id text NOT NULL CHECK (char_length(tenant_id) BETWEEN 1 AND 255),
    account_id text NOT NULL CHECK (char_length(account_id) BETWEEN 1 AND 128),
    line_id text NOT NULL CHECK (char_length(line_id) BETWEEN 1 AND 1024),
    file_sha256 text NOT NULL CHECK (file_sha256 ~ '^[0-9a-f]{64}$'),
    statement_id text,
    line_number integer NOT NULL CHECK (line_number > 0),
    amount bigint NOT NULL CHECK (amount > 0),
    currency text NOT NULL,
    direction text NOT NULL CHECK (direction IN ('credit', 'debit')),
    reversal boolean NOT NULL,
    booking_date date NOT NULL,
    value_date date,
    bank_reference text,
    entry_reference text,
    end_to_end_reference text,
    counterparty_name text,
    counterparty_account text,
    remittance_information text,
    record_partition integer NOT NULL CHECK (record_partition >= 0),
    record_offset bigint NOT NULL CHECK (record_offset >= 0),
    -- a line id starts with its account id; the matcher keeps the first record of an id only
    CONSTRAINT statement_lines_pkey PRIMARY KEY (tenant_id, line_id)
);

CREATE INDEX statement_lines_booking_idx ON statement_lines (tenant_id, account_id, booking_date);

-- One row per ReconciliationResult: the final state of its lines and movements. Keyed and
-- ordered by its position on ledger.reconciliation (a tenant's results are on one partition, in
-- the order the matcher decided them).
CREATE TABLE reconciliation_results (
    tenant_id text NOT NULL CHECK (char_length(tenant_id) BETWEEN 1 AND 255),
    account_id text NOT NULL CHECK (char_length(account_id) BETWEEN 1 AND 128),
    record_partition integer NOT NULL CHECK (record_partition >= 0),
    record_offset bigint NOT NULL CHECK (record_offset >= 0),
    state text NOT NULL CHECK (state IN ('matched', 'unmatched', 'mismatched')),
    rule text CHECK (rule IN ('external_reference', 'amount_and_date', 'sum', 'manual')),
    reason text NOT NULL,
    line_ids text[] NOT NULL,
    movement_ids text[] NOT NULL,
    line_amount bigint NOT NULL,  -- signed on the bank's side: credit > 0
    movement_amount bigint NOT NULL,
    decided_at timestamptz NOT NULL,
    CONSTRAINT reconciliation_results_items CHECK (
        cardinality(line_ids) + cardinality(movement_ids) > 0
    ),
    CONSTRAINT reconciliation_results_pkey
        PRIMARY KEY (tenant_id, record_partition, record_offset)
);

-- GET /v1/reconciliation?account=…[&state=…]: keyset over the position, per account and state.
CREATE INDEX reconciliation_results_account_idx
    ON reconciliation_results (tenant_id, account_id, record_partition, record_offset);
CREATE INDEX reconciliation_results_state_idx
    ON reconciliation_results (tenant_id, account_id, state, record_partition, record_offset);

-- Row-level security as on every tenant table (0001, 0005): FORCEd; the operators' reader role
-- sees the tenant it names, the API's role the tenant of the API key the request binds.
ALTER TABLE statements ENABLE ROW LEVEL SECURITY;
ALTER TABLE statements FORCE ROW LEVEL SECURITY;
ALTER TABLE statement_lines ENABLE ROW LEVEL SECURITY;
ALTER TABLE statement_lines FORCE ROW LEVEL SECURITY;
ALTER TABLE reconciliation_results ENABLE ROW LEVEL SECURITY;
ALTER TABLE reconciliation_results FORCE ROW LEVEL SECURITY;

CREATE POLICY statements_tenant_isolation ON statements FOR SELECT TO streamledger_reader
    USING (tenant_id = current_setting('streamledger.tenant_id', true));
CREATE POLICY statements_api_key_tenant ON statements FOR SELECT TO streamledger_api
    USING (tenant_id = (SELECT streamledger_auth.api_key_tenant()));
CREATE POLICY statement_lines_tenant_isolation ON statement_lines FOR SELECT
    TO streamledger_reader
    USING (tenant_id = current_setting('streamledger.tenant_id', true));
CREATE POLICY statement_lines_api_key_tenant ON statement_lines FOR SELECT TO streamledger_api
    USING (tenant_id = (SELECT streamledger_auth.api_key_tenant()));
CREATE POLICY reconciliation_results_tenant_isolation ON reconciliation_results FOR SELECT
    TO streamledger_reader
    USING (tenant_id = current_setting('streamledger.tenant_id', true));
CREATE POLICY reconciliation_results_api_key_tenant ON reconciliation_results FOR SELECT
    TO streamledger_api
    USING (tenant_id = (SELECT streamledger_auth.api_key_tenant()));

GRANT SELECT ON statements, statement_lines, reconciliation_results
    TO streamledger_reader, streamledger_api;
