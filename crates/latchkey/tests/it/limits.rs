//! Limits that must hold against a flood, tried the way an attacker would:
//! concurrent sign-ins for one email (the limit of failures per minute is
//! a reservation taken before the password is hashed), a flood of sign-ins
//! for unknown emails (the Argon2 checks are bounded, so the server's
//! memory stays flat), and idle, slow and surplus connections (the
//! header-read timeout, the idle timeout and the connection cap of
//! README.md, "Configuration").

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use latchkey_app::password;
use latchkey_app::sign_in::FAILED_SIGN_INS_PER_LOGIN;
use latchkey_core::time::{Clock, SystemClock};
use latchkey_core::user::{Email, NewUser, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{client, test_database_url, unique, ServeProcess, TestApp, TestClock};

const PASSWORD: &str = "correct horse battery staple";

/// The sign-in form's CSRF cookie (`name=value`) and hidden field, read
/// off `GET /login` as a browser would.
async fn login_form(http: &reqwest::Client, base: &str) -> (String, String) {
    let page = http.get(format!("{base}/login")).send().await.expect("GET /login");
    assert_eq!(page.status(), 200);
    let cookie = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("latchkey_login="))
        .and_then(|c| c.split(';').next())
        .expect("the login cookie")
        .to_owned();
    let text = page.text().await.expect("page");
    let marker = r#"name="csrf" value=""#;
    let start = text.find(marker).expect("a csrf field") + marker.len();
    let csrf = text[start..].split('"').next().expect("csrf value").to_owned();
    (cookie, csrf)
}

