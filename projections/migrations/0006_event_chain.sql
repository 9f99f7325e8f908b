-- 0006_event_chain: every projected event's place in its tenant's hash chain (issue 19,
-- docs/decisions/0032-reports-tie-to-the-chain.md).
--
-- A report (statement, trial balance) covers a tenant's log up to one event and names it:
-- (tenant sequence, event hash). tenant_heads holds only the newest link; this table holds every
-- link, written by the projection in the same COPY transaction as the event's other rows, so a
-- report's "as of T" is "up to the last event effective at or before T" and its hash is the log's
-- own. Anyone can check it: recompute the chain from ledger.events up to that sequence.
--
-- A generation migrated before this file held no links for the events it had already projected;
-- `streamledger project --rebuild` replays the log into a fresh generation that has them all.
-- Reports refuse to name a sequence whose link is missing rather than print a figure without it.

CREATE TABLE event_chain (
    tenant_id text NOT NULL CHECK (char_length(tenant_id) BETWEEN 1 AND 255),
    sequence bigint NOT NULL CHECK (sequence > 0),
    hash bytea NOT NULL CHECK (octet_length(hash) = 32),
    effective_at timestamptz NOT NULL,
    CONSTRAINT event_chain_pkey PRIMARY KEY (tenant_id, sequence)
);

-- "The last event of the tenant effective at or before T": one backward index scan. Effective
-- time is non-decreasing in sequence per tenant (the projection asserts it), so this order is
-- the sequence order.
CREATE INDEX event_chain_time_idx ON event_chain (tenant_id, effective_at, sequence);

ALTER TABLE event_chain ENABLE ROW LEVEL SECURITY;
ALTER TABLE event_chain FORCE ROW LEVEL SECURITY;

CREATE POLICY event_chain_tenant_isolation ON event_chain FOR SELECT TO streamledger_reader
    USING (tenant_id = current_setting('streamledger.tenant_id', true));
CREATE POLICY event_chain_api_key_tenant ON event_chain FOR SELECT TO streamledger_api
    USING (tenant_id = (SELECT streamledger_auth.api_key_tenant()));

GRANT SELECT ON event_chain TO streamledger_reader, streamledger_api;
