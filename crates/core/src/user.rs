//! Users and roles: who may authenticate with a token and who may manage
//! tokens (README.md, "REST API"; the JSON shape is in docs/api.md).

use std::fmt;

use serde::{Deserialize, Serialize};
use strum::{Display, EnumIter, EnumString, IntoStaticStr, VariantNames};

use crate::change::{bool_change, text_change};
use crate::error::{required_text, ErrorCode, Invalid};
use crate::id::{AccountId, UserId};
use crate::secret::PasswordHash;
use crate::time::Timestamp;

/// An email address as the user typed it; compared case-insensitively.
/// Its JSON is the plain string; reading JSON goes through [`Email::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct Email(String);

impl Email {
    /// A pragmatic check: one `@` with text on both sides, at most 254
    /// characters, no white space, control characters or `:` (which would
    /// break the `{email}/token:{token}` credential).
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let s = raw.trim();
        let bad = || Invalid::new("email", ErrorCode::InvalidValue, "email is not a valid email address");
        if s.is_empty() {
            return Err(Invalid::new("email", ErrorCode::Blank, "email can't be blank"));
        }
        if s.chars().count() > 254 {
            return Err(Invalid::new(
                "email",
                ErrorCode::TooLong,
                "email is too long (maximum is 254 characters)",
            ));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control() || c == ':') {
            return Err(bad());
        }
        match s.split_once('@') {
            Some((local, domain)) if !local.is_empty() && !domain.is_empty() && !domain.contains('@') => {
                Ok(Email(s.to_owned()))
            }
            _ => Err(bad()),
        }
    }

    /// An email read back from latchkey's own database, where it was
    /// validated by [`Email::parse`] when written. It is taken as stored,
    /// not checked again, so that a stored value stays readable if the
    /// rules tighten later. Use it only for such values.
    pub fn from_stored(stored: String) -> Self {
        Email(stored)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form used for uniqueness and lookups.
    pub fn normalized(&self) -> String {
        normalize_email(&self.0)
    }
}

impl TryFrom<String> for Email {
    type Error = Invalid;