/// One sign-in POST with the form's cookie and token; its status and
/// whether it set a session cookie.
async fn post_sign_in(
    http: &reqwest::Client,
    base: &str,
    form: &(String, String),
    forwarded_for: Option<&str>,
    fields: [(&str, &str); 3],
) -> (u16, bool) {
    let mut body = vec![("csrf", form.1.as_str())];
    body.extend(fields);
    let mut req = http.post(format!("{base}/login")).header("cookie", &form.0).form(&body);
    if let Some(ip) = forwarded_for {
        req = req.header("x-forwarded-for", ip);
    }
    let res = req.send().await.expect("POST /login");
    let session = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|c| c.starts_with("latchkey_session=") && !c.starts_with("latchkey_session=;"));
    (res.status().as_u16(), session)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_concurrent_sign_ins_for_one_email_check_no_more_than_the_limit() {
    // A clock that stands still, so the burst cannot straddle two minutes.
    let app = TestApp::spawn_with_clock(TestClock::at(SystemClock.now()), |_| {}).await;
    let account = app.account().await;
    let email = format!("{}@example.com", unique("burst"));
    app.app
        .create_user(
            &app.operator(&account.subdomain).await,
            NewUser {
                name: "Burst".to_owned(),
                email: Email::parse(&email).unwrap(),
                role: Role::Admin,
                verified: true,
                password_hash: Some(password::hash(PASSWORD.into()).await.unwrap()),
            },
        )
        .await
        .unwrap();
    let http = client();
    let base = app.url("");
    let form = login_form(&http, &base).await;
    let right = 20;
    let replies = join_all((0..40).map(|n| {
        let (http, base, form, subdomain, email) = (&http, &base, &form, &account.subdomain, &email);
        async move {
            let password = if n == right { PASSWORD } else { "wrong password" };
            post_sign_in(
                http,
                base,
                form,
                None,
                [("subdomain", subdomain), ("email", email), ("password", password)],
            )
            .await
        }
    }))
    .await;
    let count = |status: u16| replies.iter().filter(|(s, _)| *s == status).count();
    let (refused, signed_in, too_many) = (count(401), count(303), count(429));
    assert_eq!(refused + signed_in + too_many, 40, "only 401, 303 and 429: {replies:?}");
    // The right password holds one of the limit's places while it is
    // checked, and gives it back only when it signs in: wrong passwords
    // that arrive meanwhile find one place fewer.
    let limit = FAILED_SIGN_INS_PER_LOGIN as usize;
    assert!(
        refused == limit || (refused == limit - 1 && signed_in == 1),
        "the limit's wrong passwords were checked, no more ({refused}): {replies:?}"
    );
    assert!(signed_in <= 1, "{replies:?}");
    assert_eq!(
        replies[right].0 == 303,
        replies[right].1,
        "a session only for a sign-in"
    );
    assert!(
        replies.iter().filter(|(s, _)| *s != 303).all(|(_, session)| !session),
        "no session for a refused sign-in"
    );
    // When the right password signed in, it gave its place back: one more
    // wrong password uses the limit up.
    for _ in refused..limit {
        let (status, _) = post_sign_in(
            &http,
            &base,
            &form,
            None,
            [
                ("subdomain", &account.subdomain),
                ("email", &email),
                ("password", "wrong password"),
            ],
        )
        .await;
        assert_eq!(status, 401, "the limit's last place");
    }
    // The limit is used up: the right password now waits too.
    let (status, session) = post_sign_in(
        &http,
        &base,
        &form,
        None,
        [
            ("subdomain", &account.subdomain),
            ("email", &email),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!((status, session), (429, false));
}

/// The resident memory of process `pid`, in bytes.
fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_sign_ins_for_unknown_emails_keeps_the_servers_memory_flat() {
    let db = test_database_url().await;
    // Behind a trusted proxy each sign-in comes from its own address, so the
    // per-address limit lets every one through to the Argon2 check.
    let server = ServeProcess::start(&db.url, &["--trusted-proxy", "127.0.0.1/32"]).await;
    let pid = server.child.id().expect("running");
    let http = client();
    let base = server.url("");
    let form = login_form(&http, &base).await;
    let unknown = |n: usize| format!("nobody{n}@example.com");
    // Warm up: the dummy hash is made and one check has run.
    for n in 0..2 {
        let ip = format!("10.1.0.{n}");
        let (status, _) = post_sign_in(
            &http,
            &base,
            &form,
            Some(&ip),
            [("subdomain", "default"), ("email", &unknown(n)), ("password", "x")],
        )
        .await;
        assert_eq!(status, 401);
    }
    let before = resident_bytes(pid);
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = tokio::spawn({
        let sampling = sampling.clone();
        async move {
            let mut peak = 0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(resident_bytes(pid));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            peak.max(resident_bytes(pid))
        }
    });
    let flood = 200;
    let replies = join_all((0..flood).map(|n| {
        let (http, base, form) = (&http, &base, &form);
        async move {
            let ip = format!("10.2.{}.{}", n / 250, n % 250);
            let email = unknown(1_000 + n);
            post_sign_in(
                http,
                base,
                form,
                Some(&ip),
                [("subdomain", "default"), ("email", &email), ("password", "x")],
            )
            .await
            .0
        }
    }))
    .await;
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.await.expect("sampler");
    let busy = replies.iter().filter(|s| **s == 429).count();
    let checked = replies.iter().filter(|s| **s == 401).count();
    assert_eq!(busy + checked, flood, "only 401 and 429: {replies:?}");
    assert!(busy > 0, "past the Argon2 workers and their queue, 429 at once");
    assert!(checked > 0, "the first ones are checked");
    let grew = peak.saturating_sub(before);
    assert!(
        grew < 100 * 1024 * 1024,
        "resident memory grew by {} MiB (from {} MiB to a peak of {} MiB)",
        grew >> 20,
        before >> 20,
        peak >> 20
    );
    // The server still answers, and signs in no one it should not.
    let (status, _) = post_sign_in(
        &http,
        &base,
        &form,
        Some("10.3.0.1"),
        [("subdomain", "default"), ("email", &unknown(9_999)), ("password", "x")],
    )
    .await;
    assert_eq!(status, 401);
    eprintln!(
        "sign-in flood: {checked} checked, {busy} answered 429; RSS {} MiB before, peak {} MiB",
        before >> 20,
        peak >> 20
    );
    server.terminate().await;
}

/// Waits until the server closes `stream` (a read of 0 bytes, or an
/// error); how long after `since` that was, or `None` if it stayed open
/// past `limit` after it.
async fn closed_within(mut stream: TcpStream, since: Instant, limit: Duration) -> Option<Duration> {
    let mut buf = [0u8; 1024];
    tokio::time::timeout_at((since + limit).into(), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return since.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

/// A connection that has sent part of a request's headers and stops
/// there; when it opened (the handshake done: a connect can wait for the
/// kernel's accept queue).
async fn slowloris(addr: SocketAddr) -> (TcpStream, Instant) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let opened = Instant::now();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: a")
        .await
        .expect("write");
    (s, opened)
}

/// A keep-alive connection that has had one answer and sends nothing
/// more; when the answer came.
async fn idle_keep_alive(addr: SocketAddr) -> (TcpStream, Instant) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    // The body of /healthz is short: the answer is in once its head is.
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).await.expect("read the answer");
        assert!(n > 0, "closed before answering");
        answer.extend_from_slice(&buf[..n]);
    }
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    (s, Instant::now())
}

