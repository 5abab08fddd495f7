//! The OpenAPI 3.1 document of `/api/v2` (docs/api.md is the same contract
//! in prose), generated with `utoipa` from the very types the handlers read
//! and write, and served unauthenticated at `GET /api/v2/openapi.json`. A
//! copy is committed at docs/openapi.json; a test keeps the two equal.

use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi, ToSchema};

use super::error::{raw_json, BearerErrorBody, ErrorBody, FieldError, InvalidBody};
use super::{account, audit, leaks, scopes, tokens, users, views};

/// What the document says once for every path: the `.json` suffix, bodies,
/// errors (docs/api.md, "Conventions").
const DESCRIPTION: &str = "\
latchkey's REST API: API tokens, users, the account's settings and its audit log, Zendesk-compatible.

The contract in prose is docs/api.md in the repository; this document is its machine-readable form.

**The `.json` suffix.** Every path also answers with `.json` appended (`/api/v2/users/me.json`, \
`/api/v2/api_tokens/7.json`), so Zendesk client libraries work unchanged; the suffix is dropped \
before routing and the query string is kept. The paths below are written without it.

**Authentication.** HTTP Basic with the user name `{email}/token` and an API token as the password. \
Every failed check gets the same 401. A restricted token whose scopes do not cover the request (`users:read` for \
`GET /api/v2/users/me`, `api_tokens:write` for `PUT /api/v2/api_tokens/7`, …) gets 403 naming the missing scope \
in `X-Latchkey-Required-Scope`. Too many failed attempts from one address: 429 with `Retry-After`. \
A token with a `rate_limit` gets 429 with `Retry-After` once its window's requests are used, and every \
response for it carries `X-Rate-Limit`, `X-Rate-Limit-Remaining`, `RateLimit-Policy` and `RateLimit`. \
A node that has lost its database for longer than `--max-staleness`: 503 with `Retry-After: 1`.

**Bodies.** Request bodies are JSON objects (`Content-Type: application/json`, at most 64 KiB; an \
empty body counts as `{}`). Unknown fields are 400 `BadRequest`; read-only and invalid values are 422 \
`RecordInvalid`. Responses are `application/json; charset=utf-8` unless stated.

**Ids** are integers from one sequence per record type shared by all accounts; a path id that is not a \
positive integer, or names another account's record, is 404.";

/// The document: every `/api/v2` operation, its parameters, bodies and
/// answers, and the HTTP Basic security scheme.
#[derive(OpenApi)]
#[openapi(
    info(title = "latchkey API", description = DESCRIPTION, license(name = "Apache-2.0", identifier = "Apache-2.0")),
    paths(
        users::me, users::list, users::create, users::show, users::update, users::delete,
        tokens::list, tokens::create, tokens::show, tokens::update, tokens::delete, tokens::rotate, tokens::usage,
        account::show, account::settings, account::update_settings, account::preview_policy, scopes::list, leaks::revoke,
        audit::list, audit::show, audit::export,
    ),
    components(schemas(ErrorBody, BearerErrorBody, AuthErrorBody, InvalidBody, FieldError, views::RoleName, views::PlanName)),
    modifiers(&BasicAuth),
    security(("basic" = [])),
    tags(
        (name = "Users", description = "Who am I, the account's users and their management"),
        (name = "API tokens", description = "The account's API tokens"),
        (name = "Account", description = "The account and its settings"),
        (name = "Scopes", description = "What a restricted token may be limited to"),
        (name = "Leaked tokens", description = "Anyone may revoke a token found in public"),
        (name = "Audit log", description = "Every change, for admins of accounts on Enterprise plans"),
    )
)]
pub struct ApiDoc;

/// Adds the `basic` security scheme the document's `security` names.
struct BasicAuth;

impl Modify for BasicAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Basic)
            .description(Some(
                "User name `{email}/token`, password the API token: `curl -u \"jdoe@example.com/token:lk_…\"`.",
            ))
            .build();
        components.add_security_scheme("basic", SecurityScheme::Http(scheme));
    }
}

/// The document as pretty-printed JSON, as committed at docs/openapi.json.
pub fn document() -> String {
    let mut text = ApiDoc::openapi().to_pretty_json().unwrap_or_default();
    text.push('\n');
    text
}

/// `GET /api/v2/openapi.json`: the document, unauthenticated.
pub async fn serve() -> Response {
    raw_json(StatusCode::OK, document())
}

/// A record's id in a path.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct IdParam {
    /// The record's id; anything but a positive integer names no record (404).
    #[param(minimum = 1, example = 7)]
    id: i64,
}

/// Any 401 body: `{"error": "Couldn't authenticate you"}`, that with a
/// `description` hint, or the `invalid_token` answer to a Bearer credential
/// (docs/api.md, "When authentication fails").
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": "Couldn't authenticate you"}))]
pub struct AuthErrorBody {
    /// `Couldn't authenticate you` or `invalid_token`.
    error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    error_description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    hint: Option<String>,
}

