//! `/api/v2/account` and its settings.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use latchkey_core::account::AccountPatch;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::auth::{Admin, ApiUser};
use super::error::{json_response, ApiError, ApiResult};
use super::input::{opt_bool, record, FromJsonObject, JsonBody};
use super::views::{self, AccountResponse, SettingsResponse};
use crate::state::AppState;

/// The body of `PUT /api/v2/account/settings`: a partial object. Naming
/// `token_policy` is 422 `ReadOnly`; any other key, here or inside `api`,
/// is 400.
#[derive(Debug, ToSchema)]
#[schema(example = json!({"settings": {"api": {"api_token_access": true}}}))]
pub struct UpdateSettingsRequest {
    pub settings: UpdateSettings,
}

/// The settings an admin may change.
#[derive(Debug, ToSchema)]
pub struct UpdateSettings {
    #[schema(required = false)]
    pub api: Option<UpdateApiSettings>,
}

/// Settings of the REST API.
#[derive(Debug, ToSchema)]
pub struct UpdateApiSettings {
    /// Turns token authentication for the whole account on or off.
    #[schema(value_type = bool, required = false)]
    pub api_token_access: Option<bool>,
}

impl FromJsonObject for UpdateSettingsRequest {
    fn from_object(body: Map<String, Value>) -> Result<Self, ApiError> {
        // The token policy (README.md, "Choices latchkey makes") is a known part of the settings that this
        // version cannot change yet: 422 ReadOnly rather than 400.
        let rec = record(body, "settings", &["api"], &["token_policy"])?;
        let api = match rec.get("api") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err(ApiError::bad_request("'api' must be a JSON object.")),
        };
        if api.keys().any(|k| k != "api_token_access") {
            return Err(ApiError::bad_request("Unknown field in 'api'."));
        }
        let api_token_access = opt_bool(&api, "api_token_access")?;
        Ok(UpdateSettingsRequest {
            settings: UpdateSettings {
                api: Some(UpdateApiSettings { api_token_access }),
            },
        })
    }
}

/// The caller's account.
#[utoipa::path(get, path = "/api/v2/account", operation_id = "getAccount", tag = "Account",
    responses((status = 200, description = "The account", body = AccountResponse), super::openapi::Auth,
        super::openapi::MissingScope))]
pub async fn show(State(state): State<AppState>, user: ApiUser) -> ApiResult<Response> {
    let account = state.app.account(&user.access).await?;
    Ok(json_response(
        StatusCode::OK,
        &AccountResponse {
            account: views::account(&account),
        },
    ))
}

/// The account's settings. Admins.
#[utoipa::path(get, path = "/api/v2/account/settings", operation_id = "getAccountSettings", tag = "Account",
    responses((status = 200, description = "The settings", body = SettingsResponse), super::openapi::Auth,
        super::openapi::Forbidden))]
pub async fn settings(State(state): State<AppState>, admin: Admin) -> ApiResult<Response> {
    let account = state.app.account(&admin.access).await?;
    Ok(json_response(StatusCode::OK, &views::settings(&account)))
}

/// Changes the account's settings; answers all of them, as `GET` does.
/// Admins.
#[utoipa::path(put, path = "/api/v2/account/settings", operation_id = "updateAccountSettings", tag = "Account", request_body = UpdateSettingsRequest,
    responses((status = 200, description = "The settings as changed", body = SettingsResponse),
        super::openapi::Auth, super::openapi::Forbidden, super::openapi::BadBody, super::openapi::Invalid))]
pub async fn update_settings(
    State(state): State<AppState>,
    admin: Admin,
    JsonBody(input): JsonBody<UpdateSettingsRequest>,
) -> ApiResult<Response> {
    let patch = AccountPatch {
        api_token_access: input.settings.api.and_then(|a| a.api_token_access),
        ..Default::default()
    };
    let account = state.app.update_account(&admin.access, &patch).await?;
    Ok(json_response(StatusCode::OK, &views::settings(&account)))
}
