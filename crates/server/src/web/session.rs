//! Admin Center sessions: a random id in an `HttpOnly; SameSite=Strict`
//! cookie, stored server-side as its SHA-256 (so every node sharing the
//! database accepts it), with idle and absolute expiry; the per-session
//! CSRF token; and the extractors that let only a signed-in admin, and only
//! a form carrying the CSRF token, reach a handler.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use latchkey_core::{
    account::Account,
    time::Timestamp,
    user::{Role, User},
};
use latchkey_store::backend::SessionRecord;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::OnceCell;

use super::page::{Layout, Nav, PageError};
use crate::app::AdminAccess;
use crate::http::auth::client_ip;
use crate::http::AppState;
use crate::password;

/// A session ends after this long without a request.
pub const IDLE_TIMEOUT: i64 = 30 * 60;
/// A session ends this long after sign-in, however busy.
pub const ABSOLUTE_TIMEOUT: i64 = 12 * 60 * 60;
/// `last_seen_at` is written at most this often per session.
const TOUCH_EVERY: i64 = 60;

/// Failed sign-ins allowed per client address per minute.
pub const FAILED_SIGN_INS_PER_ADDRESS: u32 = 20;
/// Failed sign-ins allowed per account and email per minute.
pub const FAILED_SIGN_INS_PER_LOGIN: u32 = 5;

const SESSION_COOKIE: &str = "latchkey_session";
const SECURE_SESSION_COOKIE: &str = "__Host-latchkey_session";
const LOGIN_COOKIE: &str = "latchkey_login";
const SECURE_LOGIN_COOKIE: &str = "__Host-latchkey_login";
const FORM_LIMIT: usize = 64 * 1024;

/// State of the pages that the API does not need.
pub struct WebState {
    attempts: Mutex<HashMap<String, (i64, u32)>>,
    dummy_hash: OnceCell<String>,
}

impl Default for WebState {
    fn default() -> Self {
        Self::new()
    }
}

impl WebState {
    pub fn new() -> Self {
        WebState {
            attempts: Mutex::new(HashMap::new()),
            dummy_hash: OnceCell::new(),
        }
    }

    /// A real Argon2id hash of a random password, checked when the user is
    /// unknown so that the answer takes as long as for a wrong password.
    pub async fn dummy_hash(&self) -> Result<&str, PageError> {
        self.dummy_hash
            .get_or_try_init(|| password::hash(password::generate()))
            .await
            .map(String::as_str)
            .map_err(|e| PageError::Internal(e.to_string()))
    }

    /// Whether any of `keys` has used up this minute's failed sign-ins.
    pub fn sign_in_blocked(&self, keys: &[(String, u32)], now: Timestamp) -> bool {
        let minute = now.div_euclid(60);
        let Ok(attempts) = self.attempts.lock() else {
            return true;
        };
        keys.iter()
            .any(|(key, limit)| attempts.get(key).is_some_and(|(m, n)| *m == minute && *n >= *limit))
    }

    pub fn record_failed_sign_in(&self, keys: &[(String, u32)], now: Timestamp) {
        let minute = now.div_euclid(60);
        let Ok(mut attempts) = self.attempts.lock() else {
            return;
        };
        if attempts.len() > 10_000 {
            attempts.retain(|_, (m, _)| *m == minute);
        }
        for (key, _) in keys {
            let entry = attempts.entry(key.clone()).or_insert((minute, 0));
            if entry.0 != minute {
                *entry = (minute, 0);
            }
            entry.1 += 1;
        }
    }
}

/// The rate-limit keys of one sign-in attempt.
pub fn sign_in_keys(ip: IpAddr, subdomain: &str, email_normalized: &str) -> Vec<(String, u32)> {
    vec![
        (format!("ip:{ip}"), FAILED_SIGN_INS_PER_ADDRESS),
        (
            format!("login:{subdomain}:{email_normalized}"),
            FAILED_SIGN_INS_PER_LOGIN,
        ),
    ]
}

/// 32 bytes from the OS CSPRNG, base64url.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn hash_id(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// Compares two secrets in constant time.
pub fn secrets_match(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Whether the browser reaches us over TLS: `--public-url` is https, or a
/// trusted proxy says so with `X-Forwarded-Proto`.
fn secure(state: &AppState, parts: &Parts) -> bool {
    if let Some(url) = state.config.public_url.as_deref() {
        return url.starts_with("https://");
    }
    let peer_trusted = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .is_some_and(|c| state.config.trusted_proxies.iter().any(|n| n.contains(&c.0.ip())));
    peer_trusted
        && parts
            .headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

fn session_cookie_name(state: &AppState, parts: &Parts) -> &'static str {
    if secure(state, parts) {
        SECURE_SESSION_COOKIE
    } else {
        SESSION_COOKIE
    }
}

fn login_cookie_name(state: &AppState, parts: &Parts) -> &'static str {
    if secure(state, parts) {
        SECURE_LOGIN_COOKIE
    } else {
        LOGIN_COOKIE
    }
}

