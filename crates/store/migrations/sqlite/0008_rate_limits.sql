-- Per-token rate limits (README.md, "IP allowlists and rate limits"): NULL
-- for no limit, else `requests` per `per_seconds` for the whole deployment.
ALTER TABLE api_tokens ADD COLUMN rate_limit_requests BIGINT;
ALTER TABLE api_tokens ADD COLUMN rate_limit_per_seconds BIGINT;
-- When a leak report last matched the token (README.md, "Leaked tokens").
ALTER TABLE api_tokens ADD COLUMN leaked_at BIGINT;

-- Each node's count of a token's current rate-limit window, written at
-- least once a second and read back by the other nodes (ARCHITECTURE.md,
-- "Rate limits across nodes"). One row per token and node, overwritten;
-- rows not written for a day are pruned.
CREATE TABLE rate_limit_counts (
    token_id     BIGINT NOT NULL,
    node         BIGINT NOT NULL,
    window_index BIGINT NOT NULL,
    per_seconds  BIGINT NOT NULL,
    admitted     BIGINT NOT NULL,
    rate_milli   BIGINT NOT NULL,
    at_ms        BIGINT NOT NULL,
    PRIMARY KEY (token_id, node)
);
CREATE INDEX rate_limit_counts_at_idx ON rate_limit_counts (at_ms);
