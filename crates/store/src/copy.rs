//! `latchkey copy-db`: moves a deployment from one database to another (for
//! example from its SQLite file to PostgreSQL when it outgrows one node).
//!
//! Rows are copied verbatim, column by column, in one transaction on the
//! target: ids, token hashes, password hashes, settings and every audit
//! event with its stored hash, so the audit chain verifies unchanged on the
//! target. The copy reads the source in one consistent snapshot, refuses a
//! target that already holds data, and afterwards moves the target's id
//! sequences past the copied ids. The change log is not copied: it only
//! tells running processes what changed, and every process starting on the
//! target loads everything afresh.
//!
//! The tables and columns come from the target's own schema (both databases
//! are migrated to this build's schema first), so a column added by a later
//! migration is copied without this module knowing of it. The statements
//! are therefore built at run time, from those quoted names only (values
//! are always bound), and handed to sqlx as `AssertSqlSafe`.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteRow};
use sqlx::{AssertSqlSafe, PgPool, Row, SqlitePool};

use crate::{Result, StoreError};

/// Tables that must be written before others (foreign keys point at them).
const FIRST: &[&str] = &["accounts", "users", "api_tokens", "audit_events"];
/// Tables that are not data: bookkeeping of the database or of processes.
const SKIP: &[&str] = &["changes", "_sqlx_migrations", "sqlite_sequence"];

/// How many rows each table received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    pub tables: Vec<(String, u64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Bool,
    Text,
    Bytes,
    Float,
}

impl Kind {
    /// Reads a declared SQL type (SQLite's or PostgreSQL's spelling).
    fn of(declared: &str) -> Option<Kind> {
        let t = declared.to_ascii_lowercase();
        if t.contains("bool") {
            Some(Kind::Bool)
        } else if t.contains("int") {
            Some(Kind::Int)
        } else if t.contains("char") || t.contains("text") || t.contains("clob") {
            Some(Kind::Text)
        } else if t.contains("blob") || t.contains("bytea") {
            Some(Kind::Bytes)
        } else if t.contains("real") || t.contains("floa") || t.contains("doub") || t.contains("numeric") {
            Some(Kind::Float)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone)]
enum Value {
    Int(Option<i64>),
    Bool(Option<bool>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
    Float(Option<f64>),
}

enum Db {
    Sqlite(SqlitePool),
    Pg(PgPool),
}

impl Db {
    /// Migrates the database to this build's schema, then connects to it.
    async fn open(url: &str) -> Result<Db> {
        crate::open(url).await?;
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(30));
            let pool = SqlitePoolOptions::new()
                .max_connections(2)
                .connect_with(options)
                .await?;
            Ok(Db::Sqlite(pool))
        } else {
            let options = PgConnectOptions::from_str(url)?.application_name("latchkey copy-db");
            let pool = PgPoolOptions::new().max_connections(2).connect_with(options).await?;
            Ok(Db::Pg(pool))
        }
    }

    /// The data tables, in an order that satisfies foreign keys.
    async fn tables(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = match self {
            Db::Sqlite(p) => {
                sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                    .fetch_all(p)
                    .await?
            }
            Db::Pg(p) => {
                sqlx::query_scalar(
                    "SELECT table_name::TEXT FROM information_schema.tables \
                     WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name",
                )
                .fetch_all(p)
                .await?
            }
        };
        names.retain(|n| !SKIP.contains(&n.as_str()));
        names.sort_by_key(|n| (FIRST.iter().position(|f| f == n).unwrap_or(FIRST.len()), n.clone()));
        Ok(names)
    }

