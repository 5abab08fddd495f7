//! The Admin Center's server-side rules, through real HTTP with a cookie-
//! keeping client: who reaches which page, CSRF, sessions (storage, renewal,
//! expiry, sign-out), sign-in errors and limits, security headers, escaping,
//! and that page changes are audited as the signed-in user.

use std::sync::Arc;

use latchkey_app::password;
use latchkey_app::session::{ABSOLUTE_TIMEOUT, IDLE_TIMEOUT};
use latchkey_app::sign_in::FAILED_SIGN_INS_PER_LOGIN;
use latchkey_core::secret::CsrfToken;
use latchkey_core::{
    account::Plan,
    audit::ActorType,
    id::{TokenId, UserId},
    token::TokenHash,
    user::{Email, NewUser, Role},
};
use latchkey_server::web::ADMIN_GET_PATHS;
use latchkey_store::backend::SessionRecord;
use reqwest::cookie::CookieStore;

use crate::support::{unique, Reply, TestAccount, TestApp};

const PASSWORD: &str = "correct horse battery staple";

/// Every form an admin can post, with a CSRF-less body that would be valid
/// otherwise (ids are filled in by the caller).
fn admin_post_paths(token_id: TokenId, user_id: UserId) -> Vec<String> {
    vec![
        "/admin/apis/api-tokens".to_owned(),
        format!("/admin/apis/api-tokens/{token_id}/edit"),
        format!("/admin/apis/api-tokens/{token_id}/deactivate"),
        format!("/admin/apis/api-tokens/{token_id}/reactivate"),
        format!("/admin/apis/api-tokens/{token_id}/delete"),
        format!("/admin/apis/api-tokens/{token_id}/rotate"),
        "/admin/apis/configuration".to_owned(),
        "/admin/people".to_owned(),
        format!("/admin/people/{user_id}/role"),
        format!("/admin/people/{user_id}/edit"),
        format!("/admin/people/{user_id}/suspend"),
        format!("/admin/people/{user_id}/unsuspend"),
        format!("/admin/people/{user_id}/delete"),
    ]
}

/// A browser: keeps cookies, never follows redirects.
struct Browser {
    jar: Arc<reqwest::cookie::Jar>,
    client: reqwest::Client,
    base: String,
}

impl Browser {
    fn new(app: &TestApp) -> Browser {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let client = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Browser {
            jar,
            client,
            base: app.url(""),
        }
    }

    async fn get(&self, path: &str) -> Reply {
        Reply::from(self.client.get(format!("{}{path}", self.base)).send().await.unwrap()).await
    }

    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let body: String = form_body(fields);
        let res = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        Reply::from(res).await
    }

    /// The session cookie's value, if the browser holds one.
    fn session_id(&self) -> Option<String> {
        let url: reqwest::Url = self.base.parse().unwrap();
        let header = self.jar.cookies(&url)?;
        header
            .to_str()
            .unwrap()
            .split("; ")
            .find_map(|c| c.strip_prefix("latchkey_session="))
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }

    /// Signs in through the form; the reply to the POST.
    async fn sign_in(&self, subdomain: &str, email: &str, password: &str) -> Reply {
        let page = self.get("/login").await;
        assert_eq!(page.status, 200);
        let csrf = csrf_of(&page);
        self.post(
            "/login",
            &[
                ("csrf", &csrf),
                ("subdomain", subdomain),
                ("email", email),
                ("password", password),
            ],
        )
        .await
    }

    /// The CSRF token of the page at `path`.
    async fn csrf(&self, path: &str) -> String {
        let page = self.get(path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.text());
        csrf_of(&page)
    }
}

fn form_body(fields: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (k, v) in fields {
        if !s.is_empty() {
            s.push('&');
        }
        s.push_str(k);
        s.push('=');
        s.push_str(&pct(v));
    }
    s
}