    fn try_from(raw: String) -> Result<Self, Invalid> {
        Email::parse(&raw)
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Lower-cases an email for comparison.
pub fn normalize_email(s: &str) -> String {
    s.to_lowercase()
}

/// A user's display name, 1–255 characters.
pub fn parse_user_name(raw: &str) -> Result<String, Invalid> {
    required_text("name", raw, 255)
}

/// What a user may do: admins manage tokens, users and settings; agents
/// list users; end users only authenticate.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    IntoStaticStr,
    EnumString,
    VariantNames,
    EnumIter,
    Display,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Role {
    Admin,
    Agent,
    EndUser,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(s: &str) -> Result<Self, Invalid> {
        s.parse().map_err(|_| {
            Invalid::new(
                "role",
                ErrorCode::InvalidValue,
                format!("role must be one of {}", Role::VARIANTS.join(", ")),
            )
        })
    }
}

/// A user as stored. The password hash is never part of this record: it
/// is read only where a password is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub account_id: AccountId,
    pub name: String,
    pub email: Email,
    pub role: Role,
    pub verified: bool,
    pub suspended: bool,
    pub deleted: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl User {
    /// Only verified, unsuspended, undeleted users authenticate, with a
    /// token or a password (docs/api.md describes the 401 the others get).
    pub fn can_authenticate(&self) -> bool {
        self.verified && !self.suspended && !self.deleted
    }

    pub fn source_label(&self) -> String {
        format!("User: {}", self.name)
    }
}

/// A new user, validated.
#[derive(Debug)]
pub struct NewUser {
    pub name: String,
    pub email: Email,
    pub role: Role,
    pub verified: bool,
    /// An Argon2id PHC string, when the user may sign in to the web pages.
    pub password_hash: Option<PasswordHash>,
}

/// An edit of a user; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub name: Option<String>,
    /// A new email (the Admin Center's Edit user; the REST API keeps
    /// `email` read-only, docs/api.md). A change of case alone is a change:
    /// emails are stored as given.
    pub email: Option<Email>,
    pub role: Option<Role>,
    pub verified: Option<bool>,
    pub suspended: Option<bool>,
}

impl UserPatch {
    /// The user after the patch and one change clause per changed field.
    pub fn apply(&self, current: &User) -> (User, Vec<String>) {
        let mut next = current.clone();
        let mut clauses = Vec::new();
        if let Some(name) = &self.name {
            if *name != current.name {
                clauses.push(text_change("name", Some(&current.name), Some(name)));
                next.name = name.clone();
            }
        }
        if let Some(email) = &self.email {
            if email.as_str() != current.email.as_str() {
                clauses.push(text_change("email", Some(current.email.as_str()), Some(email.as_str())));
                next.email = email.clone();
            }
        }
        if let Some(role) = self.role {
            if role != current.role {
                clauses.push(text_change("role", Some(current.role.as_str()), Some(role.as_str())));
                next.role = role;
            }
        }
        if let Some(v) = self.verified {
            if v != current.verified {
                clauses.push(bool_change("verified", current.verified, v));
                next.verified = v;
            }
        }
        if let Some(s) = self.suspended {
            if s != current.suspended {
                clauses.push(bool_change("suspended", current.suspended, s));
                next.suspended = s;
            }
        }
        (next, clauses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_checked_and_compared_case_insensitively() {
        let e = Email::parse(" Jane.Doe@Example.COM ").expect("valid");
        assert_eq!(e.as_str(), "Jane.Doe@Example.COM");
        assert_eq!(e.normalized(), "jane.doe@example.com");
        for bad in [
            "jane",
            "@example.com",
            "jane@",
            "ja ne@x.io",
            "a@b@c",
            "a:b@c.io",
            "a\u{7}@b.io",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Email::parse("").map_err(|e| e.code), Err(ErrorCode::Blank));
    }

    #[test]
    fn an_email_is_a_plain_string_in_json_and_text() {
        let e = Email::parse("Jane@Example.com").expect("valid");
        assert_eq!(serde_json::to_string(&e).expect("json"), r#""Jane@Example.com""#);
        assert_eq!(e.to_string(), "Jane@Example.com");
        assert_eq!(serde_json::from_str::<Email>(r#""Jane@Example.com""#).expect("json"), e);
        assert!(serde_json::from_str::<Email>(r#""jane""#).is_err());
        assert_eq!(Email::from_stored("Jane@Example.com".to_owned()), e);
    }

    #[test]
    fn roles_parse() {
        assert_eq!(Role::parse("end_user"), Ok(Role::EndUser));
        assert_eq!(
            Role::parse("owner").map_err(|e| e.description),
            Err("role must be one of admin, agent, end_user".to_owned())
        );
        crate::wire::assert_one_spelling_both_ways::<Role>();
    }

    #[test]
    fn user_patches_describe_each_changed_field() {
        let u = User {
            id: UserId::new(1),
            account_id: AccountId::new(1),
            name: "Jane".into(),
            email: Email::parse("j@x.io").expect("valid"),
            role: Role::Agent,
            verified: true,
            suspended: false,
            deleted: false,
            created_at: Timestamp::EPOCH,
            updated_at: Timestamp::EPOCH,
        };
        let p = UserPatch {
            name: Some("Jane".into()),
            email: Some(Email::parse("Jane.Doe@x.io").expect("valid")),
            role: Some(Role::Admin),
            suspended: Some(true),
            ..Default::default()
        };
        let (next, clauses) = p.apply(&u);
        assert_eq!(next.role, Role::Admin);
        assert_eq!(next.email.as_str(), "Jane.Doe@x.io");
        assert_eq!(
            clauses,
            vec![
                r#"email changed from "j@x.io" to "Jane.Doe@x.io""#,
                r#"role changed from "agent" to "admin""#,
                "suspended changed from false to true"
            ]
        );
        assert!(!next.can_authenticate());
    }
}
