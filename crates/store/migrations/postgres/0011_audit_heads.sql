-- Each account's recorded audit chain head (README.md, "Audit retention"):
-- the newest event's id and hash, written in the same transaction as every
-- audit event, so that `latchkey audit verify` notices when the newest
-- events are deleted; and how many events audit retention has pruned.
-- Expand only: nodes of the previous release keep writing events without
-- moving the head, and verification accepts events after the recorded head
-- that chain onto it.
CREATE TABLE audit_heads (
    account_id BIGINT NOT NULL PRIMARY KEY REFERENCES accounts (id),
    event_id   BIGINT NOT NULL,
    hash       BYTEA  NOT NULL,
    pruned     BIGINT NOT NULL
);

-- Backfill: every existing chain's head is its newest event.
INSERT INTO audit_heads (account_id, event_id, hash, pruned)
SELECT e.account_id, e.id, e.hash, 0
FROM audit_events e
JOIN (SELECT account_id, MAX(id) AS newest FROM audit_events GROUP BY account_id) n
  ON n.account_id = e.account_id AND n.newest = e.id;
