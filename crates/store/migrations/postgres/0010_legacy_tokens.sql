-- Tokens of a foreign format (README.md, "Migrating from Zendesk"): imported
-- from another system, they have no latchkey checksum. `legacy` marks the
-- current secret, `previous_legacy` a rotated-away legacy secret still in
-- its grace period: while any node holds one, verification hashes a
-- checksum-less string instead of refusing it unseen.
ALTER TABLE api_tokens ADD COLUMN legacy BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE api_tokens ADD COLUMN previous_legacy BOOLEAN NOT NULL DEFAULT FALSE;

-- The token policy's rule that legacy tokens be rotated: the sweeper
-- deactivates an account's active legacy tokens while it is on.
ALTER TABLE accounts ADD COLUMN policy_deactivate_legacy_tokens BOOLEAN NOT NULL DEFAULT FALSE;
