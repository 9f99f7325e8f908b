-- 0011_webhook_delivery_ids: a webhook delivery is identified by its delivery id, so one event
-- can cause several deliveries to one endpoint: balance-monitor notifications (issue 18,
-- docs/decisions/0068-monitor-notifications-as-webhooks.md) share the causing event's sequence
-- and are told apart by their notification id `{tenant}:{sequence}:{monitor_id}`. An event's
-- delivery id stays `{tenant}:{sequence}`, so existing rows keep their identity.
--
-- Like 0007, this touches only `streamledger_notify` (not a projection: a rebuild neither copies
-- nor drops it) and every statement is idempotent, because each generation's migration history
-- runs this file again.

ALTER TABLE streamledger_notify.webhook_deliveries
    ADD COLUMN IF NOT EXISTS source text NOT NULL DEFAULT 'event';

DO $migration$
BEGIN
    IF NOT EXISTS (
        SELECT FROM pg_catalog.pg_constraint
        WHERE conname = 'webhook_deliveries_source_check'
          AND conrelid = 'streamledger_notify.webhook_deliveries'::regclass
    ) THEN
        ALTER TABLE streamledger_notify.webhook_deliveries
            ADD CONSTRAINT webhook_deliveries_source_check
            CHECK (source IN ('event', 'notification'));
    END IF;
    -- The key was (tenant, endpoint, sequence); it becomes (tenant, endpoint, delivery id).
    IF NOT EXISTS (
        SELECT FROM pg_catalog.pg_constraint
        WHERE conname = 'webhook_deliveries_id_pkey'
          AND conrelid = 'streamledger_notify.webhook_deliveries'::regclass
    ) THEN
        ALTER TABLE streamledger_notify.webhook_deliveries
            DROP CONSTRAINT IF EXISTS webhook_deliveries_pkey;
        ALTER TABLE streamledger_notify.webhook_deliveries
            ADD CONSTRAINT webhook_deliveries_id_pkey
            PRIMARY KEY (tenant_id, endpoint_id, delivery_id);
    END IF;
END
$migration$;

-- The dispatcher's restart points (the highest stored sequence of each source) and the stored
-- deliveries read back in order: (sequence, delivery id in byte order), an event before the
-- notifications it caused.
CREATE INDEX IF NOT EXISTS webhook_deliveries_order_idx
    ON streamledger_notify.webhook_deliveries
    (tenant_id, endpoint_id, source, sequence, delivery_id COLLATE "C");

GRANT SELECT (source) ON streamledger_notify.webhook_deliveries TO streamledger_api;
