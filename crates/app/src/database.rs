//! The operator's commands on a whole database, below any account:
//! `latchkey migrate` and `latchkey copy-db`. They need no capability: only
//! someone who can reach the database URL runs them.

pub use latchkey_store::copy::CopyReport;

use crate::error::Result;

/// Creates the database if needed and migrates it to this build's schema.
pub async fn migrate(url: &str, connect: latchkey_store::ConnectOptions) -> Result<()> {
    latchkey_store::open_with(url, connect).await?;
    Ok(())
}

/// A consistent copy of a SQLite database into the new file `to`, while it
/// is in use (`latchkey backup`); PostgreSQL is pointed at `pg_dump`.
pub async fn backup(url: &str, to: &std::path::Path) -> Result<()> {
    Ok(latchkey_store::backup::backup(url, to).await?)
}

/// Copies every row verbatim from one database into an empty one.
pub async fn copy_db(from: &str, to: &str, progress: latchkey_store::copy::Progress<'_>) -> Result<CopyReport> {
    Ok(latchkey_store::copy::copy_db(from, to, progress).await?)
}
