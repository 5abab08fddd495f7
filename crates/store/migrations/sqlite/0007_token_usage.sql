-- Per-token usage by hour (README.md, "Usage"): requests allowed, and
-- refused by reason. Counted in memory by every node and added here in
-- batches with last_used; pruned after 90 days.
CREATE TABLE token_usage (
    token_id        BIGINT NOT NULL,
    hour            BIGINT NOT NULL,
    allowed         BIGINT NOT NULL DEFAULT 0,
    rate_limited    BIGINT NOT NULL DEFAULT 0,
    ip_not_allowed  BIGINT NOT NULL DEFAULT 0,
    expired         BIGINT NOT NULL DEFAULT 0,
    inactive        BIGINT NOT NULL DEFAULT 0,
    scope           BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (token_id, hour)
);
CREATE INDEX token_usage_hour_idx ON token_usage (hour);
