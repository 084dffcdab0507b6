CREATE TABLE ledger_prunes (
    size             BIGINT PRIMARY KEY,
    note             TEXT NOT NULL,
    exports          TEXT NOT NULL,
    created_at       BIGINT NOT NULL
);
