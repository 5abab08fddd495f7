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
    /// Rotating a deactivated token.
    TokenInactive,
    /// A token breaks the account's token policy.
    PolicyViolation,
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
/// characters and no invisible ones (docs/api.md, "Errors"). Returns `None`
/// for an empty value.
pub(crate) fn clean_text(field: &str, raw: &str, max: usize) -> Result<Option<String>, Invalid> {
    let trimmed = raw.trim();
    // Line and paragraph separators count as white space to `trim`, so the
    // untrimmed value is checked for the invisible characters.
    if trimmed.chars().any(char::is_control) || raw.chars().any(is_invisible) {
        return Err(Invalid::new(
            field,
            ErrorCode::InvalidValue,
            format!("{field} must not contain control or invisible characters"),
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

/// A character that changes how text around it displays without showing
/// itself: the Unicode format characters (general category Cf: bidirectional
/// overrides such as U+202E, zero-width spaces and joiners, U+FEFF) and the
/// line and paragraph separators (Zl, Zp). A name or description holding one
/// could disguise itself in a list or the audit log.
pub(crate) fn is_invisible(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    matches!(
        c.general_category(),
        GeneralCategory::Format | GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator
    )
}

/// Like [`clean_text`] for a field that must not be empty.
pub(crate) fn required_text(field: &str, raw: &str, max: usize) -> Result<String, Invalid> {
    clean_text(field, raw, max)?.ok_or_else(|| Invalid::new(field, ErrorCode::Blank, format!("{field} can't be blank")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_format_and_separator_characters_are_refused() {
        let refused = [
            "a\u{202E}b",  // right-to-left override
            "a\u{202D}b",  // left-to-right override
            "a\u{2066}b",  // left-to-right isolate
            "a\u{200B}b",  // zero-width space
            "a\u{200D}b",  // zero-width joiner
            "\u{FEFF}ab",  // byte order mark
            "a\u{2028}b",  // line separator
            "a\u{2029}b",  // paragraph separator
            "\u{2028}ab",  // even where `trim` would drop it
            "a\u{00AD}b",  // soft hyphen
            "a\u{061C}b",  // Arabic letter mark
            "a\u{E0041}b", // tag character
            "a\u{0000}b",
            "a\u{0007}b",
            "a\u{009B}b", // C1 control
        ];
        for raw in refused {
            let e = clean_text("name", raw, 255).expect_err(raw);
            assert_eq!((e.field.as_str(), e.code), ("name", ErrorCode::InvalidValue), "{raw:?}");
        }
        for (raw, kept) in [
            ("  Jane Doe ", Some("Jane Doe")),
            ("Élodie Ünal", Some("Élodie Ünal")),
            ("李小龍", Some("李小龍")),
            ("مرحبا", Some("مرحبا")),
            ("a\u{00A0}b", Some("a\u{00A0}b")), // no-break space shows as a space
            ("   ", None),
        ] {
            assert_eq!(clean_text("name", raw, 255), Ok(kept.map(str::to_owned)), "{raw:?}");
        }
    }

    #[test]
    fn serde_and_strum_spell_every_error_code_alike() {
        crate::wire::assert_one_spelling::<ErrorCode>();
        assert_eq!(ErrorCode::TokenLimitReached.as_str(), "TokenLimitReached");
        assert_eq!(ErrorCode::VARIANTS.len(), 9);
    }
}
