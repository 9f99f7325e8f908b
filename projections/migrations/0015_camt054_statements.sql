-- 0015_camt054_statements: a statement row may be a camt.054 notification (issue 20 §1,
-- reconciliation contract v1.1, docs/decisions/0099-loadgen-statement-and-camt054.md).
--
-- The Statement record's format enum gained `camt054` (appended); the reconciliation projection
-- stores the format's text, 'camt.054'. A notification has no balances and no period: its row's
-- balance and date columns are NULL, which 0012 already allows.

ALTER TABLE statements DROP CONSTRAINT statements_format_check;
ALTER TABLE statements ADD CONSTRAINT statements_format_check
    CHECK (format IN ('camt.053', 'csv', 'bai2', 'camt.054'));
