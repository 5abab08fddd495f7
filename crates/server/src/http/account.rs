//! `/api/v2/account` and its settings.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use latchkey_core::account::AccountPatch;
use latchkey_core::policy::{parse_days, TokenPolicyPatch};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::auth::{Admin, ApiUser};
use super::error::{json_response, ApiError, ApiResult};
use super::input::{opt_bool, record, BaseUrl, Errors, FromJsonObject, JsonBody};
use super::views::{self, AccountResponse, PolicyPreview, SettingsResponse};
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
    #[schema(required = false)]
    pub token_policy: Option<UpdateTokenPolicy>,
}

/// A partial token policy: each field given replaces the current one;
/// days are 1 to 3650 or `null` (no rule), anything else 422 `InvalidValue`.
#[derive(Debug, Default, ToSchema)]
pub struct UpdateTokenPolicy {
    #[schema(value_type = Option<i64>, required = false, minimum = 1, maximum = 3650)]
    pub max_lifetime_days: Option<Option<i64>>,
    #[schema(value_type = bool, required = false)]
    pub require_expiry: Option<bool>,
    #[schema(value_type = bool, required = false)]
    pub require_assigned_user: Option<bool>,
    #[schema(value_type = Option<i64>, required = false, minimum = 1, maximum = 3650)]
    pub deactivate_unused_after_days: Option<Option<i64>>,
    #[schema(value_type = Option<i64>, required = false, minimum = 1, maximum = 3650)]
    pub delete_deactivated_after_days: Option<Option<i64>>,
    #[schema(value_type = bool, required = false)]
    pub deactivate_legacy_tokens: Option<bool>,
}

impl UpdateTokenPolicy {
    const FIELDS: [&'static str; 6] = [
        "max_lifetime_days",
        "require_expiry",
        "require_assigned_user",
        "deactivate_unused_after_days",
        "delete_deactivated_after_days",
        "deactivate_legacy_tokens",
    ];

    /// Reads `token_policy` (an object; unknown keys 400, bad values 422).
    fn parse(value: Option<&Value>) -> Result<Option<Self>, ApiError> {
        let map = match value {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Object(m)) => m,
            Some(_) => return Err(ApiError::bad_request("'token_policy' must be a JSON object.")),
        };
        if map.keys().any(|k| !Self::FIELDS.contains(&k.as_str())) {
            return Err(ApiError::bad_request("Unknown field in 'token_policy'."));
        }
        let mut errors = Errors::default();
        let days = |errors: &mut Errors, key: &str| -> Option<Option<i64>> {
            let field = format!("token_policy.{key}");
            match map.get(key) {
                None => None,
                Some(Value::Null) => Some(None),
                Some(v) => {
                    // Not an integer reads as 0: refused with the same message.
                    let parsed = parse_days(&field, v.as_i64().unwrap_or(0));
                    errors.check(parsed).map(Some)
                }
            }
        };
        let max_lifetime_days = days(&mut errors, "max_lifetime_days");
        let deactivate_unused_after_days = days(&mut errors, "deactivate_unused_after_days");
        let delete_deactivated_after_days = days(&mut errors, "delete_deactivated_after_days");
        let flag = |errors: &mut Errors, key: &str| {
            errors
                .check(opt_bool(map, key).map_err(|mut e| {
                    e.field = format!("token_policy.{key}");
                    e
                }))
                .flatten()
        };
        let require_expiry = flag(&mut errors, "require_expiry");
        let require_assigned_user = flag(&mut errors, "require_assigned_user");
        let deactivate_legacy_tokens = flag(&mut errors, "deactivate_legacy_tokens");
        errors.finish()?;
        Ok(Some(UpdateTokenPolicy {
            max_lifetime_days,
            require_expiry,
            require_assigned_user,
            deactivate_unused_after_days,
            delete_deactivated_after_days,
            deactivate_legacy_tokens,
        }))
    }

    fn patch(&self) -> TokenPolicyPatch {
        TokenPolicyPatch {
            max_lifetime_days: self.max_lifetime_days,
            require_expiry: self.require_expiry,
            require_assigned_user: self.require_assigned_user,
            deactivate_unused_after_days: self.deactivate_unused_after_days,
            delete_deactivated_after_days: self.delete_deactivated_after_days,
            deactivate_legacy_tokens: self.deactivate_legacy_tokens,
        }
    }
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
        let rec = record(body, "settings", &["api", "token_policy"], &[])?;
        let api = match rec.get("api") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err(ApiError::bad_request("'api' must be a JSON object.")),
        };
        if api.keys().any(|k| k != "api_token_access") {
            return Err(ApiError::bad_request("Unknown field in 'api'."));
        }
        let api_token_access = opt_bool(&api, "api_token_access")?;
        let token_policy = UpdateTokenPolicy::parse(rec.get("token_policy"))?;
        Ok(UpdateSettingsRequest {
            settings: UpdateSettings {
                api: Some(UpdateApiSettings { api_token_access }),
                token_policy,
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
        token_policy: input.settings.token_policy.map(|p| p.patch()),
        ..Default::default()
    };
    let account = state.app.update_account(&admin.access, &patch).await?;
    Ok(json_response(StatusCode::OK, &views::settings(&account)))
}

/// The body of `POST /api/v2/account/token_policy/preview`: the proposed
/// policy, whole or in part (fields left out keep their current values).
#[derive(Debug, ToSchema)]
#[schema(example = json!({"token_policy": {"deactivate_unused_after_days": 30, "delete_deactivated_after_days": 60}}))]
pub struct PreviewPolicyRequest {
    pub token_policy: UpdateTokenPolicy,
}

impl FromJsonObject for PreviewPolicyRequest {
    fn from_object(body: Map<String, Value>) -> Result<Self, ApiError> {
        if body.keys().any(|k| k != "token_policy") {
            return Err(ApiError::bad_request(
                "Unknown field; the body is {\"token_policy\": {...}}.",
            ));
        }
        Ok(PreviewPolicyRequest {
            token_policy: UpdateTokenPolicy::parse(body.get("token_policy"))?.unwrap_or_default(),
        })
    }
}

/// What a proposed token policy would deactivate and delete now, without
/// changing anything. Admins.
#[utoipa::path(post, path = "/api/v2/account/token_policy/preview", operation_id = "previewTokenPolicy", tag = "Account",
    request_body = PreviewPolicyRequest,
    responses((status = 200, description = "The tokens the policy would deactivate and delete now", body = PolicyPreview),
        super::openapi::Auth, super::openapi::Forbidden, super::openapi::BadBody, super::openapi::Invalid))]
pub async fn preview_policy(
    State(state): State<AppState>,
    admin: Admin,
    base: BaseUrl,
    JsonBody(input): JsonBody<PreviewPolicyRequest>,
) -> ApiResult<Response> {
    let account = state.app.account(&admin.access).await?;
    let (policy, _) = input.token_policy.patch().apply(&account.token_policy);
    let effect = state.app.preview_policy(&admin.access, &policy).await?;
    let now = state.app.now();
    Ok(json_response(
        StatusCode::OK,
        &PolicyPreview {
            would_deactivate: effect
                .would_deactivate
                .iter()
                .map(|t| views::token(&base, t, now))
                .collect(),
            would_delete: effect
                .would_delete
                .iter()
                .map(|t| views::token(&base, t, now))
                .collect(),
        },
    ))
}
