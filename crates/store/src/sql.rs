//! The SQL text that every backend runs unchanged: `$n` placeholders,
//! `RETURNING`, BIGINT epoch seconds and portable types, so SQLite and
//! PostgreSQL share one copy of each statement. Only what truly differs
//! (how a transaction locks, how a snapshot is isolated) lives in the
//! backend modules.

// Change log.
pub const LATEST_CHANGE: &str = "SELECT MAX(seq) FROM changes";
pub const OLDEST_CHANGE: &str = "SELECT MIN(seq) FROM changes";
/// The entries after a position, each token entry joined to the token as it
/// stands (its columns null if it is gone): a follower applies a token change
/// from this one read instead of reading the token again.
pub const CHANGES_SINCE: &str = concat!(
    "SELECT c.seq, c.entity, c.entity_id, ",
    token_auth_columns_of!("t."),
    " FROM changes c LEFT JOIN api_tokens t ON c.entity = 'token' AND t.id = c.entity_id",
    " WHERE c.seq > $1 ORDER BY c.seq LIMIT $2"
);
/// Keeps the newest entry so that sequence numbers never restart.
pub const PRUNE_CHANGES: &str = "DELETE FROM changes WHERE created_at < $1 AND seq < (SELECT MAX(seq) FROM changes)";
pub const APPEND_CHANGE: &str = "INSERT INTO changes (entity, entity_id, created_at) VALUES ($1, $2, $3)";

// Snapshot of what the verifier holds.
pub const ALL_ACCOUNTS: &str = concat!("SELECT ", account_columns!(), " FROM accounts ORDER BY id");
pub const LIVE_USERS: &str = concat!("SELECT ", user_columns!(), " FROM users WHERE deleted_at IS NULL");
/// How many records a full load will read, to size the maps once.
pub const SNAPSHOT_COUNTS: &str = "SELECT (SELECT COUNT(*) FROM accounts) AS accounts, \
     (SELECT COUNT(*) FROM users WHERE deleted_at IS NULL) AS users, (SELECT COUNT(*) FROM api_tokens) AS tokens";
/// Tokens with no restriction and no previous secret (most of them), read
/// with five columns instead of fourteen: reading a column costs the driver
/// a copy, and a large load is mostly that.
pub const PLAIN_TOKEN_AUTH: &str = "SELECT id, account_id, token_hash, active, legacy FROM api_tokens \
     WHERE assigned_user_id IS NULL AND scopes IS NULL AND expires_at IS NULL AND previous_hash IS NULL \
     AND allowed_ips IS NULL AND rate_limit_requests IS NULL";
/// Every other token, whole.
pub const RESTRICTED_TOKEN_AUTH: &str = concat!(
    "SELECT ",
    token_auth_columns_of!(""),
    " FROM api_tokens WHERE assigned_user_id IS NOT NULL OR scopes IS NOT NULL",
    " OR expires_at IS NOT NULL OR previous_hash IS NOT NULL OR allowed_ips IS NOT NULL",
    " OR rate_limit_requests IS NOT NULL"
);

// Accounts.
pub const SWEEPING_ACCOUNTS: &str = "SELECT id FROM accounts WHERE policy_deactivate_unused_after_days IS NOT NULL \
     OR policy_delete_deactivated_after_days IS NOT NULL OR policy_deactivate_legacy_tokens ORDER BY id";
pub const ACCOUNT_COUNT: &str = "SELECT COUNT(*) FROM accounts";
pub const ACCOUNT_BY_ID: &str = concat!("SELECT ", account_columns!(), " FROM accounts WHERE id = $1");
pub const ACCOUNT_BY_SUBDOMAIN: &str = concat!("SELECT ", account_columns!(), " FROM accounts WHERE subdomain = $1");
pub const INSERT_ACCOUNT: &str = concat!(
    "INSERT INTO accounts (subdomain, name, plan, token_limit, api_token_access, created_at, updated_at) ",
    "VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING ",
    account_columns!()
);
pub const SAVE_ACCOUNT: &str = "UPDATE accounts SET name = $1, plan = $2, token_limit = $3, api_token_access = $4, \
     updated_at = $5, policy_max_lifetime_days = $6, policy_require_expiry = $7, policy_require_assigned_user = $8, \
     policy_deactivate_unused_after_days = $9, policy_delete_deactivated_after_days = $10, \
     policy_deactivate_legacy_tokens = $11 WHERE id = $12";

