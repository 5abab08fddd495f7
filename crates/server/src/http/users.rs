//! `/api/v2/users`: who am I, the account's users (cursor-paged), and their
//! management by admins.

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use latchkey_core::user::{parse_user_name, Email, NewUser, Role, UserPatch};
use latchkey_store::Page;
use serde_json::{json, Value};

use super::auth::{Admin, ApiUser};
use super::error::{json_response, ApiError, ApiResult};
use super::input::{opt_bool, opt_string, record, record_id, required_string, BaseUrl, Errors, JsonObject};
use super::{views, AppState};

const READ_ONLY: &[&str] = &["id", "url", "created_at", "updated_at"];

pub async fn me(user: ApiUser, base: BaseUrl) -> Response {
    json_response(
        StatusCode::OK,
        &json!({"user": views::user(&base, &user.identity.user)}),
    )
}

/// Page parameters shared by cursor-paged listings (§6.3).
#[derive(Debug, Default)]
pub struct PageQuery {
    pub size: i64,
    pub after: Option<i64>,
    pub before: Option<i64>,
}

pub fn encode_cursor(id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("id:{id}"))
}

fn decode_cursor(raw: &str) -> Result<i64, ApiError> {
    let bad = || ApiError::bad_request("The page cursor is not valid.");
    let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| bad())?;
    let text = std::str::from_utf8(&bytes).map_err(|_| bad())?;
    text.strip_prefix("id:")
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|n| *n >= 0)
        .ok_or_else(bad)
}

impl PageQuery {
    pub fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut page = PageQuery {
            size: 100,
            ..Default::default()
        };
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match key.as_ref() {
                "page[size]" => {
                    page.size = value
                        .parse::<i64>()
                        .ok()
                        .filter(|n| (1..=100).contains(n))
                        .ok_or_else(|| ApiError::bad_request("page[size] must be a whole number from 1 to 100."))?;
                }
                "page[after]" => page.after = Some(decode_cursor(&value)?),
                "page[before]" => page.before = Some(decode_cursor(&value)?),
                _ => {}
            }
        }
        if page.after.is_some() && page.before.is_some() {
            return Err(ApiError::bad_request("Use page[after] or page[before], not both."));
        }
        Ok(page)
    }
}

pub async fn list(
    State(state): State<AppState>,
    user: ApiUser,
    base: BaseUrl,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    user.require(&[Role::Admin, Role::Agent])?;
    let q = PageQuery::parse(query.as_deref())?;
    let page = Page {
        after: q.after,
        before: q.before,
        size: q.size,
    };
    let (users, has_more) = state.app.store.users_page_of(user.account_id(), page).await?;
    let first = users.first().map(|u| encode_cursor(u.id));
    let last = users.last().map(|u| encode_cursor(u.id));
    let link = |dir: &str, cursor: &Option<String>| -> Value {
        match cursor {
            Some(c) => Value::String(base.join(&format!("/api/v2/users.json?page[size]={}&page[{dir}]={c}", q.size))),
            None => Value::Null,
        }
    };
    let backwards = q.before.is_some();
    let next = if (!backwards && has_more) || (backwards && !users.is_empty()) {
        link("after", &last)
    } else {
        Value::Null
    };
    let prev = if (backwards && has_more) || (q.after.is_some() && !users.is_empty()) {
        link("before", &first)
    } else {
        Value::Null
    };
    let list: Vec<_> = users.iter().map(|u| views::user(&base, u)).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "users": list,
            "meta": {"has_more": has_more, "after_cursor": last, "before_cursor": first},
            "links": {"next": next, "prev": prev},
        }),
    ))
}

pub async fn create(
    State(state): State<AppState>,
    admin: Admin,
    base: BaseUrl,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    let rec = record(
        body,
        "user",
        &["name", "email", "role", "verified"],
        &["suspended", "id", "url", "created_at", "updated_at"],
    )?;
    let mut e = Errors::default();
    let name = e.check(required_string(&rec, "name").and_then(|n| parse_user_name(&n)));
    let email = e.check(required_string(&rec, "email").and_then(|m| Email::parse(&m)));
    let role = e.check(match opt_string(&rec, "role") {
        Ok(Some(Some(r))) => Role::parse(&r),
        Ok(_) => Ok(Role::EndUser),
        Err(err) => Err(err),
    });
    let verified = e.check(opt_bool(&rec, "verified")).flatten().unwrap_or(false);
    e.finish()?;
    let (Some(name), Some(email), Some(role)) = (name, email, role) else {
        return Err(ApiError::Internal("validated fields missing".into()));
    };
    let new = NewUser {
        name,
        email,
        role,
        verified,
        password_hash: None,
    };
    let user = state.app.create_user(&admin.access, new).await?;
    let mut res = json_response(StatusCode::CREATED, &json!({"user": views::user(&base, &user)}));
    if let Ok(loc) = HeaderValue::from_str(&views::user_url(&base, user.id)) {
        res.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(res)
}

pub async fn show(
    State(state): State<AppState>,
    admin: Admin,
    base: BaseUrl,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = record_id(&id)?;
    let user = state
        .app
        .user(admin.user.account_id(), id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"user": views::user(&base, &user)}),
    ))
}

pub async fn update(
    State(state): State<AppState>,
    admin: Admin,
    base: BaseUrl,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    let id = record_id(&id)?;
    let mut read_only = READ_ONLY.to_vec();
    read_only.push("email");
    let rec = record(body, "user", &["name", "role", "verified", "suspended"], &read_only)?;
    let mut e = Errors::default();
    let name = match e.check(opt_string(&rec, "name")).flatten() {
        Some(raw) => e.check(parse_user_name(raw.as_deref().unwrap_or(""))),
        None => None,
    };
    let role = match e.check(opt_string(&rec, "role")).flatten() {
        Some(raw) => e.check(Role::parse(raw.as_deref().unwrap_or(""))),
        None => None,
    };
    let verified = e.check(opt_bool(&rec, "verified")).flatten();
    let suspended = e.check(opt_bool(&rec, "suspended")).flatten();
    e.finish()?;
    let patch = UserPatch {
        name,
        role,
        verified,
        suspended,
    };
    let user = state.app.update_user(&admin.access, id, &patch).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"user": views::user(&base, &user)}),
    ))
}

pub async fn delete(State(state): State<AppState>, admin: Admin, Path(id): Path<String>) -> ApiResult<Response> {
    let id = record_id(&id)?;
    state.app.delete_user(&admin.access, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        assert_eq!(decode_cursor(&encode_cursor(42)).ok(), Some(42));
        for bad in ["", "!!", "aWQ6LTE", "eHl6"] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn page_sizes_are_bounded() {
        assert_eq!(PageQuery::parse(None).map(|p| p.size).ok(), Some(100));
        assert_eq!(PageQuery::parse(Some("page%5Bsize%5D=5")).map(|p| p.size).ok(), Some(5));
        for bad in [
            "page[size]=0",
            "page[size]=101",
            "page[size]=x",
            "page[after]=zz&page[before]=zz",
        ] {
            assert!(PageQuery::parse(Some(bad)).is_err(), "{bad}");
        }
    }
}
