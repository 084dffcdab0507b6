-- Which SLO burn-rate alerts fire now: replicas sharing a database record each start and end
-- of an alert once, by changing the row and appending the ledger event in one transaction.
CREATE TABLE slo_alerts (
    tenant TEXT NOT NULL,
    slo TEXT NOT NULL,
    severity TEXT NOT NULL,
    firing BIGINT NOT NULL,
    changed_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, slo, severity)
);
