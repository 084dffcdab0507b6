CREATE TABLE prices (
    provider        TEXT NOT NULL,
    model           TEXT NOT NULL,
    effective_from  BIGINT NOT NULL,
    currency        TEXT NOT NULL,
    rates           TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (provider, model, effective_from)
);
CREATE TABLE usage_records (
    id                   TEXT PRIMARY KEY,
    at                   BIGINT NOT NULL,
    source               TEXT NOT NULL,
    tenant               TEXT NOT NULL,
    team                 TEXT NOT NULL,
    app                  TEXT NOT NULL,
    env                  TEXT NOT NULL,
    key_id               TEXT NOT NULL,
    provider             TEXT NOT NULL,
    model                TEXT NOT NULL,
    region               TEXT NOT NULL,
    input_tokens         BIGINT NOT NULL,
    cached_input_tokens  BIGINT NOT NULL,
    cache_write_tokens   BIGINT NOT NULL,
    output_tokens        BIGINT NOT NULL,
    reasoning_tokens     BIGINT NOT NULL,
    images               BIGINT NOT NULL,
    duration_ms          BIGINT NOT NULL,
    compute_ms           BIGINT NOT NULL,
    calls                BIGINT NOT NULL,
    documents            BIGINT NOT NULL,
    latency_ms           BIGINT NOT NULL,
    cost_nanos           BIGINT NOT NULL,
    currency             TEXT NOT NULL,
    priced               INTEGER NOT NULL,
    energy_mwh           BIGINT NOT NULL,
    co2e_mg              BIGINT NOT NULL,
    tags                 TEXT NOT NULL,
    untagged             INTEGER NOT NULL,
    request_id           TEXT,
    status               INTEGER NOT NULL,
    detail               TEXT
);
CREATE INDEX usage_records_tenant_at ON usage_records (tenant, at);
CREATE TABLE budgets (
    id            TEXT PRIMARY KEY,
    tenant        TEXT NOT NULL,
    name          TEXT NOT NULL,
    scope         TEXT NOT NULL,
    period        TEXT NOT NULL,
    time_zone     TEXT NOT NULL,
    amount_nanos  BIGINT NOT NULL,
    currency      TEXT NOT NULL,
    thresholds    TEXT NOT NULL,
    action        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    UNIQUE (tenant, name)
);
CREATE TABLE budget_alerts (
    budget_id     TEXT NOT NULL,
    period_start  BIGINT NOT NULL,
    threshold     BIGINT NOT NULL,
    fired_at      BIGINT NOT NULL,
    spent_nanos   BIGINT NOT NULL,
    PRIMARY KEY (budget_id, period_start, threshold)
);
