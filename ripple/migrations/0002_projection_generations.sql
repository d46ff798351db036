-- ripple schema 2: projection tables are generations, so a rebuild folds into the next generation (its shadow)
-- while the current one stays live, and the swap is one UPDATE plus DROPs in a writer transaction.
-- failed_at: the offset whose fold raised (status 'failed'); the checkpoint stays at the offset before it.

ALTER TABLE projections ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE projections ADD COLUMN failed_at INTEGER;
