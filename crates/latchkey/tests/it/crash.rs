//! The crash loop: the real `latchkey serve` under a mixed write load
//! (token creates, description edits, deactivations, reactivations,
//! deletions; user creates and renames; account settings), SIGKILLed at
//! random instants over and over and restarted on the same database. Then
//! ARCHITECTURE.md's invariant must hold: every acknowledged change is
//! there with its audit event, no change is half there (the stored rows are
//! exactly what replaying the audit log gives), the chain verifies with
//! `latchkey audit verify`, and the token count is creates − deletes.
//! Runs on whichever database the suite uses (LATCHKEY_TEST_DATABASE).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use latchkey_core::audit::{first_broken, AuditEvent};
use latchkey_store::{Page, Store};
use serde_json::{json, Value};

use crate::support::*;

/// Kills (and restarts) per run: at least 20.
const KILLS: usize = 22;
/// Concurrent clients editing tokens; one more edits users.
const TOKEN_CLIENTS: usize = 3;

/// A small xorshift generator: the test prints its seed, so a failing run
/// can be told apart from the next (no new dependency for it).
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn seeded(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What came of a request: a 2xx (the change is acknowledged), another
/// answer (refused: nothing changed), or no answer (the server died with
/// the request in flight: it may or may not have happened).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Acked,
    Refused,
    Unknown,
}

/// The server the clients talk to now, and whether to keep going.
struct Target {
    base: RwLock<String>,
    stop: AtomicBool,
}

