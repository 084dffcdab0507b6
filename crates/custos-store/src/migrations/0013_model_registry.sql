-- The model registry: one row per model version with what its registration recorded, its
-- life-cycle state, its signature bundle, card and attestations; and the history of its
-- transitions, each pointing at the ledger entry that records it.
CREATE TABLE model_versions (
    name            TEXT NOT NULL,
    version         TEXT NOT NULL,
    kind            TEXT NOT NULL,
    state           TEXT NOT NULL,
    manifest_digest TEXT,
    registration    TEXT NOT NULL,
    signature       TEXT,
    signer          TEXT,
    card            TEXT,
    card_digest     TEXT,
    card_signature  TEXT,
    attestations    TEXT NOT NULL,
    registered_by   TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE model_history (
    name         TEXT NOT NULL,
    version      TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    at           BIGINT NOT NULL,
    activity     TEXT NOT NULL,
    from_state   TEXT,
    to_state     TEXT NOT NULL,
    actor        TEXT NOT NULL,
    why          TEXT,
    ticket       TEXT,
    ledger_index BIGINT NOT NULL,
    PRIMARY KEY (name, version, seq)
);
