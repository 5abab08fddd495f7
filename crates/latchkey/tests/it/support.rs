//! The harness every integration test builds on: a real server started
//! in-process on a loopback port over a fresh database, helpers that set up
//! accounts, users and tokens through the service layer, an HTTP client,
//! and runners for the real `latchkey` binary.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use latchkey_app::{AdminAccess, App};
use latchkey_core::{
    account::{AccountPatch, NewAccount, Plan, Subdomain},
    audit::AuditEvent,
    id::{AccountId, TokenId, UserId},
    scope::{ResourceDef, ScopeCatalog},
    time::{Clock, Timestamp},
    token::{Restrictions, TokenPrefix},
    user::{Email, NewUser, Role, UserPatch},
};
use latchkey_server::{run, ServerConfig};
use latchkey_store::Store;
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// The exact 401 body of docs/api.md ("When authentication fails").
pub const NOT_AUTHENTICATED: &str = r#"{"error":"Couldn't authenticate you"}"#;
/// The exact 403 body of docs/api.md ("Roles: 403").
pub const FORBIDDEN: &str = r#"{"error":"Forbidden","description":"You do not have access to this page. Please contact the account owner of this help desk for further help."}"#;
/// The exact 404 body of docs/api.md ("Errors").
pub const NOT_FOUND: &str = r#"{"error":"RecordNotFound","description":"Not found"}"#;
pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";
/// The identity headers of a 200 from `/verify` (docs/api.md, "Gateway verification").
pub const IDENTITY_HEADERS: [&str; 7] = [
    "x-latchkey-account-id",
    "x-latchkey-account",
    "x-latchkey-user-id",
    "x-latchkey-user-email",
    "x-latchkey-role",
    "x-latchkey-token-id",
    "x-latchkey-scopes",
];

/// Names unique within the test binary (accounts, emails).
static NEXT: AtomicU64 = AtomicU64::new(1);

pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

// ---------------------------------------------------------------------------
// The database: latchkey_store::testing (one harness for every test)
// ---------------------------------------------------------------------------

pub use latchkey_store::testing::{
    postgres_database, postgres_server_url, sqlite_database, test_database_url, Direct, DirectArg, TestDatabase,
};

// ---------------------------------------------------------------------------
// The in-process server
// ---------------------------------------------------------------------------

/// A clock that stands still until a test moves it.
#[derive(Debug)]
pub struct TestClock(std::sync::atomic::AtomicI64);

impl TestClock {
    pub fn at(t: Timestamp) -> Arc<TestClock> {
        Arc::new(TestClock(std::sync::atomic::AtomicI64::new(t.unix())))
    }

    pub fn advance(&self, seconds: i64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix(self.0.load(Ordering::SeqCst))
    }
}

/// A running server on 127.0.0.1:<random port> with its database.
pub struct TestApp {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    /// The database below the service layer, for tests that check what is
    /// stored (opened on first use).
    store: tokio::sync::OnceCell<Store>,
    pub client: reqwest::Client,
    pub config: ServerConfig,
    pub db: TestDatabase,
    running: Option<run::Running>,
}

/// A test config: loopback, port 0, quick polling; a generous failure limit
/// so tests that fail on purpose are not throttled.
pub fn test_config() -> ServerConfig {
    ServerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        failed_auth_per_minute: 1_000_000,
        poll_interval: Duration::from_millis(10),
        ..ServerConfig::default()
    }
}

