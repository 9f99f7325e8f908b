-- 0003_api_keys: per-tenant API keys of the HTTP API (issue 10, docs/decisions/0011-http-api.md).
--
-- The keys live in their own schema, `streamledger_auth`, named explicitly here: they are not a
-- projection of the log, so a blue/green rebuild (which runs these files into a fresh generation
-- schema and drops the old one) must neither copy nor drop them. Every statement is idempotent
-- (IF NOT EXISTS / OR REPLACE) because each generation's migration history runs this file again.
--
--   * only the SHA-256 digest of a token is stored; the token is shown once, at creation;
--   * the read role cannot read the table: it may only ask "which tenant holds this digest?"
--     through tenant_for_api_key(), a SECURITY DEFINER function that returns one tenant or NULL.

CREATE SCHEMA IF NOT EXISTS streamledger_auth;

CREATE TABLE IF NOT EXISTS streamledger_auth.api_keys (
    key_id text NOT NULL CHECK (key_id ~ '^[0-9a-f]{16}$'),
    tenant_id text NOT NULL CHECK (char_length(tenant_id) BETWEEN 1 AND 64),
    token_sha256 bytea NOT NULL CHECK (octet_length(token_sha256) = 32),
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    revoked_at timestamptz,
    CONSTRAINT api_keys_pkey PRIMARY KEY (key_id),
    CONSTRAINT api_keys_token_sha256_key UNIQUE (token_sha256)
);

CREATE INDEX IF NOT EXISTS api_keys_tenant_idx ON streamledger_auth.api_keys (tenant_id);

CREATE OR REPLACE FUNCTION streamledger_auth.tenant_for_api_key(digest bytea)
RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
    SELECT tenant_id FROM streamledger_auth.api_keys
    WHERE token_sha256 = digest AND revoked_at IS NULL
$function$;

REVOKE ALL ON FUNCTION streamledger_auth.tenant_for_api_key(bytea) FROM PUBLIC;
GRANT USAGE ON SCHEMA streamledger_auth TO streamledger_reader;
GRANT EXECUTE ON FUNCTION streamledger_auth.tenant_for_api_key(bytea) TO streamledger_reader;