// Users.
pub const USER_BY_ID: &str = concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1");
pub const ACCOUNT_USER: &str = concat!(
    "SELECT ",
    user_columns!(),
    " FROM users WHERE account_id = $1 AND id = $2"
);
pub const LIVE_USER_BY_EMAIL: &str = concat!(
    "SELECT ",
    user_columns!(),
    " FROM users WHERE account_id = $1 AND email_normalized = $2 AND deleted_at IS NULL"
);
pub const PASSWORD_HASH: &str = "SELECT password_hash FROM users WHERE id = $1";
pub const USERS_BEFORE: &str = concat!(
    "SELECT ",
    user_columns!(),
    " FROM users WHERE account_id = $1 AND deleted_at IS NULL AND id < $2 ORDER BY id DESC LIMIT $3"
);
pub const USERS_AFTER: &str = concat!(
    "SELECT ",
    user_columns!(),
    " FROM users WHERE account_id = $1 AND deleted_at IS NULL AND id > $2 ORDER BY id LIMIT $3"
);
/// Deleted users of an account who appear as actors in its audit log (the
/// Admin Center's Actor filter names them), in id order. Each is one seek of
/// `audit_events_actor_idx`.
pub const DELETED_AUDIT_ACTORS: &str = concat!(
    "SELECT ",
    user_columns!(),
    " FROM users u WHERE u.account_id = $1 AND u.deleted_at IS NOT NULL",
    " AND EXISTS (SELECT 1 FROM audit_events a WHERE a.account_id = $1 AND a.actor_id = u.id)",
    " ORDER BY u.id LIMIT $2"
);
pub const EMAIL_TAKEN: &str =
    "SELECT COUNT(*) FROM users WHERE account_id = $1 AND email_normalized = $2 AND deleted_at IS NULL";
pub const INSERT_USER: &str = concat!(
    "INSERT INTO users (account_id, name, email, email_normalized, role, verified, suspended, password_hash, created_at, updated_at) ",
    "VALUES ($1, $2, $3, $4, $5, $6, FALSE, $7, $8, $8) RETURNING ",
    user_columns!()
);
/// Writes the email as given and its lower-cased form, whose unique index
/// (`users_email_key`) refuses a second live user with the same address.
pub const SAVE_USER: &str = "UPDATE users SET name = $1, role = $2, verified = $3, suspended = $4, \
     deleted_at = CASE WHEN $5 THEN COALESCE(deleted_at, $6) ELSE NULL END, updated_at = $7, \
     email = $8, email_normalized = $9 WHERE id = $10";
pub const SET_PASSWORD: &str = "UPDATE users SET password_hash = $1 WHERE id = $2";

// Tokens.
pub const ACCOUNT_TOKEN: &str = concat!(
    "SELECT ",
    token_columns!(),
    " FROM api_tokens WHERE account_id = $1 AND id = $2"
);
pub const TOKEN_AUTH_BY_ID: &str = concat!("SELECT ", token_auth_columns_of!(""), " FROM api_tokens WHERE id = $1");
pub const ACCOUNT_TOKENS: &str = concat!(
    "SELECT ",
    token_columns!(),
    " FROM api_tokens WHERE account_id = $1 ORDER BY id DESC"
);
/// An account's tokens with their creators' names, newest first, in one
/// statement (the token list shows both).
pub const ACCOUNT_TOKENS_WITH_CREATORS: &str = concat!(
    "SELECT ",
    token_columns_of!("t."),
    ", u.name AS creator_name, (u.deleted_at IS NOT NULL) AS creator_deleted",
    " FROM api_tokens t LEFT JOIN users u ON u.id = t.user_id",
    " WHERE t.account_id = $1 ORDER BY t.id DESC"
);
/// One token of an account with its creator's name.
pub const ACCOUNT_TOKEN_WITH_CREATOR: &str = concat!(
    "SELECT ",
    token_columns_of!("t."),
    ", u.name AS creator_name, (u.deleted_at IS NOT NULL) AS creator_deleted",
    " FROM api_tokens t LEFT JOIN users u ON u.id = t.user_id",
    " WHERE t.account_id = $1 AND t.id = $2"
);
/// The ids of an account's users (deleted or not) and tokens, as
/// (`true` for a user, id), for the change log of an account's deletion.
pub const ACCOUNT_MEMBERS: &str = "SELECT TRUE AS is_user, id FROM users WHERE account_id = $1 \
     UNION ALL SELECT FALSE AS is_user, id FROM api_tokens WHERE account_id = $1";
