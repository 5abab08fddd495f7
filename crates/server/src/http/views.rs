//! How records look in JSON (docs/api.md, "Endpoints"): absolute `url`s, RFC 3339 times.
//! Each record and each response body is a type here, and the OpenAPI
//! document (`/api/v2/openapi.json`) is generated from the same types.

use latchkey_core::{
    account::Account,
    id::{AccountId, TokenId, UserId},
    time::{rfc3339, Timestamp},
    token::ApiToken,
    user::{Email, User},
};
use serde::Serialize;
use utoipa::ToSchema;

use super::input::BaseUrl;
use super::paging::{Links, Meta};

fn time(t: Timestamp) -> String {
    rfc3339(t)
}

pub fn token_url(base: &BaseUrl, id: TokenId) -> String {
    base.join(&format!("/api/v2/api_tokens/{id}.json"))
}

pub fn user_url(base: &BaseUrl, id: UserId) -> String {
    base.join(&format!("/api/v2/users/{id}.json"))
}

/// An API token record (docs/api.md, "API tokens").
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": 7, "url": "https://acme.example.com/api/v2/api_tokens/7.json",
    "description": "Jira sync", "active": true, "visible_token": "lk_4fQ9…b3Z0",
    "user_id": 3, "assigned_user_id": null, "scopes": ["tickets:read"],
    "expires_at": null, "allowed_ips": null, "rate_limit": null, "leaked_at": null, "status": "active", "previous_visible_token": null,
    "previous_expires_at": null, "previous_last_used": null, "legacy": false,
    "created_at": "2026-11-27T09:14:57Z", "updated_at": "2026-11-27T09:14:57Z",
    "last_used": null
}))]
pub struct TokenView {
    #[schema(value_type = i64, minimum = 1)]
    pub id: TokenId,
    /// Absolute; ends in `.json`.
    pub url: String,
    /// Trimmed, at most 255 characters; `null` when empty.
    #[schema(required = true)]
    pub description: Option<String>,
    pub active: bool,
    /// The prefix, the first 4 characters of the random part, `…` and the
    /// last 4 characters of the token.
    pub visible_token: String,
    /// The admin who created it; `null` for tokens created by the CLI.
    #[schema(required = true, value_type = Option<i64>)]
    pub user_id: Option<UserId>,
    /// Only this user's email authenticates with the token; `null`: any
    /// verified user of the account.
    #[schema(required = true, value_type = Option<i64>)]
    pub assigned_user_id: Option<UserId>,
    /// The scopes the token is restricted to; `null`: the user's full access.
    #[schema(required = true)]
    pub scopes: Option<Vec<String>>,
    /// From this instant the token fails to authenticate; `null`: never.
    #[schema(required = true, format = DateTime)]
    pub expires_at: Option<String>,
    /// Only requests from these networks authenticate; `null`: any address.
    #[schema(required = true)]
    pub allowed_ips: Option<Vec<String>>,
    /// At most `requests` per `per_seconds` for the whole deployment;
    /// `null`: no limit.
    #[schema(required = true)]
    pub rate_limit: Option<RateLimitView>,
    /// When a leak report last matched the token (it was deactivated then
    /// if it was active); `null`: never reported.
    #[schema(required = true, format = DateTime)]
    pub leaked_at: Option<String>,
    /// `active`, `deactivated`, or `expired` (active, past `expires_at`).
    #[schema(value_type = TokenStatusName)]
    pub status: &'static str,
    /// After a rotation: the previous secret's visible form; `null` if never rotated.
    #[schema(required = true)]
    pub previous_visible_token: Option<String>,
    /// When the previous secret stops (or stopped) authenticating.
    #[schema(required = true, format = DateTime)]
    pub previous_expires_at: Option<String>,
    /// The previous secret's last use since the rotation; `null`: unused since.
    #[schema(required = true, format = DateTime)]
    pub previous_last_used: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// `null` until first used.
    #[schema(required = true, format = DateTime)]
    pub last_used: Option<String>,
    /// Imported in another system's format (a Zendesk token), without a
    /// latchkey checksum; rotating it ends that.
    pub legacy: bool,
}

