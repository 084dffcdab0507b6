-- The release whose alias a gateway call named: post-checks compare a new release's calls with
-- the previous one's, and SLOs are computed per app from the same records.
ALTER TABLE usage_records ADD COLUMN release_id TEXT;
CREATE INDEX usage_records_release ON usage_records (release_id, at);
