-- Data protection impact assessments: one row per DPIA a trigger required (or one written
-- unasked), keyed by what triggered it so a trigger is recorded once; the assessment's text
-- and its approval. A release with an unapproved DPIA is not promoted.
CREATE TABLE dpias (
    id              TEXT PRIMARY KEY,
    tenant          TEXT NOT NULL,
    trigger_kind    TEXT NOT NULL,
    trigger_key     TEXT NOT NULL UNIQUE,
    subject         TEXT NOT NULL,
    release_id      TEXT,
    details         TEXT NOT NULL,
    state           TEXT NOT NULL,
    document        TEXT,
    document_sha256 TEXT,
    author          TEXT,
    approved_by     TEXT,
    approved_at     BIGINT,
    required_at     BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX dpias_by_release ON dpias (release_id);
