-- 0002_drop_per_row_foreign_keys: the projection's write path without per-row foreign keys.
--
-- docs/decisions/0007-projection-write-path.md has the measurements and the argument. In short:
-- each of these constraints ran one RI trigger (an index probe plus a FOR KEY SHARE row lock on
-- the referenced row) per inserted row: four per transfer event. That was ~70% of the server's
-- cost of a COPY into entries and transfers. The projection proves the same facts once per
-- batch instead (projections/store.py):
--   * every entry's and every transfer's accounts are in the batch's balances-after
--     (projections/batch.py raises otherwise), and the balances upsert JOINs accounts and must
--     write one row per account (a missing account fails the batch);
--   * every entry's transfer is created in the same batch or was read FOR UPDATE from
--     `transfers` before it is finalized (fold_transfers raises on a missing one).
-- Kept: balances_account_fkey (one row per touched account per batch; it makes
-- balances.normal_side agree with the account) and transfers_reverses_fkey (NULL for all but
-- reversals, so it costs nothing on the common path).

ALTER TABLE entries DROP CONSTRAINT entries_account_fkey;
ALTER TABLE entries DROP CONSTRAINT entries_transfer_fkey;
ALTER TABLE transfers DROP CONSTRAINT transfers_debit_account_fkey;
ALTER TABLE transfers DROP CONSTRAINT transfers_credit_account_fkey;
