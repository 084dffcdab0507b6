-- Key each stored Merkle node by the last entry it covers, then its level, instead of by
-- (level, index): every node an append creates then lands at the end of the B-tree. Keyed
-- by level, a batch touched the right edge of every level's range, about eight pages per
-- commit, and doubled the bytes each small group commit wrote. A node's index at its level
-- is ((last_leaf + 1) >> level) - 1.
CREATE TABLE ledger_nodes_by_leaf (
    last_leaf  BIGINT NOT NULL,
    level      BIGINT NOT NULL,
    hash       TEXT NOT NULL,
    PRIMARY KEY (last_leaf, level)
) WITHOUT ROWID;
INSERT INTO ledger_nodes_by_leaf (last_leaf, level, hash)
    SELECT ((idx + 1) << level) - 1, level, hash FROM ledger_nodes ORDER BY 1, 2;
DROP TABLE ledger_nodes;
ALTER TABLE ledger_nodes_by_leaf RENAME TO ledger_nodes;
CREATE TRIGGER ledger_nodes_append_only_update BEFORE UPDATE ON ledger_nodes
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER ledger_nodes_append_only_delete BEFORE DELETE ON ledger_nodes
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
