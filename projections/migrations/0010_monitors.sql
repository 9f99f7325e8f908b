-- 0010_monitors: a tenant's balance monitors as the log has them (issue 18 §1,
-- docs/decisions/0058-balance-monitors.md), for GET /v1/monitors.
--
-- One row per live monitor: inserted by its MonitorCreated event, deleted by its MonitorDeleted
-- event (a deleted monitor's id may be used again). Whether a monitor's condition holds is not
-- stored: notifications are not events, so the projection never sees the flag; a reader computes
-- it from the balance row with the ledger's own definition (ledger.monitors). The edges
-- themselves are on ledger.notifications.

CREATE TABLE monitors (
    tenant_id text NOT NULL CHECK (char_length(tenant_id) BETWEEN 1 AND 255),
    monitor_id text NOT NULL CHECK (char_length(monitor_id) BETWEEN 1 AND 128),
    account_id text NOT NULL CHECK (char_length(account_id) BETWEEN 1 AND 128),
    field text NOT NULL CHECK (
        field IN (
            'debits_posted', 'credits_posted', 'debits_pending', 'credits_pending',
            'posted', 'pending', 'available'
        )
    ),
    operator text NOT NULL CHECK (operator IN ('<', '<=', '>', '>=', '==')),
    threshold bigint NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb
        CONSTRAINT monitors_metadata_object CHECK (jsonb_typeof(metadata) = 'object'),
    created_sequence bigint NOT NULL CHECK (created_sequence > 0),
    created_at timestamptz NOT NULL,
    CONSTRAINT monitors_pkey PRIMARY KEY (tenant_id, monitor_id)
);

-- A tenant's monitors in creation order (the order the processor evaluates them in).
CREATE INDEX monitors_created_idx ON monitors (tenant_id, created_sequence);

-- Row-level security as on every tenant table (0001, 0005): FORCEd; the operators' reader role
-- sees the tenant it names, the API's role the tenant of the API key the request binds.
ALTER TABLE monitors ENABLE ROW LEVEL SECURITY;
ALTER TABLE monitors FORCE ROW LEVEL SECURITY;

CREATE POLICY monitors_tenant_isolation ON monitors FOR SELECT TO streamledger_reader
    USING (tenant_id = current_setting('streamledger.tenant_id', true));
CREATE POLICY monitors_api_key_tenant ON monitors FOR SELECT TO streamledger_api
    USING (tenant_id = (SELECT streamledger_auth.api_key_tenant()));

GRANT SELECT ON monitors TO streamledger_reader, streamledger_api;
