-- 0005_force_row_level_security: row-level security binds every role but the app role, and the
-- HTTP API's read role sees only the tenant of the API key the request presents
-- (issue 14, docs/decisions/0024-tenant-binding.md).
--
--   * FORCE: a table's owner is no longer exempt from its policies by ownership alone. The app
--     role `streamledger` (owner, and the projection, which writes every tenant with COPY —
--     refused on a table whose policies apply to the session) keeps its access through the
--     BYPASSRLS attribute, which infra/postgres_provision.sql gives it; this file checks that
--     first and says how to fix it, rather than leaving a projection that fails at its first COPY.
--   * `streamledger_api` (the API): its policies do not trust a tenant name. The request binds
--     the SHA-256 of its API key (set_config('streamledger.api_key_sha256', hex, true)) and
--     streamledger_auth.api_key_tenant(), a SECURITY DEFINER function, turns it into the tenant
--     holding that key (NULL for an unknown or revoked key): naming another tenant, or setting
--     any other variable, shows nothing. The role cannot read api_keys, so it cannot learn
--     another tenant's digest. A revoked key stops reading at once.
--   * `streamledger_reader` (operators' `streamledger balance`, `history`) keeps naming its
--     tenant with set_config('streamledger.tenant_id'): it is not given to anything facing
--     tenants.
-- The functions live in streamledger_auth (not in a generation schema), so every statement on
-- them is idempotent: each rebuild generation runs this file again.

DO $check$
BEGIN
    IF NOT (SELECT rolbypassrls OR rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)
    THEN
        RAISE EXCEPTION 'role % writes every tenant (the projection) and must have BYPASSRLS once row-level security is FORCEd', current_user
            USING HINT = format('as a superuser: ALTER ROLE %I BYPASSRLS (infra/postgres_provision.sql)', current_user);
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'streamledger_api') THEN
        RAISE EXCEPTION 'role streamledger_api (the HTTP API''s read role) does not exist'
            USING HINT = 'run infra/postgres_provision.sql as a superuser (`streamledger infra up` does)';
    END IF;
END
$check$;

ALTER TABLE accounts FORCE ROW LEVEL SECURITY;
ALTER TABLE balances FORCE ROW LEVEL SECURITY;
ALTER TABLE transfers FORCE ROW LEVEL SECURITY;
ALTER TABLE entries FORCE ROW LEVEL SECURITY;
ALTER TABLE tenant_heads FORCE ROW LEVEL SECURITY;

-- The tenant of the API key bound to this transaction, or NULL. STABLE, evaluated once per query
-- through the scalar subqueries in the policies below.
CREATE OR REPLACE FUNCTION streamledger_auth.api_key_tenant()
RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
    SELECT k.tenant_id FROM streamledger_auth.api_keys AS k
    WHERE k.revoked_at IS NULL
      AND k.token_sha256 = (
          SELECT decode(bound.digest, 'hex')
          FROM (SELECT current_setting('streamledger.api_key_sha256', true) AS digest) AS bound
          WHERE bound.digest ~ '^[0-9a-f]{64}$'
      )
$function$;

REVOKE ALL ON FUNCTION streamledger_auth.api_key_tenant() FROM PUBLIC;
GRANT USAGE ON SCHEMA streamledger_auth TO streamledger_api;
GRANT EXECUTE ON FUNCTION streamledger_auth.api_key_tenant() TO streamledger_api;
-- The API authenticates a request with the same lookup the reader role uses (0003).
GRANT EXECUTE ON FUNCTION streamledger_auth.tenant_for_api_key(bytea) TO streamledger_api;

CREATE POLICY accounts_api_key_tenant ON accounts FOR SELECT TO streamledger_api
    USING (tenant_id = (SELECT streamledger_auth.api_key_tenant()));
CREATE POLICY balances_api_key_tenant ON balances FOR SELECT TO streamledger_api
    USING (tenant_id = (SELECT streamledger_auth.api_key_tenant()));
CREATE POLICY transfers_api_key_tenant ON transfers FOR SELECT TO streamledger_api
    USING (tenant_id = (SELECT streamledger_auth.api_key_tenant()));
CREATE POLICY entries_api_key_tenant ON entries FOR SELECT TO streamledger_api
    USING (tenant_id = (SELECT streamledger_auth.api_key_tenant()));
CREATE POLICY tenant_heads_api_key_tenant ON tenant_heads FOR SELECT TO streamledger_api
    USING (tenant_id = (SELECT streamledger_auth.api_key_tenant()));

GRANT SELECT ON accounts, balances, transfers, entries, tenant_heads TO streamledger_api;

DO $grant$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO streamledger_api', current_schema());
END
$grant$;