    /// A table's columns and their kinds, in declaration order.
    async fn columns(&self, table: &str) -> Result<Vec<(String, Kind)>> {
        let raw: Vec<(String, String)> = match self {
            Db::Sqlite(p) => {
                sqlx::query_as("SELECT name, type FROM pragma_table_info($1) ORDER BY cid")
                    .bind(table)
                    .fetch_all(p)
                    .await?
            }
            Db::Pg(p) => {
                sqlx::query_as(
                    "SELECT column_name::TEXT, data_type::TEXT FROM information_schema.columns \
                     WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
                )
                .bind(table)
                .fetch_all(p)
                .await?
            }
        };
        raw.into_iter()
            .map(|(name, declared)| {
                let kind = Kind::of(&declared).ok_or_else(|| {
                    StoreError::Corrupt(format!("column {table}.{name} has an unknown type {declared}"))
                })?;
                Ok((name, kind))
            })
            .collect()
    }

    async fn count(&self, table: &str) -> Result<i64> {
        let sql = format!("SELECT COUNT(*) FROM \"{table}\"");
        Ok(match self {
            Db::Sqlite(p) => sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(p).await?,
            Db::Pg(p) => sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(p).await?,
        })
    }
}

macro_rules! read_value {
    ($row:expr, $i:expr, $kind:expr) => {
        match $kind {
            Kind::Int => Value::Int($row.try_get($i)?),
            Kind::Bool => Value::Bool($row.try_get($i)?),
            Kind::Text => Value::Text($row.try_get($i)?),
            Kind::Bytes => Value::Bytes($row.try_get($i)?),
            Kind::Float => Value::Float($row.try_get($i)?),
        }
    };
}

fn sqlite_values(row: &SqliteRow, kinds: &[Kind]) -> Result<Vec<Value>> {
    let mut out = Vec::with_capacity(kinds.len());
    for (i, kind) in kinds.iter().enumerate() {
        out.push(read_value!(row, i, kind));
    }
    Ok(out)
}

fn pg_values(row: &PgRow, kinds: &[Kind]) -> Result<Vec<Value>> {
    let mut out = Vec::with_capacity(kinds.len());
    for (i, kind) in kinds.iter().enumerate() {
        out.push(read_value!(row, i, kind));
    }
    Ok(out)
}

macro_rules! bind_values {
    ($query:expr, $values:expr) => {{
        let mut q = $query;
        for v in $values {
            q = match v {
                Value::Int(x) => q.bind(x),
                Value::Bool(x) => q.bind(x),
                Value::Text(x) => q.bind(x),
                Value::Bytes(x) => q.bind(x),
                Value::Float(x) => q.bind(x),
            };
        }
        q
    }};
}

