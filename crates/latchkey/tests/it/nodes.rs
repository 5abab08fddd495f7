//! Several real `latchkey serve` processes on one PostgreSQL database
//! (README.md, "Running several nodes"; the token limit of docs/api.md): how fast a change on one node reaches the other, that
//! a dropped listening connection loses no change, that a node cut off from
//! its database stops vouching for stale data after `--max-staleness` and
//! recovers by itself, and that the token limit holds across nodes.
//!
//! These tests need PostgreSQL (`LATCHKEY_TEST_POSTGRES_URL`); without it
//! they say on the terminal that they did not run, and under CI they fail.

mod copy_db;

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use latchkey_core::id::TokenId;
use serde_json::json;
use sqlx::Connection as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::support::*;

/// A fresh PostgreSQL database, or `None` (after saying so on the terminal)
/// when none is configured. Under CI a missing PostgreSQL is a failure.
async fn postgres_or_not_run(test: &str) -> Option<TestDatabase> {
    if postgres_server_url().is_some() {
        return Some(postgres_database().await);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{test} needs PostgreSQL, and CI must run it: set LATCHKEY_TEST_POSTGRES_URL");
    }
    // Straight to the terminal: the test harness captures `eprintln!`.
    let _ = writeln!(
        std::io::stderr(),
        "NOT RUN: nodes::cluster::{test} needs PostgreSQL; set LATCHKEY_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres"
    );
    None
}

/// Ends a test that was not run (keeps the early returns readable).
macro_rules! postgres_or_return {
    ($name:literal) => {
        match postgres_or_not_run($name).await {
            Some(db) => db,
            None => return,
        }
    };
}

/// A node: a real `latchkey serve` process. The tests fail authentication
/// on purpose, many times a second, so the per-address limit is lifted.
async fn node(url: &str, extra: &[&str]) -> ServeProcess {
    let mut args = vec!["--failed-auth-per-minute", "1000000"];
    args.extend_from_slice(extra);
    ServeProcess::start(url, &args).await
}

async fn status(client: &reqwest::Client, node: &ServeProcess, auth: &str) -> u16 {
    get_status(client, &node.url("/api/v2/users/me"), auth).await
}

async fn set_active(client: &reqwest::Client, node: &ServeProcess, admin: &str, token_id: TokenId, active: bool) {
    let r = client
        .put(node.url(&format!("/api/v2/api_tokens/{token_id}")))
        .header("authorization", admin)
        .json(&json!({"api_token": {"active": active}}))
        .send()
        .await
        .expect("PUT token");
    assert_eq!(r.status().as_u16(), 200, "set active={active}");
}

/// Asks `node` until it answers `want`; the time that took.
async fn until_status(client: &reqwest::Client, node: &ServeProcess, auth: &str, want: u16) -> Duration {
    let started = Instant::now();
    loop {
        let got = status(client, node, auth).await;
        if got == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "node {} still answers {got}, not {want}, after 10 s",
            node.addr
        );
        tokio::task::yield_now().await;
    }
}

/// The PIDs of the connections listening for change notifications.
async fn listeners(server: &str, db: &TestDatabase) -> Vec<i32> {
    let mut conn = sqlx::PgConnection::connect(server).await.expect("connect");
    let name = db.url.rsplit('/').next().unwrap().split('?').next().unwrap().to_owned();
    let pids = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND query ILIKE 'LISTEN%' AND state = 'idle'",
    )
    .bind(name)
    .fetch_all(&mut conn)
    .await
    .expect("pg_stat_activity");
    let _ = conn.close().await;
    pids
}