/// Everything of one account (`$1`), children first, in one transaction
/// (`latchkey account delete`).
pub const DELETE_ACCOUNT: [&str; 8] = [
    "DELETE FROM token_usage WHERE token_id IN (SELECT id FROM api_tokens WHERE account_id = $1)",
    "DELETE FROM rate_limit_counts WHERE token_id IN (SELECT id FROM api_tokens WHERE account_id = $1)",
    "DELETE FROM sessions WHERE account_id = $1",
    "DELETE FROM api_tokens WHERE account_id = $1",
    "DELETE FROM users WHERE account_id = $1",
    "DELETE FROM audit_events WHERE account_id = $1",
    "DELETE FROM audit_heads WHERE account_id = $1",
    "DELETE FROM accounts WHERE id = $1",
];
pub const COUNT_TOKENS: &str = "SELECT COUNT(*) FROM api_tokens WHERE account_id = $1";
pub const TOKEN_HASH_TAKEN: &str = "SELECT COUNT(*) FROM api_tokens WHERE token_hash = $1";
pub const INSERT_TOKEN: &str = concat!(
    "INSERT INTO api_tokens (account_id, token_hash, visible_token, description, active, user_id, ",
    "assigned_user_id, scopes, expires_at, created_at, updated_at, last_used, deactivated_at, allowed_ips, ",
    "rate_limit_requests, rate_limit_per_seconds, legacy) ",
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) RETURNING ",
    token_columns!()
);
pub const SAVE_TOKEN: &str = "UPDATE api_tokens SET description = $1, active = $2, assigned_user_id = $3, \
     scopes = $4, expires_at = $5, updated_at = $6, deactivated_at = $7, allowed_ips = $8, \
     rate_limit_requests = $9, rate_limit_per_seconds = $10, leaked_at = $11 WHERE id = $12";
/// A rotation: the current secret becomes the previous one, until `$1`.
pub const ROTATE_TOKEN: &str = "UPDATE api_tokens SET previous_hash = token_hash, \
     previous_visible_token = visible_token, previous_expires_at = $1, previous_last_used = NULL, \
     previous_legacy = legacy, legacy = FALSE, token_hash = $2, visible_token = $3, updated_at = $4 WHERE id = $5";
pub const DELETE_TOKEN: &str = "DELETE FROM api_tokens WHERE id = $1";
/// Never moves `last_used` backwards.
// Usage by hour.
pub const ADD_USAGE: &str = "INSERT INTO token_usage (token_id, hour, allowed, rate_limited, ip_not_allowed, expired, \
     inactive, scope) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (token_id, hour) DO UPDATE SET \
     allowed = token_usage.allowed + excluded.allowed, \
     rate_limited = token_usage.rate_limited + excluded.rate_limited, \
     ip_not_allowed = token_usage.ip_not_allowed + excluded.ip_not_allowed, \
     expired = token_usage.expired + excluded.expired, inactive = token_usage.inactive + excluded.inactive, \
     scope = token_usage.scope + excluded.scope";
pub const USAGE_SINCE: &str = "SELECT hour, allowed, rate_limited, ip_not_allowed, expired, inactive, scope \
     FROM token_usage WHERE token_id = $1 AND hour >= $2 ORDER BY hour";
pub const PRUNE_USAGE: &str = "DELETE FROM token_usage WHERE hour < $1";

// Rate-limit counts shared between nodes: `$2` is a JSON array of
// `[token_id, window_index, per_seconds, admitted, rate_milli]`, so a sync
// is one statement however many tokens it carries.
pub const SHARE_RATE_COUNTS_PG: &str = "INSERT INTO rate_limit_counts \
     (token_id, node, window_index, per_seconds, admitted, rate_milli, at_ms) \
     SELECT (e->>0)::bigint, $1, (e->>1)::bigint, (e->>2)::bigint, (e->>3)::bigint, (e->>4)::bigint, $3 \
     FROM jsonb_array_elements($2::jsonb) AS e \
     ON CONFLICT (token_id, node) DO UPDATE SET window_index = EXCLUDED.window_index, \
     per_seconds = EXCLUDED.per_seconds, admitted = EXCLUDED.admitted, rate_milli = EXCLUDED.rate_milli, \
     at_ms = EXCLUDED.at_ms";
