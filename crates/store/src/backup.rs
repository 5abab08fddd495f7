//! `latchkey backup`: a consistent copy of a SQLite database while servers
//! run on it (README.md, "Production checklist").
//!
//! SQLite's `VACUUM INTO` reads the database in one read transaction, so
//! the copy holds every commit up to a moment and nothing after it, with
//! what still sits in the `-wal` file included: a plain `cp` of the
//! database file can miss that. Writers go on meanwhile. The copy is
//! created readable by its owner only, like the database. PostgreSQL has
//! its own tool for this, `pg_dump`, which latchkey points at rather than
//! imitates.

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _};

use crate::{Result, StoreError};

/// Copies the SQLite database at `url` into the new file `to`.
pub async fn backup(url: &str, to: &Path) -> Result<()> {
    if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        return Err(StoreError::Refused(
            "latchkey backup copies SQLite databases; for PostgreSQL use pg_dump \
             (for example: pg_dump --format=custom --file=latchkey.dump \"$LATCHKEY_DATABASE_URL\")"
                .to_owned(),
        ));
    }
    if !url.starts_with("sqlite:") {
        return Err(StoreError::UnsupportedUrl);
    }
    if to.exists() {
        return Err(StoreError::Refused(format!(
            "{} already exists; a backup never overwrites a file",
            to.display()
        )));
    }
    let target = to
        .to_str()
        .ok_or_else(|| StoreError::Refused(format!("{} is not a UTF-8 path", to.display())))?;
    // Created first, empty and private, as a new database is: SQLite
    // writes into it and keeps its mode.
    crate::sqlite::create_private(to)?;
    let copied = async {
        let mut conn = SqliteConnectOptions::from_str(url)?
            .create_if_missing(false)
            .busy_timeout(std::time::Duration::from_secs(30))
            .connect()
            .await?;
        sqlx::query("VACUUM INTO ?").bind(target).execute(&mut conn).await?;
        conn.close().await?;
        Ok::<_, StoreError>(())
    }
    .await;
    if copied.is_err() {
        let _ = std::fs::remove_file(to);
    }
    copied
}
