-- Data lifecycle: recorded lineage edges (source -> derived, with the job), legal holds, and
-- erasure requests (data subject requests) from request to receipt.
CREATE TABLE lineage_edges (
    src         TEXT NOT NULL,
    dst         TEXT NOT NULL,
    job         TEXT,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (src, dst)
);
CREATE INDEX lineage_edges_by_dst ON lineage_edges (dst);

CREATE TABLE holds (
    id           TEXT PRIMARY KEY,
    target       TEXT NOT NULL,
    reason       TEXT NOT NULL,
    placed_by    TEXT NOT NULL,
    placed_at    BIGINT NOT NULL,
    released_by  TEXT,
    released_at  BIGINT
);

CREATE TABLE erasures (
    id              TEXT PRIMARY KEY,
    subject_digest  TEXT NOT NULL,
    state           TEXT NOT NULL,
    requested_by    TEXT NOT NULL,
    requested_at    BIGINT NOT NULL,
    due_at          BIGINT NOT NULL,
    finished_at     BIGINT,
    receipt_digest  TEXT
);
