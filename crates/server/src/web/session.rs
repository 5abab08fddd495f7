//! The pages' side of sessions: the session cookie (`HttpOnly;
//! SameSite=Strict`, `__Host-` over TLS), the sign-in form's CSRF cookie,
//! form bodies, and the extractors that let only a signed-in admin, and
//! only a form carrying the session's CSRF token, reach a handler. What a
//! session is (its id's hash in the database, expiry, the CSRF token) is the
//! service layer's (`latchkey_app::session`); this module only carries the
//! id between browser and [`latchkey_app::App`].

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use latchkey_app::session::new_csrf_token;
use latchkey_app::{AdminAccess, Session};
use latchkey_core::secret::{CsrfToken, SessionId};
use latchkey_core::{account::Account, user::User};

use super::page::{Layout, Nav, PageError};
use crate::client::{client_ip, peer_is_trusted_proxy};
use crate::state::AppState;

const SESSION_COOKIE: &str = "latchkey_session";
const SECURE_SESSION_COOKIE: &str = "__Host-latchkey_session";
const LOGIN_COOKIE: &str = "latchkey_login";
const SECURE_LOGIN_COOKIE: &str = "__Host-latchkey_login";
const FORM_LIMIT: usize = 64 * 1024;

/// Whether the browser reaches us over TLS: `--public-url` is https, or a
/// trusted proxy says so with `X-Forwarded-Proto`.
fn secure(state: &AppState, parts: &Parts) -> bool {
    if let Some(url) = state.config.public_url.as_deref() {
        return url.starts_with("https://");
    }
    peer_is_trusted_proxy(parts, &state.config)
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

/// The session id the browser sent, if any.
pub fn session_id(state: &AppState, parts: &Parts) -> Option<SessionId> {
    cookie_value(&parts.headers, session_cookie_name(state, parts)).map(SessionId::new)
}

pub fn session_cookie(state: &AppState, parts: &Parts, id: &SessionId) -> Option<HeaderValue> {
    set_cookie(
        state,
        parts,
        session_cookie_name(state, parts),
        id.expose_secret(),
        None,
    )
}

pub fn clear_session_cookie(state: &AppState, parts: &Parts) -> Option<HeaderValue> {
    set_cookie(state, parts, session_cookie_name(state, parts), "", Some(0))
}

/// The sign-in form's CSRF token, in a cookie of its own (there is no
/// session yet): the form must send back the same value.
pub fn login_csrf(state: &AppState, parts: &Parts) -> (CsrfToken, Option<HeaderValue>) {
    match cookie_value(&parts.headers, login_cookie_name(state, parts)).filter(|v| v.len() == 43) {
        Some(v) => (CsrfToken::new(v), None),
        None => {
            let v = new_csrf_token();
            let header = set_cookie(
                state,
                parts,
                login_cookie_name(state, parts),
                v.expose_secret(),
                Some(60 * 60),
            );
            (v, header)
        }
    }
}

pub fn login_cookie(state: &AppState, parts: &Parts) -> Option<CsrfToken> {
    cookie_value(&parts.headers, login_cookie_name(state, parts)).map(CsrfToken::new)
}

/// The request's live session, if its cookie names one.
pub async fn current(state: &AppState, parts: &Parts) -> Result<Option<Session>, PageError> {
    let Some(id) = session_id(state, parts) else {
        return Ok(None);
    };
    Ok(state.app.session(&id, client_ip(parts, &state.config)).await?)
}

/// A page request by a signed-in admin. Anonymous visitors are redirected
/// to `/login`; other signed-in users get the 403 page.
#[derive(Debug)]
pub struct AdminPage {
    pub session: Session,
    pub access: AdminAccess,
    /// The SHA-256 of the session id: what per-session state
    /// ([`super::reveal`]) is keyed by.
    pub session_key: [u8; 32],
}

impl AdminPage {
    pub fn account(&self) -> &Account {
        &self.session.account
    }

    pub fn user(&self) -> &User {
        &self.session.user
    }

    pub fn csrf(&self) -> &str {
        self.session.csrf_token().expose_secret()
    }

    pub fn layout(&self, nav: Nav) -> Layout {
        Layout::new(self.account(), self.user(), self.csrf(), nav)
    }
}

impl FromRequestParts<AppState> for AdminPage {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let session_key = session_id(state, parts).map(|id| id.hash()).unwrap_or_default();
        let Some(session) = current(state, parts).await.map_err(IntoResponse::into_response)? else {
            let mut res = Redirect::to("/login").into_response();
            if let Some(clear) = clear_session_cookie(state, parts) {
                res.headers_mut().insert(header::SET_COOKIE, clear);
            }
            return Err(res);
        };
        let Some(access) = session.access.admin() else {
            return Err(PageError::Forbidden {
                csrf: Some(session.csrf_token().expose_secret().to_owned()),
            }
            .into_response());
        };
        Ok(AdminPage {
            session,
            access,
            session_key,
        })
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

    /// Every value of `name`, in order (a group of checkboxes).
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The first value of `name`, or "".
    pub fn text(&self, name: &str) -> &str {
        self.get(name).unwrap_or("")
    }

    /// Moves the first value of `name` out of the form, or "" (a password
    /// goes straight into a `SecretString`, leaving no copy here).
    pub fn take(&mut self, name: &str) -> String {
        match self.0.iter().position(|(k, _)| k == name) {
            Some(i) => self.0.remove(i).1,
            None => String::new(),
        }
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
#[derive(Debug)]
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
        if !admin.session.csrf_matches(fields.text("csrf")) {
            return Err(PageError::BadCsrf.into_response());
        }
        Ok(AdminForm { admin, fields })
    }
}

/// Whether the sign-in form carried the CSRF token of its cookie.
pub fn login_csrf_matches(state: &AppState, parts: &Parts, given: &str) -> bool {
    login_cookie(state, parts).is_some_and(|token| token.matches(given))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; latchkey_session=xyz"));
        assert_eq!(cookie_value(&h, SESSION_COOKIE).as_deref(), Some("xyz"));
        assert_eq!(cookie_value(&h, "b"), None);
    }
}
