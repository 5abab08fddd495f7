//! Verifications racing with writes: while a user, their account or the
//! whole in-memory verifier is being replaced, a valid token keeps
//! verifying (ARCHITECTURE.md: every update of the verifier is one
//! replacement, visible at once). Each test runs a server for a few seconds
//! with tasks sending `/verify` over HTTP and a thread asking the server's
//! own verifier as fast as it can (the HTTP path alone is too slow in a
//! debug build to land in a window of microseconds reliably), and counts
//! refusals on both: there must be none.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use latchkey_core::account::AccountPatch;
use latchkey_core::token::TokenHash;
use latchkey_core::user::Role;
use serde_json::json;

use crate::support::*;

const HTTP_TASKS: usize = 3;
const RUN_FOR: Duration = Duration::from_secs(3);

#[derive(Debug, Default)]
struct Counts {
    http_ok: AtomicU64,
    http_refused: AtomicU64,
    direct_ok: AtomicU64,
    direct_refused: AtomicU64,
}

/// Runs `edit` over and over for [`RUN_FOR`] while `/verify` is sent with
/// `email`'s credentials for `token`; returns the counts and the edits made.
async fn hammer<F, Fut>(t: &TestApp, email: &str, token: &str, mut edit: F) -> (Arc<Counts>, u64)
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let url = t.url("/verify");
    let auth = basic(email, token);
    let mut tasks: Vec<_> = (0..HTTP_TASKS)
        .map(|_| {
            let (client, url, auth) = (t.client.clone(), url.clone(), auth.clone());
            let (stop, counts) = (stop.clone(), counts.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let r = client.get(&url).header("authorization", &auth).send().await;
                    match r.map(|r| r.status().as_u16()) {
                        Ok(200) => counts.http_ok.fetch_add(1, Ordering::Relaxed),
                        _ => counts.http_refused.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    let (app, stop_direct, direct) = (t.app.clone(), stop.clone(), counts.clone());
    let (email, hash) = (email.to_owned(), TokenHash::of(token));
    tasks.push(tokio::task::spawn_blocking(move || {
        while !stop_direct.load(Ordering::Relaxed) {
            match app.verify_with(
                &email,
                &hash,
                app.now(),
                latchkey_core::verifier::ANY_ADDRESS,
                None,
                |_| (),
            ) {
                Ok(()) => direct.direct_ok.fetch_add(1, Ordering::Relaxed),
                Err(_) => direct.direct_refused.fetch_add(1, Ordering::Relaxed),
            };
        }
    }));
    let started = Instant::now();
    let mut edits = 0;
    while started.elapsed() < RUN_FOR {
        edit(edits).await;
        edits += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    (counts, edits)
}

fn assert_never_refused(what: &str, counts: &Counts, edits: u64) {
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let (http_ok, http_refused) = (get(&counts.http_ok), get(&counts.http_refused));
    let (direct_ok, direct_refused) = (get(&counts.direct_ok), get(&counts.direct_refused));
    println!(
        "{edits} {what}: /verify {http_refused} of {} refused, verifier {direct_refused} of {} refused",
        http_ok + http_refused,
        direct_ok + direct_refused
    );
    assert!(edits >= 10 && http_ok >= 100, "too little load to tell");
    assert_eq!(
        (http_refused, direct_refused),
        (0, 0),
        "refusals (over HTTP, in the verifier) during {edits} {what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn renaming_a_user_never_refuses_their_token() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let tok = t.token(&a).await;
    let auth = basic(&a.admin.email, &tok.plain);
    let path = format!("/api/v2/users/{}", a.admin.id);
    let (counts, edits) = hammer(&t, &a.admin.email, &tok.plain, |i| {
        let (t, auth, path) = (&t, auth.clone(), path.clone());
        async move {
            let r = t
                .put(&path, &auth, &json!({"user": {"name": format!("Renamed {i}")}}))
                .await;
            assert_eq!(r.status, 200, "{}", r.text());
        }
    })
    .await;
    assert_never_refused("renames", &counts, edits);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn editing_the_account_never_refuses_its_tokens() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let tok = t.token(&a).await;
    let operator = t.operator(&a.subdomain).await;
    let (counts, edits) = hammer(&t, &a.admin.email, &tok.plain, |i| {
        let (app, operator) = (t.app.clone(), operator.clone());
        async move {
            let patch = AccountPatch {
                name: Some(format!("Acme {i}")),
                ..AccountPatch::default()
            };
            app.update_account(&operator, &patch).await.expect("account edited");
        }
    })
    .await;
    assert_never_refused("account edits", &counts, edits);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_resync_never_refuses_a_valid_token() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    let tok = t.token(&a).await;
    // Some bulk, so a resync has more than one user to replace.
    for _ in 0..20 {
        t.user(&a, Role::Agent, UserState::Verified).await;
    }
    let (counts, edits) = hammer(&t, &a.admin.email, &tok.plain, |_| {
        let app = t.app.clone();
        async move { app.resync().await.expect("resync") }
    })
    .await;
    assert_never_refused("resyncs", &counts, edits);
}
