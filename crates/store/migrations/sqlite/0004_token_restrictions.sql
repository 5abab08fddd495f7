-- Restricted tokens (README.md, "Restricted tokens"). Both columns are
-- nullable, so a node still running the previous release keeps working
-- with this schema (it never reads them: it treats every token as
-- unrestricted until it is upgraded; upgrade every node before restricting).
-- scopes: NULL is the user's full access; otherwise the scope names,
-- separated by single spaces (`tickets:read users:write`).
-- expires_at: epoch seconds; from this instant the token fails.
-- assigned_user_id exists since 0001.
ALTER TABLE api_tokens ADD COLUMN scopes TEXT;
ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT;
