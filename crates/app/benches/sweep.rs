//! The token policy's sweeper at scale (README.md, "Token policy"): one
//! sweep over ACCOUNTS x PER_ACCOUNT stale tokens (default 1,000 x 100 =
//! 100,000) on a real SQLite file, timed, and the in-process verification
//! throughput of a valid token on every core but one, idle and while the
//! sweep runs (the sweep's 100,000 deactivations reach this process's
//! verifier through the change log meanwhile). Figures come from one run.
//!
//! `cargo bench -p latchkey-app --bench sweep` (knobs: `LATCHKEY_SWEEP_ACCOUNTS`,
//! `LATCHKEY_SWEEP_PER_ACCOUNT`).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use latchkey_app::App;
use latchkey_core::account::{AccountPatch, NewAccount, Plan, Subdomain};
use latchkey_core::policy::TokenPolicyPatch;
use latchkey_core::time::Timestamp;
use latchkey_core::token::{NewToken, PlainToken, Restrictions, TokenHash, TokenPrefix};
use latchkey_core::user::{Email, NewUser, Role};

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Verifications per second of one valid token on `threads` threads for `for_`.
fn throughput(app: &Arc<App>, email: &str, hash: TokenHash, threads: usize, for_: Duration) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let (app, stop, done) = (app.clone(), stop.clone(), done.clone());
            s.spawn(move || {
                let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..1000 {
                        let ok = app.verify_with(email, &hash, app.now(), ip, None, |_| ()).is_ok();
                        assert!(ok, "the valid token was refused");
                    }
                    done.fetch_add(1000, Ordering::Relaxed);
                }
            });
        }
        std::thread::sleep(for_);
        stop.store(true, Ordering::Relaxed);
    });
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let accounts = knob("LATCHKEY_SWEEP_ACCOUNTS", 1000);
    let per_account = knob("LATCHKEY_SWEEP_PER_ACCOUNT", 100);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("sweep.db").display());
    let app = Arc::new(runtime.block_on(App::open(&url, TokenPrefix::default())).expect("open"));
    let now = app.now().unix();
    let seeding = Instant::now();
    let valid = PlainToken::generate(&TokenPrefix::default());
    runtime.block_on(async {
        for a in 0..accounts {
            let new = NewAccount {
                subdomain: Subdomain::parse(&format!("acct{a}")).expect("subdomain"),
                name: format!("Account {a}"),
                plan: Plan::Enterprise,
                api_token_access: true,
            };
            let admin = NewUser {
                name: "Admin".into(),
                email: Email::parse(&format!("admin@acct{a}.test")).expect("email"),
                role: Role::Admin,
                verified: true,
                password_hash: None,
            };
            app.create_account(new, admin).await.expect("account");
            let (access, _) = app.operator(&format!("acct{a}")).await.expect("operator");
            let mut tokens: Vec<NewToken> = (0..per_account)
                .map(|_| {
                    let p = PlainToken::generate(&TokenPrefix::default());
                    NewToken {
                        hash: p.hash(),
                        visible_token: p.visible(),
                        description: None,
                        active: true,
                        user_id: None,
                        restrictions: Restrictions::default(),
                        created_at: Some(Timestamp::from_unix(now - 100 * 86_400)),
                        last_used: Some(Timestamp::from_unix(now - 90 * 86_400)),
                        legacy: false,
                    }
                })
                .collect();
            if a == 0 {
                // The token the load verifies with: fresh, so never swept.
                tokens.push(NewToken {
                    hash: valid.hash(),
                    visible_token: valid.visible(),
                    description: Some("load".into()),
                    active: true,
                    user_id: None,
                    restrictions: Restrictions::default(),
                    created_at: None,
                    last_used: None,
                    legacy: false,
                });
            }
            app.import_tokens(&access, tokens).await.expect("import");
            let patch = AccountPatch {
                token_policy: Some(TokenPolicyPatch {
                    deactivate_unused_after_days: Some(Some(30)),
                    ..TokenPolicyPatch::default()
                }),
                ..AccountPatch::default()
            };
            app.update_account(&access, &patch).await.expect("policy");
        }
    });
    eprintln!(
        "seeded {accounts} accounts x {per_account} stale tokens in {:.1?}",
        seeding.elapsed()
    );
    let follow = runtime.spawn(app.follow(
        Duration::from_millis(25),
        Duration::from_secs(5),
        std::future::pending(),
    ));
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .saturating_sub(1)
        .max(1);
    let (email, hash) = ("admin@acct0.test", valid.hash());
    let window = Duration::from_secs(3);
    let idle = throughput(&app, email, hash, threads, window);
    let sweeping = {
        let app = app.clone();
        runtime.spawn(async move {
            let started = Instant::now();
            let done = app.sweep(None, None, false, true).await.expect("sweep").expect("lease");
            (done.len(), started.elapsed())
        })
    };
    let mut during = Vec::new();
    while !sweeping.is_finished() {
        during.push(throughput(&app, email, hash, threads, Duration::from_millis(500)));
    }
    let (changed, took) = runtime.block_on(sweeping).expect("sweep task");
    let after = throughput(&app, email, hash, threads, window);
    follow.abort();
    let mean = if during.is_empty() {
        f64::NAN
    } else {
        during.iter().sum::<f64>() / during.len() as f64
    };
    println!("\nsweep: {changed} tokens deactivated in {accounts} accounts in {took:.2?}");
    println!("verification on {threads} thread(s), same run:");
    println!("  idle before:      {idle:>12.0} /s");
    println!(
        "  during the sweep: {mean:>12.0} /s  ({:.1}% of idle; {} half-second samples)",
        100.0 * mean / idle,
        during.len()
    );
    println!("  idle after:       {after:>12.0} /s");
}
