-- Unit economics divide only the cost of the usage that has the unit: the rollup keeps the
-- cost of records with tokens, with calls, with documents and with GPU time apart, and GPU
-- time (GPUs × wall clock) is kept apart from billed compute time (instance- or GPU-hours,
-- whichever the rate is for). Older records knew only compute time: it is taken as GPU time.
ALTER TABLE usage_records ADD COLUMN gpu_ms BIGINT NOT NULL DEFAULT 0;
UPDATE usage_records SET gpu_ms = compute_ms;
ALTER TABLE usage_daily ADD COLUMN gpu_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_daily ADD COLUMN token_cost_nanos BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_daily ADD COLUMN call_cost_nanos BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_daily ADD COLUMN document_cost_nanos BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_daily ADD COLUMN gpu_cost_nanos BIGINT NOT NULL DEFAULT 0;
UPDATE usage_daily SET
    gpu_ms = compute_ms,
    token_cost_nanos = CASE WHEN input_tokens + cached_input_tokens + cache_write_tokens
                                 + output_tokens + reasoning_tokens > 0 THEN cost_nanos ELSE 0 END,
    call_cost_nanos = CASE WHEN calls > 0 THEN cost_nanos ELSE 0 END,
    document_cost_nanos = CASE WHEN documents > 0 THEN cost_nanos ELSE 0 END,
    gpu_cost_nanos = CASE WHEN compute_ms > 0 THEN cost_nanos ELSE 0 END;
