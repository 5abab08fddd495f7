//! `/login` and `/logout`. One message for an unknown account, an unknown
//! email and a wrong password, with a dummy Argon2id check for unknown users
//! so that timing does not tell them apart; failed attempts are limited per
//! client address and per account and email.

use askama::Template;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, request::Parts, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use latchkey_core::user::normalize_email;

use super::page::{render, PageResult};
use super::session::{self, read_form, secrets_match, sign_in_keys, Web};
use crate::http::auth::client_ip;
use crate::http::AppState;
use crate::password;

const WRONG: &str = "Invalid account, email or password.";
const TOO_MANY: &str = "Too many failed sign-in attempts. Wait a minute and try again.";
const EXPIRED: &str = "The sign-in form expired. Please try again.";

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
        None if state.app.store.account_count().await? == 1 => state
            .app
            .store
            .accounts()
            .await?
            .into_iter()
            .next()
            .map(|a| a.subdomain),
        None => None,
    };
    let t = LoginTemplate {
        subdomain: subdomain.or(only.as_deref()).unwrap_or(""),
        email,
        error,
        csrf: &csrf,
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

pub async fn submit(State(state): State<AppState>, web: Web, req: Request<Body>) -> PageResult {
    let (parts, body) = req.into_parts();
    let fields = read_form(Request::from_parts(parts.clone(), body)).await?;
    let subdomain = fields.text("subdomain").trim().to_ascii_lowercase();
    let email = fields.text("email").trim().to_owned();
    let again = |status, error| {
        let (state, subdomain, email) = (&state, subdomain.as_str(), email.as_str());
        let parts = &parts;
        async move { page(state, parts, status, Some(subdomain), email, Some(error)).await }
    };

    let cookie = session::login_cookie(&state, &parts).unwrap_or_default();
    if !secrets_match(fields.text("csrf"), &cookie) {
        return again(StatusCode::FORBIDDEN, EXPIRED).await;
    }
    let now = state.app.now();
    let keys = sign_in_keys(client_ip(&parts, &state.config), &subdomain, &normalize_email(&email));
    if web.sign_in_blocked(&keys, now) {
        return again(StatusCode::TOO_MANY_REQUESTS, TOO_MANY).await;
    }

    let user = match state.app.store.account_by_subdomain(&subdomain).await? {
        Some(account) => {
            state
                .app
                .store
                .user_credentials(account.id, &normalize_email(&email))
                .await?
        }
        None => None,
    };
    let (user, phc) = match user {
        Some((user, Some(phc))) => (Some(user), phc),
        _ => (None, web.dummy_hash().await?.to_owned()),
    };
    let password = fields.text("password").to_owned();
    let matches = tokio::task::spawn_blocking(move || password::verify_blocking(&password, &phc))
        .await
        .unwrap_or(false);
    let user = user.filter(|u| matches && u.can_authenticate());
    let Some(user) = user else {
        web.record_failed_sign_in(&keys, now);
        tracing::info!(ip = %client_ip(&parts, &state.config), "sign-in failed");
        return again(StatusCode::UNAUTHORIZED, WRONG).await;
    };
    let set = session::start(&state, &parts, &user).await?;
    let mut res = Redirect::to("/admin").into_response();
    if let Some(set) = set {
        res.headers_mut().insert(header::SET_COOKIE, set);
    }
    Ok(res)
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
                csrf: &s.session.csrf_token,
            },
        )),
        None => Ok(Redirect::to("/login").into_response()),
    }
}

pub async fn logout(State(state): State<AppState>, req: Request<Body>) -> PageResult<Response> {
    let (parts, body) = req.into_parts();
    let fields = read_form(Request::from_parts(parts.clone(), body)).await?;
    if let Some(s) = session::current(&state, &parts).await? {
        if !secrets_match(fields.text("csrf"), &s.session.csrf_token) {
            return Err(super::page::PageError::BadCsrf);
        }
        session::end(&state, &parts).await?;
    }
    let mut res = Redirect::to("/login").into_response();
    if let Some(clear) = session::clear_session_cookie(&state, &parts) {
        res.headers_mut().insert(header::SET_COOKIE, clear);
    }
    Ok(res)
}
