//! How records look in JSON (docs/api.md, "Endpoints"): absolute `url`s, RFC 3339 times.

use latchkey_core::{
    account::Account,
    id::{TokenId, UserId},
    time::{rfc3339, Timestamp},
    token::ApiToken,
    user::User,
};
use serde_json::{json, Value};

use super::input::BaseUrl;

fn time(t: Timestamp) -> Value {
    Value::String(rfc3339(t))
}

pub fn token_url(base: &BaseUrl, id: TokenId) -> String {
    base.join(&format!("/api/v2/api_tokens/{id}.json"))
}

pub fn user_url(base: &BaseUrl, id: UserId) -> String {
    base.join(&format!("/api/v2/users/{id}.json"))
}

pub fn token(base: &BaseUrl, t: &ApiToken) -> Value {
    json!({
        "id": t.id,
        "url": token_url(base, t.id),
        "description": t.description,
        "active": t.active,
        "visible_token": t.visible_token,
        "user_id": t.user_id,
        "assigned_user_id": t.assigned_user_id,
        "created_at": time(t.created_at),
        "updated_at": time(t.updated_at),
        "last_used": t.last_used.map(time),
    })
}

pub fn user(base: &BaseUrl, u: &User) -> Value {
    json!({
        "id": u.id,
        "url": user_url(base, u.id),
        "name": u.name,
        "email": u.email,
        "role": u.role.as_str(),
        "verified": u.verified,
        "suspended": u.suspended,
        "created_at": time(u.created_at),
        "updated_at": time(u.updated_at),
    })
}

pub fn account(a: &Account) -> Value {
    json!({
        "id": a.id,
        "subdomain": a.subdomain,
        "name": a.name,
        "plan": a.plan.as_str(),
        "token_limit": a.token_limit,
        "created_at": time(a.created_at),
    })
}

/// `{"settings": …}`. The token policy (README.md, "Choices latchkey makes") is not enforced yet, so it
/// reads as "no policy".
pub fn settings(a: &Account) -> Value {
    json!({
        "settings": {
            "api": { "api_token_access": a.api_token_access },
            "token_policy": {
                "max_lifetime_days": null,
                "require_expiry": false,
                "require_assigned_user": false,
                "deactivate_unused_after_days": null,
                "delete_deactivated_after_days": null,
            }
        }
    })
}
