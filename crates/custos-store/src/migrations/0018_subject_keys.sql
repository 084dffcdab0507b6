-- Crypto-shredding: one key per data subject, outside the ledger's leaves. Ledger events carry
-- personal identifiers sealed under their subject's key; an erasure deletes the row, and the
-- identifiers it sealed can no longer be read or linked. `lookup` is a digest of the subject's
-- label, deleted with the key.
CREATE TABLE subject_keys (
    lookup      TEXT PRIMARY KEY,
    key_id      TEXT NOT NULL UNIQUE,
    secret      TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- The end user a gateway call was made for (the OpenAI `user` field), for showback and for
-- erasure: an erasure clears it.
ALTER TABLE usage_records ADD COLUMN end_user TEXT;
CREATE INDEX usage_records_end_user ON usage_records (end_user);

-- An erasure keeps its receipt's body and the ledger entry its proof is of, so the signed
-- receipt can be built again (by any surface) once a checkpoint covers it.
ALTER TABLE erasures ADD COLUMN receipt TEXT;
ALTER TABLE erasures ADD COLUMN receipt_index BIGINT;
