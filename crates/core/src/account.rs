//! Accounts: the tenant, its plan, its token limit and its
//! `api_token_access` setting (README.md, "Command line"; the JSON shape is
//! in docs/api.md).

use std::fmt;

use serde::{Deserialize, Serialize};
use strum::{Display, EnumIter, EnumString, IntoStaticStr, VariantNames};

use crate::change::{bool_change, text_change};
use crate::error::{required_text, ErrorCode, Invalid};
use crate::id::AccountId;
use crate::policy::{TokenPolicy, TokenPolicyPatch};
use crate::time::Timestamp;
use crate::token::DEFAULT_TOKEN_LIMIT;

/// An account subdomain, `^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$`. Its JSON is
/// the plain string; reading JSON goes through [`Subdomain::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct Subdomain(String);

impl Subdomain {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let b = s.as_bytes();
        let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        let ok = (3..=63).contains(&b.len())
            && edge(&b[0])
            && edge(&b[b.len() - 1])
            && b.iter().all(|c| edge(c) || *c == b'-');
        if ok {
            Ok(Subdomain(s.to_owned()))
        } else {
            Err(Invalid::new(
                "subdomain",
                ErrorCode::InvalidValue,
                "subdomain must be 3 to 63 lower-case letters, digits or hyphens, starting and ending with a letter or digit",
            ))
        }
    }

    /// A subdomain read back from latchkey's own database, where it was
    /// validated by [`Subdomain::parse`] when written. It is taken as
    /// stored, not checked again, so that a stored value stays readable if
    /// the rules tighten later. Use it only for such values.
    pub fn from_stored(stored: String) -> Self {
        Subdomain(stored)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Subdomain {
    type Error = Invalid;

    fn try_from(raw: String) -> Result<Self, Invalid> {
        Subdomain::parse(&raw)
    }
}

impl fmt::Display for Subdomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An account's display name, 1–255 characters.
pub fn parse_account_name(raw: &str) -> Result<String, Invalid> {
    required_text("name", raw, 255)
}

/// The account's plan; it decides whether the audit log can be viewed.
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
pub enum Plan {
    Team,
    Growth,
    Professional,
    Enterprise,
    EnterprisePlus,
}

impl Plan {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(s: &str) -> Result<Self, Invalid> {
        s.parse().map_err(|_| {
            Invalid::new(
                "plan",
                ErrorCode::InvalidValue,
                format!("plan must be one of {}", Plan::VARIANTS.join(", ")),
            )
        })
    }

    /// Audit events are recorded on every plan but viewed only on these.
    pub fn can_view_audit_log(self) -> bool {
        matches!(self, Plan::Enterprise | Plan::EnterprisePlus)
    }
}

/// An account as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub subdomain: Subdomain,
    pub name: String,
    pub plan: Plan,
    pub token_limit: i64,
    pub api_token_access: bool,
    pub token_policy: TokenPolicy,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A new account, validated.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub subdomain: Subdomain,
    pub name: String,
    pub plan: Plan,
    pub api_token_access: bool,
}

impl NewAccount {
    pub fn token_limit(&self) -> i64 {
        DEFAULT_TOKEN_LIMIT
    }
}

/// A change to an account's fields or settings; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct AccountPatch {
    pub name: Option<String>,
    pub plan: Option<Plan>,
    pub api_token_access: Option<bool>,
    pub token_policy: Option<TokenPolicyPatch>,
    /// Only the operator sets it (`latchkey account update --token-limit`),
    /// e.g. for a migration; checked against the tokens held when stored.
    pub token_limit: Option<i64>,
}

/// What an [`AccountPatch`] changes, split the way the audit log records it:
/// the account's own fields and its settings are separate events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountChanges {
    pub fields: Vec<String>,
    pub settings: Vec<String>,
}

impl AccountPatch {
    /// Applies the patch to `current`, returning the new account and the
    /// change clauses. Unchanged values produce no clause.
    pub fn apply(&self, current: &Account) -> (Account, AccountChanges) {
        let mut next = current.clone();
        let mut changes = AccountChanges::default();
        if let Some(name) = &self.name {
            if *name != current.name {
                changes
                    .fields
                    .push(text_change("name", Some(&current.name), Some(name)));
                next.name = name.clone();
            }
        }
        if let Some(plan) = self.plan {
            if plan != current.plan {
                changes
                    .fields
                    .push(text_change("plan", Some(current.plan.as_str()), Some(plan.as_str())));
                next.plan = plan;
            }
        }
        if let Some(limit) = self.token_limit {
            if limit != current.token_limit {
                changes
                    .fields
                    .push(format!("token_limit changed from {} to {limit}", current.token_limit));
                next.token_limit = limit;
            }
        }
        if let Some(on) = self.api_token_access {
            if on != current.api_token_access {
                changes
                    .settings
                    .push(bool_change("api_token_access", current.api_token_access, on));
                next.api_token_access = on;
            }
        }
        if let Some(policy) = &self.token_policy {
            let (policy, clauses) = policy.apply(&current.token_policy);
            next.token_policy = policy;
            changes.settings.extend(clauses);
        }
        (next, changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomains_follow_the_pattern() {
        for ok in ["abc", "acme-support", "a1b", &"a".repeat(63)] {
            assert!(Subdomain::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["ab", "-abc", "abc-", "ABC", "a_b", "a.bc", "", &"a".repeat(64), "äbc"] {
            assert!(Subdomain::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_subdomain_is_a_plain_string_in_json_and_text() {
        let s = Subdomain::parse("acme-support").expect("valid");
        assert_eq!(serde_json::to_string(&s).expect("json"), r#""acme-support""#);
        assert_eq!(s.to_string(), "acme-support");
        assert_eq!(serde_json::from_str::<Subdomain>(r#""acme-support""#).expect("json"), s);
        assert!(serde_json::from_str::<Subdomain>(r#""ACME""#).is_err());
        assert_eq!(Subdomain::from_stored("acme-support".to_owned()), s);
    }

    #[test]
    fn plans_parse_and_gate_the_audit_log() {
        assert_eq!(Plan::parse("enterprise_plus"), Ok(Plan::EnterprisePlus));
        assert_eq!(
            Plan::parse("free").map_err(|e| e.description),
            Err("plan must be one of team, growth, professional, enterprise, enterprise_plus".to_owned())
        );
        assert!(Plan::Enterprise.can_view_audit_log());
        assert!(!Plan::Professional.can_view_audit_log());
    }

    #[test]
    fn serde_and_strum_spell_every_plan_alike() {
        crate::wire::assert_one_spelling_both_ways::<Plan>();
    }

    #[test]
    fn a_patch_that_changes_nothing_reports_nothing() {
        let acct = Account {
            id: AccountId::new(1),
            subdomain: Subdomain::parse("acme").expect("valid"),
            name: "Acme".into(),
            plan: Plan::Team,
            token_limit: 256,
            api_token_access: false,
            token_policy: TokenPolicy::default(),
            created_at: Timestamp::EPOCH,
            updated_at: Timestamp::EPOCH,
        };
        let same = AccountPatch {
            name: Some("Acme".into()),
            plan: Some(Plan::Team),
            api_token_access: Some(false),
            token_policy: Some(TokenPolicyPatch::default()),
            token_limit: Some(256),
        };
        assert_eq!(same.apply(&acct).1, AccountChanges::default());
        let on = AccountPatch {
            api_token_access: Some(true),
            ..Default::default()
        };
        let (next, changes) = on.apply(&acct);
        assert!(next.api_token_access);
        assert_eq!(changes.settings, vec!["api_token_access changed from false to true"]);
    }
}
