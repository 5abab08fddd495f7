//! Row shapes shared by every backend (`sqlx::FromRow` is generic over the
//! database) and their conversion into domain records.

use latchkey_core::{
    account::{Account, Plan, Subdomain},
    allowlist::IpAllowlist,
    audit::{Action, ActorType, AuditEvent, SourceType},
    id::{AccountId, AuditEventId, TokenId, UserId},
    policy::TokenPolicy,
    rate_limit::{PeerCount, RateLimit, RateReport},
    scope::Scopes,
    time::Timestamp,
    token::{ApiToken, Restrictions, TokenCreator, TokenHash},
    user::{Email, Role, User},
    verifier::{PreviousSecret, TokenAuth},
};

use crate::{Change, Entity, StoreError};

// The rows hold what the database returns (`i64` ids and times, text);
// the conversions below are where they become typed ids, `Timestamp`s,
// and the `Subdomain` and `Email` that were validated when written.

// The column lists are macros so that `concat!` can build whole statements
// from them at compile time (see `sql.rs`); `AUDIT_COLUMNS` names the same
// text for the audit listing, whose statement is built at run time.
macro_rules! account_columns {
    () => {
        "id, subdomain, name, plan, token_limit, api_token_access, policy_max_lifetime_days, policy_require_expiry, policy_require_assigned_user, policy_deactivate_unused_after_days, policy_delete_deactivated_after_days, policy_deactivate_legacy_tokens, created_at, updated_at"
    };
}
macro_rules! user_columns {
    () => {
        "id, account_id, name, email, role, verified, suspended, deleted_at, created_at, updated_at"
    };
}
macro_rules! token_columns {
    () => {
        "id, account_id, description, active, visible_token, user_id, assigned_user_id, scopes, expires_at, created_at, updated_at, last_used, previous_visible_token, previous_expires_at, previous_last_used, deactivated_at, allowed_ips, rate_limit_requests, rate_limit_per_seconds, leaked_at, legacy"
    };
}
/// The token columns of `token_columns!`, each prefixed (`"t."`) for a join.
macro_rules! token_columns_of {
    ($t:literal) => {
        concat!(
            $t,
            "id, ",
            $t,
            "account_id, ",
            $t,
            "description, ",
            $t,
            "active, ",
            $t,
            "visible_token, ",
            $t,
            "user_id, ",
            $t,
            "assigned_user_id, ",
            $t,
            "scopes, ",
            $t,
            "expires_at, ",
            $t,
            "created_at, ",
            $t,
            "updated_at, ",
            $t,
            "last_used, ",
            $t,
            "previous_visible_token, ",
            $t,
            "previous_expires_at, ",
            $t,
            "previous_last_used, ",
            $t,
            "deactivated_at, ",
            $t,
            "allowed_ips, ",
            $t,
            "rate_limit_requests, ",
            $t,
            "rate_limit_per_seconds, ",
            $t,
            "leaked_at, ",
            $t,
            "legacy"
        )
    };
}
/// What the verifier reads of a token (`TokenAuthRow`), each column
/// prefixed (`""`, or `"t."` for a join).
macro_rules! token_auth_columns_of {
    ($t:literal) => {
        concat!(
            $t,
            "id, ",
            $t,
            "account_id, ",
            $t,
            "token_hash, ",
            $t,
            "active, ",
            $t,
            "assigned_user_id, ",
            $t,
            "scopes, ",
            $t,
            "expires_at, ",
            $t,
            "previous_hash, ",
            $t,
            "previous_expires_at, ",
            $t,
            "allowed_ips, ",
            $t,
            "rate_limit_requests, ",
            $t,
            "rate_limit_per_seconds, ",
            $t,
            "legacy, ",
            $t,
            "previous_legacy"
        )
    };
}
macro_rules! audit_columns {
    () => {
        "id, account_id, action, actor_type, actor_id, actor_name, source_type, source_id, source_label, change_description, ip_address, created_at, hash"
    };
}

pub const AUDIT_COLUMNS: &str = audit_columns!();

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("unknown {what} {value:?}"))
}

