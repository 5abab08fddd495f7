//! `/api/v2/account` and its settings.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use latchkey_core::account::AccountPatch;
use serde_json::{json, Value};

use super::auth::{Admin, ApiUser};
use super::error::{json_response, ApiError, ApiResult};
use super::input::{opt_bool, record, JsonObject};
use super::views;
use crate::state::AppState;

pub async fn show(State(state): State<AppState>, user: ApiUser) -> ApiResult<Response> {
    let account = state.app.account(&user.access).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"account": views::account(&account)}),
    ))
}

pub async fn settings(State(state): State<AppState>, admin: Admin) -> ApiResult<Response> {
    let account = state.app.account(&admin.access).await?;
    Ok(json_response(StatusCode::OK, &views::settings(&account)))
}

pub async fn update_settings(
    State(state): State<AppState>,
    admin: Admin,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    // The token policy (README.md, "Choices latchkey makes") is a known part of the settings that this
    // version cannot change yet: 422 ReadOnly rather than 400.
    let rec = record(body, "settings", &["api"], &["token_policy"])?;
    let api = match rec.get("api") {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(ApiError::bad_request("'api' must be a JSON object.")),
    };
    if api.keys().any(|k| k != "api_token_access") {
        return Err(ApiError::bad_request("Unknown field in 'api'."));
    }
    let patch = AccountPatch {
        api_token_access: opt_bool(&api, "api_token_access")?,
        ..Default::default()
    };
    let account = state.app.update_account(&admin.access, &patch).await?;
    Ok(json_response(StatusCode::OK, &views::settings(&account)))
}