/// The answers of authentication, which every operation may give.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum Auth {
    /// Failed authentication; the same body whatever was wrong.
    #[response(status = 401, headers(("WWW-Authenticate" = String, description = "Basic realm=\"latchkey\"")),
        example = json!({"error": "Couldn't authenticate you"}))]
    Unauthorized(AuthErrorBody),
    /// Too many failed authentications from this address, or the token's
    /// own rate limit used up for this window (then with the rate-limit
    /// headers).
    #[response(status = 429, headers(("Retry-After" = i64, description = "Seconds until the window ends"),
            ("X-Rate-Limit" = i64, description = "A rate-limited token's limit: requests per window"),
            ("X-Rate-Limit-Remaining" = i64, description = "Requests left in this window"),
            ("RateLimit-Policy" = String, description = "`\"token\";q=100;w=60`: quota and window in seconds"),
            ("RateLimit" = String, description = "`\"token\";r=0;t=17`: requests left and seconds to the reset")),
        example = json!({"error": "TooManyRequests", "description": "Too many failed authentication attempts. Try again later."}))]
    TooManyRequests(ErrorBody),
    /// This node has lost its database for longer than `--max-staleness`.
    #[response(status = 503, headers(("Retry-After" = i64, description = "1")),
        example = json!({"error": "ServiceUnavailable", "description": "This server has lost contact with its database and cannot verify credentials. Try again shortly."}))]
    Unavailable(ErrorBody),
}

/// 403 for a restricted token without the scope the operation needs.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum MissingScope {
    /// The token lacks the scope this operation needs; the header names it.
    #[response(status = 403,
        headers(("X-Latchkey-Required-Scope" = String, description = "The missing scope, such as `users:read`")),
        example = json!({"error": "Forbidden", "description": "This API token lacks the scope users:read."}))]
    Forbidden(ErrorBody),
}

/// 403 for a role the operation does not allow.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum Forbidden {
    /// The user's role does not allow this operation, or the token lacks
    /// the scope it needs (then `X-Latchkey-Required-Scope` names it).
    #[response(status = 403,
        example = json!({"error": "Forbidden", "description": "You do not have access to this page. Please contact the account owner of this help desk for further help."}))]
    Forbidden(ErrorBody),
}

/// 403 for a role, or `TokenAccessDisabled`.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum ForbiddenOrDisabled {
    /// The user's role does not allow this operation or the token lacks its
    /// scope (`Forbidden`), or API token access is off for the account
    /// (`TokenAccessDisabled`).
    #[response(status = 403,
        example = json!({"error": "TokenAccessDisabled", "description": "API token access is turned off for this account."}))]
    Forbidden(ErrorBody),
}

/// 403 for a role, or a plan without the audit log.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum ForbiddenOrPlan {
    /// Not an admin, the token lacks the `auditlogs` scope, or the account's
    /// plan is below Enterprise.
    #[response(status = 403,
        example = json!({"error": "Forbidden", "description": "The audit log is available on Enterprise plans."}))]
    Forbidden(ErrorBody),
}

/// 404 for an unknown, malformed or another account's id.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum NotFound {
    /// No such record in the account.
    #[response(status = 404, example = json!({"error": "RecordNotFound", "description": "Not found"}))]
    NotFound(ErrorBody),
}

/// 400 for a bad query parameter.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum BadQuery {
    /// A bad page size, cursor, filter or `format`.
    #[response(status = 400,
        example = json!({"error": "BadRequest", "description": "page[size] must be a whole number from 1 to 100."}))]
    BadRequest(ErrorBody),
}

/// 400 and 413 for a body that is not a JSON object of known fields.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum BadBody {
    /// Not JSON, not an object, no `Content-Type: application/json`, or an
    /// unknown field.
    #[response(status = 400, example = json!({"error": "BadRequest", "description": "Unknown field 'colour' in 'user'."}))]
    BadRequest(ErrorBody),
    /// The body is over 64 KiB.
    #[response(status = 413,
        example = json!({"error": "PayloadTooLarge", "description": "The request body is larger than 64 KiB."}))]
    PayloadTooLarge(ErrorBody),
}

/// 422 `RecordInvalid`.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum Invalid {
    /// Validation failed; `details` says which field and why.
    #[response(status = 422)]
    Invalid(InvalidBody),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/openapi.json is the generated document, byte for byte. After a
    /// change to the API's types, regenerate it with
    /// `UPDATE_OPENAPI=1 cargo test -p latchkey-server openapi` and commit it.
    #[test]
    fn the_committed_document_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
        let generated = document();
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(path, &generated).expect("write docs/openapi.json");
            return;
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/openapi.json is not the document the code generates; regenerate it with \
             `UPDATE_OPENAPI=1 cargo test -p latchkey-server openapi` and commit it"
        );
    }

    #[test]
    fn every_api_route_is_documented() {
        let doc = ApiDoc::openapi();
        let paths: Vec<&str> = doc.paths.paths.keys().map(String::as_str).collect();
        for p in [
            "/api/v2/users/me",
            "/api/v2/users",
            "/api/v2/users/{id}",
            "/api/v2/api_tokens",
            "/api/v2/api_tokens/{id}",
            "/api/v2/account",
            "/api/v2/account/settings",
            "/api/v2/audit_logs",
            "/api/v2/audit_logs/{id}",
            "/api/v2/audit_logs/export",
        ] {
            assert!(paths.contains(&p), "{p} is missing from the document");
        }
        assert!(paths.iter().all(|p| !p.ends_with(".json")), "no duplicate .json paths");
    }
}