/// The fewest and the most seconds the sockets took to be closed, and how
/// many stayed open.
fn spread(closed: &[Option<Duration>]) -> (f64, f64, usize) {
    let times: Vec<f64> = closed.iter().flatten().map(Duration::as_secs_f64).collect();
    let min = times.iter().copied().fold(f64::INFINITY, f64::min);
    let max = times.iter().copied().fold(0.0, f64::max);
    (min, max, closed.len() - times.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_and_idle_connections_are_closed_on_time_while_a_normal_client_is_served() {
    let db = test_database_url().await;
    let (header_timeout, idle_timeout) = (1.0, 2.0);
    let server = ServeProcess::start(&db.url, &["--header-read-timeout", "1", "--idle-timeout", "2"]).await;
    let addr = server.addr;
    let n = 300;
    let (slow, idle) = tokio::join!(
        join_all((0..n).map(|_| slowloris(addr))),
        join_all((0..n).map(|_| idle_keep_alive(addr)))
    );
    let watch = Duration::from_secs(15);
    let slow_closed = tokio::spawn(join_all(slow.into_iter().map(|(s, t)| closed_within(s, t, watch))));
    let idle_closed = tokio::spawn(join_all(idle.into_iter().map(|(s, t)| closed_within(s, t, watch))));
    // Meanwhile a normal client is served, promptly.
    let http = client();
    for _ in 0..5 {
        let start = Instant::now();
        let res = http.get(server.url("/healthz")).send().await.expect("GET /healthz");
        assert_eq!(res.status(), 200);
        assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (slow_min, slow_max, slow_open) = spread(&slow_closed.await.expect("join"));
    let (idle_min, idle_max, idle_open) = spread(&idle_closed.await.expect("join"));
    eprintln!(
        "{n} slowloris closed after {slow_min:.2}-{slow_max:.2} s, \
         {n} idle keep-alives after {idle_min:.2}-{idle_max:.2} s"
    );
    let margin = 3.0;
    assert_eq!((slow_open, idle_open), (0, 0), "sockets left open after {watch:?}");
    assert!(
        slow_min >= header_timeout - 0.2 && slow_max <= header_timeout + margin,
        "slowloris sockets closed after {slow_min:.2}-{slow_max:.2} s"
    );
    // A keep-alive has the idle timeout, longer than the header-read one.
    assert!(
        idle_min >= idle_timeout - 0.2 && idle_max <= idle_timeout + margin,
        "idle keep-alives closed after {idle_min:.2}-{idle_max:.2} s"
    );
    assert_eq!(server.terminate().await, 0, "graceful shutdown after the flood");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_over_the_cap_are_closed_at_once_and_the_cap_frees_up() {
    let db = test_database_url().await;
    let server = ServeProcess::start(&db.url, &["--max-connections", "20", "--header-read-timeout", "2"]).await;
    let addr = server.addr;
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(TcpStream::connect(addr).await.expect("connect"));
    }
    // The server has taken them all (it accepts in order; one more request
    // served would prove it, but there is no room for one).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut over = TcpStream::connect(addr).await.expect("the kernel still accepts");
    let _ = over.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(1), over.read_to_end(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "a connection over the cap is closed at once, unanswered: {read:?} {:?}",
        String::from_utf8_lossy(&buf)
    );
    // The held ones send nothing: the header-read timeout frees their places.
    let since = Instant::now();
    let closed = join_all(
        held.into_iter()
            .map(|s| closed_within(s, since, Duration::from_secs(10))),
    )
    .await;
    assert!(closed.iter().all(Option::is_some), "{closed:?}");
    let res = client().get(server.url("/healthz")).send().await.expect("GET /healthz");
    assert_eq!(res.status(), 200);
    assert_eq!(server.terminate().await, 0);
}