/// The value of the cookie `name`, if the request sent it.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| cookie::Cookie::split_parse(v.to_owned()))
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// A `Set-Cookie` value; `max_age` 0 removes the cookie.
fn set_cookie(state: &AppState, parts: &Parts, name: &str, value: &str, max_age: Option<i64>) -> Option<HeaderValue> {
    let mut c = cookie::Cookie::build((name.to_owned(), value.to_owned()))
        .path("/")
        .http_only(true)
        .same_site(cookie::SameSite::Strict)
        .secure(secure(state, parts));
    if let Some(age) = max_age {
        c = c.max_age(cookie::time::Duration::seconds(age));
    }
    HeaderValue::from_str(&c.build().to_string()).ok()
}

pub fn session_cookie(state: &AppState, parts: &Parts, id: &str) -> Option<HeaderValue> {
    set_cookie(state, parts, session_cookie_name(state, parts), id, None)
}

pub fn clear_session_cookie(state: &AppState, parts: &Parts) -> Option<HeaderValue> {
    set_cookie(state, parts, session_cookie_name(state, parts), "", Some(0))
}

/// The sign-in form's CSRF token, in a cookie of its own (there is no
/// session yet): the form must send back the same value.
pub fn login_csrf(state: &AppState, parts: &Parts) -> (String, Option<HeaderValue>) {
    match cookie_value(&parts.headers, login_cookie_name(state, parts)).filter(|v| v.len() == 43) {
        Some(v) => (v, None),
        None => {
            let v = random_secret();
            let header = set_cookie(state, parts, login_cookie_name(state, parts), &v, Some(60 * 60));
            (v, header)
        }
    }
}

pub fn login_cookie(state: &AppState, parts: &Parts) -> Option<String> {
    cookie_value(&parts.headers, login_cookie_name(state, parts))
}

/// Starts a session for `user`, ending the one the browser had (the id is
/// renewed on every sign-in). Returns the cookie to set.
pub async fn start(state: &AppState, parts: &Parts, user: &User) -> Result<Option<HeaderValue>, PageError> {
    let store = &state.app.store;
    let now = state.app.now();
    if let Some(old) = cookie_value(&parts.headers, session_cookie_name(state, parts)) {
        store.delete_session(&hash_id(&old)).await?;
    }
    store.prune_sessions(now - IDLE_TIMEOUT, now - ABSOLUTE_TIMEOUT).await?;
    let id = random_secret();
    let record = SessionRecord {
        id_hash: hash_id(&id),
        account_id: user.account_id,
        user_id: user.id,
        csrf_token: random_secret(),
        created_at: now,
        last_seen_at: now,
    };
    store.insert_session(&record).await?;
    Ok(session_cookie(state, parts, &id))
}

/// Ends the browser's session, if it has one.
pub async fn end(state: &AppState, parts: &Parts) -> Result<(), PageError> {
    if let Some(id) = cookie_value(&parts.headers, session_cookie_name(state, parts)) {
        state.app.store.delete_session(&hash_id(&id)).await?;
    }
    Ok(())
}

/// A browser with a live session, and who it is.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub session: SessionRecord,
    pub user: User,
    pub account: Account,
    pub ip: IpAddr,
}

/// The request's live session: unexpired, and its user still able to sign
/// in. An expired or orphaned session is deleted.
pub async fn current(state: &AppState, parts: &Parts) -> Result<Option<SignedIn>, PageError> {
    let Some(id) = cookie_value(&parts.headers, session_cookie_name(state, parts)) else {
        return Ok(None);
    };
    let store = &state.app.store;
    let hash = hash_id(&id);
    let Some(session) = store.session(&hash).await? else {
        return Ok(None);
    };
    let now = state.app.now();
    let expired = now - session.last_seen_at > IDLE_TIMEOUT || now - session.created_at > ABSOLUTE_TIMEOUT;
    let user = store
        .user(session.user_id)
        .await?
        .filter(|u| u.account_id == session.account_id && u.can_authenticate());
    let account = store.account(session.account_id).await?;
    let (Some(user), Some(account), false) = (user, account, expired) else {
        store.delete_session(&hash).await?;
        return Ok(None);
    };
    if now - session.last_seen_at >= TOUCH_EVERY {
        store.touch_session(&hash, now).await?;
    }
    Ok(Some(SignedIn {
        session,
        user,
        account,
        ip: client_ip(parts, &state.config),
    }))
}

