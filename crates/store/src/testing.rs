//! The one harness tests use for a real database (behind the `testing`
//! feature, which tests turn on through a dev-dependency): a fresh, empty
//! database per test, on SQLite (a file in a temporary directory) or, with
//! `LATCHKEY_TEST_DATABASE=postgres`, a database created for the test on
//! the PostgreSQL server `LATCHKEY_TEST_POSTGRES_URL` names and dropped
//! after it. See "Tests" in README.md.
//!
//! A helper panics when it cannot set up what a test asked for: this is
//! test code, and a panic fails the test with the reason.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{Arguments as _, AssertSqlSafe, Connection as _, Encode, Postgres, Sqlite, Type};

use crate::{Result, Store};

/// The server tests use when `LATCHKEY_TEST_DATABASE=postgres` names none.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Numbers databases created by this process apart.
static NEXT: AtomicU64 = AtomicU64::new(1);

/// A fresh, empty database for one test. Dropping it removes it.
pub struct TestDatabase {
    /// What `--database-url`, [`crate::open`] and `App::open` take.
    pub url: String,
    /// The database file, for tests that need one (SQLite only).
    pub file: Option<PathBuf>,
    /// Whatever keeps the database alive (a temporary directory, or what
    /// drops the PostgreSQL database).
    _guard: Box<dyn std::any::Any + Send + Sync>,
}

/// The one place that chooses the database tests run on. SQLite (a fresh
/// file in a temporary directory) unless `LATCHKEY_TEST_DATABASE` names
/// another backend; each backend is one arm of the match.
pub async fn test_database_url() -> TestDatabase {
    match std::env::var("LATCHKEY_TEST_DATABASE").as_deref() {
        Ok("sqlite") | Err(_) => sqlite_database(),
        Ok("postgres") => postgres_database().await,
        Ok(other) => panic!("LATCHKEY_TEST_DATABASE={other:?} names no backend the tests know"),
    }
}

/// A fresh SQLite file. Also for the tests that need a file whatever the
/// selected backend (durability of one file, CLI on the same file).
pub fn sqlite_database() -> TestDatabase {
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("latchkey.db");
    TestDatabase {
        url: format!("sqlite://{}", file.display()),
        file: Some(file),
        _guard: Box::new(dir),
    }
}

/// The PostgreSQL server tests create their databases on, when one is
/// configured: `LATCHKEY_TEST_POSTGRES_URL`, or [`DEFAULT_POSTGRES_URL`]
/// when `LATCHKEY_TEST_DATABASE=postgres` asks for PostgreSQL without
/// naming one.
pub fn postgres_server_url() -> Option<String> {
    match std::env::var("LATCHKEY_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => (std::env::var("LATCHKEY_TEST_DATABASE").as_deref() == Ok("postgres"))
            .then(|| DEFAULT_POSTGRES_URL.to_owned()),
    }
}

/// A fresh, empty PostgreSQL database on [`postgres_server_url`], dropped
/// when the returned value is.
pub async fn postgres_database() -> TestDatabase {
    let server = postgres_server_url().expect("LATCHKEY_TEST_POSTGRES_URL or LATCHKEY_TEST_DATABASE=postgres");
    let name = format!(
        "lk_test_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    );
    let mut conn = sqlx::PgConnection::connect(&server)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL server: {e}"));
    // `name` is made above from numbers only.
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create a test database");
    let _ = conn.close().await;
    TestDatabase {
        url: postgres_url_for(&server, &name),
        file: None,
        _guard: Box::new(DropPostgresDatabase { server, name }),
    }
}

/// `server` with its database name replaced by `name`.
pub fn postgres_url_for(server: &str, name: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (server, String::new()),
    };
    let authority_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    format!("{base}/{name}{query}")
}

/// Drops a test's PostgreSQL database, with `FORCE` so that connections a
/// test left open do not keep it alive.
struct DropPostgresDatabase {
    server: String,
    name: String,
}

impl Drop for DropPostgresDatabase {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Drop runs inside the test's runtime; use a runtime of our own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&server).await {
                    let _ = sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                        .execute(&mut conn)
                        .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

impl TestDatabase {
    /// Another handle on the same database, for a second server or process
    /// on it; dropping the handle removes nothing, so `self` must outlive
    /// whatever uses it.
    pub fn share(&self) -> TestDatabase {
        TestDatabase {
            url: self.url.clone(),
            file: self.file.clone(),
            _guard: Box::new(()),
        }
    }

    /// Opens (and migrates) the database as latchkey does.
    pub async fn open(&self) -> Result<Store> {
        crate::open(&self.url).await
    }

    /// A direct connection, to seed or tamper with rows behind latchkey's
    /// back.
    pub async fn direct(&self) -> Direct {
        if self.url.starts_with("sqlite:") {
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .connect(&self.url)
                .await
                .expect("open the database file");
            Direct::Sqlite(pool)
        } else {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(&self.url)
                .await
                .expect("connect to the test database");
            Direct::Postgres(pool)
        }
    }
}

/// A value bound to a [`Direct`] statement.
#[derive(Debug, Clone)]
pub enum DirectArg {
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

/// A direct connection to a test's database, whichever the backend, for
/// tests that seed many rows fast or tamper with rows behind latchkey's
/// back. Statements use `$n` placeholders, which both databases accept.
pub enum Direct {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Direct {
    pub fn is_postgres(&self) -> bool {
        matches!(self, Direct::Postgres(_))
    }

    /// Runs a statement; the number of rows it touched. The statements
    /// are the tests' own text (hence `AssertSqlSafe`).
    pub async fn execute(&self, sql: &str, args: &[DirectArg]) -> u64 {
        match self {
            Direct::Sqlite(p) => sqlx::query_with(AssertSqlSafe(sql), arguments::<Sqlite>(args))
                .execute(p)
                .await
                .map(|r| r.rows_affected()),
            Direct::Postgres(p) => sqlx::query_with(AssertSqlSafe(sql), arguments::<Postgres>(args))
                .execute(p)
                .await
                .map(|r| r.rows_affected()),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Runs a query whose answer is one integer.
    pub async fn scalar(&self, sql: &str, args: &[DirectArg]) -> i64 {
        match self {
            Direct::Sqlite(p) => {
                sqlx::query_scalar_with(AssertSqlSafe(sql), arguments::<Sqlite>(args))
                    .fetch_one(p)
                    .await
            }
            Direct::Postgres(p) => {
                sqlx::query_scalar_with(AssertSqlSafe(sql), arguments::<Postgres>(args))
                    .fetch_one(p)
                    .await
            }
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

/// `args` as a statement's arguments on database `DB`.
fn arguments<DB>(args: &[DirectArg]) -> DB::Arguments
where
    DB: sqlx::Database,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> Vec<u8>: Encode<'q, DB> + Type<DB>,
{
    let mut out = DB::Arguments::default();
    for arg in args {
        match arg {
            DirectArg::Int(v) => out.add(*v),
            DirectArg::Text(v) => out.add(v.clone()),
            DirectArg::Bytes(v) => out.add(v.clone()),
        }
        .unwrap_or_else(|e| panic!("bind {arg:?}: {e}"));
    }
    out
}
