//! README.md, "Audit retention": `latchkey serve --audit-retention-days N`
//! prunes each account's events older than N days behind a checkpoint event
//! that `latchkey audit verify` verifies the remaining chain from; the
//! recorded chain head makes deleting the newest events visible; several
//! servers pruning one database at once prune each event once; the REST
//! listing and export show the checkpoint; a database from before heads
//! were recorded gets them on migration.

use std::time::{Duration, Instant};

use latchkey_app::AUDIT_PRUNE_BATCH;
use latchkey_core::audit::Actor;
use latchkey_core::audit::{retention_cutoff, Action, ActorType, AuditEvent, Checkpoint, Source, SourceType};
use latchkey_core::id::AccountId;
use latchkey_core::time::{Clock, SystemClock, Timestamp};
use serde_json::Value;

use crate::support::*;

const DAY: i64 = 86_400;
/// The retention the servers below run with.
const DAYS: &str = "30";

/// Appends `n` events by `system` to an account's chain behind latchkey's
/// back, chained exactly as latchkey chains them (created from `at`, a
/// second apart), and moves the recorded head onto the last: the backlog of
/// an old deployment, without writing thousands of changes one by one.
async fn seed_chain(t: &TestApp, account: AccountId, n: i64, at: Timestamp) {
    let (_, head) = t.store().await.audit_chain_and_head(account).await.unwrap();
    let mut previous = head.expect("a recorded head").hash;
    let raw = t.db.direct().await;
    let mut start = 0;
    while start < n {
        let end = (start + 500).min(n);
        let mut sql = String::from(
            "INSERT INTO audit_events (account_id, action, actor_type, actor_id, actor_name, source_type, \
             source_id, source_label, change_description, ip_address, created_at, hash) VALUES ",
        );
        let mut args = Vec::new();
        for i in start..end {
            let e = AuditEvent::new(
                account,
                &Actor::system(),
                Action::Update,
                Source::settings(account),
                format!("seeded {i}"),
                at.plus_secs(i),
            );
            let hash = e.chain_hash(&previous);
            previous = hash;
            let k = args.len();
            if i > start {
                sql.push(',');
            }
            sql.push_str(&format!(
                "(${}, 'update', 'system', NULL, 'System', 'account_setting', ${}, 'Account settings', ${}, NULL, ${}, ${})",
                k + 1,
                k + 2,
                k + 3,
                k + 4,
                k + 5
            ));
            args.extend([
                DirectArg::Int(account.get()),
                DirectArg::Int(account.get()),
                DirectArg::Text(e.change_description.clone()),
                DirectArg::Int(e.created_at.unix()),
                DirectArg::Bytes(hash.to_vec()),
            ]);
        }
        assert_eq!(raw.execute(&sql, &args).await, (end - start) as u64);
        start = end;
    }
    let newest = raw
        .scalar(
            "SELECT MAX(id) FROM audit_events WHERE account_id = $1",
            &[DirectArg::Int(account.get())],
        )
        .await;
    let sql = "UPDATE audit_heads SET event_id = $1, hash = $2 WHERE account_id = $3";
    let args = [
        DirectArg::Int(newest),
        DirectArg::Bytes(previous.to_vec()),
        DirectArg::Int(account.get()),
    ];
    assert_eq!(raw.execute(sql, &args).await, 1);
}

/// The account's checkpoint events, oldest first, as they read back.
fn checkpoints(events: &[AuditEvent]) -> Vec<Checkpoint> {
    events
        .iter()
        .filter(|e| e.action == Action::Prune)
        .map(|e| Checkpoint::parse(&e.change_description).expect("a checkpoint"))
        .collect()
}

