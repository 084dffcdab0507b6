-- The roles a key holds in policies (comma-separated; empty: the built-in `service`), so a
-- dashboard or the console can be given a reader's key without a token issuer.
ALTER TABLE api_keys ADD COLUMN roles TEXT NOT NULL DEFAULT '';
