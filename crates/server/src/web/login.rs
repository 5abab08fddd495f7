//! `/login` and `/logout`: the forms, their CSRF checks and the session
//! cookie. The sign-in itself (one message for an unknown account, an
//! unknown email and a wrong password; the dummy Argon2id check; the limits
//! per client address and per account and email, reserved before the
//! password is checked; the bounded Argon2 checks, a 429 with `Retry-After`
//! when none is free) is the service layer's `App::sign_in`.

use askama::Template;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, request::Parts, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use latchkey_app::password::SecretString;
use latchkey_app::{SignIn, SignInAttempt};
use latchkey_core::account::Subdomain;

use super::page::{render, PageError, PageResult};
use super::session::{self, read_form};
use crate::client::client_ip;
use crate::state::AppState;

const WRONG: &str = "Invalid account, email or password.";
const TOO_MANY: &str = "Too many failed sign-in attempts. Wait a minute and try again.";
const EXPIRED: &str = "The sign-in form expired. Please try again.";
const BUSY: &str = "Too many sign-ins at once. Try again in a moment.";

#[derive(Template)]
#[template(path = "login.html")]
struct LoginTemplate<'a> {
    subdomain: &'a str,
    email: &'a str,
    error: Option<&'a str>,
    csrf: &'a str,
}

/// The sign-in page, the subdomain pre-filled when there is one account.
async fn page(
    state: &AppState,
    parts: &Parts,
    status: StatusCode,
    subdomain: Option<&str>,
    email: &str,
    error: Option<&str>,
) -> PageResult {
    let (csrf, set) = session::login_csrf(state, parts);
    let only = match subdomain {
        Some(_) => None,
        None => state.app.sole_subdomain().await?,
    };
    let t = LoginTemplate {
        subdomain: subdomain.or(only.as_ref().map(Subdomain::as_str)).unwrap_or(""),
        email,
        error,
        csrf: csrf.expose_secret(),
    };
    let mut res = render(status, &t);
    if let Some(set) = set {
        res.headers_mut().insert(header::SET_COOKIE, set);
    }
    Ok(res)
}

pub async fn form(State(state): State<AppState>, req: Request<Body>) -> PageResult {
    let (parts, _) = req.into_parts();
    page(&state, &parts, StatusCode::OK, None, "", None).await
}

pub async fn submit(State(state): State<AppState>, req: Request<Body>) -> PageResult {
    let (parts, body) = req.into_parts();
    let mut fields = read_form(Request::from_parts(parts.clone(), body)).await?;
    let subdomain = fields.text("subdomain").trim().to_ascii_lowercase();
    let email = fields.text("email").trim().to_owned();
    let again = |status, error| {
        let (state, subdomain, email) = (&state, subdomain.as_str(), email.as_str());
        let parts = &parts;
        async move { page(state, parts, status, Some(subdomain), email, Some(error)).await }
    };

    if !session::login_csrf_matches(&state, &parts, fields.text("csrf")) {
        return again(StatusCode::FORBIDDEN, EXPIRED).await;
    }
    let ip = client_ip(&parts, &state.config);
    let previous = session::session_id(&state, &parts);
    let attempt = SignInAttempt {
        ip,
        subdomain: &subdomain,
        email: &email,
        password: SecretString::from(fields.take("password")),
        previous_session: previous.as_ref(),
    };
    match state.app.sign_in(attempt).await? {
        SignIn::TooMany => again(StatusCode::TOO_MANY_REQUESTS, TOO_MANY).await,
        SignIn::Busy => {
            let mut res = again(StatusCode::TOO_MANY_REQUESTS, BUSY).await?;
            res.headers_mut()
                .insert(header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
            Ok(res)
        }
        SignIn::Refused => {
            tracing::info!(%ip, "sign-in failed");
            again(StatusCode::UNAUTHORIZED, WRONG).await
        }
        SignIn::Started { session_id } => {
            let mut res = Redirect::to("/admin").into_response();
            if let Some(set) = session::session_cookie(&state, &parts, &session_id) {
                res.headers_mut().insert(header::SET_COOKIE, set);
            }
            Ok(res)
        }
    }
}

#[derive(Template)]
#[template(path = "logout.html")]
struct LogoutTemplate<'a> {
    csrf: &'a str,
}

/// A page with a sign-out button (signing out is a POST with the CSRF token).
pub async fn logout_form(State(state): State<AppState>, req: Request<Body>) -> PageResult {
    let (parts, _) = req.into_parts();
    match session::current(&state, &parts).await? {
        Some(s) => Ok(render(
            StatusCode::OK,
            &LogoutTemplate {
                csrf: s.csrf_token().expose_secret(),
            },
        )),
        None => Ok(Redirect::to("/login").into_response()),
    }
}

pub async fn logout(State(state): State<AppState>, req: Request<Body>) -> PageResult<Response> {
    let (parts, body) = req.into_parts();
    let fields = read_form(Request::from_parts(parts.clone(), body)).await?;
    if let Some(s) = session::current(&state, &parts).await? {
        if !s.csrf_matches(fields.text("csrf")) {
            return Err(PageError::BadCsrf);
        }
        state.app.end_session(s).await?;
    }
    let mut res = Redirect::to("/login").into_response();
    if let Some(clear) = session::clear_session_cookie(&state, &parts) {
        res.headers_mut().insert(header::SET_COOKIE, clear);
    }
    Ok(res)
}