#[derive(sqlx::FromRow)]
pub struct AccountRow {
    id: i64,
    subdomain: String,
    name: String,
    plan: String,
    token_limit: i64,
    api_token_access: bool,
    policy_max_lifetime_days: Option<i64>,
    policy_require_expiry: bool,
    policy_require_assigned_user: bool,
    policy_deactivate_unused_after_days: Option<i64>,
    policy_delete_deactivated_after_days: Option<i64>,
    policy_deactivate_legacy_tokens: bool,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<AccountRow> for Account {
    type Error = StoreError;

    fn try_from(r: AccountRow) -> Result<Self, StoreError> {
        Ok(Account {
            id: AccountId::new(r.id),
            plan: Plan::parse(&r.plan).map_err(|_| corrupt("plan", &r.plan))?,
            subdomain: Subdomain::from_stored(r.subdomain),
            name: r.name,
            token_limit: r.token_limit,
            api_token_access: r.api_token_access,
            token_policy: TokenPolicy {
                max_lifetime_days: r.policy_max_lifetime_days,
                require_expiry: r.policy_require_expiry,
                require_assigned_user: r.policy_require_assigned_user,
                deactivate_unused_after_days: r.policy_deactivate_unused_after_days,
                delete_deactivated_after_days: r.policy_delete_deactivated_after_days,
                deactivate_legacy_tokens: r.policy_deactivate_legacy_tokens,
            },
            created_at: Timestamp::from_unix(r.created_at),
            updated_at: Timestamp::from_unix(r.updated_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct UserRow {
    id: i64,
    account_id: i64,
    name: String,
    email: String,
    role: String,
    verified: bool,
    suspended: bool,
    deleted_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;

    fn try_from(r: UserRow) -> Result<Self, StoreError> {
        Ok(User {
            id: UserId::new(r.id),
            account_id: AccountId::new(r.account_id),
            role: Role::parse(&r.role).map_err(|_| corrupt("role", &r.role))?,
            name: r.name,
            email: Email::from_stored(r.email),
            verified: r.verified,
            suspended: r.suspended,
            deleted: r.deleted_at.is_some(),
            created_at: Timestamp::from_unix(r.created_at),
            updated_at: Timestamp::from_unix(r.updated_at),
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct TokenRow {
    id: i64,
    account_id: i64,
    description: Option<String>,
    active: bool,
    visible_token: String,
    user_id: Option<i64>,
    assigned_user_id: Option<i64>,
    scopes: Option<String>,
    expires_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
    last_used: Option<i64>,
    previous_visible_token: Option<String>,
    previous_expires_at: Option<i64>,
    previous_last_used: Option<i64>,
    deactivated_at: Option<i64>,
    allowed_ips: Option<String>,
    rate_limit_requests: Option<i64>,
    rate_limit_per_seconds: Option<i64>,
    leaked_at: Option<i64>,
    legacy: bool,
}

impl From<TokenRow> for ApiToken {
    fn from(r: TokenRow) -> Self {
        ApiToken {
            id: TokenId::new(r.id),
            account_id: AccountId::new(r.account_id),
            description: r.description,
            active: r.active,
            visible_token: r.visible_token,
            user_id: r.user_id.map(UserId::new),
            assigned_user_id: r.assigned_user_id.map(UserId::new),
            scopes: r.scopes.as_deref().and_then(Scopes::from_stored),
            expires_at: r.expires_at.map(Timestamp::from_unix),
            created_at: Timestamp::from_unix(r.created_at),
            updated_at: Timestamp::from_unix(r.updated_at),
            last_used: r.last_used.map(Timestamp::from_unix),
            previous_visible_token: r.previous_visible_token,
            previous_expires_at: r.previous_expires_at.map(Timestamp::from_unix),
            previous_last_used: r.previous_last_used.map(Timestamp::from_unix),
            deactivated_at: r.deactivated_at.map(Timestamp::from_unix),
            allowed_ips: r.allowed_ips.as_deref().and_then(IpAllowlist::from_stored),
            rate_limit: stored_rate_limit(r.rate_limit_requests, r.rate_limit_per_seconds),
            leaked_at: r.leaked_at.map(Timestamp::from_unix),
            legacy: r.legacy,
        }
    }
}

/// A stored limit; a pair out of bounds (written by hand) reads as none.
fn stored_rate_limit(requests: Option<i64>, per_seconds: Option<i64>) -> Option<RateLimit> {
    RateLimit::new(requests?, per_seconds?).ok()
}

/// A token row joined with its creator's name and whether they are deleted.
#[derive(sqlx::FromRow)]
pub struct TokenWithCreatorRow {
    #[sqlx(flatten)]
    token: TokenRow,
    creator_name: Option<String>,
    creator_deleted: Option<bool>,
}

impl From<TokenWithCreatorRow> for (ApiToken, TokenCreator) {
    fn from(r: TokenWithCreatorRow) -> Self {
        let creator = match (r.token.user_id, r.creator_name) {
            (None, _) => TokenCreator::Operator,
            (Some(_), Some(name)) => TokenCreator::User {
                name,
                deleted: r.creator_deleted.unwrap_or(false),
            },
            (Some(_), None) => TokenCreator::Unknown,
        };
        (ApiToken::from(r.token), creator)
    }
}

/// A user or token id of an account (`sql::ACCOUNT_MEMBERS`).
#[derive(sqlx::FromRow)]
pub struct MemberRow {
    pub is_user: bool,
    pub id: i64,
}

#[derive(sqlx::FromRow)]
pub struct TokenAuthRow {
    #[sqlx(flatten)]
    plain: PlainTokenAuthRow,
    assigned_user_id: Option<i64>,
    scopes: Option<String>,
    expires_at: Option<i64>,
    previous_hash: Option<Vec<u8>>,
    previous_expires_at: Option<i64>,
    allowed_ips: Option<String>,
    rate_limit_requests: Option<i64>,
    rate_limit_per_seconds: Option<i64>,
    previous_legacy: bool,
}

/// How many records a full load will read (`SNAPSHOT_COUNTS`).
#[derive(sqlx::FromRow)]
pub struct SnapshotCountsRow {
    pub accounts: i64,
    pub users: i64,
    pub tokens: i64,
}

/// A token with no restriction and no previous secret (`PLAIN_TOKEN_AUTH`),
/// and the columns every token row starts with.
#[derive(sqlx::FromRow)]
pub struct PlainTokenAuthRow {
    id: i64,
    account_id: i64,
    token_hash: Vec<u8>,
    active: bool,
    legacy: bool,
}

impl TryFrom<PlainTokenAuthRow> for TokenAuth {
    type Error = StoreError;

    fn try_from(r: PlainTokenAuthRow) -> Result<Self, StoreError> {
        Ok(TokenAuth {
            id: TokenId::new(r.id),
            account_id: AccountId::new(r.account_id),
            hash: TokenHash::from_slice(&r.token_hash)
                .ok_or_else(|| corrupt("token hash of token", &r.id.to_string()))?,
            active: r.active,
            restrictions: Restrictions::default(),
            previous: None,
            legacy: r.legacy,
        })
    }
}

impl TryFrom<TokenAuthRow> for TokenAuth {
    type Error = StoreError;

    fn try_from(r: TokenAuthRow) -> Result<Self, StoreError> {
        let token = TokenAuth::try_from(r.plain)?;
        Ok(TokenAuth {
            restrictions: Restrictions {
                scopes: r.scopes.as_deref().and_then(Scopes::from_stored),
                assigned_user_id: r.assigned_user_id.map(UserId::new),
                expires_at: r.expires_at.map(Timestamp::from_unix),
                allowed_ips: r.allowed_ips.as_deref().and_then(IpAllowlist::from_stored),
                rate_limit: stored_rate_limit(r.rate_limit_requests, r.rate_limit_per_seconds),
            },
            // A rotated-away legacy secret still authenticates in its grace
            // period, so it keeps the token counted as legacy until then.
            legacy: token.legacy || (r.previous_legacy && r.previous_hash.is_some()),
            previous: match (r.previous_hash, r.previous_expires_at) {
                (Some(hash), Some(until)) => Some(PreviousSecret {
                    hash: TokenHash::from_slice(&hash)
                        .ok_or_else(|| corrupt("previous token hash of token", &token.id.to_string()))?,
                    until: Timestamp::from_unix(until),
                }),
                _ => None,
            },
            ..token
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct AuditRow {
    id: i64,
    account_id: i64,
    action: String,
    actor_type: String,
    actor_id: Option<i64>,
    actor_name: String,
    source_type: String,
    source_id: i64,
    source_label: String,
    change_description: String,
    ip_address: Option<String>,
    created_at: i64,
    hash: Vec<u8>,
}

impl TryFrom<AuditRow> for (AuditEvent, [u8; 32]) {
    type Error = StoreError;

    fn try_from(r: AuditRow) -> Result<Self, StoreError> {
        // A malformed stored hash must read as a broken link, not an error.
        let hash = <[u8; 32]>::try_from(r.hash.as_slice()).unwrap_or([0xff; 32]);
        let event = AuditEvent {
            id: AuditEventId::new(r.id),
            account_id: AccountId::new(r.account_id),
            action: Action::parse(&r.action).ok_or_else(|| corrupt("action", &r.action))?,
            actor_type: ActorType::parse(&r.actor_type).ok_or_else(|| corrupt("actor type", &r.actor_type))?,
            actor_id: r.actor_id.map(UserId::new),
            actor_name: r.actor_name,
            source_type: SourceType::parse(&r.source_type).ok_or_else(|| corrupt("source type", &r.source_type))?,
            source_id: r.source_id,
            source_label: r.source_label,
            change_description: r.change_description,
            ip_address: r.ip_address,
            created_at: Timestamp::from_unix(r.created_at),
        };
        Ok((event, hash))
    }
}

/// A change-log entry (`CHANGES_SINCE`) with, for a token's entry, the
/// token's row as it stands.
#[derive(sqlx::FromRow)]
pub struct ChangeRow {
    seq: i64,
    entity: String,
    entity_id: i64,
    #[sqlx(flatten)]
    token: JoinedTokenAuthRow,
}

/// A [`TokenAuthRow`] on the nullable side of a `LEFT JOIN`: `None` when
/// the join found no token (its `id` is null), else the same row and
/// conversion as a token read by id.
pub struct JoinedTokenAuthRow(Option<TokenAuthRow>);

impl<'r, R: sqlx::Row> sqlx::FromRow<'r, R> for JoinedTokenAuthRow
where
    &'r str: sqlx::ColumnIndex<R>,
    Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    TokenAuthRow: sqlx::FromRow<'r, R>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        let id: Option<i64> = row.try_get("id")?;
        Ok(JoinedTokenAuthRow(id.map(|_| TokenAuthRow::from_row(row)).transpose()?))
    }
}

impl TryFrom<ChangeRow> for Change {
    type Error = StoreError;

    fn try_from(r: ChangeRow) -> Result<Self, StoreError> {
        Ok(Change {
            seq: r.seq,
            entity: Entity::parse(&r.entity).ok_or_else(|| corrupt("entity", &r.entity))?,
            entity_id: r.entity_id,
            token: r.token.0.map(TokenAuth::try_from).transpose()?,
        })
    }
}

/// One stored hour of a token's usage.
#[derive(sqlx::FromRow)]
pub struct UsageRow {
    hour: i64,
    allowed: i64,
    rate_limited: i64,
    ip_not_allowed: i64,
    expired: i64,
    inactive: i64,
    scope: i64,
}

impl UsageRow {
    pub fn into_usage(self, token_id: TokenId) -> latchkey_core::usage::HourUsage {
        let counts = [
            self.allowed,
            self.rate_limited,
            self.ip_not_allowed,
            self.expired,
            self.inactive,
            self.scope,
        ]
        .map(|n| u64::try_from(n).unwrap_or(0));
        latchkey_core::usage::HourUsage {
            token_id,
            hour: Timestamp::from_unix(self.hour),
            counts,
        }
    }
}

/// Another node's rate-limit count of one token.
#[derive(sqlx::FromRow)]
pub struct PeerRow {
    token_id: i64,
    node: i64,
    window_index: i64,
    per_seconds: i64,
    admitted: i64,
    rate_milli: i64,
    at_ms: i64,
}

impl From<PeerRow> for PeerCount {
    fn from(r: PeerRow) -> Self {
        let small = |n: i64| u32::try_from(n.max(0)).unwrap_or(u32::MAX);
        PeerCount {
            node: r.node,
            report: RateReport {
                token_id: TokenId::new(r.token_id),
                window: r.window_index,
                per_seconds: small(r.per_seconds),
                admitted: small(r.admitted),
                rate_milli: small(r.rate_milli),
                at_ms: r.at_ms,
            },
        }
    }
}