/// A page request by a signed-in admin. Anonymous visitors are redirected
/// to `/login`; other signed-in users get the 403 page.
#[derive(Debug, Clone)]
pub struct AdminPage {
    pub signed_in: SignedIn,
    pub access: AdminAccess,
}

impl AdminPage {
    pub fn account_id(&self) -> i64 {
        self.signed_in.account.id
    }

    pub fn account(&self) -> &Account {
        &self.signed_in.account
    }

    pub fn user(&self) -> &User {
        &self.signed_in.user
    }

    pub fn csrf(&self) -> &str {
        &self.signed_in.session.csrf_token
    }

    pub fn layout(&self, nav: Nav) -> Layout {
        Layout::new(self.account(), self.user(), self.csrf(), nav)
    }
}

impl FromRequestParts<AppState> for AdminPage {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(signed_in) = current(state, parts).await.map_err(IntoResponse::into_response)? else {
            let mut res = Redirect::to("/login").into_response();
            if let Some(clear) = clear_session_cookie(state, parts) {
                res.headers_mut().insert(header::SET_COOKIE, clear);
            }
            return Err(res);
        };
        if signed_in.user.role != Role::Admin {
            return Err(PageError::Forbidden {
                csrf: Some(signed_in.session.csrf_token.clone()),
            }
            .into_response());
        }
        let access = AdminAccess::for_user(&signed_in.user, signed_in.ip);
        Ok(AdminPage { signed_in, access })
    }
}

/// A submitted form's fields, in order.
#[derive(Debug, Clone, Default)]
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    pub fn parse(body: &[u8]) -> Self {
        Fields(
            form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The first value of `name`, or "".
    pub fn text(&self, name: &str) -> &str {
        self.get(name).unwrap_or("")
    }

    /// A checkbox: checked when sent with any value.
    pub fn checked(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// Reads a URL-encoded form body (at most 64 KiB).
pub async fn read_form(req: Request<Body>) -> Result<Fields, PageError> {
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(PageError::BadRequest("Send this form from its page.".to_owned()));
    }
    let body = axum::body::to_bytes(req.into_body(), FORM_LIMIT)
        .await
        .map_err(|_| PageError::BadRequest("The form is larger than 64 KiB.".to_owned()))?;
    Ok(Fields::parse(&body))
}

/// A form posted by a signed-in admin, carrying the session's CSRF token.
#[derive(Debug, Clone)]
pub struct AdminForm {
    pub admin: AdminPage,
    pub fields: Fields,
}

impl FromRequest<AppState> for AdminForm {
    type Rejection = Response;

    async fn from_request(req: Request<Body>, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let admin = AdminPage::from_request_parts(&mut parts, state).await?;
        let fields = read_form(Request::from_parts(parts, body))
            .await
            .map_err(IntoResponse::into_response)?;
        if !secrets_match(fields.text("csrf"), admin.csrf()) {
            return Err(PageError::BadCsrf.into_response());
        }
        Ok(AdminForm { admin, fields })
    }
}

/// The pages' own state, reachable from handlers.
pub type Web = Extension<std::sync::Arc<WebState>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_sign_ins_block_until_the_minute_ends() {
        let web = WebState::new();
        let keys = sign_in_keys(IpAddr::from([10, 0, 0, 1]), "acme", "a@b.c");
        for _ in 0..FAILED_SIGN_INS_PER_LOGIN {
            assert!(!web.sign_in_blocked(&keys, 120));
            web.record_failed_sign_in(&keys, 120);
        }
        assert!(web.sign_in_blocked(&keys, 130));
        let other = sign_in_keys(IpAddr::from([10, 0, 0, 1]), "acme", "x@b.c");
        assert!(!web.sign_in_blocked(&other, 130));
        assert!(!web.sign_in_blocked(&keys, 180));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(secrets_match("abc", "abc"));
        assert!(!secrets_match("abc", "abd"));
        assert!(!secrets_match("abc", "ab"));
        assert!(!secrets_match("", "a"));
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; latchkey_session=xyz"));
        assert_eq!(cookie_value(&h, SESSION_COOKIE).as_deref(), Some("xyz"));
        assert_eq!(cookie_value(&h, "b"), None);
    }
}
