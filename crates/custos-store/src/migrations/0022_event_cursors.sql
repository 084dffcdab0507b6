-- Where each event receiver (a webhook) has got to in the ledger, and which gateway process
-- delivers to it now: one holder at a time, by a lease that lapses if its holder dies.
CREATE TABLE event_cursors (
    receiver TEXT PRIMARY KEY,
    next_idx BIGINT NOT NULL,
    holder TEXT NOT NULL,
    lease_until BIGINT NOT NULL,
    delivered BIGINT NOT NULL DEFAULT 0,
    dropped BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL
);
