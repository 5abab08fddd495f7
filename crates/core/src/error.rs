//! Domain errors: validation failures carry the 422 error codes of
//! docs/api.md's error bodies, so every entry point reports a broken rule the
//! same way.

use std::fmt;

use serde::Serialize;
use strum::{Display, EnumIter, EnumString, IntoStaticStr, VariantNames};

/// The codes of a 422 `RecordInvalid` body's per-field errors, as docs/api.md
/// lists them. The wire spelling is the variant's own name (`TooLong`), for
/// serde and strum alike.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, IntoStaticStr, EnumString, VariantNames, EnumIter, Display,
)]
pub enum ErrorCode {
    TokenLimitReached,
    TokenActive,
    InvalidValue,
    TooLong,
    Blank,
    Taken,
    ReadOnly,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// One broken rule about one field (or `base`, the record as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub code: ErrorCode,
    pub description: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, code: ErrorCode, description: impl Into<String>) -> Self {
        Invalid {
            field: field.into(),
            code,
            description: description.into(),
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.description)
    }
}

/// Why a domain operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// One or more fields break a rule (422 RecordInvalid).
    #[error("record invalid: {}", .0.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Invalid>),
    /// Token generation while the account's `api_token_access` is off (403).
    #[error("API token access is turned off for this account.")]
    TokenAccessDisabled,
    /// No such record in this account (404).
    #[error("not found")]
    NotFound,
}

impl DomainError {
    pub fn invalid(field: impl Into<String>, code: ErrorCode, description: impl Into<String>) -> Self {
        DomainError::Invalid(vec![Invalid::new(field, code, description)])
    }
}

impl From<Invalid> for DomainError {
    fn from(i: Invalid) -> Self {
        DomainError::Invalid(vec![i])
    }
}

/// Checks a free-text field: trimmed, at most `max` characters, no control
/// characters. Returns `None` for an empty value.
pub(crate) fn clean_text(field: &str, raw: &str, max: usize) -> Result<Option<String>, Invalid> {
    let trimmed = raw.trim();
    if trimmed.chars().any(char::is_control) {
        return Err(Invalid::new(
            field,
            ErrorCode::InvalidValue,
            format!("{field} must not contain control characters"),
        ));
    }
    if trimmed.chars().count() > max {
        return Err(Invalid::new(
            field,
            ErrorCode::TooLong,
            format!("{field} is too long (maximum is {max} characters)"),
        ));
    }
    Ok((!trimmed.is_empty()).then(|| trimmed.to_owned()))
}

/// Like [`clean_text`] for a field that must not be empty.
pub(crate) fn required_text(field: &str, raw: &str, max: usize) -> Result<String, Invalid> {
    clean_text(field, raw, max)?.ok_or_else(|| Invalid::new(field, ErrorCode::Blank, format!("{field} can't be blank")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_and_strum_spell_every_error_code_alike() {
        crate::wire::assert_one_spelling::<ErrorCode>();
        assert_eq!(ErrorCode::TokenLimitReached.as_str(), "TokenLimitReached");
        assert_eq!(ErrorCode::VARIANTS.len(), 7);
    }
}