/// The resources every test server offers beside latchkey's own: a
/// deployment's `tickets`, as README.md's configuration example declares.
pub fn test_catalog() -> ScopeCatalog {
    ScopeCatalog::with_resources(vec![ResourceDef {
        name: "tickets".into(),
        description: "Tickets and their comments".into(),
        paths: vec!["/api/v2/tickets".into(), "/api/v2/tickets/**".into()],
    }])
    .expect("a valid catalog")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(|_| {}).await
    }

    /// Starts a server with `tweak` applied to [`test_config`].
    pub async fn spawn_with(tweak: impl FnOnce(&mut ServerConfig)) -> TestApp {
        let db = test_database_url().await;
        TestApp::spawn_on(db, tweak).await
    }

    /// Starts a server on a given database.
    pub async fn spawn_on(db: TestDatabase, tweak: impl FnOnce(&mut ServerConfig)) -> TestApp {
        TestApp::start(db, tweak, None).await
    }

    /// Starts a server whose "now" comes from `clock` (for rules that
    /// depend on time: no sleeping, no race with the wall clock).
    pub async fn spawn_with_clock(clock: Arc<dyn Clock>, tweak: impl FnOnce(&mut ServerConfig)) -> TestApp {
        let db = test_database_url().await;
        TestApp::start(db, tweak, Some(clock)).await
    }

    async fn start(db: TestDatabase, tweak: impl FnOnce(&mut ServerConfig), clock: Option<Arc<dyn Clock>>) -> TestApp {
        let mut config = test_config();
        tweak(&mut config);
        let app = match clock {
            Some(c) => App::open_with_clock(&db.url, config.token_prefix.clone(), c).await,
            None => App::open(&db.url, config.token_prefix.clone()).await,
        }
        .expect("open the test database")
        .with_scope_catalog(test_catalog());
        let app = Arc::new(app);
        let running = run::start(app.clone(), config.clone()).await.expect("start the server");
        TestApp {
            addr: running.addr,
            app,
            store: tokio::sync::OnceCell::new(),
            client: client(),
            config,
            db,
            running: Some(running),
        }
    }

    /// A second server on this one's database, as another node of the
    /// deployment would be; `self` keeps the database alive.
    pub async fn spawn_node(&self, tweak: impl FnOnce(&mut ServerConfig)) -> TestApp {
        TestApp::spawn_on(self.db.share(), tweak).await
    }

    /// Stops the server gracefully (drains, flushes `last_used`); the
    /// database stays for inspection through `self.app`.
    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await.expect("graceful stop");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The database itself, below the service layer: what is stored, not
    /// what the App makes of it.
    pub async fn store(&self) -> Store {
        self.store
            .get_or_init(|| async { latchkey_store::open(&self.db.url).await.expect("open the store") })
            .await
            .clone()
    }

    /// The operator's access to the account at `subdomain`, as the CLI
    /// gets it.
    pub async fn operator(&self, subdomain: &str) -> AdminAccess {
        self.app.operator(subdomain).await.expect("operator access").0
    }

    // -- setup through the service layer ----------------------------------

    /// An account with an admin (verified); `plan` and `api_token_access` as given.
    pub async fn account_with(&self, plan: Plan, api_token_access: bool) -> TestAccount {
        let subdomain = unique("acct");
        let email = format!("{}@example.com", unique("admin"));
        let new = NewAccount {
            subdomain: Subdomain::parse(&subdomain).expect("subdomain"),
            name: format!("Account {subdomain}"),
            plan,
            api_token_access,
        };
        let admin = NewUser {
            name: "Ada Admin".to_owned(),
            email: Email::parse(&email).expect("email"),
            role: Role::Admin,
            verified: true,
            password_hash: None,
        };
        let (account, user) = self.app.create_account(new, admin).await.expect("create account");
        TestAccount {
            id: account.id,
            subdomain: account.subdomain.to_string(),
            admin: TestUser {
                id: user.id,
                email: user.email.to_string(),
                name: user.name,
                role: Role::Admin,
            },
        }
    }

    /// An enterprise account with API token access on.
    pub async fn account(&self) -> TestAccount {
        self.account_with(Plan::Enterprise, true).await
    }

    /// A user of `account` with `role`, in `state`.
    pub async fn user(&self, account: &TestAccount, role: Role, state: UserState) -> TestUser {
        let email = format!("{}@example.com", unique(&role.as_str().replace('_', "")));
        let access = self.operator(&account.subdomain).await;
        let user = self
            .app
            .create_user(
                &access,
                NewUser {
                    name: format!("{} user", role.as_str()),
                    email: Email::parse(&email).expect("email"),
                    role,
                    verified: state != UserState::Unverified,
                    password_hash: None,
                },
            )
            .await
            .expect("create user");
        match state {
            UserState::Suspended => {
                let patch = UserPatch {
                    suspended: Some(true),
                    ..UserPatch::default()
                };
                self.app
                    .update_user(&access, user.id, &patch)
                    .await
                    .expect("suspend user");
            }
            UserState::Deleted => self.app.delete_user(&access, user.id).await.expect("delete user"),
            UserState::Verified | UserState::Unverified => {}
        }
        TestUser {
            id: user.id,
            email: user.email.to_string(),
            name: user.name,
            role,
        }
    }

    /// A token of `account` made by the operator (the account must have
    /// token access on); returns its id and plaintext.
    pub async fn token(&self, account: &TestAccount) -> TestToken {
        self.token_described(account, None).await
    }

    pub async fn token_described(&self, account: &TestAccount, description: Option<&str>) -> TestToken {
        let (token, plain) = self
            .app
            .create_token(
                &self.operator(&account.subdomain).await,
                description.map(str::to_owned),
                Restrictions::default(),
            )
            .await
            .expect("create token (is token access on?)");
        TestToken {
            id: token.id,
            plain: plain.expose().to_owned(),
        }
    }

    /// Turns an account's API token access on or off as the operator.
    pub async fn set_token_access(&self, account: &TestAccount, on: bool) {
        let patch = AccountPatch {
            api_token_access: Some(on),
            ..AccountPatch::default()
        };
        self.app
            .update_account(&self.operator(&account.subdomain).await, &patch)
            .await
            .expect("update account");
    }

    /// The admin's credentials with a fresh token: what most API tests need.
    pub async fn admin_auth(&self, account: &TestAccount) -> String {
        let t = self.token(account).await;
        basic(&account.admin.email, &t.plain)
    }

    /// An account's audit events, oldest first.
    pub async fn audit(&self, account_id: AccountId) -> Vec<AuditEvent> {
        self.store()
            .await
            .audit_chain(account_id)
            .await
            .expect("read audit chain")
            .into_iter()
            .map(|(e, _)| e)
            .collect()
    }

    /// True when the account's audit hash chain is intact.
    pub async fn audit_chain_intact(&self, account_id: AccountId) -> bool {
        let chain = self
            .store()
            .await
            .audit_chain(account_id)
            .await
            .expect("read audit chain");
        latchkey_core::audit::first_broken(chain.iter().map(|(e, h)| (e, *h))).is_none()
    }

    // -- HTTP ---------------------------------------------------------------

    /// Sends a request; `auth` is the whole `Authorization` value.
    pub async fn send(&self, method: Method, path: &str, auth: Option<&str>, body: Option<&Value>) -> Reply {
        let mut req = self.client.request(method, self.url(path));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(serde_json::to_vec(b).expect("json"));
        }
        Reply::from(req.send().await.expect("request")).await
    }

    pub async fn get(&self, path: &str, auth: &str) -> Reply {
        self.send(Method::GET, path, Some(auth), None).await
    }

    pub async fn post(&self, path: &str, auth: &str, body: &Value) -> Reply {
        self.send(Method::POST, path, Some(auth), Some(body)).await
    }

    pub async fn put(&self, path: &str, auth: &str, body: &Value) -> Reply {
        self.send(Method::PUT, path, Some(auth), Some(body)).await
    }

    pub async fn delete(&self, path: &str, auth: &str) -> Reply {
        self.send(Method::DELETE, path, Some(auth), None).await
    }

    /// `GET /api/v2/users/me` with `auth`; its status.
    pub async fn me_status(&self, auth: &str) -> u16 {
        self.get("/api/v2/users/me", auth).await.status
    }

    /// Creates a token over the API as `auth` with `fields` (a partial
    /// `api_token` record); the reply must be 201.
    pub async fn api_create_token_with(&self, auth: &str, fields: Value) -> (TokenId, String) {
        let r = self
            .post("/api/v2/api_tokens", auth, &serde_json::json!({ "api_token": fields }))
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let rec = r.json()["api_token"].clone();
        (json_id(&rec["id"]), rec["token"].as_str().expect("token").to_owned())
    }

    /// Creates a token over the API as `auth`; the reply must be 201.
    pub async fn api_create_token(&self, auth: &str, description: Option<&str>) -> (TokenId, String) {
        let body = match description {
            Some(d) => serde_json::json!({"api_token": {"description": d}}),
            None => serde_json::json!({}),
        };
        let r = self.post("/api/v2/api_tokens", auth, &body).await;
        assert_eq!(r.status, 201, "create token: {}", r.text());
        let v = r.json();
        (
            TokenId::new(v["api_token"]["id"].as_i64().expect("id")),
            v["api_token"]["token"].as_str().expect("token").to_owned(),
        )
    }

    /// Sends raw bytes on a fresh connection (for requests a well-behaved
    /// client cannot make) and reads the response until the server closes.
    pub async fn raw(&self, request: &[u8]) -> RawReply {
        raw_http(self.addr, request).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // A server still running when the test ends stops with the runtime.
        self.running.take();
    }
}

