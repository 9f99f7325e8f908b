-- 0014_event_actor: who issued each event's command (issue 21 §3, contract v1.7,
-- docs/decisions/0093-actor-on-every-event.md).
--
-- Since contract v1.7 every event carries `actor`, inside its hashed bytes: the signing key id
-- the processor verified on the causing command (`PRINCIPAL:vN`), 'system' for an expiry
-- (caused by time), '' for a command accepted unsigned. The projection keeps it twice, both
-- written in the batch's COPY transaction with the event's other rows:
--   * event_chain.actor  one per event (every event, also AccountOpened and the monitor events,
--                        which have no journal row): what `streamledger verify` compares with
--                        the log, and what a transfer's or a transaction's read names as the
--                        actor of the event that created it (a primary-key lookup);
--   * entries.actor      the actor of the journal row's event, so an account's history and its
--                        statement show who moved the money without a join per row.
-- Events written before v1.7 have no actor: they decode with '' and their rows keep the default,
-- which is what the log says. No backfill is needed, and no index: nothing searches by actor.

ALTER TABLE event_chain ADD COLUMN actor text NOT NULL DEFAULT ''
    CONSTRAINT event_chain_actor_length CHECK (char_length(actor) <= 255);
ALTER TABLE entries ADD COLUMN actor text NOT NULL DEFAULT ''
    CONSTRAINT entries_actor_length CHECK (char_length(actor) <= 255);