/// A token record as its creation answers it: the record and, this once,
/// the full token.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": 7, "url": "https://acme.example.com/api/v2/api_tokens/7.json",
    "description": "Jira sync", "active": true, "visible_token": "lk_4fQ9…b3Z0",
    "user_id": 3, "assigned_user_id": null, "scopes": ["tickets:read"],
    "expires_at": null, "allowed_ips": null, "rate_limit": null, "leaked_at": null, "status": "active", "previous_visible_token": null,
    "previous_expires_at": null, "previous_last_used": null, "legacy": false,
    "created_at": "2026-11-27T09:14:57Z", "updated_at": "2026-11-27T09:14:57Z",
    "last_used": null, "token": "lk_4fQ9c2VhbW9ua2V5c2VjcmV0dG9rZW4xMjM0a0Ab3Z0"
}))]
pub struct CreatedTokenView {
    #[serde(flatten)]
    pub record: TokenView,
    /// The full token, shown only in this response.
    pub token: String,
}

/// A user record (docs/api.md, "Users").
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": 3, "url": "https://acme.example.com/api/v2/users/3.json",
    "name": "Jo Doe", "email": "jdoe@example.com", "role": "admin",
    "verified": true, "suspended": false,
    "created_at": "2026-11-27T09:14:57Z", "updated_at": "2026-11-27T09:14:57Z"
}))]
pub struct UserView {
    #[schema(value_type = i64, minimum = 1)]
    pub id: UserId,
    /// Absolute; ends in `.json`.
    pub url: String,
    pub name: String,
    #[schema(value_type = String)]
    pub email: Email,
    #[schema(value_type = RoleName)]
    pub role: &'static str,
    pub verified: bool,
    pub suspended: bool,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

/// A token's status.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenStatusName {
    Active,
    Deactivated,
    Expired,
}

/// A user's role.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoleName {
    Admin,
    Agent,
    EndUser,
}

/// The account record (docs/api.md, "Account and settings").
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": 1, "subdomain": "acme", "name": "Acme", "plan": "enterprise",
    "token_limit": 256, "created_at": "2026-11-27T09:14:57Z"
}))]
pub struct AccountView {
    #[schema(value_type = i64, minimum = 1)]
    pub id: AccountId,
    #[schema(value_type = String, pattern = "^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")]
    pub subdomain: latchkey_core::account::Subdomain,
    pub name: String,
    #[schema(value_type = PlanName)]
    pub plan: &'static str,
    /// 256, or 2048 once an import has left the account holding more.
    pub token_limit: i64,
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// An account's plan.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlanName {
    Team,
    Growth,
    Professional,
    Enterprise,
    EnterprisePlus,
}

/// The account's settings.
#[derive(Debug, Serialize, ToSchema)]
pub struct SettingsView {
    pub api: ApiSettings,
    pub token_policy: TokenPolicy,
}

/// Settings of the REST API.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiSettings {
    /// Off for new accounts; while off every token of the account fails.
    pub api_token_access: bool,
}

/// The account's token policy (README.md, "Token policy"); `null` and
/// `false` are "no rule", days are 1 to 3650.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenPolicy {
    /// A new or restricted token must expire within this many days of its creation.
    #[schema(required = true, minimum = 1, maximum = 3650)]
    pub max_lifetime_days: Option<i64>,
    /// Every new or restricted token must have an expiry.
    pub require_expiry: bool,
    /// Every new or restricted token must be assigned to a user.
    pub require_assigned_user: bool,
    /// The sweeper deactivates tokens unused for longer than this.
    #[schema(required = true, minimum = 1, maximum = 3650)]
    pub deactivate_unused_after_days: Option<i64>,
    /// The sweeper deletes tokens deactivated for longer than this.
    #[schema(required = true, minimum = 1, maximum = 3650)]
    pub delete_deactivated_after_days: Option<i64>,
    /// The sweeper deactivates active legacy tokens (imported in another
    /// system's format): rotate them before turning this on.
    pub deactivate_legacy_tokens: bool,
}

