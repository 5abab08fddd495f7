//! How long listing one page of 100 audit events takes from an account that
//! holds 1,000,000 events, next to one that holds 1,000, on one SQLite file
//! holding both. A page must stay an index seek: the plan of every query is
//! printed and checked, and the times should not depend on the account's
//! size.
//!
//! Run: `cargo bench -p latchkey-store --bench audit_list`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use latchkey_core::audit::SourceType;
use latchkey_core::audit_query::{AuditFilter, AuditSort, Seek};
use latchkey_core::id::{AccountId, AuditEventId};
use latchkey_store::audit_log::sqlite_query_plan;
use latchkey_store::backend::Backend;
use latchkey_store::sqlite::SqliteBackend;
use latchkey_store::testing::sqlite_database;

const BIG: i64 = 1_000_000;
const SMALL: i64 = 1_000;
const ITERATIONS: usize = 2_000;

/// Inserts both accounts and their events in one transaction with direct
/// SQL: every 1,001st event belongs to the small account, so its rows are
/// spread over the whole table rather than sitting together at the end.
async fn seed(pool: &sqlx::SqlitePool) -> (AccountId, AccountId) {
    let mut tx = pool.begin().await.unwrap();
    for sub in ["big", "small"] {
        sqlx::query(
            "INSERT INTO accounts (subdomain, name, plan, token_limit, api_token_access, created_at, updated_at) \
             VALUES ($1, $1, 'enterprise', 256, TRUE, 0, 0)",
        )
        .bind(sub)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    let id = |sub: &'static str| sqlx::query_scalar::<_, i64>("SELECT id FROM accounts WHERE subdomain = $1").bind(sub);
    let big = id("big").fetch_one(&mut *tx).await.unwrap();
    let small = id("small").fetch_one(&mut *tx).await.unwrap();
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $3) \
         INSERT INTO audit_events (account_id, action, actor_type, actor_id, actor_name, source_type, source_id, \
           source_label, change_description, ip_address, created_at, hash) \
         SELECT CASE WHEN i % 1001 = 0 THEN $2 ELSE $1 END, \
           CASE i % 3 WHEN 0 THEN 'create' WHEN 1 THEN 'update' ELSE 'deactivate' END, \
           'user', 1 + i % 7, 'Ada Admin', \
           CASE i % 4 WHEN 0 THEN 'user' ELSE 'api_token' END, i % 10, \
           'API token: Jira sync', 'description changed from \"A\" to \"B\"', '10.0.0.' || (i % 250), \
           1795737600 + i, zeroblob(32) \
         FROM n",
    )
    .bind(big)
    .bind(small)
    .bind(BIG + SMALL)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    (AccountId::new(big), AccountId::new(small))
}

struct Case {
    name: &'static str,
    filter: AuditFilter,
    /// A cursor in the middle of the account, or the first page.
    deep: bool,
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // One SQLite file whatever LATCHKEY_TEST_DATABASE says: the plans
    // checked are SQLite's.
    let db = sqlite_database();
    let backend = SqliteBackend::open(&db.url).await.unwrap();
    let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
    let started = Instant::now();
    let (big, small) = seed(&pool).await;
    println!(
        "seeded {BIG} + {SMALL} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let token = AuditFilter {
        source_type: Some(SourceType::ApiToken),
        source_id: Some(3),
        ..AuditFilter::default()
    };
    let cases = [
        Case {
            name: "newest 100",
            filter: AuditFilter::default(),
            deep: false,
        },
        Case {
            name: "100 after a cursor halfway",
            filter: AuditFilter::default(),
            deep: true,
        },
        Case {
            name: "one token's newest 100",
            filter: token,
            deep: false,
        },
    ];
    println!("\n| query | events in account | rows | median | p99 |");
    println!("|---|---|---|---|---|");
    for case in &cases {
        for (account, label, size) in [(small, "small", SMALL), (big, "big", BIG)] {
            let all_ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM audit_events WHERE account_id = $1 ORDER BY id")
                .bind(account.get())
                .fetch_all(&pool)
                .await
                .unwrap();
            let after = case.deep.then(|| AuditEventId::new(all_ids[all_ids.len() / 2]));
            let seek = Seek::new(AuditSort::NewestFirst, after, None, 100);
            let plan = sqlite_query_plan(&pool, account, &case.filter, &seek).await.unwrap();
            let text = plan.join(" | ");
            assert!(
                text.starts_with("SEARCH") && !text.contains("SCAN") && !text.contains("TEMP B-TREE"),
                "not an index seek: {text}"
            );
            if label == "big" {
                println!("plan for {}: {text}", case.name);
            }
            for _ in 0..100 {
                backend.audit_events(account, &case.filter, &seek).await.unwrap();
            }
            let mut times = Vec::with_capacity(ITERATIONS);
            let mut rows = 0;
            for _ in 0..ITERATIONS {
                let t = Instant::now();
                rows = backend.audit_events(account, &case.filter, &seek).await.unwrap().len();
                times.push(t.elapsed());
            }
            times.sort();
            println!(
                "| {} | {size} | {rows} | {:.0} µs | {:.0} µs |",
                case.name,
                micros(times[times.len() / 2]),
                micros(times[times.len() * 99 / 100])
            );
        }
    }
}
