-- 0004_tenant_quarantine: a tenant whose log does not continue its chain is quarantined, and the
-- projection keeps going for every other tenant (issue 13, docs/decisions/0019-tenant-quarantine.md).
--
-- Both tables belong to the schema generation, like the rows they guard, and are written in the
-- same transaction as the batch and its offsets (exactly once). The read role has no access:
-- they are operations data, found by `streamledger verify` and docs/runbook.md.

-- One row per quarantined tenant: the first record that did not continue its chain. From that
-- record on, none of the tenant's events is projected (its rows and tenant_heads stay at
-- projected_sequence); the other tenants are not affected. Only a rebuild clears a row
-- (`streamledger project --rebuild`, with `--release-tenant` once an operator has decided).
CREATE TABLE quarantined_tenants (
    tenant_id text NOT NULL CHECK (char_length(tenant_id) BETWEEN 1 AND 255),
    reason text NOT NULL CHECK (reason IN (
        'wrong_partition',  -- the event is on a partition that is not its tenant's
        'sequence_repeat',  -- sequence <= the projected head
        'sequence_gap',     -- sequence > the projected head + 1
        'chain_broken',     -- prev_hash is not the hash of the projected head
        'time_went_back',   -- effective before the tenant's previous event
        'fold_failed'       -- the event cannot apply (e.g. finalizes a transfer that is not pending)
    )),
    detail text NOT NULL,
    topic text NOT NULL CHECK (char_length(topic) BETWEEN 1 AND 249),
    partition integer NOT NULL CHECK (partition >= 0),
    record_offset bigint NOT NULL CHECK (record_offset >= 0),
    sequence bigint NOT NULL,
    projected_sequence bigint NOT NULL CHECK (projected_sequence >= 0),
    -- The tenant's events read and not projected since (the offending one included).
    held_events bigint NOT NULL DEFAULT 0 CHECK (held_events >= 0),
    -- Wall-clock times of the writes (operations only).
    first_seen_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    last_seen_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT quarantined_tenants_pkey PRIMARY KEY (tenant_id)
);

-- An operator's release of a tenant (`project --rebuild --release-tenant T`): the tenant's
-- records on `partition` before `before_offset` were reviewed. Of those, a record on a partition
-- that is not the tenant's is not part of its ledger and is skipped; a record on the tenant's own
-- partition that is effective before its predecessor is projected as the log holds it. Anything
-- else still quarantines. Every rebuild copies the live generation's releases into the new one.
CREATE TABLE tenant_releases (
    tenant_id text NOT NULL CHECK (char_length(tenant_id) BETWEEN 1 AND 255),
    partition integer NOT NULL CHECK (partition >= 0),
    before_offset bigint NOT NULL CHECK (before_offset >= 0),
    quarantine text NOT NULL,  -- the quarantine that was released (reason: detail), for audit
    released_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT tenant_releases_pkey PRIMARY KEY (tenant_id, partition)
);
