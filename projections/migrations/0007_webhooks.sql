-- 0007_webhooks: tenants' webhook endpoints and their deliveries (issue 18,
-- docs/decisions/0038-webhook-subscriptions-and-delivery.md), and two indexes for the live event
-- stream (docs/decisions/0039-live-event-stream.md).
--
-- Endpoints and deliveries are not a projection of the log: they live in their own schema,
-- `streamledger_notify`, named explicitly, so a blue/green rebuild (which runs these files into a
-- fresh generation schema and drops the old one) neither copies nor drops them. Every statement
-- on that schema is idempotent, because each generation's migration history runs this file again.
--
--   * the dispatcher (`streamledger notify`) is the app role: it reads every endpoint, secrets
--     included, and writes deliveries;
--   * the HTTP API's role `streamledger_api` sees only the rows of the tenant of the API key the
--     request binds (decision 0024), never a secret (column grants), and writes only through the
--     SECURITY DEFINER functions below, which take the tenant from the bound key, never from an
--     argument. Its sessions stay read-only by default; a write request opens a READ WRITE
--     transaction for the one function call.

CREATE SCHEMA IF NOT EXISTS streamledger_notify;

CREATE TABLE IF NOT EXISTS streamledger_notify.webhook_endpoints (
    tenant_id text NOT NULL CHECK (char_length(tenant_id) BETWEEN 1 AND 64),
    endpoint_id text NOT NULL CHECK (endpoint_id ~ '^we_[0-9a-f]{16}$'),
    url text NOT NULL CHECK (char_length(url) <= 2048 AND url ~ '^https?://[^[:space:]]+$'),
    event_types text[] NOT NULL CHECK (cardinality(event_types) BETWEEN 1 AND 16),
    secret text NOT NULL CHECK (secret ~ '^whsec_[A-Za-z0-9_-]{43}$'),
    -- The tenant's last event sequence when the endpoint was created: it gets later events.
    starts_after bigint NOT NULL DEFAULT 0 CHECK (starts_after >= 0),
    enabled boolean NOT NULL DEFAULT true,
    disabled_reason text CHECK (char_length(disabled_reason) <= 512),
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT webhook_endpoints_pkey PRIMARY KEY (tenant_id, endpoint_id)
);

-- One row per (endpoint, event) the dispatcher stored: delivered (kept for `streamledger
-- webhooks verify` and for the restart position), pending (spilled from a full in-memory queue,
-- or a dead letter being replayed) or dead (the endpoint was disabled; the tenant lists and
-- replays them through the API).
CREATE TABLE IF NOT EXISTS streamledger_notify.webhook_deliveries (
    tenant_id text NOT NULL,
    endpoint_id text NOT NULL,
    sequence bigint NOT NULL CHECK (sequence > 0),
    delivery_id text NOT NULL CHECK (char_length(delivery_id) BETWEEN 1 AND 128),
    event_type text NOT NULL CHECK (char_length(event_type) BETWEEN 1 AND 64),
    status text NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    body bytea NOT NULL,
    event_committed_at timestamptz NOT NULL,  -- the event record's Kafka timestamp
    signed_at_s bigint,  -- t= of the last signature sent
    signature text,  -- the whole header of the last attempt
    attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error text CHECK (char_length(last_error) <= 512),
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT webhook_deliveries_pkey PRIMARY KEY (tenant_id, endpoint_id, sequence),
    CONSTRAINT webhook_deliveries_endpoint_fkey FOREIGN KEY (tenant_id, endpoint_id)
        REFERENCES streamledger_notify.webhook_endpoints (tenant_id, endpoint_id) ON DELETE CASCADE
);

-- One row, bumped in the same transaction as every change the API makes to endpoints. The
-- dispatcher reads it after taking each batch of events and before routing it: an endpoint
-- whose creation committed before those events were committed is then always known
-- (causality, no clocks), so it gets every event after its creation.
CREATE TABLE IF NOT EXISTS streamledger_notify.endpoint_changes (
    singleton boolean NOT NULL DEFAULT true CHECK (singleton),
    version bigint NOT NULL DEFAULT 0,
    CONSTRAINT endpoint_changes_pkey PRIMARY KEY (singleton)
);
INSERT INTO streamledger_notify.endpoint_changes (singleton, version) VALUES (true, 0)
    ON CONFLICT (singleton) DO NOTHING;

CREATE OR REPLACE FUNCTION streamledger_notify.note_endpoint_change()
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $function$
    UPDATE streamledger_notify.endpoint_changes SET version = version + 1 WHERE singleton
$function$;

CREATE INDEX IF NOT EXISTS webhook_deliveries_status_idx
    ON streamledger_notify.webhook_deliveries (tenant_id, endpoint_id, status, sequence);

ALTER TABLE streamledger_notify.webhook_endpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE streamledger_notify.webhook_endpoints FORCE ROW LEVEL SECURITY;
ALTER TABLE streamledger_notify.webhook_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE streamledger_notify.webhook_deliveries FORCE ROW LEVEL SECURITY;

