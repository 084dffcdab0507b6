CREATE TABLE usage_daily (
    day                  BIGINT NOT NULL,
    tenant               TEXT NOT NULL,
    team                 TEXT NOT NULL,
    app                  TEXT NOT NULL,
    env                  TEXT NOT NULL,
    key_id               TEXT NOT NULL,
    provider             TEXT NOT NULL,
    model                TEXT NOT NULL,
    region               TEXT NOT NULL,
    source               TEXT NOT NULL,
    currency             TEXT NOT NULL,
    tags                 TEXT NOT NULL,
    records              BIGINT NOT NULL,
    calls                BIGINT NOT NULL,
    input_tokens         BIGINT NOT NULL,
    cached_input_tokens  BIGINT NOT NULL,
    cache_write_tokens   BIGINT NOT NULL,
    output_tokens        BIGINT NOT NULL,
    reasoning_tokens     BIGINT NOT NULL,
    documents            BIGINT NOT NULL,
    compute_ms           BIGINT NOT NULL,
    cost_nanos           BIGINT NOT NULL,
    unpriced             BIGINT NOT NULL,
    untagged             BIGINT NOT NULL,
    untagged_cost        BIGINT NOT NULL,
    energy_mwh           BIGINT NOT NULL,
    co2e_mg              BIGINT NOT NULL,
    PRIMARY KEY (day, tenant, team, app, env, key_id, provider, model, region, source, currency, tags)
);
INSERT INTO usage_daily
SELECT at / 86400000, tenant, team, app, env, key_id, provider, model, region, source, currency, tags,
       COUNT(*), SUM(calls), SUM(input_tokens), SUM(cached_input_tokens), SUM(cache_write_tokens),
       SUM(output_tokens), SUM(reasoning_tokens), SUM(documents), SUM(compute_ms), SUM(cost_nanos),
       SUM(1 - priced), SUM(untagged), SUM(untagged * cost_nanos), SUM(energy_mwh), SUM(co2e_mg)
FROM usage_records
GROUP BY at / 86400000, tenant, team, app, env, key_id, provider, model, region, source, currency, tags;
