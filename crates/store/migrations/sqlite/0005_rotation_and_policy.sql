-- Rotation (README.md, "Rotating a token"): after a rotation the previous
-- secret's hash authenticates until previous_expires_at; its visible form
-- and its last use since the rotation are shown to admins.
ALTER TABLE api_tokens ADD COLUMN previous_hash BLOB;
ALTER TABLE api_tokens ADD COLUMN previous_visible_token TEXT;
ALTER TABLE api_tokens ADD COLUMN previous_expires_at BIGINT;
ALTER TABLE api_tokens ADD COLUMN previous_last_used BIGINT;
-- When a token was last deactivated (NULL while active); the policy's
-- delete_deactivated_after_days counts from here (from updated_at for
-- tokens deactivated before this migration).
ALTER TABLE api_tokens ADD COLUMN deactivated_at BIGINT;

-- The account token policy (README.md, "Token policy"): NULL / false is no rule.
ALTER TABLE accounts ADD COLUMN policy_max_lifetime_days BIGINT;
ALTER TABLE accounts ADD COLUMN policy_require_expiry BOOLEAN NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN policy_require_assigned_user BOOLEAN NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN policy_deactivate_unused_after_days BIGINT;
ALTER TABLE accounts ADD COLUMN policy_delete_deactivated_after_days BIGINT;