/// What a proposed token policy would do now; nothing is changed.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyPreview {
    pub would_deactivate: Vec<TokenView>,
    pub would_delete: Vec<TokenView>,
}

/// `{"user": User}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserResponse {
    pub user: UserView,
}

/// `{"users": [User], "meta", "links"}`: one page of the account's users.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    pub users: Vec<UserView>,
    pub meta: Meta,
    pub links: Links,
}

/// `{"api_token": Token}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub api_token: TokenView,
}

/// `{"api_token": Token + "token"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedTokenResponse {
    pub api_token: CreatedTokenView,
}

/// Every token of the account, newest first, with how many it holds and
/// may hold.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    pub api_tokens: Vec<TokenView>,
    #[schema(example = 2)]
    pub count: usize,
    #[schema(example = 256)]
    pub limit: i64,
}

/// `{"account": Account}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountResponse {
    pub account: AccountView,
}

/// `{"settings": Settings}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SettingsResponse {
    pub settings: SettingsView,
}

/// A token's rate limit: at most `requests` requests in each window of
/// `per_seconds` seconds (windows start at multiples of `per_seconds` since
/// the Unix epoch), counted over every node of the deployment.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[schema(example = json!({"requests": 100, "per_seconds": 60}))]
pub struct RateLimitView {
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub requests: u32,
    #[schema(minimum = 1, maximum = 86_400)]
    pub per_seconds: u32,
}

pub fn token(base: &BaseUrl, t: &ApiToken, now: Timestamp) -> TokenView {
    TokenView {
        id: t.id,
        url: token_url(base, t.id),
        description: t.description.clone(),
        active: t.active,
        visible_token: t.visible_token.clone(),
        user_id: t.user_id,
        assigned_user_id: t.assigned_user_id,
        scopes: t.scopes.as_ref().map(|s| s.names().collect()),
        expires_at: t.expires_at.map(time),
        allowed_ips: t.allowed_ips.as_ref().map(|a| a.names().collect()),
        rate_limit: t.rate_limit.map(|l| RateLimitView {
            requests: l.requests,
            per_seconds: l.per_seconds,
        }),
        leaked_at: t.leaked_at.map(time),
        status: t.status(now).into(),
        previous_visible_token: t.previous_visible_token.clone(),
        previous_expires_at: t.previous_expires_at.map(time),
        previous_last_used: t.previous_last_used.map(time),
        created_at: time(t.created_at),
        updated_at: time(t.updated_at),
        last_used: t.last_used.map(time),
        legacy: t.legacy,
    }
}

pub fn user(base: &BaseUrl, u: &User) -> UserView {
    UserView {
        id: u.id,
        url: user_url(base, u.id),
        name: u.name.clone(),
        email: u.email.clone(),
        role: u.role.as_str(),
        verified: u.verified,
        suspended: u.suspended,
        created_at: time(u.created_at),
        updated_at: time(u.updated_at),
    }
}

pub fn account(a: &Account) -> AccountView {
    AccountView {
        id: a.id,
        subdomain: a.subdomain.clone(),
        name: a.name.clone(),
        plan: a.plan.as_str(),
        token_limit: a.token_limit,
        created_at: time(a.created_at),
    }
}

/// `{"settings": …}`.
pub fn settings(a: &Account) -> SettingsResponse {
    let p = &a.token_policy;
    SettingsResponse {
        settings: SettingsView {
            api: ApiSettings {
                api_token_access: a.api_token_access,
            },
            token_policy: TokenPolicy {
                max_lifetime_days: p.max_lifetime_days,
                require_expiry: p.require_expiry,
                require_assigned_user: p.require_assigned_user,
                deactivate_unused_after_days: p.deactivate_unused_after_days,
                delete_deactivated_after_days: p.delete_deactivated_after_days,
                deactivate_legacy_tokens: p.deactivate_legacy_tokens,
            },
        },
    }
}
