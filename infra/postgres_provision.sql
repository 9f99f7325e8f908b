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
--   streamledger         the app role: owns the database and the projection schemas;
--   streamledger_reader  the tenant-scoped read role that row-level security applies to
--                        (projections/migrations); its sessions are read-only by default, and
--                        the migrations grant it nothing to write anyway.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'streamledger') THEN
        CREATE ROLE streamledger WITH LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'streamledger_reader') THEN
        CREATE ROLE streamledger_reader WITH LOGIN;
    END IF;
END
$$;

-- Every run converges the attributes to the design, even if someone changed them by hand.
ALTER ROLE streamledger WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    PASSWORD 'streamledger';
ALTER ROLE streamledger_reader WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
    NOBYPASSRLS PASSWORD 'streamledger_reader';
ALTER ROLE streamledger_reader SET default_transaction_read_only = on;

ALTER DATABASE streamledger OWNER TO streamledger;
REVOKE ALL ON DATABASE streamledger FROM PUBLIC;
GRANT CONNECT ON DATABASE streamledger TO streamledger_reader;
