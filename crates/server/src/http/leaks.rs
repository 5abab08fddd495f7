//! Leaked tokens (README.md, "Leaked tokens"; docs/api.md, "Leaked
//! tokens"): anyone who finds a token in public can kill it, and GitHub's
//! secret scanning can report the tokens it finds.
//!
//! - `POST /api/v2/credentials/revoke` is unauthenticated, like GitHub's
//!   own credential revocation API: `{"credentials": [...]}` (at most 1,000
//!   strings) answers 202 whatever matched, so it reveals nothing; one client
//!   address may call it 60 times an hour.
//! - `POST /operator/v1/secret_scanning/github` takes GitHub's partner
//!   format, accepted only with a valid `Github-Public-Key-Signature`
//!   (ECDSA P-256 / SHA-256 over the raw body) by a key named in
//!   `Github-Public-Key-Identifier` and listed in the configuration file:
//!   keys are configured, not fetched, so an air-gapped deployment works.
//!   It answers GitHub's feedback array.
//!
//! Each string that is a token of the deployment is deactivated and audited
//! by `system` as `reported leaked`; strings without a valid checksum are
//! dropped before any lookup.

use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::{request::Parts, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use latchkey_core::{ErrorCode, Invalid};
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{DerSignature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::error::{json_response, ApiError, ApiResult, AuthFailure};
use super::input::{FromJsonObject, JsonBody};
use crate::client::client_ip;
use crate::state::AppState;

/// The most strings one revocation request may carry.
pub const MAX_CREDENTIALS: usize = 1000;
/// Revocation requests allowed per client address per hour.
pub const REVOKES_PER_HOUR: u32 = 60;

/// The public keys GitHub signs its reports with, by key identifier.
#[derive(Debug, Clone, Default)]
pub struct GithubKeys(Vec<(String, VerifyingKey)>);

impl GithubKeys {
    /// Reads `(key_identifier, PEM public key)` pairs from the
    /// configuration file; a key that is not a P-256 public key is an error
    /// naming its identifier.
    pub fn parse(keys: &[(String, String)]) -> Result<Self, String> {
        keys.iter()
            .map(|(id, pem)| {
                VerifyingKey::from_public_key_pem(pem.trim())
                    .map(|key| (id.clone(), key))
                    .map_err(|_| format!("secret_scanning.github key {id:?} is not a PEM P-256 public key"))
            })
            .collect::<Result<_, _>>()
            .map(GithubKeys)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `signature` (base64 of a DER ECDSA signature) over `body` is
    /// valid for the key named `key_id`.
    fn verify(&self, key_id: &str, signature: &str, body: &[u8]) -> bool {
        let Some((_, key)) = self.0.iter().find(|(id, _)| id == key_id) else {
            return false;
        };
        let Ok(der) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
            return false;
        };
        let Ok(signature) = DerSignature::try_from(der.as_slice()) else {
            return false;
        };
        key.verify(body, &signature).is_ok()
    }
}

/// The body of `POST /api/v2/credentials/revoke`.
#[derive(Debug, ToSchema)]
#[schema(example = json!({"credentials": ["lk_4fQ9c2VhbW9ua2V5c2VjcmV0dG9rZW4xMjM0a0Ab3Z0"]}))]
pub struct RevokeRequest {
    /// The strings found in public, at most 1,000.
    #[schema(max_items = 1000)]
    pub credentials: Vec<String>,
}

impl FromJsonObject for RevokeRequest {
    fn from_object(body: Map<String, Value>) -> Result<Self, ApiError> {
        if body.keys().any(|k| k != "credentials") {
            return Err(ApiError::bad_request(
                "Unknown field; the body is {\"credentials\": [...]}.",
            ));
        }
        let invalid = || {
            ApiError::from(Invalid::new(
                "credentials",
                ErrorCode::InvalidValue,
                format!("credentials must be an array of at most {MAX_CREDENTIALS} strings"),
            ))
        };
        let Some(Value::Array(items)) = body.get("credentials") else {
            return Err(invalid());
        };
        if items.len() > MAX_CREDENTIALS {
            return Err(invalid());
        }
        let credentials = items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(invalid)?;
        Ok(RevokeRequest { credentials })
    }
}

/// Revokes leaked tokens: every string that is a token of this deployment
/// is deactivated. Unauthenticated; always 202 (the answer reveals nothing).
#[utoipa::path(post, path = "/api/v2/credentials/revoke", operation_id = "revokeCredentials", tag = "Leaked tokens",
    security(()),
    request_body = RevokeRequest,
    responses((status = 202, description = "Accepted; matching tokens are deactivated"),
        (status = 429, description = "More than 60 requests this hour from this address", body = super::error::ErrorBody,
            headers(("Retry-After" = i64, description = "Seconds until the hour's window ends"))),
        super::openapi::BadBody, super::openapi::Invalid))]
pub async fn revoke(
    State(state): State<AppState>,
    _slot: RevokeSlot,
    JsonBody(input): JsonBody<RevokeRequest>,
) -> ApiResult<Response> {
    state.app.report_leaked(&input.credentials, None).await?;
    let mut res = (StatusCode::ACCEPTED, "{}").into_response();
    res.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    Ok(res)
}

/// One of the client address's revocation requests this hour, taken before
/// the body is read (a malformed request counts too); 429 when none is left.
pub struct RevokeSlot;

impl FromRequestParts<AppState> for RevokeSlot {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let ip = client_ip(parts, &state.config);
        let reserved = state.revoke_limiter.try_reserve(&ip, state.app.now());
        match reserved {
            // Kept: every request counts against the hour.
            Ok(_counted) => Ok(RevokeSlot),
            Err(retry_after) => Err(ApiError::TooManyReports { retry_after }),
        }
    }
}

/// One match of GitHub's report, in GitHub's field names.
#[derive(Debug, Deserialize)]
pub struct GithubMatch {
    pub token: String,
    #[serde(rename = "type")]
    pub token_type: String,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    pub source: Option<String>,
}

/// GitHub's feedback on one match.
#[derive(Debug, Serialize)]
pub struct GithubFeedback {
    pub token_raw: String,
    pub token_type: String,
    pub label: &'static str,
}

const SIGNATURE: &str = "github-public-key-signature";
const KEY_ID: &str = "github-public-key-identifier";

/// GitHub's secret-scanning partner endpoint: 401 without a valid
/// signature by a configured key; else each reported token that is this
/// deployment's is revoked, and the answer labels each `true_positive` or
/// `false_positive`.
pub async fn github(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(key_id), Some(signature)) = (header(KEY_ID), header(SIGNATURE)) else {
        return Err(AuthFailure::NotAuthenticated { token_hint: false }.into());
    };
    if !state.config.github_keys.verify(key_id, signature, &body) {
        return Err(AuthFailure::NotAuthenticated { token_hint: false }.into());
    }
    let matches: Vec<GithubMatch> = serde_json::from_slice(&body)
        .map_err(|_| ApiError::bad_request("The body must be GitHub's array of {token, type, url, source}."))?;
    if matches.len() > MAX_CREDENTIALS {
        return Err(ApiError::bad_request("At most 1000 matches per report."));
    }
    let mut feedback = Vec::with_capacity(matches.len());
    for m in matches {
        let found = state.app.report_leaked(&[m.token.as_str()], m.url.as_deref()).await?;
        feedback.push(GithubFeedback {
            label: if found.first().copied().unwrap_or(false) {
                "true_positive"
            } else {
                "false_positive"
            },
            token_raw: m.token,
            token_type: m.token_type,
        });
    }
    Ok(json_response(StatusCode::OK, &feedback))
}
