-- SQLite only: make each ledger table one B-tree ordered by its key. `BIGINT PRIMARY KEY` is
-- not a rowid alias, so every row went into the table and a separate index, and every
-- ordered scan sought from the index into the table for each row.
CREATE TABLE ledger_entries_clustered (
    idx          INTEGER PRIMARY KEY,
    recorded_at  BIGINT NOT NULL,
    event        TEXT NOT NULL,
    leaf_hash    TEXT NOT NULL
);
INSERT INTO ledger_entries_clustered (idx, recorded_at, event, leaf_hash)
    SELECT idx, recorded_at, event, leaf_hash FROM ledger_entries ORDER BY idx;
DROP TABLE ledger_entries;
ALTER TABLE ledger_entries_clustered RENAME TO ledger_entries;
CREATE TABLE ledger_nodes_clustered (
    level  BIGINT NOT NULL,
    idx    BIGINT NOT NULL,
    hash   TEXT NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
INSERT INTO ledger_nodes_clustered (level, idx, hash)
    SELECT level, idx, hash FROM ledger_nodes ORDER BY level, idx;
DROP TABLE ledger_nodes;
ALTER TABLE ledger_nodes_clustered RENAME TO ledger_nodes;
CREATE TRIGGER ledger_entries_append_only_update BEFORE UPDATE ON ledger_entries
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER ledger_entries_delete_only_pruned BEFORE DELETE ON ledger_entries
WHEN OLD.idx >= (SELECT COALESCE(MAX(size), 0) FROM ledger_prunes)
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: only entries below a signed prune point may be deleted'); END;
CREATE TRIGGER ledger_nodes_append_only_update BEFORE UPDATE ON ledger_nodes
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER ledger_nodes_append_only_delete BEFORE DELETE ON ledger_nodes
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
