-- StreamLedger's database roles and grants, converged idempotently. One file, two runners:
--
--   * infra/postgres_server.py runs it on every start of the local cluster, as the admin user,
--     right after it has created the `streamledger` database when that was missing;
--   * docker-compose.yml mounts it into the postgres image's /docker-entrypoint-initdb.d/, which
--     runs it (psql, ON_ERROR_STOP) once, on the first start of an empty volume, as the image's
--     superuser (POSTGRES_USER=postgres), after creating POSTGRES_DB=streamledger.
--
-- So it is plain SQL (no psql meta-commands), needs a superuser and an existing `streamledger`
-- database, and may run any number of times. The names and passwords are the local stack's fixed
-- ones (APP_ROLE, APP_PASSWORD, READER_ROLE, READER_PASSWORD, DATABASE_NAME in
-- infra/postgres_server.py; tests/unit/test_postgres_provision.py keeps them equal). Production
-- points STREAMLEDGER_DATABASE_URL at its own server and its own secrets.
--
--   streamledger         the app role: owns the database and the projection schemas; writes
--                        every tenant's rows (the projection, with COPY), so it has BYPASSRLS:
--                        row-level security is FORCEd on the tenant tables (migration 0005,
--                        docs/decisions/0024-tenant-binding.md) and COPY FROM is refused on a
--                        table whose policies apply to the session;
--   streamledger_reader  the operator's tenant-scoped read role (`streamledger balance`, ...):
--                        it sees the tenant it names with set_config('streamledger.tenant_id');
--   streamledger_api     the HTTP API's read role: it sees only the tenant of the API key whose
--                        SHA-256 the request binds (set_config('streamledger.api_key_sha256'));
--                        naming a tenant does nothing for it.
-- Both read roles' sessions are read-only by default; the migrations grant them nothing to write.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'streamledger') THEN
        CREATE ROLE streamledger WITH LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'streamledger_reader') THEN
        CREATE ROLE streamledger_reader WITH LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'streamledger_api') THEN
        CREATE ROLE streamledger_api WITH LOGIN;
    END IF;
END
$$;

-- Every run converges the attributes to the design, even if someone changed them by hand.
ALTER ROLE streamledger WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION BYPASSRLS
    PASSWORD 'streamledger';
ALTER ROLE streamledger_reader WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
    NOBYPASSRLS PASSWORD 'streamledger_reader';
ALTER ROLE streamledger_reader SET default_transaction_read_only = on;
ALTER ROLE streamledger_api WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
    NOBYPASSRLS PASSWORD 'streamledger_api';
ALTER ROLE streamledger_api SET default_transaction_read_only = on;

ALTER DATABASE streamledger OWNER TO streamledger;
REVOKE ALL ON DATABASE streamledger FROM PUBLIC;
GRANT CONNECT ON DATABASE streamledger TO streamledger_reader;
GRANT CONNECT ON DATABASE streamledger TO streamledger_api;
