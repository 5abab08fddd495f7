//! [`AppError`]: why a service-layer operation failed. The edges (REST API,
//! pages, CLI) map it to their answers; none of them sees the storage
//! layer's own error type.

use latchkey_core::{DomainError, Invalid};
use latchkey_store::StoreError;

/// Why an [`crate::App`] operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A domain rule refused the request (404, 403 or 422 at the edge).
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The database failed; the cause is for the log, never for a response.
    #[error(transparent)]
    Storage(StoreError),
    /// Hashing a password failed (no password is ever stored unhashed).
    #[error("hashing the password failed: {0}")]
    Password(String),
    /// The operator named an account that does not exist.
    #[error("no account with subdomain {0:?}")]
    NoSuchAccount(String),
    /// A background step of the operation failed (a blocking task died).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Domain(d) => AppError::Domain(d),
            other => AppError::Storage(other),
        }
    }
}

impl From<Invalid> for AppError {
    fn from(i: Invalid) -> Self {
        AppError::Domain(i.into())
    }
}

pub type Result<T, E = AppError> = std::result::Result<T, E>;
