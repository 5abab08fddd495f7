//! The wording of an audit event's change description: one clause per
//! changed field, as README.md's audit log section shows them
//! (`name changed from "A" to "B"`).
//!
//! This module knows no record type: accounts, users and tokens call it to
//! describe their own edits, and `audit` imports those record types, so the
//! wording lives here to keep the module graph acyclic.

/// `field changed from "A" to "B"`, with `not set` for a missing value.
pub fn text_change(field: &str, from: Option<&str>, to: Option<&str>) -> String {
    let show = |v: Option<&str>| match v {
        Some(s) => format!("\"{s}\""),
        None => "not set".to_owned(),
    };
    format!("{field} changed from {} to {}", show(from), show(to))
}

/// `field changed from false to true`.
pub fn bool_change(field: &str, from: bool, to: bool) -> String {
    format!("{field} changed from {from} to {to}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_descriptions_quote_text_and_spell_out_missing_values() {
        assert_eq!(
            text_change("description", Some("A"), Some("B")),
            r#"description changed from "A" to "B""#
        );
        assert_eq!(
            text_change("description", None, Some("B")),
            r#"description changed from not set to "B""#
        );
        assert_eq!(
            bool_change("api_token_access", false, true),
            "api_token_access changed from false to true"
        );
    }
}