/// An account made by [`TestApp::account_with`], with its admin.
#[derive(Debug, Clone)]
pub struct TestAccount {
    pub id: AccountId,
    pub subdomain: String,
    pub admin: TestUser,
}

#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserState {
    Verified,
    Unverified,
    Suspended,
    Deleted,
}

#[derive(Debug, Clone)]
pub struct TestToken {
    pub id: TokenId,
    pub plain: String,
}

/// A record's id from its JSON, as its typed id (ids are plain numbers in
/// JSON).
pub fn json_id<Id: serde::de::DeserializeOwned>(v: &Value) -> Id {
    serde_json::from_value(v.clone()).expect("an id")
}

/// `Basic base64("{email}/token:{token}")`.
pub fn basic(email: &str, token: &str) -> String {
    basic_raw(&format!("{email}/token:{token}"))
}

/// `Basic base64(credentials)` for any credentials text.
pub fn basic_raw(credentials: &str) -> String {
    basic_bytes(credentials.as_bytes())
}

pub fn basic_bytes(credentials: &[u8]) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    )
}

/// A token with the right shape and a valid checksum that no account holds.
pub fn unknown_token() -> String {
    latchkey_core::token::PlainToken::generate(&TokenPrefix::default())
        .expose()
        .to_owned()
}

/// `token` with one character of its random part changed, so the checksum
/// no longer matches.
pub fn with_bad_checksum(token: &str) -> String {
    let mut chars: Vec<char> = token.chars().collect();
    let i = token.find('_').expect("prefix") + 1;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    let bad: String = chars.into_iter().collect();
    assert!(!latchkey_core::token::has_valid_checksum(&bad));
    bad
}