/// Waits (up to 60 s) until no event of `accounts` is older than `cutoff`.
async fn until_pruned(t: &TestApp, accounts: &[AccountId], cutoff: Timestamp) {
    let started = Instant::now();
    loop {
        let mut left = 0;
        for id in accounts {
            left += t.audit(*id).await.iter().filter(|e| e.created_at < cutoff).count();
        }
        if left == 0 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{left} events older than {cutoff:?} were never pruned"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `serve`'s options for the retention under test, checked every second.
const RETENTION_ARGS: [&str; 4] = ["--audit-retention-days", DAYS, "--sweep-interval-secs", "1"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_old_events_behind_a_checkpoint_that_verify_starts_from() {
    let now = SystemClock.now();
    let clock = TestClock::at(now.minus_secs(400 * DAY));
    let t = TestApp::spawn_with_clock(clock.clone(), |_| {}).await;
    let a = t.account().await;
    t.token_described(&a, Some("from last year")).await;
    seed_chain(&t, a.id, 20, clock.now()).await;
    clock.advance(now.secs_since(clock.now()));
    for d in ["today", "also today", "and again"] {
        t.token_described(&a, Some(d)).await;
    }
    let b = t.account().await;
    t.token_described(&b, Some("only recent")).await;
    let cutoff = retention_cutoff(now, 30);
    let before = t.audit(a.id).await;
    let (old, kept): (Vec<&AuditEvent>, Vec<&AuditEvent>) = before.iter().partition(|e| e.created_at < cutoff);
    assert_eq!(
        old.len(),
        2 + 1 + 20,
        "the account's creation, a token, the seeded events"
    );

    let server = ServeProcess::start(&t.db.url, &RETENTION_ARGS).await;
    until_pruned(&t, &[a.id], cutoff).await;
    // Later runs find nothing more to prune: one checkpoint.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(server.terminate().await, 0);

    let events = t.audit(a.id).await;
    let ids: Vec<_> = events.iter().map(|e| e.id).collect();
    let kept_ids: Vec<_> = kept.iter().map(|e| e.id).collect();
    assert_eq!(ids[..kept.len()], kept_ids[..], "every newer event is kept, in order");
    assert_eq!(events.len(), kept.len() + 1, "and one checkpoint follows them");
    let cp = events.last().unwrap();
    assert_eq!(cp.action, Action::Prune);
    assert_eq!(cp.actor_type, ActorType::System);
    assert_eq!(cp.actor_name, "System");
    assert_eq!((cp.source_type, cp.source_id), (SourceType::Account, a.id.get()));
    assert_eq!(cp.source_label, "Audit log");
    let c = Checkpoint::parse(&cp.change_description).expect("a checkpoint");
    assert_eq!(c.pruned, old.len() as i64);
    assert_eq!(c.pruned_total, old.len() as i64);
    assert_eq!(c.retention_days, 30);
    assert_eq!(c.after_event, old.last().unwrap().id);
    assert!(c.before == cutoff || c.before == retention_cutoff(SystemClock.now(), 30));
    assert!(
        cp.change_description.starts_with(&format!(
            "{} events created before {} pruned by audit retention (30 days); {} pruned in all; \
             the chain continues after event {} from hash ",
            old.len(),
            c.before.rfc3339(),
            old.len(),
            c.after_event
        )),
        "{}",
        cp.change_description
    );

    let out = t.db.cli(&["audit", "verify", "--account", &a.subdomain]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout.trim(),
        format!(
            "audit log of {} is intact ({} events): chain verified from the checkpoint of {} \
             ({} events pruned by retention); head matches (event {})",
            a.subdomain,
            events.len(),
            &c.before.rfc3339()[..10],
            old.len(),
            cp.id
        )
    );
    // An account with nothing old is left alone.
    assert!(t.audit(b.id).await.iter().all(|e| e.action != Action::Prune));
    let out = t.db.cli(&["audit", "verify", "--account", &b.subdomain]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!out.stdout.contains("checkpoint"), "{out:?}");

    // The REST listing and export show the checkpoint like any event.
    let auth = t.admin_auth(&a).await;
    let r = t.get("/api/v2/audit_logs?filter[action]=prune", &auth).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let list = r.json()["audit_logs"].as_array().unwrap().clone();
    assert_eq!(list.len(), 1);
    let rec = &list[0];
    assert_eq!(rec["id"], cp.id.get());
    assert_eq!(rec["action"], "prune");
    assert_eq!(rec["action_label"], "Pruned");
    assert_eq!(rec["actor_type"], "system");
    assert_eq!(rec["actor_id"], Value::Null);
    assert_eq!(rec["source_type"], "account");
    assert_eq!(rec["source_label"], "Audit log");
    assert_eq!(rec["change_description"], cp.change_description);
    let all = t.audit(a.id).await;
    let r = t.get("/api/v2/audit_logs?sort=created_at", &auth).await;
    let listed: Vec<i64> = r.json()["audit_logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(listed, all.iter().map(|e| e.id.get()).collect::<Vec<_>>());
    let r = t
        .get("/api/v2/audit_logs/export?format=jsonl&sort=created_at", &auth)
        .await;
    assert_eq!(r.status, 200);
    let lines: Vec<Value> = r.text().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), all.len());
    assert_eq!(lines[kept.len()]["action"], "prune");
    let r = t.get("/api/v2/audit_logs/export?format=csv", &auth).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text().lines().filter(|l| l.contains(",prune,Pruned,")).count(), 1);

    // Changes after the checkpoint chain on; verify still passes.
    let out = t.db.cli(&["audit", "verify", "--account", &a.subdomain]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out
        .stdout
        .contains(&format!("head matches (event {})", all.last().unwrap().id)));

    // Editing a kept event still names it.
    let raw = t.db.direct().await;
    let victim = kept[2].id;
    let sql = "UPDATE audit_events SET change_description = 'nothing to see' WHERE id = $1";
    assert_eq!(raw.execute(sql, &[DirectArg::Int(victim.get())]).await, 1);
    let out = t.db.cli(&["audit", "verify", "--account", &a.subdomain]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains(&format!("event {victim} does not match")),
        "{out:?}"
    );
    // Deleting the oldest kept event: the next no longer chains from the
    // checkpoint's hash.
    let sql = "DELETE FROM audit_events WHERE id = $1";
    assert_eq!(raw.execute(sql, &[DirectArg::Int(kept[0].id.get())]).await, 1);
    let out = t.db.cli(&["audit", "verify", "--account", &a.subdomain]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains(&format!("event {} does not match", kept[1].id)),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_newest_events_makes_verify_name_the_missing_head() {
    let t = TestApp::spawn().await;
    let a = t.account().await;
    for d in ["one", "two", "three"] {
        t.token_described(&a, Some(d)).await;
    }
    let events = t.audit(a.id).await;
    let n = events.len();
    let head = events[n - 1].id;
    let out = t.db.cli(&["audit", "verify", "--account", &a.subdomain]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout.trim(),
        format!(
            "audit log of {} is intact ({n} events); head matches (event {head})",
            a.subdomain
        )
    );

    let raw = t.db.direct().await;
    let delete = "DELETE FROM audit_events WHERE id = $1";
    assert_eq!(raw.execute(delete, &[DirectArg::Int(head.get())]).await, 1);
    let out = t.db.cli(&["audit", "verify", "--account", &a.subdomain]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        out.stdout.trim(),
        format!(
            "audit log of {} is broken: event {head}, its recorded head, is missing \
             (the log ends at event {}): its newest events were deleted",
            a.subdomain,
            events[n - 2].id
        )
    );
    // Two more: still the head that is named.
    for e in &events[n - 3..n - 1] {
        assert_eq!(raw.execute(delete, &[DirectArg::Int(e.id.get())]).await, 1);
    }
    let out = t.db.cli(&["audit", "verify", "--account", &a.subdomain]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout
            .contains(&format!("event {head}, its recorded head, is missing")),
        "{out:?}"
    );
    assert!(
        out.stdout.contains(&format!("ends at event {}", events[n - 4].id)),
        "{out:?}"
    );

    // The next change chains onto the recorded head, so the gap stays in
    // the chain: the new event is named.
    t.token_described(&a, Some("after the gap")).await;
    let newest = t.audit(a.id).await.last().unwrap().id;
    let out = t.db.cli(&["audit", "verify", "--account", &a.subdomain]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains(&format!("event {newest} does not match")),
        "{out:?}"
    );

    // Deleting the recorded head itself is named too.
    let b = t.account().await;
    let sql = "DELETE FROM audit_heads WHERE account_id = $1";
    assert_eq!(raw.execute(sql, &[DirectArg::Int(b.id.get())]).await, 1);
    let out = t.db.cli(&["audit", "verify", "--account", &b.subdomain]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("has no recorded head"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_pruning_a_backlog_at_once_prune_each_event_once() {
    let now = SystemClock.now();
    let clock = TestClock::at(now.minus_secs(400 * DAY));
    let t = TestApp::spawn_with_clock(clock.clone(), |_| {}).await;
    let a = t.account().await;
    let b = t.account().await;
    // More than two batches in one account, more than one in the other.
    seed_chain(&t, a.id, 2 * AUDIT_PRUNE_BATCH + 1500, clock.now()).await;
    seed_chain(&t, b.id, AUDIT_PRUNE_BATCH + 10, clock.now()).await;
    clock.advance(now.secs_since(clock.now()));
    t.token_described(&a, Some("recent")).await;
    t.token_described(&b, Some("recent")).await;
    let cutoff = retention_cutoff(now, 30);
    let mut old = Vec::new();
    for id in [a.id, b.id] {
        old.push(t.audit(id).await.iter().filter(|e| e.created_at < cutoff).count() as i64);
    }

    let (one, two) = tokio::join!(
        ServeProcess::start(&t.db.url, &RETENTION_ARGS),
        ServeProcess::start(&t.db.url, &RETENTION_ARGS),
    );
    until_pruned(&t, &[a.id, b.id], cutoff).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (one, two) = (one.terminate().await, two.terminate().await);
    assert_eq!((one, two), (0, 0));

    for (account, old) in [(&a, old[0]), (&b, old[1])] {
        let events = t.audit(account.id).await;
        let cps = checkpoints(&events);
        // Full batches, then the rest: each event pruned once.
        assert_eq!(
            cps.len() as i64,
            (old + AUDIT_PRUNE_BATCH - 1) / AUDIT_PRUNE_BATCH,
            "{cps:?}"
        );
        assert_eq!(cps.iter().map(|c| c.pruned).sum::<i64>(), old);
        let mut total = 0;
        for (i, c) in cps.iter().enumerate() {
            total += c.pruned;
            assert_eq!(c.pruned_total, total);
            assert!(c.pruned <= AUDIT_PRUNE_BATCH);
            if i > 0 {
                assert!(c.after_event > cps[i - 1].after_event);
            }
        }
        let out = t.db.cli(&["audit", "verify", "--account", &account.subdomain]).await;
        assert_eq!(out.code, 0, "{out:?}");
        assert!(
            out.stdout
                .contains(&format!("({old} events pruned by retention); head matches")),
            "{out:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_before_heads_gets_them_when_migrated() {
    let db = test_database_url().await;
    let (subdomain, _, _) = db.cli_account("enterprise").await;
    let raw = db.direct().await;
    let newest = raw
        .scalar(
            "SELECT MAX(e.id) FROM audit_events e JOIN accounts a ON a.id = e.account_id WHERE a.subdomain = $1",
            &[DirectArg::Text(subdomain.clone())],
        )
        .await;
    // The schema as the release before heads left it.
    raw.execute("DROP TABLE audit_heads", &[]).await;
    raw.execute("DELETE FROM _sqlx_migrations WHERE version = 11", &[])
        .await;
    drop(raw);
    let out = db.cli(&["migrate"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let out = db.cli(&["audit", "verify", "--account", &subdomain]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains(&format!("head matches (event {newest})")),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retention_out_of_range_is_a_bad_argument() {
    let db = test_database_url().await;
    for days in ["0", "36501", "ninety", "1.5"] {
        let out = db
            .cli(&["serve", "--listen", "127.0.0.1:0", "--audit-retention-days", days])
            .await;
        assert_eq!(out.code, 2, "{days}: {out:?}");
        assert!(
            out.stderr.contains("must be a whole number of days from 1 to 36500"),
            "{days}: {}",
            out.stderr
        );
    }
    let mut cmd = latchkey_command(&db.url);
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .env("LATCHKEY_AUDIT_RETENTION_DAYS", "0");
    let out = cmd.output().await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--audit-retention-days"));
}
