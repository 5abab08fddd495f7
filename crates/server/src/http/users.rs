//! `/api/v2/users`: who am I, the account's users (cursor-paged), and their
//! management by admins.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use latchkey_app::Page;
use latchkey_core::id::UserId;
use latchkey_core::user::{parse_user_name, Email, NewUser, Role, UserPatch};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::auth::{Admin, ApiUser};
use super::error::{created, json_response, ApiError, ApiResult};
use super::input::{
    opt_bool, opt_string, record, record_id, required_string, BaseUrl, Errors, FromJsonObject, JsonBody, JsonObject,
};
use super::paging::{PageParams, PageQuery};
use super::views::{self, UserList, UserResponse};
use crate::state::AppState;

const READ_ONLY: &[&str] = &["id", "url", "created_at", "updated_at"];

/// The body of `POST /api/v2/users`.
#[derive(Debug, ToSchema)]
#[schema(example = json!({"user": {"name": "Jo Doe", "email": "jdoe@example.com", "role": "agent", "verified": true}}))]
pub struct CreateUserRequest {
    pub user: CreateUser,
}

/// A new user. `suspended`, `id`, `url`, `created_at` and `updated_at`
/// are read-only (422 `ReadOnly`); any other field is 400.
#[derive(Debug, ToSchema)]
pub struct CreateUser {
    /// 1–255 characters, trimmed.
    #[schema(min_length = 1, max_length = 255)]
    pub name: String,
    /// `local@domain`; unique within the account (case-insensitively).
    #[schema(value_type = String, format = Email, max_length = 254)]
    pub email: Email,
    /// Default `end_user`.
    #[schema(value_type = Option<views::RoleName>)]
    pub role: Role,
    /// Default `false`; only verified users can use tokens.
    #[schema(value_type = bool, required = false)]
    pub verified: bool,
}

impl FromJsonObject for CreateUserRequest {
    fn from_object(body: Map<String, Value>) -> Result<Self, ApiError> {
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
        Ok(CreateUserRequest {
            user: CreateUser {
                name,
                email,
                role,
                verified,
            },
        })
    }
}

/// The body of `PUT /api/v2/users/{id}`: a partial record, fields left out
/// keep their value.
#[derive(Debug, ToSchema)]
#[schema(example = json!({"user": {"name": "Jo Doe", "suspended": true}}))]
pub struct UpdateUserRequest {
    pub user: UpdateUser,
}

/// The fields a user's update may set. `email`, `id`, `url`, `created_at`
/// and `updated_at` are read-only (422 `ReadOnly`); any other field is 400.
#[derive(Debug, ToSchema)]
pub struct UpdateUser {
    #[schema(value_type = String, required = false, min_length = 1, max_length = 255)]
    pub name: Option<String>,
    #[schema(value_type = views::RoleName, required = false)]
    pub role: Option<Role>,
    #[schema(value_type = bool, required = false)]
    pub verified: Option<bool>,
    #[schema(value_type = bool, required = false)]
    pub suspended: Option<bool>,
}

impl FromJsonObject for UpdateUserRequest {
    fn from_object(body: Map<String, Value>) -> Result<Self, ApiError> {
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
        Ok(UpdateUserRequest {
            user: UpdateUser {
                name,
                role,
                verified,
                suspended,
            },
        })
    }
}

/// Who the request's token authenticates.
#[utoipa::path(get, path = "/api/v2/users/me", operation_id = "getCurrentUser", tag = "Users",
    responses((status = 200, description = "The authenticated user", body = UserResponse), super::openapi::Auth,
        super::openapi::MissingScope))]
pub async fn me(user: ApiUser, base: BaseUrl) -> Response {
    json_response(
        StatusCode::OK,
        &UserResponse {
            user: views::user(&base, &user.identity.user),
        },
    )
}

/// The account's users that are not deleted, newest first, cursor-paged.
/// Admins and agents.
#[utoipa::path(get, path = "/api/v2/users", operation_id = "listUsers", tag = "Users", params(PageParams),
    responses((status = 200, description = "One page of users", body = UserList), super::openapi::Auth,
        super::openapi::Forbidden, super::openapi::BadQuery))]
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
    let users = users.iter().map(|u| views::user(&base, u)).collect();
    Ok(json_response(StatusCode::OK, &UserList { users, meta, links }))
}

/// Adds a user to the account. Admins.
#[utoipa::path(post, path = "/api/v2/users", operation_id = "createUser", tag = "Users", request_body = CreateUserRequest,
    responses((status = 201, description = "The new user; `Location` is its URL", body = UserResponse,
        headers(("Location" = String, description = "The new user's absolute URL"))),
        super::openapi::Auth, super::openapi::Forbidden, super::openapi::BadBody, super::openapi::Invalid))]
pub async fn create(
    State(state): State<AppState>,
    admin: Admin,
    base: BaseUrl,
    JsonBody(CreateUserRequest { user: input }): JsonBody<CreateUserRequest>,
) -> ApiResult<Response> {
    let CreateUser {
        name,
        email,
        role,
        verified,
    } = input;
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
        &UserResponse {
            user: views::user(&base, &user),
        },
    ))
}

/// One user of the account; deleted users are 404. Admins.
#[utoipa::path(get, path = "/api/v2/users/{id}", operation_id = "getUser", tag = "Users", params(super::openapi::IdParam),
    responses((status = 200, description = "The user", body = UserResponse), super::openapi::Auth,
        super::openapi::Forbidden, super::openapi::NotFound))]
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
        &UserResponse {
            user: views::user(&base, &user),
        },
    ))
}

/// Changes a user's name, role, verification or suspension. Admins.
#[utoipa::path(put, path = "/api/v2/users/{id}", operation_id = "updateUser", tag = "Users", params(super::openapi::IdParam),
    request_body = UpdateUserRequest,
    responses((status = 200, description = "The user as changed", body = UserResponse), super::openapi::Auth,
        super::openapi::Forbidden, super::openapi::NotFound, super::openapi::BadBody, super::openapi::Invalid))]
pub async fn update(
    State(state): State<AppState>,
    admin: Admin,
    base: BaseUrl,
    id: Result<Path<UserId>, PathRejection>,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    // The id is looked at before the body (docs/api.md, "Endpoints").
    let id = record_id(id)?;
    let UpdateUserRequest { user: input } = UpdateUserRequest::from_object(body)?;
    let UpdateUser {
        name,
        role,
        verified,
        suspended,
    } = input;
    // `email` is read-only here (docs/api.md); the Admin Center's Edit
    // user changes it.
    let patch = UserPatch {
        name,
        email: None,
        role,
        verified,
        suspended,
    };
    let user = state.app.update_user(&admin.access, id, &patch).await?;
    Ok(json_response(
        StatusCode::OK,
        &UserResponse {
            user: views::user(&base, &user),
        },
    ))
}

/// Soft-deletes a user: they can no longer authenticate and are 404
/// afterwards; tokens they created keep working. Admins.
#[utoipa::path(delete, path = "/api/v2/users/{id}", operation_id = "deleteUser", tag = "Users", params(super::openapi::IdParam),
    responses((status = 204, description = "Deleted"), super::openapi::Auth, super::openapi::Forbidden,
        super::openapi::NotFound))]
pub async fn delete(
    State(state): State<AppState>,
    admin: Admin,
    id: Result<Path<UserId>, PathRejection>,
) -> ApiResult<Response> {
    let id = record_id(id)?;
    state.app.delete_user(&admin.access, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
