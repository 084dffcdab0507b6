-- Key each stored Merkle node by the last entry it covers, then its level, instead of by
-- (level, index): every node an append creates then lands at the end of the primary-key
-- index rather than at the right edge of every level's range. A node's index at its level
-- is ((last_leaf + 1) >> level) - 1.
CREATE TABLE ledger_nodes_by_leaf (
    last_leaf  BIGINT NOT NULL,
    level      BIGINT NOT NULL,
    hash       TEXT NOT NULL,
    PRIMARY KEY (last_leaf, level)
);
INSERT INTO ledger_nodes_by_leaf (last_leaf, level, hash)
    SELECT ((idx + 1) << level::INTEGER) - 1, level, hash FROM ledger_nodes ORDER BY 1, 2;
DROP TABLE ledger_nodes;
ALTER TABLE ledger_nodes_by_leaf RENAME TO ledger_nodes;
CREATE TRIGGER ledger_nodes_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON ledger_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION custos_ledger_append_only();
