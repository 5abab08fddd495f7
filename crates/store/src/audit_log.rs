//! Reading the audit log: the one statement every backend runs to list a
//! filtered page of an account's events (a keyset seek on the id, so a page
//! of an account with a million events costs what a page of a small one
//! does), and the export walk that streams every matching event in batches
//! of such pages, holding one batch in memory at a time.

use futures_util::stream::{self, BoxStream};
use latchkey_core::audit::AuditEvent;
use latchkey_core::audit_query::{AuditFilter, AuditQuery, Seek};
use latchkey_core::id::{AccountId, AuditEventId};
use sqlx::AssertSqlSafe;

use crate::rows::AUDIT_COLUMNS;
use crate::{Result, Store};

/// A value bound to a placeholder of [`list_sql`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    Int(i64),
    Text(String),
}

/// The SQL (with `$n` placeholders, portable to SQLite and PostgreSQL) and
/// its arguments for one page of an account's events. The text is built
/// from fixed column names and operators only; every value is a bound
/// argument (which is why callers may pass it to sqlx as `AssertSqlSafe`). Only the filters that
/// are set become conditions, so each filter can use its own index
/// (`0003_audit_indexes.sql`, and `0009_audit_actor_type_index.sql` for the
/// actor's kind).
pub fn list_sql(account_id: AccountId, filter: &AuditFilter, seek: &Seek) -> (String, Vec<Arg>) {
    let mut sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_events WHERE account_id = $1");
    let mut args = vec![Arg::Int(account_id.get())];
    let mut cond = |sql: &mut String, column: &str, op: &str, arg: Arg| {
        args.push(arg);
        sql.push_str(&format!(" AND {column} {op} ${}", args.len()));
    };
    if let Some(t) = filter.source_type {
        cond(&mut sql, "source_type", "=", Arg::Text(t.as_str().to_owned()));
    }
    if let Some(id) = filter.source_id {
        cond(&mut sql, "source_id", "=", Arg::Int(id));
    }
    if let Some(id) = filter.actor_id {
        cond(&mut sql, "actor_id", "=", Arg::Int(id.get()));
    }
    if let Some(t) = filter.actor_type {
        cond(&mut sql, "actor_type", "=", Arg::Text(t.as_str().to_owned()));
    }
    if let Some(ip) = &filter.ip_address {
        cond(&mut sql, "ip_address", "=", Arg::Text(ip.clone()));
    }
    if let Some(a) = filter.action {
        cond(&mut sql, "action", "=", Arg::Text(a.as_str().to_owned()));
    }
    if let Some(from) = filter.created_from {
        cond(&mut sql, "created_at", ">=", Arg::Int(from.unix()));
    }
    if let Some(to) = filter.created_to {
        cond(&mut sql, "created_at", "<=", Arg::Int(to.unix()));
    }
    if let Some(above) = seek.above {
        cond(&mut sql, "id", ">", Arg::Int(above.get()));
    }
    if let Some(below) = seek.below {
        cond(&mut sql, "id", "<", Arg::Int(below.get()));
    }
    let order = if seek.descending { "DESC" } else { "ASC" };
    args.push(Arg::Int(seek.limit));
    sql.push_str(&format!(" ORDER BY id {order} LIMIT ${}", args.len()));
    (sql, args)
}

/// The statement that reads one event of an account (`$1`, `$2` = id).
pub fn event_sql() -> String {
    format!("SELECT {AUDIT_COLUMNS} FROM audit_events WHERE account_id = $1 AND id = $2")
}

/// SQLite's plan for [`list_sql`], one line per step (`EXPLAIN QUERY
/// PLAN`), for the tests and the benchmark that keep listing an index seek.
pub async fn sqlite_query_plan(
    pool: &sqlx::SqlitePool,
    account_id: AccountId,
    filter: &AuditFilter,
    seek: &Seek,
) -> Result<Vec<String>> {
    let (text, args) = list_sql(account_id, filter, seek);
    let explain = format!("EXPLAIN QUERY PLAN {text}");
    let mut query = sqlx::query_as::<_, (i64, i64, i64, String)>(AssertSqlSafe(explain));
    for arg in args {
        query = match arg {
            Arg::Int(n) => query.bind(n),
            Arg::Text(s) => query.bind(s),
        };
    }
    Ok(query.fetch_all(pool).await?.into_iter().map(|r| r.3).collect())
}

/// How many events the export reads per statement.
pub const EXPORT_BATCH: i64 = 1000;

impl Store {
    /// One page of an account's events in listing order, and whether more
    /// follow in the direction of travel.
    pub async fn audit_page(
        &self,
        account_id: AccountId,
        query: &AuditQuery,
        after: Option<AuditEventId>,
        before: Option<AuditEventId>,
        size: i64,
    ) -> Result<(Vec<AuditEvent>, bool)> {
        let seek = Seek::new(query.sort, after, before, size);
        let rows = self.audit_events(account_id, &query.filter, &seek).await?;
        Ok(seek.finish(rows))
    }

