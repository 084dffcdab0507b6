CREATE TABLE billing_files (
    file_id       BIGINT PRIMARY KEY,
    sha256        TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    format        TEXT NOT NULL,
    rows_ingested BIGINT NOT NULL,
    currency      TEXT NOT NULL,
    billed_nanos  BIGINT NOT NULL,
    ingested_at   BIGINT NOT NULL
);
CREATE TABLE billing_items (
    file_id           BIGINT NOT NULL,
    row_number        BIGINT NOT NULL,
    provider          TEXT NOT NULL,
    billing_account   TEXT NOT NULL,
    sub_account       TEXT NOT NULL,
    service           TEXT NOT NULL,
    service_category  TEXT NOT NULL,
    charge_category   TEXT NOT NULL,
    period_start      BIGINT NOT NULL,
    period_end        BIGINT NOT NULL,
    billed_nanos      BIGINT NOT NULL,
    effective_nanos   BIGINT NOT NULL,
    list_nanos        BIGINT NOT NULL,
    currency          TEXT NOT NULL,
    region            TEXT NOT NULL,
    resource_id       TEXT NOT NULL,
    sku               TEXT NOT NULL,
    description       TEXT NOT NULL,
    tags              TEXT NOT NULL,
    PRIMARY KEY (file_id, row_number)
)