DROP POLICY IF EXISTS webhook_endpoints_api_key_tenant ON streamledger_notify.webhook_endpoints;
CREATE POLICY webhook_endpoints_api_key_tenant ON streamledger_notify.webhook_endpoints
    FOR SELECT TO streamledger_api
    USING (tenant_id = (SELECT streamledger_auth.api_key_tenant()));
DROP POLICY IF EXISTS webhook_deliveries_api_key_tenant ON streamledger_notify.webhook_deliveries;
CREATE POLICY webhook_deliveries_api_key_tenant ON streamledger_notify.webhook_deliveries
    FOR SELECT TO streamledger_api
    USING (tenant_id = (SELECT streamledger_auth.api_key_tenant()));

GRANT USAGE ON SCHEMA streamledger_notify TO streamledger_api;
GRANT SELECT (tenant_id, endpoint_id, url, event_types, starts_after, enabled, disabled_reason,
              created_at, updated_at)
    ON streamledger_notify.webhook_endpoints TO streamledger_api;
GRANT SELECT (tenant_id, endpoint_id, sequence, delivery_id, event_type, status, body,
              event_committed_at, attempts, last_error, updated_at)
    ON streamledger_notify.webhook_deliveries TO streamledger_api;

-- The bound key's tenant, or an error: every write function starts with it.
CREATE OR REPLACE FUNCTION streamledger_notify.bound_tenant()
RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    tenant text := streamledger_auth.api_key_tenant();
BEGIN
    IF tenant IS NULL THEN
        RAISE EXCEPTION 'no live API key is bound to this transaction' USING ERRCODE = '42501';
    END IF;
    RETURN tenant;
END
$function$;

-- 'created', or 'too_many' when the tenant already has endpoints_max endpoints.
CREATE OR REPLACE FUNCTION streamledger_notify.create_webhook_endpoint(
    new_endpoint_id text, new_url text, new_event_types text[], new_secret text,
    new_starts_after bigint, endpoints_max integer
)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    tenant text := streamledger_notify.bound_tenant();
BEGIN
    -- Serialise creations per tenant so the count below is a real bound.
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('webhooks:' || tenant, 0));
    IF (SELECT count(*) FROM streamledger_notify.webhook_endpoints WHERE tenant_id = tenant)
        >= endpoints_max THEN
        RETURN 'too_many';
    END IF;
    INSERT INTO streamledger_notify.webhook_endpoints
        (tenant_id, endpoint_id, url, event_types, secret, starts_after)
    VALUES (tenant, new_endpoint_id, new_url, new_event_types, new_secret, new_starts_after);
    PERFORM streamledger_notify.note_endpoint_change();
    RETURN 'created';
END
$function$;

CREATE OR REPLACE FUNCTION streamledger_notify.delete_webhook_endpoint(target text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    tenant text := streamledger_notify.bound_tenant();
BEGIN
    DELETE FROM streamledger_notify.webhook_endpoints
    WHERE tenant_id = tenant AND endpoint_id = target;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM streamledger_notify.note_endpoint_change();
    RETURN true;
END
$function$;

-- Re-enable the endpoint and queue its dead letters again, in sequence order; NULL when the
-- tenant has no such endpoint, else how many dead letters were queued.
CREATE OR REPLACE FUNCTION streamledger_notify.replay_webhook_dead_letters(target text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    tenant text := streamledger_notify.bound_tenant();
    queued bigint;
BEGIN
    UPDATE streamledger_notify.webhook_endpoints
    SET enabled = true, disabled_reason = NULL, updated_at = pg_catalog.now()
    WHERE tenant_id = tenant AND endpoint_id = target;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    UPDATE streamledger_notify.webhook_deliveries
    SET status = 'pending', attempts = 0, updated_at = pg_catalog.now()
    WHERE tenant_id = tenant AND endpoint_id = target AND status = 'dead';
    GET DIAGNOSTICS queued = ROW_COUNT;
    PERFORM streamledger_notify.note_endpoint_change();
    RETURN queued;
END
$function$;

REVOKE ALL ON FUNCTION streamledger_notify.bound_tenant() FROM PUBLIC;
REVOKE ALL ON FUNCTION streamledger_notify.note_endpoint_change() FROM PUBLIC;
REVOKE ALL ON FUNCTION streamledger_notify.create_webhook_endpoint(
    text, text, text[], text, bigint, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION streamledger_notify.delete_webhook_endpoint(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION streamledger_notify.replay_webhook_dead_letters(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION streamledger_notify.create_webhook_endpoint(
    text, text, text[], text, bigint, integer) TO streamledger_api;
GRANT EXECUTE ON FUNCTION streamledger_notify.delete_webhook_endpoint(text) TO streamledger_api;
GRANT EXECUTE ON FUNCTION streamledger_notify.replay_webhook_dead_letters(text)
    TO streamledger_api;

-- The live stream (decision 0039) reads a tenant's events by sequence: the transfer events'
-- entries and the accounts opened, each found by (tenant, sequence) with one index probe.
-- These are the generation's own tables (unqualified names: search_path is the generation).
CREATE INDEX entries_tenant_sequence_idx ON entries (tenant_id, sequence);
CREATE INDEX accounts_opened_sequence_idx ON accounts (tenant_id, opened_sequence);
