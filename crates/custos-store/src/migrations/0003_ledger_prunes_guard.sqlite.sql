DROP TRIGGER ledger_entries_append_only_delete;
CREATE TRIGGER ledger_entries_delete_only_pruned BEFORE DELETE ON ledger_entries
WHEN OLD.idx >= (SELECT COALESCE(MAX(size), 0) FROM ledger_prunes)
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: only entries below a signed prune point may be deleted'); END;
CREATE TRIGGER ledger_prunes_append_only_update BEFORE UPDATE ON ledger_prunes
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER ledger_prunes_append_only_delete BEFORE DELETE ON ledger_prunes
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
