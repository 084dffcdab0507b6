DROP TRIGGER ledger_entries_append_only ON ledger_entries;
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION custos_ledger_append_only();
CREATE FUNCTION custos_ledger_delete_only_pruned() RETURNS trigger AS $$
BEGIN
    IF OLD.idx >= (SELECT COALESCE(MAX(size), 0) FROM ledger_prunes) THEN
        RAISE EXCEPTION 'the ledger is append-only: only entries below a signed prune point may be deleted';
    END IF;
    RETURN OLD;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER ledger_entries_delete_only_pruned BEFORE DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION custos_ledger_delete_only_pruned();
CREATE TRIGGER ledger_prunes_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON ledger_prunes
    FOR EACH STATEMENT EXECUTE FUNCTION custos_ledger_append_only();