pub const SHARE_RATE_COUNTS_SQLITE: &str = "INSERT INTO rate_limit_counts \
     (token_id, node, window_index, per_seconds, admitted, rate_milli, at_ms) \
     SELECT json_extract(value, '$[0]'), $1, json_extract(value, '$[1]'), json_extract(value, '$[2]'), \
     json_extract(value, '$[3]'), json_extract(value, '$[4]'), $3 FROM json_each($2) WHERE true \
     ON CONFLICT (token_id, node) DO UPDATE SET window_index = excluded.window_index, \
     per_seconds = excluded.per_seconds, admitted = excluded.admitted, rate_milli = excluded.rate_milli, \
     at_ms = excluded.at_ms";
pub const PEER_RATE_COUNTS_PG: &str = "SELECT token_id, node, window_index, per_seconds, admitted, rate_milli, at_ms \
     FROM rate_limit_counts WHERE node <> $1 \
     AND token_id IN (SELECT (e->>0)::bigint FROM jsonb_array_elements($2::jsonb) AS e)";
pub const PEER_RATE_COUNTS_SQLITE: &str =
    "SELECT token_id, node, window_index, per_seconds, admitted, rate_milli, at_ms \
     FROM rate_limit_counts WHERE node <> $1 \
     AND token_id IN (SELECT json_extract(value, '$[0]') FROM json_each($2))";
pub const PRUNE_RATE_COUNTS: &str = "DELETE FROM rate_limit_counts WHERE at_ms < $1";
pub const RECORD_PREVIOUS_USE: &str = "UPDATE api_tokens SET previous_last_used = $1 \
     WHERE id = $2 AND (previous_last_used IS NULL OR previous_last_used < $1)";
pub const RECORD_TOKEN_USE: &str =
    "UPDATE api_tokens SET last_used = $1 WHERE id = $2 AND (last_used IS NULL OR last_used < $1)";

// Audit events.
pub const AUDIT_CHAIN: &str = concat!(
    "SELECT ",
    audit_columns!(),
    " FROM audit_events WHERE account_id = $1 ORDER BY id"
);
pub const LAST_AUDIT_EVENT: &str = "SELECT id, hash FROM audit_events WHERE account_id = $1 ORDER BY id DESC LIMIT 1";
pub const INSERT_AUDIT: &str = "INSERT INTO audit_events (account_id, action, actor_type, actor_id, actor_name, \
     source_type, source_id, source_label, change_description, ip_address, created_at, hash) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id";
// The recorded chain heads (README.md, "Audit retention").
pub const AUDIT_HEAD: &str = "SELECT event_id, hash, pruned FROM audit_heads WHERE account_id = $1";
pub const SET_AUDIT_HEAD: &str = "INSERT INTO audit_heads (account_id, event_id, hash, pruned) VALUES ($1, $2, $3, 0) \
     ON CONFLICT (account_id) DO UPDATE SET event_id = excluded.event_id, hash = excluded.hash";
pub const COUNT_PRUNED: &str = "UPDATE audit_heads SET pruned = pruned + $2 WHERE account_id = $1";
/// The oldest events of an account, in chain order, as retention reads them.
pub const AUDIT_PREFIX: &str =
    "SELECT id, created_at, hash FROM audit_events WHERE account_id = $1 ORDER BY id LIMIT $2";
pub const DELETE_AUDIT_THROUGH: &str = "DELETE FROM audit_events WHERE account_id = $1 AND id <= $2";
/// Accounts whose oldest event (in chain order) was created before `$1`:
/// one index seek per account.
pub const ACCOUNTS_WITH_AUDIT_BEFORE: &str = "SELECT a.id FROM accounts a WHERE \
     (SELECT e.created_at FROM audit_events e WHERE e.account_id = a.id ORDER BY e.id LIMIT 1) < $1 ORDER BY a.id";

// Admin Center sessions.
pub const INSERT_SESSION: &str = "INSERT INTO sessions (id_hash, account_id, user_id, csrf_token, created_at, \
     last_seen_at) VALUES ($1, $2, $3, $4, $5, $6)";
pub const SESSION_BY_HASH: &str =
    "SELECT id_hash, account_id, user_id, csrf_token, created_at, last_seen_at FROM sessions WHERE id_hash = $1";
pub const TOUCH_SESSION: &str = "UPDATE sessions SET last_seen_at = $1 WHERE id_hash = $2 AND last_seen_at < $1";
pub const DELETE_SESSION: &str = "DELETE FROM sessions WHERE id_hash = $1";
pub const PRUNE_SESSIONS: &str = "DELETE FROM sessions WHERE last_seen_at < $1 OR created_at < $2";