    /// Every event matching `query`, in its order, read [`EXPORT_BATCH`]
    /// at a time. Each batch is its own short statement continuing after
    /// the last id sent, so a slow reader holds no connection and no
    /// snapshot between batches, and memory stays one batch deep.
    pub fn audit_export(
        &self,
        account_id: AccountId,
        query: &AuditQuery,
    ) -> BoxStream<'static, Result<Vec<AuditEvent>>> {
        struct Walk {
            store: Store,
            account_id: AccountId,
            filter: AuditFilter,
            seek: Option<Seek>,
        }
        let walk = Walk {
            store: self.clone(),
            account_id,
            filter: query.filter.clone(),
            seek: Some(Seek::from_start(query.sort, EXPORT_BATCH)),
        };
        Box::pin(stream::try_unfold(walk, |mut w| async move {
            let Some(seek) = w.seek else {
                return Ok(None);
            };
            let batch = w.store.audit_events(w.account_id, &w.filter, &seek).await?;
            w.seek = match batch.last() {
                Some(last) if batch.len() as i64 == seek.limit => Some(seek.continue_after(last.id)),
                _ => None,
            };
            if batch.is_empty() {
                Ok(None)
            } else {
                Ok(Some((batch, w)))
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_core::audit::{Action, ActorType, SourceType};
    use latchkey_core::audit_query::AuditSort;
    use latchkey_core::id::UserId;
    use latchkey_core::time::Timestamp;

    #[tokio::test]
    async fn every_listing_is_an_index_seek_without_a_sort() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("plan.db").display());
        crate::sqlite::SqliteBackend::open(&url).await.expect("migrate");
        let pool = sqlx::SqlitePool::connect(&url).await.expect("open");
        let filters = [
            AuditFilter::default(),
            AuditFilter {
                source_type: Some(SourceType::ApiToken),
                ..AuditFilter::default()
            },
            AuditFilter {
                source_type: Some(SourceType::ApiToken),
                source_id: Some(7),
                ..AuditFilter::default()
            },
            AuditFilter {
                actor_id: Some(UserId::new(3)),
                ..AuditFilter::default()
            },
            AuditFilter {
                actor_type: Some(ActorType::System),
                ..AuditFilter::default()
            },
            AuditFilter {
                action: Some(Action::Deactivate),
                ..AuditFilter::default()
            },
            AuditFilter {
                ip_address: Some("10.0.0.1".into()),
                ..AuditFilter::default()
            },
        ];
        for filter in &filters {
            for sort in [AuditSort::NewestFirst, AuditSort::OldestFirst] {
                for (after, before) in [
                    (None, None),
                    (Some(AuditEventId::new(500)), None),
                    (None, Some(AuditEventId::new(500))),
                ] {
                    let seek = Seek::new(sort, after, before, 100);
                    let plan = sqlite_query_plan(&pool, AccountId::new(1), filter, &seek)
                        .await
                        .expect("explain");
                    let text = plan.join(" | ");
                    assert!(
                        plan.len() == 1 && text.starts_with("SEARCH audit_events USING ") && text.contains("INDEX"),
                        "{filter:?} {seek:?}: {text}"
                    );
                    assert!(!text.contains("TEMP B-TREE") && !text.contains("SCAN"), "{text}");
                }
            }
        }
    }

    #[test]
    fn only_the_filters_that_are_set_become_conditions() {
        let seek = Seek::new(AuditSort::NewestFirst, None, None, 100);
        let (sql, args) = list_sql(AccountId::new(7), &AuditFilter::default(), &seek);
        assert!(
            sql.ends_with("FROM audit_events WHERE account_id = $1 ORDER BY id DESC LIMIT $2"),
            "{sql}"
        );
        assert_eq!(args, vec![Arg::Int(7), Arg::Int(101)]);

        let filter = AuditFilter {
            source_type: Some(SourceType::ApiToken),
            source_id: Some(3),
            action: Some(Action::Update),
            created_from: Some(Timestamp::from_unix(10)),
            created_to: Some(Timestamp::from_unix(20)),
            ..AuditFilter::default()
        };
        let seek = Seek::new(AuditSort::OldestFirst, Some(AuditEventId::new(40)), None, 10);
        let (sql, args) = list_sql(AccountId::new(7), &filter, &seek);
        assert!(
            sql.ends_with(
                "WHERE account_id = $1 AND source_type = $2 AND source_id = $3 AND action = $4 \
                 AND created_at >= $5 AND created_at <= $6 AND id > $7 ORDER BY id ASC LIMIT $8"
            ),
            "{sql}"
        );
        assert_eq!(args.len(), 8);
        assert_eq!(args[1], Arg::Text("api_token".into()));
    }
}
