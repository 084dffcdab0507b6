-- The tools an app declares it uses (a JSON array of names); NULL: it never declared any.
ALTER TABLE apps ADD COLUMN tools TEXT;