async fn terminate(server: &str, pids: &[i32]) {
    let mut conn = sqlx::PgConnection::connect(server).await.expect("connect");
    for pid in pids {
        let done: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .fetch_one(&mut conn)
            .await
            .expect("pg_terminate_backend");
        assert!(done, "terminated listener {pid}");
    }
    let _ = conn.close().await;
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Verification load: `n` loops per node asking `/api/v2/users/me` with a
/// token that never changes, until `stop`. Counts answers that were not 200.
fn load(
    nodes: &[&ServeProcess],
    auth: &str,
    loops: usize,
    stop: &Arc<AtomicBool>,
    done: &Arc<AtomicU64>,
    wrong: &Arc<AtomicU64>,
) -> Vec<JoinHandle<()>> {
    let mut handles = Vec::new();
    for node in nodes {
        for _ in 0..loops {
            let url = node.url("/api/v2/users/me");
            let (auth, stop, done, wrong) = (auth.to_owned(), stop.clone(), done.clone(), wrong.clone());
            handles.push(tokio::spawn(async move {
                let client = client();
                while !stop.load(Ordering::Relaxed) {
                    let got = get_status(&client, &url, &auth).await;
                    done.fetch_add(1, Ordering::Relaxed);
                    if got != 200 {
                        wrong.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
    }
    handles
}

/// A TCP proxy to PostgreSQL that a test can cut and restore, standing in
/// for a network failure between one node and its database.
struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let proxy = Proxy {
            addr,
            upstream,
            tasks: Arc::new(Mutex::new(Vec::new())),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: TcpListener) {
        let (upstream, tasks) = (self.upstream, self.tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().unwrap().push(conn);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Refuses new connections and breaks every open one.
    fn cut(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    /// Accepts connections again, on the same port.
    async fn restore(&self) {
        let waited = Instant::now();
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) => {
                    assert!(waited.elapsed() < Duration::from_secs(10), "rebind proxy: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        self.serve(listener);
    }
}

/// `host:port` of a PostgreSQL URL.
fn pg_socket(url: &str) -> SocketAddr {
    let rest = url.split_once("://").unwrap().1;
    let authority = rest.split(['/', '?']).next().unwrap();
    let host_port = authority.rsplit('@').next().unwrap();
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    let host_port = host_port.replace("localhost", "127.0.0.1");
    host_port.parse().expect("PostgreSQL host:port")
}

/// The tests that run two nodes (a separate module so that a test run can
/// select or skip them as a group: `nodes::cluster::`).
mod cluster {
    use super::*;

    /// The local test server's certificate (`ssl_cert_file` of Debian's
    /// PostgreSQL): self-signed, for localhost.
    const SERVER_CERT: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";

    /// `url` with its host replaced by `host` (the port and all else kept).
    fn with_host(url: &str, host: &str) -> String {
        let (scheme, rest) = url.split_once("://").unwrap();
        let (userinfo, rest) = match rest.split_once('@') {
            Some((u, r)) => (format!("{u}@"), r),
            None => (String::new(), rest),
        };
        let tail = &rest[rest.find([':', '/', '?']).unwrap_or(rest.len())..];
        format!("{scheme}://{userinfo}{host}{tail}")
    }

    /// `url` with `sslmode` set (added to, or replacing, its query).
    fn with_sslmode(url: &str, mode: &str) -> String {
        let base = url.split('?').next().unwrap();
        format!("{base}?sslmode={mode}")
    }

    /// Whether every connection to `db` but this one is encrypted, and how
    /// many there are.
    async fn encrypted_connections(server: &str, db: &TestDatabase) -> (i64, bool) {
        let mut conn = sqlx::PgConnection::connect(server).await.expect("connect");
        let name = db.url.rsplit('/').next().unwrap().split('?').next().unwrap().to_owned();
        let row: (i64, Option<bool>) = sqlx::query_as(
            "SELECT count(*), bool_and(s.ssl) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.datname = $1 AND a.pid <> pg_backend_pid()",
        )
        .bind(name)
        .fetch_one(&mut conn)
        .await
        .expect("pg_stat_ssl");
        let _ = conn.close().await;
        (row.0, row.1.unwrap_or(false))
    }

    /// PostgreSQL over TLS (README.md, "TLS to PostgreSQL"): `sslmode=require`
    /// works, and so does the default `prefer`, both encrypted; so does
    /// `verify-ca` to 127.0.0.1 with the server's certificate as
    /// `sslrootcert` (the chain is checked, the host name is not), while a
    /// chain it cannot trust is refused; `verify-full` refuses the same
    /// certificate for 127.0.0.1 (it names localhost), once, saying why, and
    /// accepts it for localhost.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_talks_to_postgresql_over_tls() {
        let db = postgres_or_return!("a_node_talks_to_postgresql_over_tls");
        let server = postgres_server_url().unwrap();
        for mode in ["require", "prefer"] {
            let url = with_sslmode(&db.url, mode);
            let out = cli(&url, &["migrate"]).await;
            assert_eq!(out.code, 0, "{mode}: {out:?}");
            let node = node(&url, &[]).await;
            let (count, encrypted) = encrypted_connections(&server, &db).await;
            assert!(count > 0, "{mode}: the node holds connections");
            assert!(encrypted, "{mode}: every connection of the node is encrypted");
            drop(node);
        }
        // The test server's certificate (Debian's snakeoil, self-signed, for
        // localhost) is its own root.
        let root = format!("sslrootcert={SERVER_CERT}");
        let by_address = with_host(&db.url, "127.0.0.1");
        let url = with_sslmode(&by_address, &format!("verify-ca&{root}"));
        let out = cli(&url, &["migrate"]).await;
        assert_eq!(out.code, 0, "verify-ca to 127.0.0.1: {out:?}");
        let node = node(&url, &[]).await;
        let (count, encrypted) = encrypted_connections(&server, &db).await;
        assert!(count > 0, "verify-ca: the node holds connections");
        assert!(encrypted, "verify-ca: every connection of the node is encrypted");
        drop(node);
        // verify-ca still checks the chain: with only the system's CA bundle
        // to trust (no sslrootcert, and no certificate directory, where
        // Debian links the snakeoil certificate), the server is refused.
        let no_dir = tempfile::tempdir().unwrap();
        let out = latchkey_command(&with_sslmode(&by_address, "verify-ca"))
            .arg("migrate")
            .env("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")
            .env("SSL_CERT_DIR", no_dir.path())
            .output()
            .await
            .expect("run latchkey");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "verify-ca, untrusted chain: {stderr}");
        assert!(stderr.contains("UnknownIssuer"), "verify-ca, untrusted chain: {stderr}");
        // verify-full to localhost, the name the certificate is for.
        let localhost = with_sslmode(&with_host(&db.url, "localhost"), &format!("verify-full&{root}"));
        let out = cli(&localhost, &["migrate"]).await;
        assert_eq!(out.code, 0, "verify-full to localhost: {out:?}");
        // verify-full to 127.0.0.1, which the certificate does not name: refused.
        let out = cli(&with_sslmode(&by_address, &format!("verify-full&{root}")), &["migrate"]).await;
        assert_ne!(out.code, 0, "{out:?}");
        let text = out.stderr.to_lowercase();
        assert!(text.contains("certificate"), "says why: {}", out.stderr);
        assert!(!text.contains("built without tls"), "{}", out.stderr);
        assert!(
            text.contains("hint: ") && text.contains("sslrootcert"),
            "with the fix: {}",
            out.stderr
        );
        assert_eq!(
            text.matches("invalid peer certificate").count(),
            1,
            "said once: {}",
            out.stderr
        );
    }

    /// Two nodes sweeping every second over one database: the stale token
    /// is deactivated once, with one audit event, whichever node swept.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_nodes_sweeping_every_second_deactivate_a_stale_token_once() {
        use latchkey_core::audit::{Action, ActorType};
        use latchkey_core::policy::TokenPolicyPatch;
        use latchkey_core::time::Timestamp;
        use latchkey_core::token::{NewToken, PlainToken, Restrictions, TokenPrefix};
        let db = postgres_or_return!("two_nodes_sweeping_every_second_deactivate_a_stale_token_once");
        let setup = TestApp::spawn_on(db, |_| {}).await;
        let account = setup.account().await;
        let access = setup.operator(&account.subdomain).await;
        let now = setup.app.now().unix();
        let plain = PlainToken::generate(&TokenPrefix::default());
        let stale = NewToken {
            hash: plain.hash(),
            visible_token: plain.visible(),
            description: Some("stale".into()),
            active: true,
            user_id: None,
            restrictions: Restrictions::default(),
            created_at: Some(Timestamp::from_unix(now - 100 * 86_400)),
            last_used: Some(Timestamp::from_unix(now - 90 * 86_400)),
            legacy: false,
        };
        let id = setup.app.import_tokens(&access, vec![stale]).await.unwrap()[0].id;
        let policy = latchkey_core::account::AccountPatch {
            token_policy: Some(TokenPolicyPatch {
                deactivate_unused_after_days: Some(Some(30)),
                ..TokenPolicyPatch::default()
            }),
            ..Default::default()
        };
        setup.app.update_account(&access, &policy).await.unwrap();
        let a = node(&setup.db.url, &["--sweep-interval-secs", "1"]).await;
        let b = node(&setup.db.url, &["--sweep-interval-secs", "1"]).await;
        let started = Instant::now();
        while setup.app.token(&access, id).await.unwrap().unwrap().active {
            assert!(started.elapsed() < Duration::from_secs(10), "no node swept");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Both nodes sweep a few more times.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let events: Vec<_> = setup
            .audit(account.id)
            .await
            .into_iter()
            .filter(|e| e.source_id == id.get() && e.action == Action::Deactivate)
            .collect();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].actor_type, ActorType::System);
        assert_eq!(events[0].change_description, "unused for 30 days");
        assert!(setup.audit_chain_intact(account.id).await);
        drop((a, b));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_token_deactivated_on_one_node_fails_on_the_other_within_two_seconds_every_time() {
        let db =
            postgres_or_return!("a_token_deactivated_on_one_node_fails_on_the_other_within_two_seconds_every_time");
        let server = postgres_server_url().unwrap();
        let setup = TestApp::spawn_on(db, |_| {}).await;
        let account = setup.account().await;
        let admin = setup.admin_auth(&account).await;
        let loader = setup.admin_auth(&account).await;
        let target = setup.token(&account).await;
        let target_auth = basic(&account.admin.email, &target.plain);

        let a = node(&setup.db.url, &[]).await;
        let b = node(&setup.db.url, &[]).await;
        let c = client();
        assert_eq!(status(&c, &b, &target_auth).await, 200);

        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let wrong = Arc::new(AtomicU64::new(0));
        let load_tasks = load(&[&a, &b], &loader, 2, &stop, &done, &wrong);

        const ROUNDS: usize = 200;
        // From A's answer (the moment the request returns)
        // and, more conservatively, from when A was asked.
        let mut off = Vec::with_capacity(ROUNDS);
        let mut off_since_asked = Vec::with_capacity(ROUNDS);
        let mut on = Vec::with_capacity(ROUNDS);
        let mut after_drop = Vec::new();
        let started = Instant::now();
        for round in 0..ROUNDS {
            let dropped = round == ROUNDS / 2;
            if dropped {
                // Kill both nodes' listening connections, then change at once:
                // the notification for this change may reach nobody.
                // Three listeners: the setup server and the two nodes.
                let pids = listeners(&server, &setup.db).await;
                assert_eq!(pids.len(), 3, "each process listens on one connection: {pids:?}");
                terminate(&server, &pids).await;
            }
            let asked = Instant::now();
            set_active(&c, &a, &admin, target.id, false).await;
            let t = until_status(&c, &b, &target_auth, 401).await;
            off.push(t);
            off_since_asked.push(asked.elapsed());
            set_active(&c, &a, &admin, target.id, true).await;
            let t2 = until_status(&c, &b, &target_auth, 200).await;
            on.push(t2);
            if dropped {
                after_drop.push(t);
                // Both nodes listen again, on new connections.
                let waited = Instant::now();
                while listeners(&server, &setup.db).await.len() < 3 {
                    assert!(waited.elapsed() < Duration::from_secs(10), "nodes did not listen again");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        let elapsed = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        for h in load_tasks {
            h.await.unwrap();
        }
        assert_eq!(
            wrong.load(Ordering::Relaxed),
            0,
            "the load token was refused at some point"
        );

        // After the dropped connections, every later change still arrived on
        // B (each round above waited for it); and a change made through the
        // database directly (the CLI) reaches both nodes too.
        let out = cli(
            &setup.db.url,
            &[
                "account",
                "update",
                "--subdomain",
                &account.subdomain,
                "--api-token-access",
                "off",
            ],
        )
        .await;
        assert_eq!(out.code, 0, "{out:?}");
        until_status(&c, &a, &target_auth, 401).await;
        until_status(&c, &b, &target_auth, 401).await;

        off.sort();
        off_since_asked.sort();
        on.sort();
        let report = |name: &str, v: &[Duration]| {
            format!(
                "{name}: n={} p50={} p99={} max={}",
                v.len(),
                ms(percentile(v, 50.0)),
                ms(percentile(v, 99.0)),
                ms(*v.last().unwrap())
            )
        };
        let _ = writeln!(
            std::io::stderr(),
            "cross-node propagation under load ({} verifications on 2 nodes in {:.1} s): {}; {}; {}; right after pg_terminate_backend: {}",
            done.load(Ordering::Relaxed),
            elapsed.as_secs_f64(),
            report("deactivate (from A's answer)", &off),
            report("deactivate (from asking A)", &off_since_asked),
            report("reactivate", &on),
            ms(after_drop[0])
        );
        let worst = (*off_since_asked.last().unwrap()).max(*on.last().unwrap());
        assert!(
            worst < Duration::from_secs(2),
            "a change took {} to reach the other node",
            ms(worst)
        );
        a.kill().await;
        b.kill().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_cut_off_from_its_database_verifies_until_max_staleness_then_answers_503_then_recovers() {
        let db = postgres_or_return!(
            "a_node_cut_off_from_its_database_verifies_until_max_staleness_then_answers_503_then_recovers"
        );
        let setup = TestApp::spawn_on(db, |_| {}).await;
        let account = setup.account().await;
        let keep = setup.admin_auth(&account).await;
        let revoked = setup.token(&account).await;
        let revoked_auth = basic(&account.admin.email, &revoked.plain);

        let proxy = Proxy::start(pg_socket(&setup.db.url)).await;
        let name = setup.db.url.rsplit('/').next().unwrap().to_owned();
        let via_proxy = format!("postgres://postgres@{}/{name}", proxy.addr);
        let max_staleness = Duration::from_secs(2);
        let n = node(&via_proxy, &["--max-staleness", "2"]).await;
        let c = client();
        assert_eq!(status(&c, &n, &keep).await, 200);
        assert_eq!(get_status(&c, &n.url("/readyz"), "").await, 200);

        proxy.cut();
        let cut_at = Instant::now();
        // A revocation the cut-off node cannot learn of.
        setup
            .app
            .update_token(
                &setup.operator(&account.subdomain).await,
                revoked.id,
                &latchkey_core::token::TokenPatch {
                    active: Some(false),
                    ..Default::default()
                },
            )
            .await
            .unwrap();

        // Verification carries on from memory, then stops with 503.
        let mut last_ok = Duration::ZERO;
        let first_503 = loop {
            let r = c
                .get(n.url("/api/v2/users/me"))
                .header("authorization", &keep)
                .send()
                .await
                .unwrap();
            let since = cut_at.elapsed();
            match r.status().as_u16() {
                200 => {
                    last_ok = since;
                    // Ready for the balancer while it verifies from memory:
                    // the database's absence alone takes no node out.
                    if since < max_staleness / 2 {
                        assert_eq!(get_status(&c, &n.url("/readyz"), "").await, 200, "at {}", ms(since));
                    }
                }
                503 => {
                    assert_eq!(
                        r.headers().get("content-type").unwrap(),
                        "application/json; charset=utf-8"
                    );
                    let body: serde_json::Value = r.json().await.unwrap();
                    assert_eq!(body["error"], "ServiceUnavailable", "{body}");
                    assert!(body["description"].is_string(), "{body}");
                    break since;
                }
                other => panic!("unexpected {other} {:?} after {}", r.text().await, ms(since)),
            }
            assert!(
                since < max_staleness + Duration::from_secs(3),
                "still 200 after {}",
                ms(since)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let _ = writeln!(
            std::io::stderr(),
            "cut off: last 200 at {}, first 503 at {} (--max-staleness {} s)",
            ms(last_ok),
            ms(first_503),
            max_staleness.as_secs()
        );
        // It served from memory for a while (the last successful read happened
        // at most a heartbeat, max_staleness / 4, before the cut) ...
        assert!(
            last_ok >= max_staleness / 2,
            "stopped verifying after only {}",
            ms(last_ok)
        );
        // ... and never for longer than max_staleness past the cut (plus the
        // time one request takes to answer).
        assert!(
            last_ok <= max_staleness + Duration::from_millis(250),
            "verified from stale memory for {}",
            ms(last_ok)
        );
        // Every authenticated request is refused now, also the revoked token's,
        // and the node says it is not ready.
        assert_eq!(status(&c, &n, &revoked_auth).await, 503);
        assert_eq!(get_status(&c, &n.url("/readyz"), "").await, 503);

        // The database comes back: the node recovers by itself and has learnt
        // of the revocation made meanwhile.
        proxy.restore().await;
        let back = Instant::now();
        until_status(&c, &n, &keep, 200).await;
        let recovered = back.elapsed();
        assert_eq!(get_status(&c, &n.url("/readyz"), "").await, 200);
        assert_eq!(status(&c, &n, &revoked_auth).await, 401);
        assert!(recovered < Duration::from_secs(15), "recovery took {}", ms(recovered));
        let _ = writeln!(
            std::io::stderr(),
            "recovered {} after the database returned",
            ms(recovered)
        );
        n.kill().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn three_hundred_concurrent_creates_on_two_nodes_stop_exactly_at_the_limit() {
        let db = postgres_or_return!("three_hundred_concurrent_creates_on_two_nodes_stop_exactly_at_the_limit");
        let setup = TestApp::spawn_on(db, |_| {}).await;
        let account = setup.account().await;
        let admin = setup.admin_auth(&account).await;
        let limit = setup
            .store()
            .await
            .account(account.id)
            .await
            .unwrap()
            .unwrap()
            .token_limit;
        let a = node(&setup.db.url, &[]).await;
        let b = node(&setup.db.url, &[]).await;
        let c = client();

        let mut requests = Vec::new();
        for i in 0..300 {
            let url = if i % 2 == 0 {
                a.url("/api/v2/api_tokens")
            } else {
                b.url("/api/v2/api_tokens")
            };
            let (c, admin) = (c.clone(), admin.clone());
            requests.push(tokio::spawn(async move {
                let r = c
                    .post(url)
                    .header("authorization", admin)
                    .json(&json!({"api_token": {"description": format!("race {i}")}}))
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                (status, r.text().await.unwrap())
            }));
        }
        let mut created: i64 = 0;
        let mut refused: i64 = 0;
        for r in requests {
            let (status, body) = r.await.unwrap();
            match status {
                201 => created += 1,
                422 => {
                    assert!(body.contains("TokenLimitReached"), "{body}");
                    refused += 1;
                }
                other => panic!("unexpected {other}: {body}"),
            }
        }
        // One token (the admin's) existed before the race.
        assert_eq!(created, limit - 1);
        assert_eq!(refused, 300 - (limit - 1));
        let stored = setup.store().await.tokens(account.id).await.unwrap();
        assert_eq!(stored.len() as i64, limit);
        assert!(setup.audit_chain_intact(account.id).await, "the audit chain forked");
        a.kill().await;
        b.kill().await;
    }
}
