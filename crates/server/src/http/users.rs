//! `/api/v2/users`: who am I, the account's users (cursor-paged), and their
//! management by admins.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use latchkey_app::Page;
use latchkey_core::id::UserId;
use latchkey_core::user::{parse_user_name, Email, NewUser, Role, UserPatch};
use serde_json::json;

use super::auth::{Admin, ApiUser};
use super::error::{created, json_response, ApiError, ApiResult};
use super::input::{opt_bool, opt_string, record, record_id, required_string, BaseUrl, Errors, JsonObject};
use super::paging::PageQuery;
use super::views;
use crate::state::AppState;

const READ_ONLY: &[&str] = &["id", "url", "created_at", "updated_at"];

pub async fn me(user: ApiUser, base: BaseUrl) -> Response {
    json_response(
        StatusCode::OK,
        &json!({"user": views::user(&base, &user.identity.user)}),
    )
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
    let (users, has_more) = state.app.users_page(&user.access, page).await?;
    let (meta, links) = q.meta_and_links(
        &base,
        "/api/v2/users.json",
        &[],
        users.first().map(|u| u.id),
        users.last().map(|u| u.id),
        has_more,
    );
    let list: Vec<_> = users.iter().map(|u| views::user(&base, u)).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "users": list,
            "meta": meta,
            "links": links,
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
    Ok(created(
        &views::user_url(&base, user.id),
        &json!({"user": views::user(&base, &user)}),
    ))
}

pub async fn show(
    State(state): State<AppState>,
    admin: Admin,
    base: BaseUrl,
    id: Result<Path<UserId>, PathRejection>,
) -> ApiResult<Response> {
    let id = record_id(id)?;
    let user = state.app.user(&admin.access, id).await?.ok_or(ApiError::NotFound)?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"user": views::user(&base, &user)}),
    ))
}

pub async fn update(
    State(state): State<AppState>,
    admin: Admin,
    base: BaseUrl,
    id: Result<Path<UserId>, PathRejection>,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    let id = record_id(id)?;
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

pub async fn delete(
    State(state): State<AppState>,
    admin: Admin,
    id: Result<Path<UserId>, PathRejection>,
) -> ApiResult<Response> {
    let id = record_id(id)?;
    state.app.delete_user(&admin.access, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