fn pct(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of the first `name="csrf"` field of a page.
fn csrf_of(page: &Reply) -> String {
    field_of(page, "csrf")
}

/// The value of the first field `name` of a page.
fn field_of(page: &Reply, name: &str) -> String {
    let text = page.text();
    let needle = format!(r#"name="{name}" value=""#);
    let start = text
        .find(&needle)
        .unwrap_or_else(|| panic!("no {name} field in {text}"))
        + needle.len();
    text[start..].split('"').next().unwrap().to_owned()
}

/// The Add API token form's CSRF token and one-use nonce.
async fn add_form(browser: &Browser) -> (String, String) {
    let page = browser.get("/admin/apis/api-tokens/new").await;
    assert_eq!(page.status, 200, "{}", page.text());
    (csrf_of(&page), field_of(&page, "nonce"))
}

/// Follows a form's redirect to the reveal of a new token; the reveal page.
async fn follow_to_reveal(browser: &Browser, r: &Reply) -> Reply {
    assert_eq!(r.status, 303, "{}", r.text());
    assert!(
        location(r).starts_with("/admin/apis/api-tokens/reveal/"),
        "{:?}",
        location(r)
    );
    browser.get(location(r)).await
}

fn location(r: &Reply) -> &str {
    r.header("location").unwrap_or("")
}

/// A user of `account` who can sign in with [`PASSWORD`].
async fn user_with_password(app: &TestApp, account: &TestAccount, role: Role) -> String {
    let email = format!("{}@example.com", unique("web"));
    let hash = password::hash(PASSWORD.into()).await.unwrap();
    app.app
        .create_user(
            &app.operator(&account.subdomain).await,
            NewUser {
                name: format!("Web {}", role.as_str()),
                email: Email::parse(&email).unwrap(),
                role,
                verified: true,
                password_hash: Some(hash),
            },
        )
        .await
        .unwrap();
    email
}

/// The refused requests changed nothing: the token is still active and not
/// rotated, and the account's admin still an unsuspended admin.
async fn assert_untouched(app: &TestApp, account: &TestAccount, token_id: TokenId) {
    let access = app.operator(&account.subdomain).await;
    let token = app.app.token(&access, token_id).await.unwrap();
    assert_eq!(token.map(|t| (t.active, t.previous_visible_token)), Some((true, None)));
    let admin = app.app.user(&access, account.admin.id).await.unwrap().unwrap();
    assert_eq!((admin.role, admin.suspended), (Role::Admin, false));
}

/// A server, an account, and a browser signed in as an admin of it.
async fn signed_in_admin() -> (TestApp, TestAccount, Browser) {
    let app = TestApp::spawn().await;
    let account = app.account().await;
    let email = user_with_password(&app, &account, Role::Admin).await;
    let browser = Browser::new(&app);
    let r = browser.sign_in(&account.subdomain, &email, PASSWORD).await;
    assert_eq!(r.status, 303, "sign-in: {}", r.text());
    assert_eq!(location(&r), "/admin");
    (app, account, browser)
}

#[tokio::test]
async fn anonymous_visitors_are_sent_to_login_from_every_admin_page() {
    let app = TestApp::spawn().await;
    let account = app.account().await;
    let token = app.token(&account).await;
    let browser = Browser::new(&app);
    for path in ADMIN_GET_PATHS.iter().copied().chain(["/admin/no-such-page"]) {
        let r = browser.get(path).await;
        assert_eq!(r.status, 303, "GET {path}");
        assert_eq!(location(&r), "/login", "GET {path}");
    }
    for path in admin_post_paths(token.id, account.admin.id) {
        let r = browser.post(&path, &[("csrf", "x"), ("role", "admin")]).await;
        assert_eq!(r.status, 303, "POST {path}");
        assert_eq!(location(&r), "/login", "POST {path}");
    }
    assert_eq!(
        app.app
            .token(&app.operator(&account.subdomain).await, token.id)
            .await
            .unwrap()
            .map(|t| t.active),
        Some(true)
    );
}

#[tokio::test]
async fn agents_and_end_users_get_the_403_page_on_every_admin_page() {
    let app = TestApp::spawn().await;
    let account = app.account().await;
    let token = app.token(&account).await;
    for role in [Role::Agent, Role::EndUser] {
        let email = user_with_password(&app, &account, role).await;
        let browser = Browser::new(&app);
        let r = browser.sign_in(&account.subdomain, &email, PASSWORD).await;
        assert_eq!(r.status, 303, "{role:?} signs in");
        for path in ADMIN_GET_PATHS {
            let r = browser.get(path).await;
            assert_eq!(r.status, 403, "{role:?} GET {path}");
            let text = r.text();
            assert!(
                text.contains("You do not have access to this page."),
                "{role:?} GET {path}: {text}"
            );
            let request_id = r.header("x-request-id").unwrap().to_owned();
            assert!(text.contains(&format!("Request id: <code>{request_id}</code>")));
        }
        // Even with the session's own CSRF token, no form does anything.
        let csrf = csrf_of(&browser.get("/admin").await);
        for path in admin_post_paths(token.id, account.admin.id) {
            let r = browser.post(&path, &[("csrf", &csrf), ("role", "end_user")]).await;
            assert_eq!(r.status, 403, "{role:?} POST {path}");
        }
    }
    assert_untouched(&app, &account, token.id).await;
}

#[tokio::test]
async fn a_form_without_the_sessions_csrf_token_is_refused_and_changes_nothing() {
    let (app, account, browser) = signed_in_admin().await;
    let token = app.token(&account).await;
    let path = format!("/admin/apis/api-tokens/{}/deactivate", token.id);
    let other = Browser::new(&app);
    let someone_elses = other.csrf("/login").await;
    for fields in [vec![], vec![("csrf", "")], vec![("csrf", someone_elses.as_str())]] {
        let r = browser.post(&path, &fields).await;
        assert_eq!(r.status, 403, "{fields:?}");
        assert!(r.text().contains("This form has expired"));
        assert_eq!(
            app.app
                .token(&app.operator(&account.subdomain).await, token.id)
                .await
                .unwrap()
                .map(|t| t.active),
            Some(true)
        );
    }
    let csrf = browser.csrf("/admin/apis/api-tokens").await;
    let r = browser.post(&path, &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 303);
    assert_eq!(
        app.app
            .token(&app.operator(&account.subdomain).await, token.id)
            .await
            .unwrap()
            .map(|t| t.active),
        Some(false)
    );
}

#[tokio::test]
async fn a_sign_in_form_without_its_csrf_cookie_is_refused() {
    let app = TestApp::spawn().await;
    let account = app.account().await;
    let email = user_with_password(&app, &account, Role::Admin).await;
    let fresh = Browser::new(&app);
    let r = fresh
        .post(
            "/login",
            &[
                ("csrf", "forged"),
                ("subdomain", &account.subdomain),
                ("email", &email),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, 403);
    assert!(r.text().contains("The sign-in form expired"));
    assert_eq!(fresh.session_id(), None);
}

#[tokio::test]
async fn a_sign_in_with_neither_the_login_cookie_nor_a_csrf_field_is_refused() {
    let app = TestApp::spawn().await;
    let account = app.account().await;
    let email = user_with_password(&app, &account, Role::Admin).await;
    let fresh = Browser::new(&app);
    for csrf in [None, Some("")] {
        let mut fields = vec![
            ("subdomain", account.subdomain.as_str()),
            ("email", email.as_str()),
            ("password", PASSWORD),
        ];
        fields.extend(csrf.map(|c| ("csrf", c)));
        let r = fresh.post("/login", &fields).await;
        assert_eq!(r.status, 403, "csrf {csrf:?}");
        assert!(r.text().contains("The sign-in form expired"));
        assert_eq!(fresh.session_id(), None, "csrf {csrf:?}");
    }
}

#[tokio::test]
async fn a_sign_in_with_another_forms_csrf_token_is_refused_and_its_own_signs_in() {
    let app = TestApp::spawn().await;
    let account = app.account().await;
    let email = user_with_password(&app, &account, Role::Admin).await;
    let browser = Browser::new(&app);
    let own = browser.csrf("/login").await;
    let others = Browser::new(&app).csrf("/login").await;
    assert_ne!(own, others);
    for wrong in [others.as_str(), "", &own[1..], "forged"] {
        let r = browser
            .post(
                "/login",
                &[
                    ("csrf", wrong),
                    ("subdomain", &account.subdomain),
                    ("email", &email),
                    ("password", PASSWORD),
                ],
            )
            .await;
        assert_eq!(r.status, 403, "csrf {wrong:?}");
        assert_eq!(browser.session_id(), None, "csrf {wrong:?}");
    }
    // The browser's flow: the cookie from GET /login and the form's field.
    let r = browser
        .post(
            "/login",
            &[
                ("csrf", &own),
                ("subdomain", &account.subdomain),
                ("email", &email),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(location(&r), "/admin");
    assert!(browser.session_id().is_some());
}

#[tokio::test]
async fn sessions_are_stored_as_a_hash_and_signing_out_ends_them() {
    let (app, _account, browser) = signed_in_admin().await;
    let id = browser.session_id().unwrap();
    let hash = TokenHash::of(&id).0;
    assert!(app.store().await.session(&hash).await.unwrap().is_some());
    assert_eq!(browser.get("/admin/apis/api-tokens").await.status, 200);

    // Signing out is a form post that needs the CSRF token too.
    assert_eq!(browser.post("/logout", &[]).await.status, 403);
    let csrf = browser.csrf("/admin/apis/api-tokens").await;
    let r = browser.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 303);
    assert_eq!(location(&r), "/login");
    assert!(app.store().await.session(&hash).await.unwrap().is_none());

    // The old cookie no longer signs anyone in.
    let replay = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = replay
        .get(app.url("/admin/apis/api-tokens"))
        .header("cookie", format!("latchkey_session={id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
}

#[tokio::test]
async fn signing_in_again_renews_the_session_id() {
    let (app, account, browser) = signed_in_admin().await;
    let first = browser.session_id().unwrap();
    let email = user_with_password(&app, &account, Role::Admin).await;
    assert_eq!(browser.sign_in(&account.subdomain, &email, PASSWORD).await.status, 303);
    let second = browser.session_id().unwrap();
    assert_ne!(first, second);
    assert!(app
        .store()
        .await
        .session(&TokenHash::of(&first).0)
        .await
        .unwrap()
        .is_none());
    assert!(app
        .store()
        .await
        .session(&TokenHash::of(&second).0)
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn an_idle_session_and_an_old_session_expire() {
    let (app, _account, browser) = signed_in_admin().await;
    let id = browser.session_id().unwrap();
    let hash = TokenHash::of(&id).0;
    let store = app.store().await;
    // The cookie is sent by hand: a redirect to /login clears the browser's.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let now = app.app.now();
    let cases = [
        (
            now.minus_secs(IDLE_TIMEOUT - 120),
            now.minus_secs(IDLE_TIMEOUT - 120),
            200,
        ),
        (now.minus_secs(IDLE_TIMEOUT + 5), now.minus_secs(IDLE_TIMEOUT + 5), 303),
        (now.minus_secs(ABSOLUTE_TIMEOUT + 5), now, 303),
    ];
    let original = store.session(&hash).await.unwrap().unwrap();
    for (created_at, last_seen_at, status) in cases {
        let s = SessionRecord {
            id_hash: original.id_hash,
            account_id: original.account_id,
            user_id: original.user_id,
            csrf_token: CsrfToken::new(original.csrf_token.expose_secret().to_owned()),
            created_at,
            last_seen_at,
        };
        store.delete_session(&hash).await.unwrap();
        store.insert_session(&s).await.unwrap();
        let res = client
            .get(app.url("/admin/apis/api-tokens"))
            .header("cookie", format!("latchkey_session={id}"))
            .send()
            .await
            .unwrap();
        let r = Reply::from(res).await;
        assert_eq!(r.status, status, "created {created_at:?}, last seen {last_seen_at:?}");
        if status == 303 {
            assert_eq!(location(&r), "/login");
            assert!(
                store.session(&hash).await.unwrap().is_none(),
                "an expired session is deleted"
            );
        }
    }
}

#[tokio::test]
async fn wrong_passwords_unknown_emails_and_unknown_accounts_get_one_answer() {
    let app = TestApp::spawn().await;
    let account = app.account().await;
    let email = user_with_password(&app, &account, Role::Admin).await;
    let mut bodies = Vec::new();
    for (subdomain, email, password) in [
        (account.subdomain.as_str(), email.as_str(), "wrong password"),
        (account.subdomain.as_str(), "nobody@example.com", PASSWORD),
        ("no-such-account", email.as_str(), PASSWORD),
        (account.subdomain.as_str(), account.admin.email.as_str(), PASSWORD),
    ] {
        let browser = Browser::new(&app);
        let r = browser.sign_in(subdomain, email, password).await;
        assert_eq!(r.status, 401, "{subdomain} {email}");
        assert!(r.text().contains("Invalid account, email or password."));
        assert_eq!(browser.session_id(), None);
        let text = r.text();
        bodies.push(text.replace(&csrf_of(&r), "").replace(subdomain, "").replace(email, ""));
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "one answer for every failure");
}

#[tokio::test]
async fn failed_sign_ins_are_limited_per_account_and_email() {
    let app = TestApp::spawn().await;
    let account = app.account().await;
    let email = user_with_password(&app, &account, Role::Admin).await;
    let other = user_with_password(&app, &account, Role::Admin).await;
    let browser = Browser::new(&app);
    for _ in 0..FAILED_SIGN_INS_PER_LOGIN {
        assert_eq!(browser.sign_in(&account.subdomain, &email, "wrong").await.status, 401);
    }
    let r = browser.sign_in(&account.subdomain, &email, PASSWORD).await;
    assert_eq!(r.status, 429, "even the right password waits");
    assert!(r.text().contains("Too many failed sign-in attempts"));
    assert_eq!(browser.sign_in(&account.subdomain, &other, PASSWORD).await.status, 303);
}

#[tokio::test]
async fn pages_carry_the_security_headers_and_strict_cookies() {
    let (app, _account, browser) = signed_in_admin().await;
    for path in ["/login", "/admin/apis/api-tokens", "/admin/no-such-page"] {
        let r = browser.get(path).await;
        let csp = r
            .header("content-security-policy")
            .unwrap_or_else(|| panic!("{path}: no CSP"));
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"));
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{path}");
        assert!(r.header("content-type").unwrap().starts_with("text/html"), "{path}");
    }
    let css = browser.get("/static/app.css").await;
    assert_eq!(css.status, 200);
    assert!(css.header("content-type").unwrap().starts_with("text/css"));

    let fresh = Browser::new(&app);
    let login = fresh.get("/login").await;
    let cookie = login.header("set-cookie").unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "plain http: {cookie}");

    // Behind a trusted TLS-terminating proxy, cookies are Secure too.
    let proxied = TestApp::spawn_with(|c| c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]).await;
    let via_proxy = |proto: &'static str| {
        let req = proxied
            .client
            .get(proxied.url("/login"))
            .header("x-forwarded-proto", proto);
        async move { Reply::from(req.send().await.unwrap()).await }
    };
    let https = via_proxy("https").await;
    let cookie = https.header("set-cookie").unwrap();
    assert!(cookie.starts_with("__Host-") && cookie.contains("Secure"), "{cookie}");
    let http = via_proxy("http").await;
    assert!(!http.header("set-cookie").unwrap().contains("Secure"));

    let tls = TestApp::spawn_with(|c| c.public_url = Some("https://latchkey.example.com".to_owned())).await;
    let r = Browser::new(&tls).get("/login").await;
    let cookie = r.header("set-cookie").unwrap();
    assert!(
        cookie.starts_with("__Host-") && cookie.contains("Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
}

#[tokio::test]
async fn the_page_that_reveals_a_token_is_never_cached_and_the_token_works() {
    let (app, account, browser) = signed_in_admin().await;
    let (csrf, nonce) = add_form(&browser).await;
    let form = [
        ("csrf", csrf.as_str()),
        ("nonce", &nonce),
        ("description", "From the page"),
    ];
    let posted = browser.post("/admin/apis/api-tokens", &form).await;
    let r = follow_to_reveal(&browser, &posted).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let text = r.text();
    let token = revealed_token(&r);
    assert_eq!(
        app.me_status(&crate::support::basic(&account.admin.email, &token))
            .await,
        200
    );
    assert!(text.contains("It will not be shown again"));

    // The list and the details page show only the truncated token.
    let list = browser.get("/admin/apis/api-tokens").await.text();
    assert!(!list.contains(&token));
    assert!(list.contains(&latchkey_core::token::visible_token(&token).unwrap()));

    // A reload says it was shown, never shows it again, and makes nothing.
    let again = browser.get(location(&posted)).await;
    assert_eq!(again.status, 410, "{}", again.text());
    assert_eq!(again.header("cache-control"), Some("no-store"));
    assert!(!again.text().contains(&token));
    assert!(
        again.text().contains("shown once and cannot be shown again"),
        "{}",
        again.text()
    );
    // The same form sent again (a double submit) leads to the same reveal.
    let twice = browser.post("/admin/apis/api-tokens", &form).await;
    assert_eq!((twice.status, location(&twice)), (303, location(&posted)));
    let access = app.operator(&account.subdomain).await;
    assert_eq!(app.app.tokens(&access).await.unwrap().len(), 1);

    // Another admin's session finds no reveal of this one's.
    let other = Browser::new(&app);
    let email = user_with_password(&app, &account, Role::Admin).await;
    assert_eq!(other.sign_in(&account.subdomain, &email, PASSWORD).await.status, 303);
    let r = other.get(location(&posted)).await;
    assert_eq!(r.status, 410);
    assert!(!r.text().contains(&token));

    // A form whose nonce is unknown (open too long, or the server
    // restarted) is shown again with what was entered, and makes nothing.
    let r = browser
        .post(
            "/admin/apis/api-tokens",
            &[("csrf", &csrf), ("nonce", "made-up"), ("description", "Late")],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("This form was open too long"), "{}", r.text());
    assert!(r.text().contains(r#"value="Late""#));
    assert_ne!(field_of(&r, "nonce"), "made-up");
    assert_eq!(app.app.tokens(&access).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_description_with_markup_is_escaped_everywhere() {
    let (app, account, browser) = signed_in_admin().await;
    let xss = "<script>alert(1)</script>";
    let t = app.token_described(&account, Some(xss)).await;
    for path in [
        "/admin/apis/api-tokens".to_owned(),
        format!("/admin/apis/api-tokens/{}", t.id),
        format!("/admin/apis/api-tokens/{}/edit", t.id),
        format!("/admin/apis/api-tokens/{}/deactivate", t.id),
    ] {
        let text = browser.get(&path).await.text();
        assert!(!text.contains(xss), "{path}");
        assert!(
            text.contains("&#60;script&#62;alert(1)&#60;/script&#62;") || text.contains("&lt;script&gt;"),
            "{path}: {text}"
        );
    }
}

#[tokio::test]
async fn page_changes_are_audited_as_the_signed_in_user_with_the_client_address() {
    let (app, account, browser) = signed_in_admin().await;
    let token = app.token(&account).await;
    let csrf = browser.csrf("/admin/apis/api-tokens").await;
    let r = browser
        .post(
            &format!("/admin/apis/api-tokens/{}/deactivate", token.id),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, 303);
    let event = app.audit(account.id).await.pop().unwrap();
    assert_eq!(event.actor_type, ActorType::User);
    assert_eq!(event.actor_name, "Web admin");
    assert_eq!(event.ip_address.as_deref(), Some("127.0.0.1"));
    assert_eq!(event.source_id, token.id.get());
}

#[tokio::test]
async fn add_api_token_is_disabled_with_the_reason_when_token_access_is_off() {
    let app = TestApp::spawn().await;
    let account = app.account_with(Plan::Team, false).await;
    let email = user_with_password(&app, &account, Role::Admin).await;
    let browser = Browser::new(&app);
    assert_eq!(browser.sign_in(&account.subdomain, &email, PASSWORD).await.status, 303);
    let list = browser.get("/admin/apis/api-tokens").await.text();
    assert!(list.contains("API token access is turned off for this account."));
    assert!(list.contains(
        r#"<button type="button" class="primary" disabled aria-describedby="add-blocked">Add API token</button>"#
    ));
    assert!(list.contains("0 of 256 tokens"));
    assert!(
        !list.contains("View audit log") && !list.contains("/admin/audit-log"),
        "not on a team plan"
    );
    let csrf = csrf_of(&browser.get("/admin/apis/api-tokens").await);
    let r = browser.post("/admin/apis/api-tokens", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 422);
    assert!(app
        .app
        .tokens(&app.operator(&account.subdomain).await)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_deleted_creator_is_shown_as_such_and_their_token_keeps_working() {
    let (app, account, browser) = signed_in_admin().await;
    let leaver = user_with_password(&app, &account, Role::Admin).await;
    let theirs = Browser::new(&app);
    assert_eq!(theirs.sign_in(&account.subdomain, &leaver, PASSWORD).await.status, 303);
    let (csrf, nonce) = add_form(&theirs).await;
    let r = theirs
        .post(
            "/admin/apis/api-tokens",
            &[("csrf", &csrf), ("nonce", &nonce), ("description", "Left behind")],
        )
        .await;
    assert_eq!(follow_to_reveal(&theirs, &r).await.status, 200);
    let token = app
        .app
        .tokens(&app.operator(&account.subdomain).await)
        .await
        .unwrap()
        .remove(0);
    let creator = token.user_id.unwrap();
    app.app
        .delete_user(&app.operator(&account.subdomain).await, creator)
        .await
        .unwrap();

    let list = browser.get("/admin/apis/api-tokens").await.text();
    assert!(list.contains("Web admin (deleted user)"), "{list}");
    let details = browser
        .get(&format!("/admin/apis/api-tokens/{}", token.id))
        .await
        .text();
    assert!(details.contains("Web admin (deleted user)"));
    assert!(list.contains(&format!(
        "/admin/audit-log?source_type=api_token&amp;source_id={}",
        token.id
    )));
    // The deleted user's session is over.
    assert_eq!(theirs.get("/admin/apis/api-tokens").await.status, 303);
}

#[tokio::test]
async fn names_with_markup_are_escaped_on_the_people_page() {
    let (app, account, browser) = signed_in_admin().await;
    let csrf = browser.csrf("/admin/people/new").await;
    let r = browser
        .post(
            "/admin/people",
            &[
                ("csrf", &csrf),
                ("name", "<img src=x onerror=alert(1)>"),
                ("email", "markup@example.com"),
                ("role", "agent"),
                ("verified", "on"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.text());
    let page = browser.get("/admin/people").await.text();
    assert!(!page.contains("<img src=x"));
    assert!(page.contains("&#60;img src=x onerror=alert(1)&#62;") || page.contains("&lt;img"));
    let users = app
        .app
        .users_page(
            &app.operator(&account.subdomain).await,
            latchkey_app::Page {
                after: None,
                before: None,
                size: 10,
            },
        )
        .await
        .unwrap()
        .0;
    let added = users.iter().find(|u| u.email.as_str() == "markup@example.com").unwrap();
    assert_eq!((added.role, added.verified), (Role::Agent, true));

    // A bad email is refused on the form, with the domain's own message.
    let r = browser
        .post(
            "/admin/people",
            &[
                ("csrf", &csrf),
                ("name", "X"),
                ("email", "not an email"),
                ("role", "agent"),
            ],
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(r.text().contains(r#"value="not an email""#));
}

#[tokio::test]
async fn another_accounts_tokens_and_people_are_not_found() {
    let (app, _account, browser) = signed_in_admin().await;
    let other = app.account().await;
    let token = app.token(&other).await;
    let csrf = browser.csrf("/admin/apis/api-tokens").await;
    for path in [
        format!("/admin/apis/api-tokens/{}", token.id),
        format!("/admin/apis/api-tokens/{}/edit", token.id),
        format!("/admin/apis/api-tokens/{}/deactivate", token.id),
        format!("/admin/people/{}/delete", other.admin.id),
        "/admin/apis/api-tokens/not-a-number".to_owned(),
    ] {
        let r = browser.get(&path).await;
        assert_eq!(r.status, 404, "GET {path}");
        assert!(r.text().contains("Page not found"));
    }
    for path in [
        format!("/admin/apis/api-tokens/{}/deactivate", token.id),
        format!("/admin/people/{}/suspend", other.admin.id),
    ] {
        let r = browser.post(&path, &[("csrf", &csrf)]).await;
        assert_eq!(r.status, 404, "POST {path}");
    }
    assert_untouched(&app, &other, token.id).await;
}

#[tokio::test]
async fn an_unknown_page_action_is_not_found_and_changes_nothing() {
    let (app, account, browser) = signed_in_admin().await;
    let token = app.token(&account).await;
    let csrf = browser.csrf("/admin/apis/api-tokens").await;
    for path in [
        format!("/admin/apis/api-tokens/{}/explode", token.id),
        format!("/admin/apis/api-tokens/{}/Deactivate", token.id),
        format!("/admin/people/{}/promote", account.admin.id),
    ] {
        let r = browser.get(&path).await;
        assert_eq!(r.status, 404, "GET {path}");
        assert!(r.text().contains("Page not found"));
        let r = browser.post(&path, &[("csrf", &csrf)]).await;
        assert_eq!(r.status, 404, "POST {path}");
    }
    // Without the session's CSRF token the form is refused first, as
    // before the action is looked at.
    let r = browser
        .post(&format!("/admin/apis/api-tokens/{}/explode", token.id), &[])
        .await;
    assert_eq!(r.status, 403);
    let access = app.operator(&account.subdomain).await;
    assert_eq!(
        app.app.token(&access, token.id).await.unwrap().map(|t| t.active),
        Some(true)
    );
    let admin = app.app.user(&access, account.admin.id).await.unwrap().unwrap();
    assert!(!admin.suspended);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_list_reads_tokens_and_their_creators_in_one_statement() {
    let counter = crate::verify::statement_counter();
    let (app, account, browser) = signed_in_admin().await;
    let operator_token = app.token(&account).await;

    // Each round adds tokens made by new admins, then counts the statements
    // that rendering the list ran: the same for 1 creator as for 9.
    let mut statements = Vec::new();
    for creators in [1, 8] {
        for _ in 0..creators {
            let user = app
                .user(&account, Role::Admin, crate::support::UserState::Verified)
                .await;
            let auth = crate::support::basic(&user.email, &operator_token.plain);
            let body = serde_json::json!({"api_token": {"description": format!("by {}", user.name)}});
            let r = app.post("/api/v2/api_tokens", &auth, &body).await;
            assert_eq!(r.status, 201, "{}", r.text());
        }
        // A view may also refresh the session's last-seen time, or open a
        // new pooled connection (whose setup statements run in its span):
        // neither is the list's own work, so take the fewest of three views.
        let mut fewest = usize::MAX;
        for _ in 0..3 {
            let page = browser.get("/admin/apis/api-tokens").await;
            assert_eq!(page.status, 200);
            assert!(page.text().contains("admin user"), "creators are named on the list");
            // sqlx logs a statement when it finishes, on its worker thread.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let id = crate::verify::request_id(&page);
            fewest = fewest.min(counter.by_request.lock().unwrap().get(&id).copied().unwrap_or(0));
        }
        statements.push(fewest);
    }
    assert!(
        statements[0] > 0,
        "the page's statements were not counted: {statements:?}"
    );
    assert_eq!(
        statements[0], statements[1],
        "statements grew with the number of creators"
    );
}

// -- restricted tokens on the Add and Edit forms ------------------------------

/// The token a reveal page shows.
fn revealed_token(page: &Reply) -> String {
    let text = page.text();
    let start = text
        .find(r#"id="api-token" value=""#)
        .unwrap_or_else(|| panic!("no revealed token in {text}"))
        + r#"id="api-token" value=""#.len();
    text[start..].split('"').next().unwrap().to_owned()
}

/// A token of the account, restricted as given, made by the operator.
async fn restricted_token(
    app: &TestApp,
    account: &TestAccount,
    description: &str,
    restrictions: latchkey_core::token::Restrictions,
) -> latchkey_core::token::ApiToken {
    app.app
        .create_token(
            &app.operator(&account.subdomain).await,
            Some(description.to_owned()),
            restrictions,
        )
        .await
        .unwrap()
        .0
}

async fn stored_token(app: &TestApp, account: &TestAccount, id: TokenId) -> latchkey_core::token::ApiToken {
    app.app
        .token(&app.operator(&account.subdomain).await, id)
        .await
        .unwrap()
        .unwrap()
}

fn scopes(names: &[&str]) -> latchkey_core::scope::Scopes {
    latchkey_core::scope::ScopeCatalog::builtin()
        .parse_scopes(names)
        .unwrap()
}

/// `YYYY-MM-DD` of a time.
fn day_of(ts: latchkey_core::time::Timestamp) -> String {
    ts.rfc3339()[..10].to_owned()
}

#[tokio::test]
async fn a_restricted_bound_expiring_token_is_made_with_the_add_form() {
    let (app, account, browser) = signed_in_admin().await;
    let agent = app
        .user(&account, Role::Agent, crate::support::UserState::Verified)
        .await;
    let page = browser.get("/admin/apis/api-tokens/new").await;
    let form = page.text();
    // The form offers the deployment's scopes by resource, the account's
    // users, and the expiry choices; a new token starts unrestricted.
    for needle in [
        r#"id="access-full" name="access" value="full" aria-describedby="access-full-hint" checked"#,
        r#"name="scope" value="read""#,
        r#"name="scope" value="write""#,
        r#"name="scope" value="users:read""#,
        r#"name="scope" value="api_tokens:write""#,
        // A resource of the deployment's configuration, with its description.
        r#"name="scope" value="tickets:write""#,
        "Tickets and their comments",
        r#"<option value="" selected>Anyone in the account</option>"#,
        &format!(r#"<option value="{}">agent user ({})</option>"#, agent.id, agent.email),
        r#"<option value="never" selected>Never</option>"#,
        r#"<option value="7">7 days</option>"#,
        r#"type="date" id="expires_on" name="expires_on""#,
        "23:59:59 UTC",
    ] {
        assert!(form.contains(needle), "{needle} in {form}");
    }
    let csrf = csrf_of(&page);
    let nonce = field_of(&page, "nonce");
    let day = day_of(app.app.now().plus_secs(10 * 86_400));
    let agent_id = agent.id.to_string();
    let r = browser
        .post(
            "/admin/apis/api-tokens",
            &[
                ("csrf", &csrf),
                ("nonce", &nonce),
                ("description", "Reporting bot"),
                ("access", "restricted"),
                ("scope", "users:read"),
                ("scope", "api_tokens:write"),
                ("assigned_user_id", &agent_id),
                ("expires", "date"),
                ("expires_on", &day),
            ],
        )
        .await;
    let r = follow_to_reveal(&browser, &r).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let plain = revealed_token(&r);

    // The REST record holds what the form chose.
    let auth = app.admin_auth(&account).await;
    let list = app.get("/api/v2/api_tokens", &auth).await.json();
    let record = list["api_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["description"] == "Reporting bot")
        .unwrap()
        .clone();
    assert_eq!(record["scopes"], serde_json::json!(["users:read", "api_tokens:write"]));
    assert_eq!(record["assigned_user_id"], serde_json::json!(agent.id));
    assert_eq!(record["expires_at"], serde_json::json!(format!("{day}T23:59:59Z")));
    assert_eq!(record["status"], "active");

    // It works for its user only, within its scopes.
    assert_eq!(app.me_status(&crate::support::basic(&agent.email, &plain)).await, 200);
    assert_eq!(
        app.me_status(&crate::support::basic(&account.admin.email, &plain))
            .await,
        401
    );

    // The list and the details page show the restrictions, shortly.
    let list = browser.get("/admin/apis/api-tokens").await.text();
    assert!(list.contains("users: read, api_tokens: write"), "{list}");
    assert!(list.contains(&format!("Only {}", agent.email)), "{list}");
    assert!(
        list.contains(&format!(r#"Expires <time datetime="{day}T23:59:59Z""#)),
        "{list}"
    );
    assert!(list.contains(">Full access</span>"), "the admin's own token: {list}");
    let id = record["id"].as_i64().unwrap();
    let details = browser.get(&format!("/admin/apis/api-tokens/{id}")).await.text();
    assert!(details.contains("users: read, api_tokens: write"));
    assert!(details.contains(&format!("agent user ({})", agent.email)));
    assert!(details.contains(&format!("{day} 23:59 UTC")));

    // "7 days" is seven days from now.
    let before = app.app.now();
    let (csrf, nonce) = add_form(&browser).await;
    let r = browser
        .post(
            "/admin/apis/api-tokens",
            &[
                ("csrf", &csrf),
                ("nonce", &nonce),
                ("description", "A week"),
                ("access", "full"),
                ("assigned_user_id", ""),
                ("expires", "7"),
                ("expires_on", ""),
            ],
        )
        .await;
    assert_eq!(follow_to_reveal(&browser, &r).await.status, 200);
    let week = app
        .app
        .tokens(&app.operator(&account.subdomain).await)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.description.as_deref() == Some("A week"))
        .unwrap();
    let at = week.expires_at.unwrap();
    assert!(at >= before.plus_secs(7 * 86_400) && at <= app.app.now().plus_secs(7 * 86_400));
    assert_eq!((week.scopes, week.assigned_user_id), (None, None));
}

#[tokio::test]
async fn a_refused_add_form_keeps_what_was_entered() {
    let (app, account, browser) = signed_in_admin().await;
    let agent = app
        .user(&account, Role::Agent, crate::support::UserState::Verified)
        .await;
    let (csrf, nonce) = add_form(&browser).await;
    let agent_id = agent.id.to_string();
    let yesterday = day_of(app.app.now().minus_secs(86_400));
    let r = browser
        .post(
            "/admin/apis/api-tokens",
            &[
                ("csrf", &csrf),
                ("nonce", &nonce),
                ("description", "Kept"),
                ("access", "restricted"),
                ("scope", "users:write"),
                ("assigned_user_id", &agent_id),
                ("expires", "date"),
                ("expires_on", &yesterday),
            ],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    let text = r.text();
    assert!(text.contains("The expiry must be in the future."), "{text}");
    for needle in [
        r#"value="Kept""#.to_owned(),
        r#"id="access-restricted" name="access" value="restricted" aria-describedby="access-restricted-hint" checked"#
            .to_owned(),
        r#"value="users:write" checked"#.to_owned(),
        format!(r#"<option value="{agent_id}" selected>"#),
        r#"<option value="date" selected>On a date</option>"#.to_owned(),
        format!(r#"value="{yesterday}""#),
    ] {
        assert!(text.contains(&needle), "{needle} in {text}");
    }
    assert!(app
        .app
        .tokens(&app.operator(&account.subdomain).await)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn an_edit_narrows_the_scopes_and_an_unchanged_checklist_leaves_them_as_stored() {
    let (app, account, browser) = signed_in_admin().await;
    let t = restricted_token(
        &app,
        &account,
        "Broad",
        latchkey_core::token::Restrictions {
            scopes: Some(scopes(&["users", "account:read"])),
            ..Default::default()
        },
    )
    .await;
    let path = format!("/admin/apis/api-tokens/{}/edit", t.id);
    let page = browser.get(&path).await;
    let form = page.text();
    // `users` ticks both of its boxes.
    for needle in [
        r#"value="users:read" checked"#,
        r#"value="users:write" checked"#,
        r#"value="account:read" checked"#,
        r#"id="access-restricted" name="access" value="restricted" aria-describedby="access-restricted-hint" checked"#,
        r#"<option value="keep" selected>Keep as it is</option>"#,
        "Currently: <strong>Never</strong>",
    ] {
        assert!(form.contains(needle), "{needle} in {form}");
    }
    assert!(!form.contains(r#"value="account:write" checked"#));
    let csrf = csrf_of(&page);
    let unchanged = [
        ("csrf", csrf.as_str()),
        ("description", "Broad, renamed"),
        ("access", "restricted"),
        ("scope", "account:read"),
        ("scope", "users:read"),
        ("scope", "users:write"),
        ("assigned_user_id", ""),
        ("expires", "keep"),
        ("expires_on", ""),
    ];
    let r = browser.post(&path, &unchanged).await;
    assert_eq!(r.status, 303, "{}", r.text());
    let stored = stored_token(&app, &account, t.id).await;
    assert_eq!(stored.description.as_deref(), Some("Broad, renamed"));
    assert_eq!(stored.scopes.unwrap().to_stored(), "users account:read");

    let r = browser
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("description", "Narrow"),
                ("access", "restricted"),
                ("scope", "users:read"),
                ("assigned_user_id", ""),
                ("expires", "keep"),
                ("expires_on", ""),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert!(
        location(&r).starts_with(&format!("/admin/apis/api-tokens?done=updated&id={}&token=", t.id)),
        "{}",
        location(&r)
    );
    // The notice names the token.
    let list = browser.get(location(&r)).await.text();
    assert!(
        list.contains(&format!("API token Narrow ({}) updated.", t.visible_token)),
        "{list}"
    );
    let stored = stored_token(&app, &account, t.id).await;
    assert_eq!(stored.scopes.unwrap().to_stored(), "users:read");
    assert_eq!((stored.assigned_user_id, stored.expires_at), (None, None));
    let event = app.audit(account.id).await.pop().unwrap();
    assert_eq!(event.actor_name, "Web admin");
    assert!(
        event
            .change_description
            .contains(r#"scopes changed from "users account:read" to "users:read""#),
        "{}",
        event.change_description
    );

    // Full access again: the boxes are left unticked.
    let r = browser
        .post(&path, &[("csrf", &csrf), ("description", "Narrow"), ("access", "full")])
        .await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(stored_token(&app, &account, t.id).await.scopes, None);
}

#[tokio::test]
async fn an_edit_cannot_move_the_expiry_later_and_changes_nothing() {
    let (app, account, browser) = signed_in_admin().await;
    let expires = app.app.now().plus_secs(7 * 86_400);
    let t = restricted_token(
        &app,
        &account,
        "A week",
        latchkey_core::token::Restrictions {
            expires_at: Some(expires),
            ..Default::default()
        },
    )
    .await;
    let path = format!("/admin/apis/api-tokens/{}/edit", t.id);
    let page = browser.get(&path).await;
    let form = page.text();
    // Only the choices that keep the rule are offered.
    assert!(form.contains(&format!(
        "Currently: <strong>{}</strong>",
        latchkey_server::web::page::show_time(expires)
    )));
    assert!(form.contains(r#"<option value="keep" selected>"#));
    for later in [
        r#"<option value="30">"#,
        r#"<option value="90">"#,
        r#"<option value="never">"#,
    ] {
        assert!(!form.contains(later), "{later} offered");
    }
    assert!(form.contains(&format!(r#"max="{}""#, day_of(expires.minus_secs(86_400)))));
    let csrf = csrf_of(&page);
    let later_day = day_of(expires.plus_secs(2 * 86_400));
    for (choice, on, message) in [
        ("30", "", "An expiry can only be moved earlier, never later."),
        (
            "date",
            later_day.as_str(),
            "An expiry can only be moved earlier, never later.",
        ),
        ("never", "", "An expiry can only be moved earlier, never removed."),
    ] {
        let r = browser
            .post(
                &path,
                &[
                    ("csrf", &csrf),
                    ("description", "Renamed meanwhile"),
                    ("access", "full"),
                    ("assigned_user_id", ""),
                    ("expires", choice),
                    ("expires_on", on),
                ],
            )
            .await;
        assert_eq!(r.status, 422, "{choice}: {}", r.text());
        let text = r.text();
        assert!(text.contains(message), "{choice}: {text}");
        assert!(text.contains(r#"value="Renamed meanwhile""#), "{choice}");
        let stored = stored_token(&app, &account, t.id).await;
        assert_eq!(stored.expires_at, Some(expires), "{choice}");
        assert_eq!(stored.description.as_deref(), Some("A week"), "{choice}");
    }

    // Earlier is fine.
    let r = browser
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("description", "A week"),
                ("expires", "date"),
                ("expires_on", &day_of(app.app.now().plus_secs(2 * 86_400))),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.text());
    let stored = stored_token(&app, &account, t.id).await;
    assert!(stored.expires_at.unwrap() < expires);
}

#[tokio::test]
async fn forged_scopes_and_choices_are_refused_on_the_form_without_a_500() {
    let (app, account, browser) = signed_in_admin().await;
    let t = restricted_token(
        &app,
        &account,
        "Target",
        latchkey_core::token::Restrictions {
            scopes: Some(scopes(&["users:read"])),
            ..Default::default()
        },
    )
    .await;
    let csrf = browser.csrf("/admin/apis/api-tokens/new").await;
    let edit = format!("/admin/apis/api-tokens/{}/edit", t.id);
    let long = "x".repeat(5000);
    for (fields, message) in [
        (
            vec![("access", "restricted"), ("scope", "orders:read")],
            "is not a scope this deployment offers",
        ),
        (
            vec![("access", "restricted"), ("scope", "users:admin")],
            "is not a scope this deployment offers",
        ),
        (
            vec![("access", "restricted"), ("scope", "")],
            "is not a scope this deployment offers",
        ),
        (
            vec![("access", "restricted"), ("scope", &long)],
            "is not a scope this deployment offers",
        ),
        (
            vec![("access", "restricted"), ("scope", "<b>x</b>")],
            "is not a scope this deployment offers",
        ),
        (
            vec![("access", "restricted")],
            "A restricted token needs at least one scope",
        ),
        (
            vec![("access", "full"), ("scope", "users:read")],
            "You ticked scopes but chose Full access.",
        ),
        (vec![("access", "admin")], "Choose Full access or Restricted."),
        (vec![("assigned_user_id", "me")], "Choose a user from the list"),
        (vec![("expires", "3650")], "Choose when the token expires."),
        (
            vec![("expires", "date"), ("expires_on", "tomorrow")],
            "Enter the expiry date as YYYY-MM-DD.",
        ),
        (vec![("expires", "date")], "Enter the date the token expires on."),
    ] {
        for path in ["/admin/apis/api-tokens", edit.as_str()] {
            let mut body = vec![("csrf", csrf.as_str()), ("description", "Forged")];
            body.extend(fields.iter().copied());
            let r = browser.post(path, &body).await;
            assert_eq!(r.status, 422, "{path} {fields:?}: {}", r.text());
            let text = r.text();
            assert!(text.contains(message), "{path} {fields:?}: {text}");
            assert!(!text.contains("<b>x</b>"), "escaped");
        }
    }
    let tokens = app.app.tokens(&app.operator(&account.subdomain).await).await.unwrap();
    assert_eq!(tokens.len(), 1, "nothing was added");
    assert_eq!(tokens[0].description.as_deref(), Some("Target"));
    assert_eq!(tokens[0].scopes.as_ref().unwrap().to_stored(), "users:read");
}

#[tokio::test]
async fn a_forged_assigned_user_of_another_account_is_refused() {
    let (app, account, browser) = signed_in_admin().await;
    let other = app.account().await;
    let t = app.token(&account).await;
    // A refused Add frees its form's nonce: one serves every try.
    let (csrf, nonce) = add_form(&browser).await;
    let theirs = other.admin.id.to_string();
    let missing = "999999999".to_owned();
    for id in [&theirs, &missing] {
        for path in [
            "/admin/apis/api-tokens".to_owned(),
            format!("/admin/apis/api-tokens/{}/edit", t.id),
        ] {
            let r = browser
                .post(
                    &path,
                    &[
                        ("csrf", &csrf),
                        ("nonce", &nonce),
                        ("description", "Bound elsewhere"),
                        ("access", "full"),
                        ("assigned_user_id", id),
                        ("expires", "never"),
                    ],
                )
                .await;
            assert_eq!(r.status, 422, "{path} {id}: {}", r.text());
            let text = r.text();
            assert!(text.contains("No such user in this account."), "{path}: {text}");
            // The other account's admin is not offered, nor named.
            assert!(!text.contains(&other.admin.email), "{path}: {text}");
        }
    }
    let tokens = app.app.tokens(&app.operator(&account.subdomain).await).await.unwrap();
    assert_eq!(tokens.len(), 1);
    assert_eq!(
        (tokens[0].assigned_user_id, tokens[0].description.as_deref()),
        (None, None)
    );
}

#[tokio::test]
async fn the_list_shows_an_expired_token_as_expired_and_a_deleted_assignee_as_such() {
    let clock = crate::support::TestClock::at(latchkey_core::time::Timestamp::from_unix(1_795_000_000));
    let app = TestApp::spawn_with_clock(clock.clone(), |_| {}).await;
    let account = app.account().await;
    let email = user_with_password(&app, &account, Role::Admin).await;
    let leaver = app
        .user(&account, Role::Agent, crate::support::UserState::Verified)
        .await;
    let t = restricted_token(
        &app,
        &account,
        "Short-lived",
        latchkey_core::token::Restrictions {
            assigned_user_id: Some(leaver.id),
            expires_at: Some(app.app.now().plus_secs(3600)),
            ..Default::default()
        },
    )
    .await;
    app.app
        .delete_user(&app.operator(&account.subdomain).await, leaver.id)
        .await
        .unwrap();
    clock.advance(2 * 3600);
    let browser = Browser::new(&app);
    assert_eq!(browser.sign_in(&account.subdomain, &email, PASSWORD).await.status, 303);
    let list = browser.get("/admin/apis/api-tokens").await.text();
    assert!(list.contains(r#"<span class="badge expired">Expired</span>"#), "{list}");
    assert!(list.contains("Expired <time"), "{list}");
    assert!(
        list.contains(&format!("Only {} (deleted user)", leaver.email)),
        "{list}"
    );
    // An expired token's expiry can no longer change: Edit says so and
    // sends no expiry; the rest of the form still works.
    let path = format!("/admin/apis/api-tokens/{}/edit", t.id);
    let form = browser.get(&path).await;
    let text = form.text();
    assert!(text.contains("Its expiry can no longer change."), "{text}");
    assert!(!text.contains(r#"name="expires""#), "{text}");
    assert!(text.contains(&format!(
        r#"selected>agent user ({}) — deleted user</option>"#,
        leaver.email
    )));
    let r = browser
        .post(
            &path,
            &[
                ("csrf", &csrf_of(&form)),
                ("description", "Renamed"),
                ("access", "full"),
                ("assigned_user_id", &leaver.id.to_string()),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(
        stored_token(&app, &account, t.id).await.description.as_deref(),
        Some("Renamed")
    );
}

// -- rotation --------------------------------------------------------------

/// Rotates token `id` through its page with the grace period `grace`; the
/// reveal page it redirects to.
async fn rotate_through_the_page(browser: &Browser, id: TokenId, grace: &str) -> Reply {
    let path = format!("/admin/apis/api-tokens/{id}/rotate");
    let page = browser.get(&path).await;
    assert_eq!(page.status, 200, "{}", page.text());
    let form = [
        ("csrf", csrf_of(&page)),
        ("nonce", field_of(&page, "nonce")),
        ("grace", grace.to_owned()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = browser.post(&path, &form).await;
    let reveal = follow_to_reveal(browser, &r).await;
    // Sent again, the same form rotates nothing more.
    let twice = browser.post(&path, &form).await;
    assert_eq!((twice.status, location(&twice)), (303, location(&r)));
    reveal
}

#[tokio::test]
async fn rotating_reveals_a_new_token_while_the_old_one_works_for_the_grace_period() {
    let (app, account, browser) = signed_in_admin().await;
    let old = app.token_described(&account, Some("Nightly export")).await;
    let email = account.admin.email.clone();
    let basic = |plain: &str| crate::support::basic(&email, plain);

    // The options menu and the details page offer Rotate; its page offers
    // the four grace periods, None chosen.
    let path = format!("/admin/apis/api-tokens/{}/rotate", old.id);
    let list = browser.get("/admin/apis/api-tokens").await.text();
    assert!(list.contains(&format!(r#"<a href="{path}">Rotate</a>"#)), "{list}");
    let details = browser.get(&format!("/admin/apis/api-tokens/{}", old.id)).await.text();
    assert!(details.contains(&format!(r#"href="{path}">Rotate</a>"#)), "{details}");
    assert!(!details.contains("Previous token"), "not rotated yet");
    let page = browser.get(&path).await.text();
    assert!(page.contains("Rotate API token?"), "{page}");
    assert!(page.contains("Nightly export"), "{page}");
    assert!(
        page.contains(r#"name="grace" value="0" aria-describedby="grace-hint" checked"#),
        "{page}"
    );
    for (value, label) in [("3600", "1 hour"), ("86400", "24 hours"), ("604800", "7 days")] {
        assert!(page.contains(&format!(r#"name="grace" value="{value}""#)), "{value}");
        assert!(
            page.contains(&format!(r#"<label for="grace-{value}">{label}</label>"#)),
            "{label}"
        );
    }
    assert!(
        page.contains(r#"<button type="submit" class="primary">Rotate</button>"#),
        "{page}"
    );

    // A one-hour grace: the reveal page shows the new secret this once.
    let before = app.app.now();
    let r = rotate_through_the_page(&browser, old.id, "3600").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let text = r.text();
    assert!(text.contains("<h1>Rotate API token</h1>"), "{text}");
    assert!(text.contains("It will not be shown again"), "{text}");
    assert!(text.contains(r#"data-copy="api-token""#), "{text}");
    let new = revealed_token(&r);
    assert_ne!(new, old.plain);
    let old_visible = latchkey_core::token::visible_token(&old.plain).unwrap();
    let new_visible = latchkey_core::token::visible_token(&new).unwrap();
    assert!(
        text.contains(&format!("The previous secret {old_visible} keeps working until")),
        "{text}"
    );

    // The details show the previous secret, not used since.
    let stored = stored_token(&app, &account, old.id).await;
    assert_eq!(stored.visible_token, new_visible);
    assert_eq!(stored.previous_visible_token.as_deref(), Some(old_visible.as_str()));
    let until = stored.previous_expires_at.unwrap();
    assert!(until >= before.plus_secs(3600) && until <= app.app.now().plus_secs(3600));
    let details_path = format!("/admin/apis/api-tokens/{}", old.id);
    let details = browser.get(&details_path).await.text();
    assert!(details.contains(&format!("<code>{new_visible}</code>")), "{details}");
    assert!(
        details.contains(&format!(r#"<dd id="previous-token"><code>{old_visible}</code>"#)),
        "{details}"
    );
    assert!(details.contains("<dt>Previous token works until</dt>"), "{details}");
    assert!(
        details.contains(&format!(
            r#"<dd id="previous-until">{}</dd>"#,
            latchkey_server::web::page::show_time(until)
        )),
        "{details}"
    );
    assert!(
        details.contains(r#"<dd id="previous-last-used">Not used since the rotation</dd>"#),
        "{details}"
    );

    // Both secrets authenticate during the grace period; the old one's use
    // shows on the details page.
    assert_eq!(app.me_status(&basic(&new)).await, 200);
    assert_eq!(app.me_status(&basic(&old.plain)).await, 200);
    let details = browser.get(&details_path).await.text();
    assert!(!details.contains("Not used since the rotation"), "{details}");
    assert!(details.contains(r#"<dd id="previous-last-used">20"#), "{details}");

    // The rotation is audited as the signed-in admin.
    let event = app.audit(account.id).await.pop().unwrap();
    assert_eq!(event.action, latchkey_core::audit::Action::Rotate);
    assert_eq!(event.actor_name, "Web admin");
    assert_eq!(event.change_description, "grace period 3600 s");

    // Rotating again warns that the running grace ends; with None, both
    // earlier secrets stop at once.
    let page = browser.get(&path).await.text();
    assert!(page.contains("Rotating again stops it at once."), "{page}");
    let r = rotate_through_the_page(&browser, old.id, "0").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let newest = revealed_token(&r);
    assert!(r
        .text()
        .contains(&format!("The previous secret {new_visible} no longer works.")));
    assert_eq!(app.me_status(&basic(&newest)).await, 200);
    assert_eq!(app.me_status(&basic(&new)).await, 401);
    assert_eq!(app.me_status(&basic(&old.plain)).await, 401);
    let details = browser.get(&details_path).await.text();
    assert!(details.contains("<dt>Previous token stopped working</dt>"), "{details}");
    assert!(details.contains(&format!(r#"<dd id="previous-token"><code>{new_visible}</code>"#)));
}

#[tokio::test]
async fn a_forged_grace_period_or_a_deactivated_token_is_refused_without_a_500() {
    let (app, account, browser) = signed_in_admin().await;
    let t = app.token(&account).await;
    let path = format!("/admin/apis/api-tokens/{}/rotate", t.id);
    let csrf = browser.csrf(&path).await;
    let long = "9".repeat(400);
    for grace in [
        Some("5"),
        Some("-1"),
        Some("604801"),
        Some("1e3"),
        Some("3600.0"),
        Some(""),
        Some(long.as_str()),
        Some("<b>x</b>"),
        None,
    ] {
        let mut body = vec![("csrf", csrf.as_str())];
        body.extend(grace.map(|g| ("grace", g)));
        let r = browser.post(&path, &body).await;
        assert_eq!(r.status, 422, "{grace:?}: {}", r.text());
        let text = r.text();
        assert!(
            text.contains("Choose a grace period from the list."),
            "{grace:?}: {text}"
        );
        assert!(!text.contains(" checked>"), "no choice is made for them: {text}");
        assert!(!text.contains("<b>x</b>"));
    }
    assert_untouched(&app, &account, t.id).await;
    assert_eq!(
        app.me_status(&crate::support::basic(&account.admin.email, &t.plain))
            .await,
        200
    );

    // A deactivated token: no Rotate in its menu, its page says why, and a
    // forged post is refused with the domain's words.
    let access = app.operator(&account.subdomain).await;
    let off = latchkey_core::token::TokenPatch {
        active: Some(false),
        ..Default::default()
    };
    app.app.update_token(&access, t.id, &off).await.unwrap();
    let list = browser.get("/admin/apis/api-tokens").await.text();
    assert!(!list.contains(&format!(r#"href="{path}""#)), "{list}");
    let page = browser.get(&path).await;
    assert_eq!(page.status, 200);
    let text = page.text();
    assert!(
        text.contains("Only an active token can be rotated; reactivate it first."),
        "{text}"
    );
    assert!(
        text.contains(r#"<button type="submit" class="primary" disabled>Rotate</button>"#),
        "{text}"
    );
    let nonce = field_of(&page, "nonce");
    for grace in ["0", "3600"] {
        let r = browser
            .post(&path, &[("csrf", &csrf), ("nonce", &nonce), ("grace", grace)])
            .await;
        assert_eq!(r.status, 422, "{}", r.text());
        assert!(r
            .text()
            .contains("Only an active token can be rotated; reactivate it first."));
        assert!(!r.text().contains(r#"id="api-token""#));
    }
    let stored = stored_token(&app, &account, t.id).await;
    assert_eq!((stored.active, stored.previous_visible_token), (false, None));

    // Another account's token is not found.
    let other = app.account().await;
    let theirs = app.token(&other).await;
    let r = browser
        .post(
            &format!("/admin/apis/api-tokens/{}/rotate", theirs.id),
            &[("csrf", &csrf), ("grace", "0")],
        )
        .await;
    assert_eq!(r.status, 404);
    let access = app.operator(&other.subdomain).await;
    assert_eq!(
        app.app
            .token(&access, theirs.id)
            .await
            .unwrap()
            .unwrap()
            .previous_visible_token,
        None
    );
}

// -- the token policy on the configuration page ------------------------------

const CONFIGURATION: &str = "/admin/apis/configuration";

/// The policy fields of the configuration form, with `action`.
fn policy_form<'a>(csrf: &'a str, action: &'a str, days: [&'a str; 3], flags: [bool; 2]) -> Vec<(&'a str, &'a str)> {
    let mut body = vec![
        ("csrf", csrf),
        ("api_token_access", "on"),
        ("max_lifetime_days", days[0]),
        ("deactivate_unused_after_days", days[1]),
        ("delete_deactivated_after_days", days[2]),
    ];
    if flags[0] {
        body.push(("require_expiry", "on"));
    }
    if flags[1] {
        body.push(("require_assigned_user", "on"));
    }
    body.push(("action", action));
    body
}

async fn settings(app: &TestApp, auth: &str) -> serde_json::Value {
    let r = app.get("/api/v2/account/settings", auth).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["settings"].clone()
}

#[tokio::test]
async fn the_token_policy_is_saved_from_the_configuration_page() {
    let (app, account, browser) = signed_in_admin().await;
    // The API's token, made before the policy asks for an expiry.
    let auth = app.admin_auth(&account).await;
    let page = browser.get(CONFIGURATION).await;
    let text = page.text();
    for needle in [
        r#"id="api_token_access" name="api_token_access" value="on" checked"#,
        r#"name="max_lifetime_days" value="""#,
        r#"name="deactivate_unused_after_days" value="""#,
        r#"name="delete_deactivated_after_days" value="""#,
        r#"<label for="require_expiry">Require an expiry</label>"#,
        r#"<label for="require_assigned_user">Require an assigned user</label>"#,
        r#"name="action" value="save""#,
        r#"name="action" value="preview""#,
    ] {
        assert!(text.contains(needle), "{needle} in {text}");
    }
    assert!(!text.contains(r#"name="require_expiry" value="on" aria-describedby="require-expiry-hint" checked"#));
    let csrf = csrf_of(&page);
    let r = browser
        .post(
            CONFIGURATION,
            &policy_form(&csrf, "save", ["90", " 30 ", "60"], [true, false]),
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(location(&r), "/admin/apis/configuration?done=saved");
    assert_eq!(
        settings(&app, &auth).await["token_policy"],
        serde_json::json!({
            "max_lifetime_days": 90,
            "require_expiry": true,
            "require_assigned_user": false,
            "deactivate_unused_after_days": 30,
            "delete_deactivated_after_days": 60,
            "deactivate_legacy_tokens": false,
        })
    );
    let event = app.audit(account.id).await.pop().unwrap();
    assert_eq!(event.actor_name, "Web admin");
    assert!(
        event
            .change_description
            .contains("token_policy.max_lifetime_days changed from not set to 90"),
        "{}",
        event.change_description
    );

    // The page shows what was saved.
    let text = browser.get("/admin/apis/configuration?done=saved").await.text();
    for needle in [
        "Settings saved.",
        r#"name="max_lifetime_days" value="90""#,
        r#"name="deactivate_unused_after_days" value="30""#,
        r#"name="delete_deactivated_after_days" value="60""#,
        r#"name="require_expiry" value="on" aria-describedby="require-expiry-hint" checked"#,
    ] {
        assert!(text.contains(needle), "{needle} in {text}");
    }

    // The checkbox alone (a form without the policy's fields) still turns
    // token access off and leaves the policy as it is.
    let r = browser.post(CONFIGURATION, &[("csrf", &csrf)]).await;
    assert_eq!(r.status, 303, "{}", r.text());
    let stored = app.app.account(&app.operator(&account.subdomain).await).await.unwrap();
    assert!(!stored.api_token_access);
    assert_eq!(stored.token_policy.max_lifetime_days, Some(90));

    // Empty fields and unticked boxes clear the rules.
    let r = browser
        .post(CONFIGURATION, &policy_form(&csrf, "save", ["", "", ""], [false, true]))
        .await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(
        settings(&app, &auth).await,
        serde_json::json!({
            "api": {"api_token_access": true},
            "token_policy": {
                "max_lifetime_days": null,
                "require_expiry": false,
                "require_assigned_user": true,
                "deactivate_unused_after_days": null,
                "delete_deactivated_after_days": null,
                "deactivate_legacy_tokens": false,
            },
        })
    );
}

#[tokio::test]
async fn an_invalid_day_count_is_refused_with_the_entered_values_and_nothing_is_saved() {
    let (app, account, browser) = signed_in_admin().await;
    let auth = app.admin_auth(&account).await;
    let before = settings(&app, &auth).await;
    let events = app.audit(account.id).await.len();
    let csrf = browser.csrf(CONFIGURATION).await;
    for action in ["save", "preview"] {
        for bad in ["0", "3651", "-5", "1.5", "abc", "99999999999999999999", "<b>x</b>"] {
            for (i, label) in [
                "Maximum lifetime",
                "Deactivate tokens unused for",
                "Delete tokens deactivated for",
            ]
            .into_iter()
            .enumerate()
            {
                let mut days = ["7", "30", "60"];
                days[i] = bad;
                let r = browser
                    .post(CONFIGURATION, &policy_form(&csrf, action, days, [true, true]))
                    .await;
                assert_eq!(r.status, 422, "{action} {label} {bad}: {}", r.text());
                let text = r.text();
                assert!(
                    text.contains(&format!(
                        "{label}: enter a whole number of days from 1 to 3650, or leave it empty."
                    )),
                    "{label} {bad}: {text}"
                );
                assert_eq!(text.matches("enter a whole number of days").count(), 1, "{text}");
                assert!(!text.contains("<b>x</b>"), "escaped");
                assert!(!text.contains(r#"id="policy-preview""#), "no preview: {text}");
                // What was entered is shown again.
                let names = [
                    "max_lifetime_days",
                    "deactivate_unused_after_days",
                    "delete_deactivated_after_days",
                ];
                if bad != "<b>x</b>" {
                    assert!(
                        text.contains(&format!(r#"name="{}" value="{bad}""#, names[i])),
                        "{bad}: {text}"
                    );
                }
                assert!(text.contains(
                    r#"name="require_assigned_user" value="on" aria-describedby="require-assigned-hint" checked"#
                ));
            }
        }
    }
    // A forged action is a bad request.
    let r = browser
        .post(
            CONFIGURATION,
            &policy_form(&csrf, "delete", ["7", "", ""], [false, false]),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(settings(&app, &auth).await, before);
    assert_eq!(app.audit(account.id).await.len(), events, "nothing was recorded");
}

#[tokio::test]
async fn preview_lists_the_stale_and_long_deactivated_tokens_and_saves_nothing() {
    let t0 = latchkey_core::time::Timestamp::from_unix(1_795_000_000);
    let clock = crate::support::TestClock::at(t0);
    let app = TestApp::spawn_with_clock(clock.clone(), |_| {}).await;
    let account = app.account().await;
    let email = user_with_password(&app, &account, Role::Admin).await;
    let access = app.operator(&account.subdomain).await;
    // Made 100 days ago and never used since.
    let stale = app.token_described(&account, Some("Forgotten script")).await;
    // Deactivated 100 days ago.
    let retired = app.token_described(&account, Some("Retired bot")).await;
    let off = latchkey_core::token::TokenPatch {
        active: Some(false),
        ..Default::default()
    };
    app.app.update_token(&access, retired.id, &off).await.unwrap();
    clock.advance(100 * 86_400);
    // Imported with a use 40 days ago: unused for 30 days too.
    let imported = latchkey_core::token::NewToken {
        hash: TokenHash::of("imported secret"),
        visible_token: "lk_old…abcd".to_owned(),
        description: Some("Imported long ago".to_owned()),
        active: true,
        user_id: None,
        restrictions: Default::default(),
        created_at: Some(t0.minus_secs(400 * 86_400)),
        last_used: Some(app.app.now().minus_secs(40 * 86_400)),
        legacy: false,
    };
    app.app.import_tokens(&access, vec![imported]).await.unwrap();
    // In use: listed nowhere.
    let auth = app.admin_auth(&account).await;
    assert_eq!(app.get("/api/v2/users/me", &auth).await.status, 200);
    let before = settings(&app, &auth).await;

    let browser = Browser::new(&app);
    assert_eq!(browser.sign_in(&account.subdomain, &email, PASSWORD).await.status, 303);
    let csrf = browser.csrf(CONFIGURATION).await;
    let r = browser
        .post(
            CONFIGURATION,
            &policy_form(&csrf, "preview", ["", "30", "60"], [false, false]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert!(text.contains(r#"id="policy-preview""#), "{text}");
    assert!(text.contains("Nothing has been saved."), "{text}");
    assert!(!text.contains("Settings saved."));
    // The form keeps what was entered.
    assert!(
        text.contains(r#"name="deactivate_unused_after_days" value="30""#),
        "{text}"
    );
    assert!(
        text.contains(r#"name="delete_deactivated_after_days" value="60""#),
        "{text}"
    );
    let section = |id: &str| -> String {
        let start = text
            .find(&format!(r#"id="{id}-title""#))
            .unwrap_or_else(|| panic!("{id} in {text}"));
        let rest = &text[start..];
        let end = rest[1..].find("<h3").map_or(rest.len(), |e| e + 1);
        rest[..end].to_owned()
    };
    let deactivate = section("would-deactivate");
    let delete = section("would-delete");
    assert!(deactivate.contains(r#"<span class="muted">(2)</span>"#), "{deactivate}");
    assert!(deactivate.contains("Forgotten script"), "{deactivate}");
    assert!(deactivate.contains(&latchkey_core::token::visible_token(&stale.plain).unwrap()));
    assert!(deactivate.contains("Imported long ago") && deactivate.contains("<code>lk_old…abcd</code>"));
    assert!(
        deactivate.contains(&latchkey_server::web::page::show_time(
            app.app.now().minus_secs(40 * 86_400)
        )),
        "its last use: {deactivate}"
    );
    assert!(!deactivate.contains("Retired bot"), "{deactivate}");
    assert!(delete.contains(r#"<span class="muted">(1)</span>"#), "{delete}");
    assert!(delete.contains("Retired bot"), "{delete}");
    assert!(
        delete.contains(&latchkey_server::web::page::show_time(t0)),
        "deactivated at: {delete}"
    );

    // Nothing was saved or changed.
    assert_eq!(settings(&app, &auth).await, before);
    assert_eq!(
        before["token_policy"]["deactivate_unused_after_days"],
        serde_json::Value::Null
    );
    let tokens = app.app.tokens(&access).await.unwrap();
    assert_eq!(tokens.len(), 4);
    assert_eq!(tokens.iter().filter(|t| t.active).count(), 3);

    // A policy without sweep rules would change nothing.
    let r = browser
        .post(
            CONFIGURATION,
            &policy_form(&csrf, "preview", ["", "", ""], [false, false]),
        )
        .await;
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(text.contains(r#"id="would-deactivate-none""#) && text.contains(r#"id="would-delete-none""#));
}

// -- editing people ------------------------------------------------------------

#[tokio::test]
async fn a_person_is_renamed_verified_given_a_password_and_a_new_role_after_a_confirmation() {
    let (app, account, browser) = signed_in_admin().await;
    let user = app
        .user(&account, Role::Agent, crate::support::UserState::Unverified)
        .await;
    let path = format!("/admin/people/{}/edit", user.id);
    let page = browser.get(&path).await;
    assert_eq!(page.status, 200, "{}", page.text());
    let text = page.text();
    assert!(
        text.contains(&format!(r#"name="email" type="email" value="{}""#, user.email)),
        "{text}"
    );
    assert!(
        text.contains(r#"<option value="agent" selected>Agent</option>"#),
        "{text}"
    );
    let csrf = csrf_of(&page);

    // A blank name is refused on the form, capitalised and tied to the field.
    let r = browser
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("name", " "),
                ("email", &user.email),
                ("role", "agent"),
            ],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    let text = r.text();
    assert!(text.contains(r#"aria-describedby="name-error""#), "{text}");
    assert!(
        text.contains(r#"<p class="field-error" id="name-error">Name can"#),
        "{text}"
    );

    // Name, verified and a password are saved; the new role waits for its
    // confirmation.
    let r = browser
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("name", "Dana <b>Admin</b>"),
                ("email", &user.email),
                ("role", "admin"),
                ("verified", "on"),
                ("password", "a new password 123"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(location(&r), format!("/admin/people/{}/role?to=admin", user.id));
    let access = app.operator(&account.subdomain).await;
    let stored = app.app.user(&access, user.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.name.as_str(), stored.verified, stored.role),
        ("Dana <b>Admin</b>", true, Role::Agent)
    );
    let confirm = browser.get(location(&r)).await;
    assert_eq!(confirm.status, 200);
    let text = confirm.text();
    assert!(text.contains("Change role?"), "{text}");
    assert!(text.contains("Agent \u{2192} Admin"), "{text}");
    assert!(!text.contains("<b>Admin</b>"), "escaped: {text}");
    assert!(
        text.contains(r#"<input type="hidden" name="role" value="admin">"#),
        "{text}"
    );
    let r = browser
        .post(
            &format!("/admin/people/{}/role", user.id),
            &[("csrf", &csrf), ("role", "admin")],
        )
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(app.app.user(&access, user.id).await.unwrap().unwrap().role, Role::Admin);
    let list = browser.get(location(&r)).await.text();
    assert!(list.contains("is now an admin."), "{list}");

    // The new password signs in; the change is audited without it.
    let theirs = Browser::new(&app);
    let signed = theirs
        .sign_in(&account.subdomain, user.email.as_str(), "a new password 123")
        .await;
    assert_eq!(signed.status, 303, "{}", signed.text());
    let changes: Vec<String> = app
        .audit(account.id)
        .await
        .into_iter()
        .map(|e| e.change_description)
        .collect();
    assert!(changes.iter().any(|c| c == "password changed"), "{changes:?}");
    assert!(!changes.iter().any(|c| c.contains("a new password")), "{changes:?}");
}

/// The Edit user form's fields for `user` with `email`, as a browser posts them.
fn person_fields<'a>(csrf: &'a str, user: &'a crate::support::TestUser, email: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf", csrf),
        ("name", user.name.as_str()),
        ("email", email),
        ("role", user.role.as_str()),
        ("verified", "on"),
    ]
}

/// Waits until `node` answers `auth` on `/users/me` with `status`.
async fn until_me_status(node: &TestApp, auth: &str, status: u16, what: &str) {
    let started = std::time::Instant::now();
    while node.me_status(auth).await != status {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{what}: never {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_email_authenticates_and_the_old_one_no_longer_does_here_and_on_another_node() {
    let (app, account, browser) = signed_in_admin().await;
    let other = app.spawn_node(|_| {}).await;
    let user = app
        .user(&account, Role::Agent, crate::support::UserState::Verified)
        .await;
    let token = app.token(&account).await;
    let old_auth = crate::support::basic(&user.email, &token.plain);
    until_me_status(&other, &old_auth, 200, "the other node learns of the user").await;

    let path = format!("/admin/people/{}/edit", user.id);
    let csrf = browser.csrf(&path).await;
    let new_email = format!("{}.Moved@Example.COM", unique("Jo"));
    let r = browser.post(&path, &person_fields(&csrf, &user, &new_email)).await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(location(&r), format!("/admin/people?done=updated&id={}", user.id));
    let list = browser.get(location(&r)).await.text();
    assert!(list.contains(&format!("&#60;{new_email}&#62; updated.")), "{list}");

    // Stored as typed; this node answers at once, the old address with the
    // same 401 as any unknown email, the new one in any case.
    let access = app.operator(&account.subdomain).await;
    let stored = app.app.user(&access, user.id).await.unwrap().unwrap();
    assert_eq!(stored.email.as_str(), new_email);
    let new_auth = crate::support::basic(&new_email.to_lowercase(), &token.plain);
    assert_eq!(app.me_status(&old_auth).await, 401);
    assert_eq!(app.me_status(&new_auth).await, 200);
    assert_eq!(
        app.me_status(&crate::support::basic(&new_email, &token.plain)).await,
        200
    );
    // The other node, through the change log: the old key is gone, not
    // kept beside the new one.
    until_me_status(&other, &new_auth, 200, "the other node learns the new email").await;
    assert_eq!(other.me_status(&old_auth).await, 401);
    let me = other.get("/api/v2/users/me", &new_auth).await;
    assert_eq!(me.json()["user"]["email"], new_email.as_str());

    // Audited once, as the signed-in admin, in the API's wording.
    let event = app.audit(account.id).await.pop().unwrap();
    assert_eq!(event.action, latchkey_core::audit::Action::Update);
    assert_eq!(event.actor_type, ActorType::User);
    assert_eq!(
        (event.source_type, event.source_id),
        (latchkey_core::audit::SourceType::User, user.id.get())
    );
    assert_eq!(
        event.change_description,
        format!(r#"email changed from "{}" to "{new_email}""#, user.email)
    );
    assert!(app.audit_chain_intact(account.id).await);
}

#[tokio::test]
async fn an_email_in_use_in_the_account_or_not_an_email_is_refused_on_its_field() {
    let (app, account, browser) = signed_in_admin().await;
    let user = app
        .user(&account, Role::Agent, crate::support::UserState::Verified)
        .await;
    let taken = app
        .user(&account, Role::EndUser, crate::support::UserState::Verified)
        .await;
    let path = format!("/admin/people/{}/edit", user.id);
    let csrf = browser.csrf(&path).await;
    let events = app.audit(account.id).await.len();

    // Another user's address in another case: refused on the field, with
    // what was typed kept.
    let shouting = taken.email.to_uppercase();
    let mut fields = person_fields(&csrf, &user, &shouting);
    fields[1] = ("name", "Renamed Too");
    let r = browser.post(&path, &fields).await;
    assert_eq!(r.status, 422, "{}", r.text());
    let text = r.text();
    assert!(
        text.contains(&format!(
            r#"name="email" type="email" value="{shouting}" maxlength="254" required autocomplete="off" aria-describedby="email-error email-hint" aria-invalid="true" autofocus>"#
        )),
        "{text}"
    );
    assert!(
        text.contains(
            r#"<p class="field-error" id="email-error">That email is already used by someone in this account.</p>"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"value="Renamed Too""#), "{text}");

    // Not an email at all.
    let r = browser
        .post(&path, &person_fields(&csrf, &user, "jo at example.com"))
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    let text = r.text();
    assert!(
        text.contains(r#"<p class="field-error" id="email-error">Email is not a valid email address</p>"#),
        "{text}"
    );
    assert!(text.contains(r#"value="jo at example.com""#), "{text}");

    // Nothing was saved or recorded.
    let access = app.operator(&account.subdomain).await;
    let stored = app.app.user(&access, user.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.name.as_str(), stored.email.as_str()),
        (user.name.as_str(), user.email.as_str())
    );
    assert_eq!(app.audit(account.id).await.len(), events);

    // A change of case alone is the user's own address: saved as typed.
    let r = browser
        .post(&path, &person_fields(&csrf, &user, &user.email.to_uppercase()))
        .await;
    assert_eq!(r.status, 303, "{}", r.text());
    let stored = app.app.user(&access, user.id).await.unwrap().unwrap();
    assert_eq!(stored.email.as_str(), user.email.to_uppercase());

    // A deleted user's address is free again, and so is one used in
    // another account.
    let gone = app
        .user(&account, Role::EndUser, crate::support::UserState::Deleted)
        .await;
    let r = browser.post(&path, &person_fields(&csrf, &user, &gone.email)).await;
    assert_eq!(r.status, 303, "{}", r.text());
    let elsewhere = app.account().await;
    let r = browser
        .post(&path, &person_fields(&csrf, &user, &elsewhere.admin.email))
        .await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(
        app.app.user(&access, user.id).await.unwrap().unwrap().email.as_str(),
        elsewhere.admin.email
    );
}

/// Two admins giving two people the same new address at the same moment:
/// one wins, the other is refused as taken, and the account never holds
/// the address twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_email_changes_never_leave_an_address_twice_in_an_account() {
    let app = TestApp::spawn().await;
    let account = app.account().await;
    let access = app.operator(&account.subdomain).await;
    for round in 0..10 {
        let a = app
            .user(&account, Role::Agent, crate::support::UserState::Verified)
            .await;
        let b = app
            .user(&account, Role::Agent, crate::support::UserState::Verified)
            .await;
        let address = format!("{}@example.com", unique(&format!("race{round}")));
        let patch = |email: String| latchkey_core::user::UserPatch {
            email: Some(Email::parse(&email).unwrap()),
            ..Default::default()
        };
        let (pa, pb) = (patch(address.clone()), patch(address.to_uppercase()));
        let (ra, rb) = tokio::join!(
            app.app.update_user(&access, a.id, &pa),
            app.app.update_user(&access, b.id, &pb)
        );
        let refused = [&ra, &rb]
            .iter()
            .filter(|r| {
                matches!(
                    r,
                    Err(latchkey_app::AppError::Domain(latchkey_core::DomainError::Invalid(list)))
                        if list.iter().any(|i| i.field == "email" && i.code == latchkey_core::ErrorCode::Taken)
                )
            })
            .count();
        assert_eq!((ra.is_ok() as u8 + rb.is_ok() as u8, refused), (1, 1), "{ra:?} {rb:?}");
        let holder = app.app.user_by_email(&access, &address).await.unwrap().unwrap();
        assert!(holder.id == a.id || holder.id == b.id);
    }
    let changes = app
        .audit(account.id)
        .await
        .into_iter()
        .filter(|e| e.change_description.starts_with("email changed"))
        .count();
    assert_eq!(changes, 10, "one audited change per round");
}

/// The event ids of an audit-log page's rows, in order.
fn event_ids(page: &Reply) -> Vec<i64> {
    page.text()
        .split(r#"<tr data-event-id=""#)
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test]
async fn the_actor_filter_offers_operator_system_and_deleted_people_and_filters_by_kind() {
    let (app, account, browser) = signed_in_admin().await;
    let access = app.operator(&account.subdomain).await;
    // latchkey itself deactivates a token reported as leaked.
    let leaked = app.token(&account).await;
    assert_eq!(app.app.report_leaked(&[&leaked.plain], None).await.unwrap(), vec![true]);
    // Dee changes something through the API, and is deleted afterwards;
    // Nell is deleted without ever acting.
    let dee = app
        .app
        .create_user(
            &access,
            NewUser {
                name: "Dee Parted".into(),
                email: Email::parse(&format!("{}@example.com", unique("dee"))).unwrap(),
                role: Role::Admin,
                verified: true,
                password_hash: None,
            },
        )
        .await
        .unwrap();
    let token = app.token(&account).await;
    let dee_auth = crate::support::basic(dee.email.as_str(), &token.plain);
    app.api_create_token(&dee_auth, Some("made by Dee")).await;
    app.app.delete_user(&access, dee.id).await.unwrap();
    let nell = app
        .user(&account, Role::Agent, crate::support::UserState::Deleted)
        .await;

    let page = browser.get("/admin/audit-log").await;
    assert_eq!(page.status, 200, "{}", page.text());
    let text = page.text();
    for option in [
        r#"<option value="operator">Operator</option>"#.to_owned(),
        r#"<option value="system">System</option>"#.to_owned(),
        format!(r#"<option value="{}">Dee Parted (deleted)</option>"#, dee.id),
        format!(r#"<option value="{}">Ada Admin</option>"#, account.admin.id),
    ] {
        assert!(text.contains(&option), "{option}: {text}");
    }
    assert!(!text.contains(&format!(r#"<option value="{}">"#, nell.id)), "{text}");

    // Each choice lists exactly that actor's events, newest first.
    let all = app.audit(account.id).await;
    let expected = |keep: &dyn Fn(&latchkey_core::audit::AuditEvent) -> bool| -> Vec<i64> {
        all.iter().rev().filter(|e| keep(e)).map(|e| e.id.get()).collect()
    };
    for (value, want) in [
        ("system", expected(&|e| e.actor_type == ActorType::System)),
        ("operator", expected(&|e| e.actor_type == ActorType::Operator)),
        (&*dee.id.to_string(), expected(&|e| e.actor_id == Some(dee.id))),
    ] {
        let page = browser.get(&format!("/admin/audit-log?actor={value}")).await;
        assert_eq!(page.status, 200, "{value}: {}", page.text());
        assert!(!want.is_empty(), "{value}");
        assert_eq!(event_ids(&page), want, "{value}");
        assert!(
            page.text().contains(&format!(r#"<option value="{value}" selected>"#)),
            "{value}: the form keeps the choice"
        );
    }
    let system = browser.get("/admin/audit-log?actor=system").await.text();
    assert!(system.contains("reported leaked"), "{system}");
    // The REST API's filters are as documented: no actor type among them.
    let admin = app.admin_auth(&account).await;
    let r = app.get("/api/v2/audit_logs?filter[actor_type]=system", &admin).await;
    assert_eq!(r.status, 400, "{}", r.text());
}

#[tokio::test]
async fn yes_no_changes_read_as_words_on_the_page_and_stay_as_stored_in_the_api() {
    let (app, account, browser) = signed_in_admin().await;
    let user = app
        .user(&account, Role::Agent, crate::support::UserState::Verified)
        .await;
    let csrf = browser.csrf("/admin/people").await;
    let r = browser
        .post(&format!("/admin/people/{}/suspend", user.id), &[("csrf", &csrf)])
        .await;
    assert_eq!(r.status, 303, "{}", r.text());
    let page = browser.get("/admin/audit-log?source_type=user").await.text();
    assert!(page.contains(r#"<td data-label="Change">Suspended</td>"#), "{page}");
    assert!(!page.contains("suspended changed from"), "{page}");
    let admin = app.admin_auth(&account).await;
    let r = app.get("/api/v2/audit_logs?filter[source_type]=user", &admin).await;
    assert_eq!(
        r.json()["audit_logs"][0]["change_description"],
        "suspended changed from false to true"
    );
}

#[tokio::test]
async fn a_browser_gets_an_html_404_outside_the_admin_center_and_api_clients_keep_json() {
    let app = TestApp::spawn().await;
    let client = reqwest::Client::new();
    let get = |path: &str, accept: &str| client.get(app.url(path)).header("accept", accept).send();
    let browser_accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let r = Reply::from(get("/no-such-page", browser_accept).await.unwrap()).await;
    assert_eq!(r.status, 404);
    assert!(
        r.header("content-type").unwrap().starts_with("text/html"),
        "{:?}",
        r.headers
    );
    let text = r.text();
    assert!(text.contains(r#"<html lang="en">"#), "{text}");
    assert!(
        text.contains("<title>Page not found · latchkey Admin Center</title>"),
        "{text}"
    );
    assert!(r.header("content-security-policy").is_some());
    // The API, and any client that does not ask for HTML, keep JSON.
    for (path, accept) in [
        ("/no-such-page", "application/json"),
        ("/no-such-page", "*/*"),
        ("/api/v2/no-such-thing", browser_accept),
    ] {
        let r = Reply::from(get(path, accept).await.unwrap()).await;
        assert_eq!(r.status, 404, "{path} {accept}");
        assert_eq!(r.json()["error"], "RecordNotFound", "{path} {accept}: {}", r.text());
    }
}

// -- allowed IPs, rate limits, usage and leaks in the Admin Center ------------

/// Posts the Edit form of the token at `path` with its description, full
/// access, no assigned user, the expiry kept, and these Allowed IPs and
/// Rate limit fields (`ips`, requests, per seconds).
async fn post_limits(
    browser: &Browser,
    path: &str,
    csrf: &str,
    description: &str,
    (ips, requests, per_seconds): (&str, &str, &str),
) -> Reply {
    let fields = [
        ("csrf", csrf),
        ("description", description),
        ("access", "full"),
        ("assigned_user_id", ""),
        ("expires", "keep"),
        ("expires_on", ""),
        ("allowed_ips", ips),
        ("rate_limit_requests", requests),
        ("rate_limit_per_seconds", per_seconds),
    ];
    browser.post(path, &fields).await
}

#[tokio::test]
async fn an_allowlist_and_a_rate_limit_are_set_with_the_edit_form_audited_and_shown() {
    let (app, account, browser) = signed_in_admin().await;
    let t = restricted_token(&app, &account, "Billing job", Default::default()).await;
    let path = format!("/admin/apis/api-tokens/{}/edit", t.id);
    let page = browser.get(&path).await;
    let form = page.text();
    for needle in [
        r#"<label for="allowed_ips">Allowed IPs"#,
        r#"name="allowed_ips" rows="3" autocomplete="off" spellcheck="false" aria-describedby="allowed-ips-hint"></textarea>"#,
        r#"name="rate_limit_requests" value="""#,
        r#"name="rate_limit_per_seconds" value="""#,
    ] {
        assert!(form.contains(needle), "{needle} in {form}");
    }
    let csrf = csrf_of(&page);
    let auth = app.admin_auth(&account).await;
    let events = app.audit(account.id).await.len();
    let r = post_limits(
        &browser,
        &path,
        &csrf,
        "Billing job",
        ("10.20.0.0/16\r\n192.0.2.7, 2001:db8:42::/48", "100", "60"),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());

    // The REST record holds them, and one audit event says so.
    let record = app.get(&format!("/api/v2/api_tokens/{}", t.id), &auth).await.json();
    assert_eq!(
        record["api_token"]["allowed_ips"],
        serde_json::json!(["10.20.0.0/16", "192.0.2.7/32", "2001:db8:42::/48"])
    );
    assert_eq!(
        record["api_token"]["rate_limit"],
        serde_json::json!({"requests": 100, "per_seconds": 60})
    );
    let audit = app.audit(account.id).await;
    assert_eq!(audit.len(), events + 1);
    let event = audit.last().unwrap();
    assert_eq!(event.actor_name, "Web admin");
    for clause in [
        r#"allowed_ips changed from any address to "10.20.0.0/16 192.0.2.7/32 2001:db8:42::/48""#,
        "rate_limit changed from none to 100 per 60 seconds",
    ] {
        assert!(
            event.change_description.contains(clause),
            "{}",
            event.change_description
        );
    }

    // The details page and a fresh Edit form show them.
    let details = browser.get(&format!("/admin/apis/api-tokens/{}", t.id)).await.text();
    assert!(
        details.contains(r#"<dd id="token-allowed-ips"><code>10.20.0.0/16</code>, <code>192.0.2.7/32</code>"#),
        "{details}"
    );
    assert!(
        details.contains(r#"<dd id="token-rate-limit">100 per 60 seconds</dd>"#),
        "{details}"
    );
    let form = browser.get(&path).await.text();
    assert!(
        form.contains(">10.20.0.0/16\n192.0.2.7/32\n2001:db8:42::/48</textarea>"),
        "{form}"
    );
    assert!(form.contains(r#"name="rate_limit_requests" value="100""#), "{form}");
    assert!(form.contains(r#"name="rate_limit_per_seconds" value="60""#), "{form}");

    // Saving the form as it is changes nothing and records nothing.
    let r = post_limits(
        &browser,
        &path,
        &csrf,
        "Billing job",
        ("10.20.0.0/16\n192.0.2.7/32\n2001:db8:42::/48", "100", "60"),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(app.audit(account.id).await.len(), events + 1);

    // Emptied, both are lifted.
    let r = post_limits(&browser, &path, &csrf, "Billing job", ("", "", "")).await;
    assert_eq!(r.status, 303, "{}", r.text());
    let stored = stored_token(&app, &account, t.id).await;
    assert_eq!((stored.allowed_ips, stored.rate_limit), (None, None));
    let event = app.audit(account.id).await.pop().unwrap();
    assert!(
        event
            .change_description
            .contains("rate_limit changed from 100 per 60 seconds to none"),
        "{}",
        event.change_description
    );
}

#[tokio::test]
async fn an_invalid_allowlist_or_rate_limit_is_refused_on_its_field_and_changes_nothing() {
    let (app, account, browser) = signed_in_admin().await;
    let t = restricted_token(
        &app,
        &account,
        "Limited",
        latchkey_core::token::Restrictions {
            allowed_ips: Some(latchkey_core::allowlist::IpAllowlist::parse(&["10.0.0.0/8"]).unwrap()),
            rate_limit: Some(latchkey_core::rate_limit::RateLimit::new(10, 1).unwrap()),
            ..Default::default()
        },
    )
    .await;
    let path = format!("/admin/apis/api-tokens/{}/edit", t.id);
    let csrf = browser.csrf(&path).await;
    let events = app.audit(account.id).await.len();

    let r = post_limits(
        &browser,
        &path,
        &csrf,
        "Renamed too",
        ("10.0.0.0/8, 10.0.0.300", "50", "60"),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.text());
    let text = r.text();
    for needle in [
        r#"aria-describedby="allowed-ips-error allowed-ips-hint" aria-invalid="true" autofocus>10.0.0.0/8, 10.0.0.300</textarea>"#,
        // The refused field has the focus, not the description.
        r#"value="Renamed too" maxlength="255" autocomplete="off">"#,
        r#"<p class="field-error" id="allowed-ips-error">&#34;10.0.0.300&#34; is not an IPv4 or IPv6 address or CIDR network.</p>"#,
        r#"name="rate_limit_requests" value="50""#,
        r#"name="rate_limit_per_seconds" value="60""#,
        r#"value="Renamed too""#,
    ] {
        assert!(text.contains(needle), "{needle} in {text}");
    }
    assert!(!text.contains("rate-limit-error"), "{text}");

    for (requests, per) in [("0", "60"), ("100", ""), ("many", "60"), ("10", "86401")] {
        let r = post_limits(&browser, &path, &csrf, "Renamed too", ("192.0.2.0/24", requests, per)).await;
        assert_eq!(r.status, 422, "{requests}/{per}: {}", r.text());
        let text = r.text();
        let tied = format!(
            r#"name="rate_limit_requests" value="{requests}" min="1" max="1000000" step="1" inputmode="numeric" aria-describedby="rate-limit-error rate-limit-hint" aria-invalid="true" autofocus>"#
        );
        assert!(text.contains(&tied), "{tied} in {text}");
        assert!(
            text.contains(r#"<p class="field-error" id="rate-limit-error">"#),
            "{text}"
        );
        assert!(text.contains(">192.0.2.0/24</textarea>"), "{text}");
        assert!(!text.contains("allowed-ips-error"), "{text}");
    }

    let stored = stored_token(&app, &account, t.id).await;
    assert_eq!(stored.description.as_deref(), Some("Limited"));
    assert_eq!(stored.allowed_ips.map(|l| l.to_stored()).as_deref(), Some("10.0.0.0/8"));
    assert_eq!(
        stored.rate_limit.map(|r| r.describe()).as_deref(),
        Some("10 per second")
    );
    assert_eq!(app.audit(account.id).await.len(), events);
}

#[tokio::test]
async fn the_add_form_makes_a_token_with_an_allowlist_and_a_rate_limit() {
    let (app, account, browser) = signed_in_admin().await;
    let (csrf, nonce) = add_form(&browser).await;
    let bad = [
        ("csrf", csrf.as_str()),
        ("nonce", nonce.as_str()),
        ("description", "Network bound"),
        ("access", "full"),
        ("assigned_user_id", ""),
        ("expires", "never"),
        ("allowed_ips", "not-an-address"),
        ("rate_limit_requests", "5"),
        ("rate_limit_per_seconds", "1"),
    ];
    let r = browser.post("/admin/apis/api-tokens", &bad).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains(r#"id="allowed-ips-error""#), "{}", r.text());
    let mut good = bad;
    good[6].1 = "198.51.100.0/24";
    let r = browser.post("/admin/apis/api-tokens", &good).await;
    assert_eq!(follow_to_reveal(&browser, &r).await.status, 200);
    let made = app
        .app
        .tokens(&app.operator(&account.subdomain).await)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.description.as_deref() == Some("Network bound"))
        .unwrap();
    assert_eq!(
        made.allowed_ips.map(|l| l.to_stored()).as_deref(),
        Some("198.51.100.0/24")
    );
    assert_eq!(made.rate_limit.map(|r| r.describe()).as_deref(), Some("5 per second"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_details_page_charts_the_last_30_days_with_totals_by_reason() {
    let app = TestApp::spawn_with(|c| c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]).await;
    let account = app.account().await;
    let email = user_with_password(&app, &account, Role::Admin).await;
    let browser = Browser::new(&app);
    assert_eq!(browser.sign_in(&account.subdomain, &email, PASSWORD).await.status, 303);
    let auth = app.admin_auth(&account).await;
    let (id, plain) = app
        .api_create_token_with(
            &auth,
            serde_json::json!({"description": "Charted", "allowed_ips": ["192.0.2.0/24"]}),
        )
        .await;
    let details = format!("/admin/apis/api-tokens/{id}");

    let page = browser.get(&details).await.text();
    assert!(
        page.contains(r#"<p id="usage-empty">No requests in the last 30 days.</p>"#),
        "{page}"
    );
    assert!(!page.contains("<svg"), "{page}");

    let token_auth = crate::support::basic(&account.admin.email, &plain);
    let send = |ip: &'static str| {
        let req = app
            .client
            .get(app.url("/api/v2/users/me"))
            .header("authorization", token_auth.clone())
            .header("x-forwarded-for", ip);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    for _ in 0..3 {
        assert_eq!(send("192.0.2.10").await, 200);
    }
    for _ in 0..2 {
        assert_eq!(send("198.51.100.1").await, 401);
    }
    app.app.flush_usage().await.unwrap();

    let page = browser.get(&details).await;
    assert_eq!(page.status, 200);
    let text = page.text();
    let today = day_of(app.app.now());
    for needle in [
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="100%" height="176" role="img" aria-labelledby="usage-chart-title""#.to_owned(),
        ": 3 allowed and 2 denied in all; the busiest day was".to_owned(),
        format!("<title>{today}: 3 allowed, 2 denied</title>"),
        r#"fill="url(#usage-hatch)""#.to_owned(),
        r#"<dd id="usage-allowed">3</dd>"#.to_owned(),
        r#"<dd id="usage-denied">2</dd>"#.to_owned(),
        r#"<dt class="reason">Address not allowed</dt><dd class="reason">2</dd>"#.to_owned(),
        r#"<dt class="reason">Rate limited</dt><dd class="reason">0</dd>"#.to_owned(),
        format!("<tr><td>{today}</td><td>3</td><td>2</td></tr>"),
    ] {
        assert!(text.contains(&needle), "{needle} in {text}");
    }
    assert!(!text.contains("usage-empty"), "{text}");
}

#[tokio::test]
async fn a_token_reported_leaked_is_marked_in_the_list_and_on_its_details() {
    let (app, account, browser) = signed_in_admin().await;
    let leaked = app.token_described(&account, Some("Pasted in a gist")).await;
    let kept = app.token_described(&account, Some("Still secret")).await;
    let list = browser.get("/admin/apis/api-tokens").await.text();
    assert!(!list.contains("badge leaked"), "{list}");

    let body = serde_json::json!({"credentials": [leaked.plain]});
    let r = app
        .send(reqwest::Method::POST, "/api/v2/credentials/revoke", None, Some(&body))
        .await;
    assert_eq!(r.status, 202);
    let at = stored_token(&app, &account, leaked.id)
        .await
        .leaked_at
        .expect("leaked_at");
    let shown = latchkey_server::web::page::show_time(at);

    let list = browser.get("/admin/apis/api-tokens").await.text();
    let row = |id: TokenId| {
        let start = list.find(&format!(r#"<tr data-token-id="{id}">"#)).unwrap();
        let end = start + list[start..].find("</tr>").unwrap();
        list[start..end].to_owned()
    };
    let badge = format!(
        r#"<span class="badge off">Deactivated</span> <span class="badge leaked" title="Reported leaked {shown}">Leaked</span>"#
    );
    assert!(row(leaked.id).contains(&badge), "{badge} in {}", row(leaked.id));
    assert!(!row(kept.id).contains("Leaked"), "{}", row(kept.id));

    let details = browser
        .get(&format!("/admin/apis/api-tokens/{}", leaked.id))
        .await
        .text();
    assert!(
        details.contains(r#"<p class="warning" id="token-leaked-warning"><strong>Reported leaked</strong>"#),
        "{details}"
    );
    assert!(
        details.contains(&format!(
            r#"<dt>Reported leaked</dt><dd id="token-leaked"><time datetime="{}" data-local>{shown}</time></dd>"#,
            at.rfc3339()
        )),
        "{details}"
    );
    let details = browser.get(&format!("/admin/apis/api-tokens/{}", kept.id)).await.text();
    assert!(!details.contains("Reported leaked"), "{details}");
}