async fn send(
    client: &reqwest::Client,
    target: &Target,
    auth: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (Outcome, Value) {
    let url = format!("{}{path}", target.base.read().unwrap());
    let mut req = client.request(method, url).header("authorization", auth);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = match req.send().await {
        Ok(r) => r,
        // No connection: the request never reached a server.
        Err(e) if e.is_connect() => return (Outcome::Refused, Value::Null),
        Err(_) => return (Outcome::Unknown, Value::Null),
    };
    let status = r.status();
    // The status line came, but the kill may cut the body off: only a
    // whole response counts as an answer.
    let Ok(bytes) = r.bytes().await else {
        return (Outcome::Unknown, Value::Null);
    };
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    match status.as_u16() {
        200..=299 => (Outcome::Acked, v),
        // A 5xx may come from a commit whose answer failed: not a refusal.
        500..=599 => (Outcome::Unknown, v),
        _ => (Outcome::Refused, v),
    }
}

/// One client's knowledge of a token it created: every value the stored
/// field may hold now (the last acknowledged one and any attempted after
/// it without an answer).
#[derive(Debug)]
struct TokenModel {
    descriptions: BTreeSet<Option<String>>,
    active: BTreeSet<bool>,
    /// `Some(true)`: deletion acknowledged; `Some(false)`: attempted, unanswered.
    deleted: Option<bool>,
}

#[derive(Debug, Default)]
struct TokenLog {
    tokens: BTreeMap<i64, TokenModel>,
    /// Descriptions of creates that got no answer (their ids are unknown).
    unanswered_creates: BTreeSet<String>,
    acked: usize,
    unanswered: usize,
}

fn note(set: &mut BTreeSet<Option<String>>, value: Option<String>, outcome: Outcome) {
    match outcome {
        Outcome::Acked => *set = BTreeSet::from([value]),
        Outcome::Unknown => {
            set.insert(value);
        }
        Outcome::Refused => {}
    }
}

async fn token_client(n: usize, seed: u64, client: reqwest::Client, target: Arc<Target>, auth: String) -> TokenLog {
    let mut rng = Rng::seeded(seed);
    let mut log = TokenLog::default();
    let mut step = 0;
    while !target.stop.load(Ordering::Relaxed) {
        step += 1;
        let live: Vec<i64> = log
            .tokens
            .iter()
            .filter(|(_, t)| t.deleted.is_none())
            .map(|(id, _)| *id)
            .collect();
        let choice = if live.len() < 3 { 0 } else { rng.below(100) };
        let outcome = if choice < 25 && live.len() < 15 {
            let description = format!("c{n}-{step}");
            let (o, v) = send(
                &client,
                &target,
                &auth,
                reqwest::Method::POST,
                "/api/v2/api_tokens",
                Some(json!({"api_token": {"description": description}})),
            )
            .await;
            match o {
                Outcome::Acked => {
                    let id = v["api_token"]["id"]
                        .as_i64()
                        .expect("an acknowledged create names its token");
                    log.tokens.insert(
                        id,
                        TokenModel {
                            descriptions: BTreeSet::from([Some(description)]),
                            active: BTreeSet::from([true]),
                            deleted: None,
                        },
                    );
                }
                Outcome::Unknown => {
                    log.unanswered_creates.insert(description);
                }
                Outcome::Refused => {}
            }
            o
        } else {
            let id = live[rng.below(live.len() as u64) as usize];
            let path = format!("/api/v2/api_tokens/{id}");
            let model = log.tokens.get_mut(&id).expect("a live token");
            if choice < 55 {
                let description = (rng.below(8) != 0).then(|| format!("e{n}-{step}"));
                let (o, _) = send(
                    &client,
                    &target,
                    &auth,
                    reqwest::Method::PUT,
                    &path,
                    Some(json!({"api_token": {"description": description}})),
                )
                .await;
                note(&mut model.descriptions, description, o);
                o
            } else if choice < 80 && model.active != BTreeSet::from([false]) {
                let (o, _) = send(
                    &client,
                    &target,
                    &auth,
                    reqwest::Method::PUT,
                    &path,
                    Some(json!({"api_token": {"active": false}})),
                )
                .await;
                match o {
                    Outcome::Acked => model.active = BTreeSet::from([false]),
                    Outcome::Unknown => {
                        model.active.insert(false);
                    }
                    Outcome::Refused => {}
                }
                o
            } else if model.active == BTreeSet::from([false]) && rng.below(3) == 0 {
                let (o, _) = send(
                    &client,
                    &target,
                    &auth,
                    reqwest::Method::PUT,
                    &path,
                    Some(json!({"api_token": {"active": true}})),
                )
                .await;
                match o {
                    Outcome::Acked => model.active = BTreeSet::from([true]),
                    Outcome::Unknown => {
                        model.active.insert(true);
                    }
                    Outcome::Refused => {}
                }
                o
            } else if model.active == BTreeSet::from([false]) {
                let (o, _) = send(&client, &target, &auth, reqwest::Method::DELETE, &path, None).await;
                match o {
                    Outcome::Acked => model.deleted = Some(true),
                    Outcome::Unknown => model.deleted = Some(false),
                    Outcome::Refused => {}
                }
                o
            } else {
                continue;
            }
        };
        match outcome {
            Outcome::Acked => log.acked += 1,
            Outcome::Unknown => {
                log.unanswered += 1;
                // The server is gone: wait for the next one.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Refused, or no server yet: don't spin while it restarts.
            Outcome::Refused => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
    log
}

#[derive(Debug, Default)]
struct UserLog {
    /// id → every name the user may have now.
    users: BTreeMap<i64, BTreeSet<Option<String>>>,
    unanswered_creates: BTreeSet<String>,
    acked: usize,
}

async fn user_client(seed: u64, client: reqwest::Client, target: Arc<Target>, auth: String) -> UserLog {
    let mut rng = Rng::seeded(seed);
    let mut log = UserLog::default();
    let mut step = 0;
    while !target.stop.load(Ordering::Relaxed) {
        step += 1;
        let outcome = if log.users.is_empty() || rng.below(3) == 0 {
            let name = format!("u-{step}");
            let email = format!("{}@example.com", unique("crash"));
            let (o, v) = send(
                &client,
                &target,
                &auth,
                reqwest::Method::POST,
                "/api/v2/users",
                Some(json!({"user": {"name": name, "email": email, "role": "agent", "verified": true}})),
            )
            .await;
            match o {
                Outcome::Acked => {
                    let id = v["user"]["id"].as_i64().expect("an acknowledged create names its user");
                    log.users.insert(id, BTreeSet::from([Some(name)]));
                }
                Outcome::Unknown => {
                    log.unanswered_creates.insert(email);
                }
                Outcome::Refused => {}
            }
            o
        } else {
            let ids: Vec<i64> = log.users.keys().copied().collect();
            let id = ids[rng.below(ids.len() as u64) as usize];
            let name = format!("u-{step}-renamed");
            let (o, _) = send(
                &client,
                &target,
                &auth,
                reqwest::Method::PUT,
                &format!("/api/v2/users/{id}"),
                Some(json!({"user": {"name": name}})),
            )
            .await;
            note(log.users.get_mut(&id).expect("a user"), Some(name), o);
            o
        };
        match outcome {
            Outcome::Acked => log.acked += 1,
            Outcome::Unknown => tokio::time::sleep(Duration::from_millis(20)).await,
            Outcome::Refused => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
    log
}

/// The value a `… changed from "a" to "b"` clause sets (`None` for `not set`).
fn changed_to(clause: &str) -> Option<String> {
    let (_, to) = clause
        .rsplit_once(" to ")
        .unwrap_or_else(|| panic!("not a change: {clause:?}"));
    to.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .map(str::to_owned)
}

/// A token as its audit events tell it: (description, active, deleted).
#[derive(Debug, Default)]
struct Replayed {
    creates: usize,
    description: Option<String>,
    active: bool,
    destroyed: bool,
}

fn replay_tokens(chain: &[AuditEvent]) -> BTreeMap<i64, Replayed> {
    let mut out: BTreeMap<i64, Replayed> = BTreeMap::new();
    for e in chain.iter().filter(|e| e.source_type.as_str() == "api_token") {
        let t = out.entry(e.source_id).or_default();
        match e.action.as_str() {
            "create" => {
                t.creates += 1;
                t.active = true;
                // The label is `API token: {description or visible token}`.
                let label = e.source_label.strip_prefix("API token: ").unwrap_or(&e.source_label);
                t.description = (!label.contains('\u{2026}')).then(|| label.to_owned());
            }
            "update" => t.description = changed_to(&e.change_description),
            "deactivate" => t.active = false,
            "reactivate" => t.active = true,
            "destroy" => t.destroyed = true,
            other => panic!("unexpected token event {other}"),
        }
    }
    out
}

async fn all_users(store: &Store, account: latchkey_core::id::AccountId) -> Vec<latchkey_core::user::User> {
    let mut users = Vec::new();
    let mut after = None;
    loop {
        let (page, more) = store
            .users_page_of(
                account,
                Page {
                    after,
                    before: None,
                    size: 100,
                },
            )
            .await
            .expect("users");
        after = page.last().map(|u| u.id);
        users.extend(page);
        if !more {
            return users;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_changes_survive_repeated_sigkills_and_nothing_is_half_done() {
    let started = Instant::now();
    let db = test_database_url().await;
    let (subdomain, email, admin_token) = db.cli_account("enterprise").await;
    let auth = basic(&email, &admin_token);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    println!("crash loop seed {seed}");
    let mut rng = Rng::seeded(seed);

    let mut server = ServeProcess::start(&db.url, &[]).await;
    let target = Arc::new(Target {
        base: RwLock::new(server.url("")),
        stop: AtomicBool::new(false),
    });
    let client = client();
    let mut token_clients = Vec::new();
    for n in 0..TOKEN_CLIENTS {
        token_clients.push(tokio::spawn(token_client(
            n,
            rng.next(),
            client.clone(),
            target.clone(),
            auth.clone(),
        )));
    }
    let users = tokio::spawn(user_client(rng.next(), client.clone(), target.clone(), auth.clone()));

    let store = latchkey_store::open(&db.url).await.expect("open the store");
    let account_id = store
        .account_by_subdomain(&subdomain)
        .await
        .unwrap()
        .expect("account")
        .id;
    let mut switched_off_times = 0;
    let setting_events = |chain: &[(AuditEvent, [u8; 32])]| {
        chain
            .iter()
            .filter(|(e, _)| e.source_type.as_str() == "account_setting")
            .count()
    };
    let settings_before = setting_events(&store.audit_chain(account_id).await.unwrap());
    for round in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(100 + rng.below(300))).await;
        // Now and then, turn token access off just before the kill: the
        // only real settings change a token-authenticated client can make
        // (it locks the clients out until the CLI turns it back on below).
        let settings = (rng.below(4) == 0).then(|| {
            let (client, target, auth) = (client.clone(), target.clone(), auth.clone());
            tokio::spawn(async move {
                send(
                    &client,
                    &target,
                    &auth,
                    reqwest::Method::PUT,
                    "/api/v2/account/settings",
                    Some(json!({"settings": {"api": {"api_token_access": false}}})),
                )
                .await
                .0
            })
        });
        if settings.is_some() {
            tokio::time::sleep(Duration::from_millis(rng.below(40))).await;
        }
        server.kill().await;
        let switched_off = match settings {
            Some(h) => Some(h.await.unwrap()),
            None => None,
        };
        let account = store.account_by_subdomain(&subdomain).await.unwrap().expect("account");
        if switched_off == Some(Outcome::Acked) {
            assert!(
                !account.api_token_access,
                "round {round}: an acknowledged settings change was lost"
            );
        }
        if !account.api_token_access {
            switched_off_times += 1;
            let out = db
                .cli(&[
                    "account",
                    "update",
                    "--subdomain",
                    &subdomain,
                    "--api-token-access",
                    "on",
                ])
                .await;
            assert_eq!(out.code, 0, "{out:?}");
        }
        server = ServeProcess::start(&db.url, &[]).await;
        *target.base.write().unwrap() = server.url("");
    }
    // A last stretch of load on the last server, then stop.
    tokio::time::sleep(Duration::from_millis(200)).await;
    target.stop.store(true, Ordering::Relaxed);
    let mut logs = Vec::new();
    for h in token_clients {
        logs.push(h.await.unwrap());
    }
    let users = users.await.unwrap();
    let (acked, unanswered): (usize, usize) = logs.iter().fold((0, 0), |(a, u), l| (a + l.acked, u + l.unanswered));
    println!(
        "{KILLS} kills; token changes acknowledged {acked}, unanswered {unanswered}; user changes acknowledged {}; token access switched off {} times",
        users.acked,
        switched_off_times
    );
    assert!(
        acked > KILLS,
        "too little load to mean anything: {acked} acknowledged token changes"
    );
    server.kill().await;

    // The audit chain, by the real CLI and below the service layer.
    let out = db.cli(&["audit", "verify", "--account", &subdomain]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let chain = store.audit_chain(account_id).await.unwrap();
    assert!(first_broken(chain.iter().map(|(e, h)| (e, *h))).is_none());
    // Each time token access was found off, the API had switched it off and
    // the CLI on again: two events, and none for a change that did not happen.
    assert_eq!(setting_events(&chain) - settings_before, 2 * switched_off_times);
    let chain: Vec<AuditEvent> = chain.into_iter().map(|(e, _)| e).collect();

    // Tokens: the rows are exactly the replay of their events ...
    let replayed = replay_tokens(&chain);
    let stored: BTreeMap<i64, latchkey_core::token::ApiToken> = store
        .tokens(account_id)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.id.get(), t))
        .collect();
    for (id, r) in &replayed {
        assert_eq!(r.creates, 1, "token {id} has {} create events", r.creates);
        match stored.get(id) {
            None => assert!(
                r.destroyed,
                "token {id} has a create event but no row and no destroy event"
            ),
            Some(t) => {
                assert!(!r.destroyed, "token {id} has a destroy event but is still stored");
                assert_eq!(
                    t.description, r.description,
                    "token {id}: the row and its events disagree"
                );
                assert_eq!(t.active, r.active, "token {id}: the row and its events disagree");
            }
        }
    }
    for id in stored.keys() {
        assert!(replayed.contains_key(id), "token {id} is stored without a create event");
    }
    let creates = replayed.values().filter(|r| r.creates > 0).count();
    let destroys = replayed.values().filter(|r| r.destroyed).count();
    assert_eq!(
        stored.len(),
        creates - destroys,
        "the token count does not match the events"
    );

    // ... and every acknowledged change is there.
    let mut known: BTreeSet<i64> = BTreeSet::new();
    let mut unanswered_creates: BTreeSet<String> = BTreeSet::new();
    for log in &logs {
        unanswered_creates.extend(log.unanswered_creates.iter().cloned());
        for (id, m) in &log.tokens {
            known.insert(*id);
            let row = stored.get(id);
            match m.deleted {
                Some(true) => assert!(row.is_none(), "token {id}: an acknowledged deletion was lost"),
                Some(false) => {}
                None => {
                    let t = row.unwrap_or_else(|| panic!("token {id}: an acknowledged create was lost"));
                    assert!(
                        m.descriptions.contains(&t.description),
                        "token {id}: description {:?} is none of {:?}",
                        t.description,
                        m.descriptions
                    );
                    assert!(
                        m.active.contains(&t.active),
                        "token {id}: active {} is none of {:?}",
                        t.active,
                        m.active
                    );
                }
            }
        }
    }
    // A token no client heard of came from an unanswered create, untouched since.
    for (id, t) in &stored {
        if known.contains(id) || t.user_id.is_none() {
            continue; // the CLI's admin token has no creator
        }
        let d = t.description.clone().unwrap_or_default();
        assert!(
            unanswered_creates.contains(&d),
            "token {id} ({d:?}) was never asked for"
        );
        assert!(t.active);
    }

    // Users: the same two checks.
    let stored_users = all_users(&store, account_id).await;
    let user_events: Vec<&AuditEvent> = chain.iter().filter(|e| e.source_type.as_str() == "user").collect();
    let user_creates = user_events.iter().filter(|e| e.action.as_str() == "create").count();
    let user_destroys = user_events.iter().filter(|e| e.action.as_str() == "destroy").count();
    assert_eq!(
        stored_users.len(),
        user_creates - user_destroys,
        "the user count does not match the events"
    );
    for u in &stored_users {
        let events: Vec<&&AuditEvent> = user_events.iter().filter(|e| e.source_id == u.id.get()).collect();
        assert_eq!(
            events.iter().filter(|e| e.action.as_str() == "create").count(),
            1,
            "user {} has no create event",
            u.id
        );
        if let Some(last) = events.iter().rev().find(|e| e.action.as_str() == "update") {
            assert_eq!(
                changed_to(&last.change_description).as_deref(),
                Some(u.name.as_str()),
                "user {}: the row and its events disagree",
                u.id
            );
        }
        match users.users.get(&u.id.get()) {
            Some(names) => assert!(
                names.contains(&Some(u.name.clone())),
                "user {}: name {:?} is none of {names:?}",
                u.id,
                u.name
            ),
            None => assert!(
                u.email.as_str() == email || users.unanswered_creates.contains(u.email.as_str()),
                "user {} ({}) was never asked for",
                u.id,
                u.email
            ),
        }
    }
    for id in users.users.keys() {
        assert!(
            stored_users.iter().any(|u| u.id.get() == *id),
            "user {id}: an acknowledged create was lost"
        );
    }
    println!("crash loop finished in {:?}", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "the crash loop must stay bounded"
    );
}