/// A response, read in full.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub async fn from(r: reqwest::Response) -> Reply {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.bytes().await.expect("response body").to_vec();
        Reply { status, headers, body }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A response read from a raw connection.
#[derive(Debug)]
pub struct RawReply {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl RawReply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Writes `request` to `addr` and reads one response (the request should
/// carry `Connection: close`).
pub async fn raw_http(addr: SocketAddr, request: &[u8]) -> RawReply {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf)).await;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(&buf)));
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let body = buf[split + 4..].to_vec();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    RawReply {
        status,
        head,
        body: if chunked { dechunk(&body) } else { body },
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&b[start..(start + size).min(b.len())]);
        b = &b[(start + size + 2).min(b.len())..];
    }
    out
}

// ---------------------------------------------------------------------------
// The real binary
// ---------------------------------------------------------------------------

pub const BIN: &str = env!("CARGO_BIN_EXE_latchkey");

/// What a finished `latchkey` command printed and returned.
#[derive(Debug)]
pub struct CliOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// A `latchkey` command with `LATCHKEY_DATABASE_URL` set to `database_url`
/// and no other `LATCHKEY_*` variable inherited.
pub fn latchkey_command(database_url: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("LATCHKEY_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("LATCHKEY_DATABASE_URL", database_url)
        .env("LATCHKEY_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs `latchkey args…` on `database_url` to completion.
pub async fn cli(database_url: &str, args: &[&str]) -> CliOutput {
    cli_with_stdin(database_url, args, None).await
}

pub async fn cli_with_stdin(database_url: &str, args: &[&str], stdin: Option<&str>) -> CliOutput {
    let mut cmd = latchkey_command(database_url);
    cmd.args(args);
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().expect("run latchkey");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input.as_bytes()).await.expect("write stdin");
        drop(pipe);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("latchkey finished within 60 s")
        .expect("latchkey output");
    CliOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The real binary on a test database (a trait: `TestDatabase` lives in
/// latchkey-store).
#[allow(async_fn_in_trait)]
pub trait TestDatabaseCli {
    async fn cli(&self, args: &[&str]) -> CliOutput;
    async fn cli_account(&self, plan: &str) -> (String, String, String);
}

impl TestDatabaseCli for TestDatabase {
    async fn cli(&self, args: &[&str]) -> CliOutput {
        cli(&self.url, args).await
    }

    /// An account on `plan` made with the CLI, with token access on, and an
    /// admin token: (subdomain, admin email, token).
    async fn cli_account(&self, plan: &str) -> (String, String, String) {
        let subdomain = unique("cli");
        let email = format!("{}@example.com", unique("owner"));
        let out = self
            .cli(&[
                "account",
                "create",
                "--subdomain",
                &subdomain,
                "--name",
                "Made by the CLI",
                "--plan",
                plan,
                "--api-token-access",
                "--admin-email",
                &email,
            ])
            .await;
        assert_eq!(out.code, 0, "{out:?}");
        let out = self.cli(&["token", "create", "--account", &subdomain]).await;
        assert_eq!(out.code, 0, "{out:?}");
        (subdomain, email, out.stdout.trim().to_owned())
    }
}

/// A `latchkey serve` process on a random loopback port.
pub struct ServeProcess {
    pub child: tokio::process::Child,
    pub addr: SocketAddr,
    /// Lines printed on stdout before "listening on".
    pub banner: Vec<String>,
    /// Everything printed since (stdout and stderr), gathered as it comes.
    output: Arc<std::sync::Mutex<String>>,
}

impl ServeProcess {
    /// Starts `latchkey serve --listen 127.0.0.1:0 extra…` and waits until it
    /// prints the address it listens on.
    pub async fn start(database_url: &str, extra: &[&str]) -> ServeProcess {
        ServeProcess::start_with_env(database_url, extra, &[]).await
    }

    /// Like [`ServeProcess::start`], with extra environment variables.
    pub async fn start_with_env(database_url: &str, extra: &[&str], env: &[(&str, &str)]) -> ServeProcess {
        let mut cmd = latchkey_command(database_url);
        cmd.args(["serve", "--listen", "127.0.0.1:0"]).args(extra);
        // No load balancer waits on these servers' /readyz: drain at once
        // unless the test sets a grace.
        if !extra.contains(&"--shutdown-grace") {
            cmd.args(["--shutdown-grace", "0"]);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start latchkey serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut banner = Vec::new();
        let addr = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                if let Some(rest) = line.strip_prefix("latchkey: listening on http://") {
                    return rest.trim().parse::<SocketAddr>().expect("listen address");
                }
                banner.push(line);
            }
            panic!("latchkey serve exited before listening; printed {banner:?}");
        })
        .await
        .expect("latchkey serve listened within 30 s");
        // Keep draining both pipes so the process never blocks on a full one.
        let output = Arc::new(std::sync::Mutex::new(String::new()));
        let keep = output.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                keep.lock().expect("output").push_str(&(line + "\n"));
            }
        });
        let stderr = child.stderr.take().expect("stderr");
        let keep = output.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                keep.lock().expect("output").push_str(&(line + "\n"));
            }
        });
        ServeProcess {
            child,
            addr,
            banner,
            output,
        }
    }

    /// SIGTERM, wait for the exit; the exit code and everything printed
    /// since the process started listening.
    pub async fn terminate_with_output(self) -> (i32, String) {
        let output = self.output.clone();
        let code = self.terminate().await;
        // Let the readers take the last lines from the closed pipes.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let text = output.lock().expect("output").clone();
        (code, text)
    }

    /// What the process has printed since it started listening.
    pub fn output(&self) -> String {
        self.output.lock().expect("output").clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// SIGKILL: no shutdown work at all.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("SIGKILL latchkey");
    }

    /// SIGTERM, then wait for a clean exit; returns the exit code.
    pub async fn terminate(mut self) -> i32 {
        let pid = self.child.id().expect("running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let exit = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("latchkey exited within 30 s after SIGTERM")
            .expect("wait");
        exit.code().unwrap_or(-1)
    }
}

/// Sends a GET with `auth` to any base (for servers run as processes).
pub async fn get_status(client: &reqwest::Client, url: &str, auth: &str) -> u16 {
    client
        .get(url)
        .header("authorization", auth)
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}