/// The source's read transaction.
enum Source {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Pg(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// The target's open transaction.
enum Target {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Pg(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl Target {
    /// Runs `sql` (one table's INSERT, shared by all its rows: cloning the
    /// `Arc` hands sqlx the text without copying it per row).
    async fn insert(&mut self, sql: &Arc<str>, values: Vec<Value>) -> Result<()> {
        match self {
            Target::Sqlite(tx) => {
                bind_values!(sqlx::query(AssertSqlSafe(Arc::clone(sql))), values)
                    .execute(&mut **tx)
                    .await?;
            }
            Target::Pg(tx) => {
                bind_values!(sqlx::query(AssertSqlSafe(Arc::clone(sql))), values)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Ok(())
    }
}

/// How far a copy is: the table, rows copied so far, rows it holds.
pub type Progress<'a> = &'a (dyn Fn(&str, u64, u64) + Sync);

/// Copies every record of `from` into `to`, which must hold no data. Both
/// are migrated to this build's schema first. `progress` hears of each
/// table's start, every 1,000 rows, and its end.
pub async fn copy_db(from: &str, to: &str, progress: Progress<'_>) -> Result<CopyReport> {
    if from.starts_with("sqlite:") {
        // A mistyped path must not become a new, empty source.
        let options = SqliteConnectOptions::from_str(from)?.create_if_missing(false);
        sqlx::SqlitePool::connect_with(options).await?.close().await;
    }
    let source = Db::open(from).await?;
    if source.count("accounts").await? == 0 {
        return Err(StoreError::Refused(
            "the source database holds no accounts; nothing to copy".to_owned(),
        ));
    }
    let target = Db::open(to).await?;
    let tables = target.tables().await?;
    for table in &tables {
        if target.count(table).await? > 0 {
            return Err(StoreError::Refused(format!(
                "the target database already holds data (table {table}); copy-db only fills an empty database"
            )));
        }
    }
    let source_tables = source.tables().await?;

    let mut tx = match &target {
        Db::Sqlite(p) => Target::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
        Db::Pg(p) => Target::Pg(p.begin().await?),
    };
    // One snapshot of the source for every table.
    let mut source_tx = match &source {
        Db::Sqlite(p) => Source::Sqlite(p.begin().await?),
        Db::Pg(p) => {
            let mut t = p.begin().await?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *t)
                .await?;
            Source::Pg(t)
        }
    };

    let mut report = CopyReport { tables: Vec::new() };
    for table in &tables {
        if !source_tables.contains(table) {
            continue;
        }
        let target_columns = target.columns(table).await?;
        let source_columns: Vec<String> = source.columns(table).await?.into_iter().map(|(n, _)| n).collect();
        let columns: Vec<(String, Kind)> = target_columns
            .into_iter()
            .filter(|(n, _)| source_columns.contains(n))
            .collect();
        if columns.is_empty() {
            continue;
        }
        let names: Vec<String> = columns.iter().map(|(n, _)| format!("\"{n}\"")).collect();
        let kinds: Vec<Kind> = columns.iter().map(|(_, k)| *k).collect();
        let list = names.join(", ");
        let select = format!("SELECT {list} FROM \"{table}\" ORDER BY {}", names[0]);
        let placeholders: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
        let insert: Arc<str> = format!("INSERT INTO \"{table}\" ({list}) VALUES ({})", placeholders.join(", ")).into();
        let mut copied = 0u64;
        let total = source.count(table).await?.max(0) as u64;
        progress(table, 0, total);
        let tick = |copied: u64| {
            if copied.is_multiple_of(1000) {
                progress(table, copied, total);
            }
        };
        match &mut source_tx {
            Source::Sqlite(c) => {
                let mut rows = sqlx::query(AssertSqlSafe(select)).fetch(&mut **c);
                while let Some(row) = rows.try_next().await? {
                    tx.insert(&insert, sqlite_values(&row, &kinds)?).await?;
                    copied += 1;
                    tick(copied);
                }
            }
            Source::Pg(c) => {
                let mut rows = sqlx::query(AssertSqlSafe(select)).fetch(&mut **c);
                while let Some(row) = rows.try_next().await? {
                    tx.insert(&insert, pg_values(&row, &kinds)?).await?;
                    copied += 1;
                    tick(copied);
                }
            }
        }
        progress(table, copied, total);
        if let Target::Pg(tx) = &mut tx {
            // Identity columns: the next generated id follows the copied ones.
            for (name, kind) in &columns {
                if *kind != Kind::Int {
                    continue;
                }
                let sequence: Option<String> = sqlx::query_scalar("SELECT pg_get_serial_sequence($1, $2)")
                    .bind(format!("\"{table}\""))
                    .bind(name)
                    .fetch_one(&mut **tx)
                    .await?;
                if let Some(sequence) = sequence {
                    let sql =
                        format!("SELECT setval($1, COALESCE((SELECT MAX(\"{name}\") FROM \"{table}\"), 0) + 1, false)");
                    sqlx::query(AssertSqlSafe(sql))
                        .bind(sequence)
                        .execute(&mut **tx)
                        .await?;
                }
            }
        }
        report.tables.push((table.clone(), copied));
    }
    match source_tx {
        Source::Sqlite(t) => t.commit().await?,
        Source::Pg(t) => t.commit().await?,
    }
    match tx {
        Target::Sqlite(tx) => tx.commit().await?,
        Target::Pg(tx) => tx.commit().await?,
    }
    Ok(report)
}
