//! The account token policy (README.md, "Token policy"; docs/api.md,
//! "Account and settings"): rules an admin sets for the account's tokens,
//! checked when a token is created or restricted, and the sweeper's rules
//! for tokens that go unused and tokens left deactivated (Zendesk's own
//! retirement used 30 and 60 days).
//!
//! Every field is "no rule" when null or false. Days are 1 to 3650.

use crate::change::bool_change;
use crate::error::{ErrorCode, Invalid};
use crate::time::Timestamp;
use crate::token::{ApiToken, Restrictions};

/// The fewest and most days a day-counting rule may say.
pub const DAYS: std::ops::RangeInclusive<i64> = 1..=3650;
const DAY: i64 = 86_400;

/// An account's token policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenPolicy {
    /// A token's expiry may be at most this many days after its creation.
    pub max_lifetime_days: Option<i64>,
    /// Every token must have an expiry.
    pub require_expiry: bool,
    /// Every token must be assigned to one user.
    pub require_assigned_user: bool,
    /// The sweeper deactivates tokens unused (never used: since creation)
    /// for longer than this.
    pub deactivate_unused_after_days: Option<i64>,
    /// The sweeper deletes tokens deactivated for longer than this.
    pub delete_deactivated_after_days: Option<i64>,
    /// The sweeper deactivates active legacy tokens (imported in another
    /// system's format): rotate them first.
    pub deactivate_legacy_tokens: bool,
}

/// A change to a policy; `None` leaves a field alone, `Some(None)` clears a
/// day rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenPolicyPatch {
    pub max_lifetime_days: Option<Option<i64>>,
    pub require_expiry: Option<bool>,
    pub require_assigned_user: Option<bool>,
    pub deactivate_unused_after_days: Option<Option<i64>>,
    pub delete_deactivated_after_days: Option<Option<i64>>,
    pub deactivate_legacy_tokens: Option<bool>,
}

/// Checks a number of days (422 `InvalidValue` outside 1 to 3650).
pub fn parse_days(field: &str, days: i64) -> Result<i64, Invalid> {
    if DAYS.contains(&days) {
        Ok(days)
    } else {
        Err(Invalid::new(
            field,
            ErrorCode::InvalidValue,
            format!("{field} must be a number of days from 1 to 3650, or null"),
        ))
    }
}

fn days_change(field: &str, from: Option<i64>, to: Option<i64>) -> String {
    let show = |d: Option<i64>| d.map_or_else(|| "not set".to_owned(), |d| d.to_string());
    format!("token_policy.{field} changed from {} to {}", show(from), show(to))
}

impl TokenPolicyPatch {
    /// The policy after this patch, and a clause per changed field for the
    /// audit log (`token_policy.require_expiry changed from false to true`).
    pub fn apply(&self, current: &TokenPolicy) -> (TokenPolicy, Vec<String>) {
        let mut next = *current;
        let mut changes = Vec::new();
        let mut days = |field: &str, patch: Option<Option<i64>>, slot: &mut Option<i64>| {
            if let Some(value) = patch {
                if value != *slot {
                    changes.push(days_change(field, *slot, value));
                    *slot = value;
                }
            }
        };
        days("max_lifetime_days", self.max_lifetime_days, &mut next.max_lifetime_days);
        days(
            "deactivate_unused_after_days",
            self.deactivate_unused_after_days,
            &mut next.deactivate_unused_after_days,
        );
        days(
            "delete_deactivated_after_days",
            self.delete_deactivated_after_days,
            &mut next.delete_deactivated_after_days,
        );
        let mut flag = |field: &str, patch: Option<bool>, slot: &mut bool| {
            if let Some(on) = patch {
                if on != *slot {
                    changes.push(bool_change(&format!("token_policy.{field}"), *slot, on));
                    *slot = on;
                }
            }
        };
        flag("require_expiry", self.require_expiry, &mut next.require_expiry);
        flag(
            "require_assigned_user",
            self.require_assigned_user,
            &mut next.require_assigned_user,
        );
        flag(
            "deactivate_legacy_tokens",
            self.deactivate_legacy_tokens,
            &mut next.deactivate_legacy_tokens,
        );
        (next, changes)
    }
}

fn violation(field: &str, description: String) -> Invalid {
    Invalid::new(field, ErrorCode::PolicyViolation, description)
}

/// What the sweeper does to one token under a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepAction {
    /// Unused for longer than `deactivate_unused_after_days` (the number).
    Deactivate { days: i64 },
    /// Deactivated for longer than `delete_deactivated_after_days`.
    Delete { days: i64 },
    /// A legacy token while `deactivate_legacy_tokens` is on.
    DeactivateLegacy,
}

impl SweepAction {
    /// The audit event's `change_description`.
    pub fn describe(self) -> String {
        match self {
            SweepAction::Deactivate { days } => format!("unused for {days} days"),
            SweepAction::Delete { days } => format!("deactivated for {days} days"),
            SweepAction::DeactivateLegacy => "legacy token format (deactivate_legacy_tokens)".to_owned(),
        }
    }
}

impl TokenPolicy {
    /// Refuses restrictions that break a rule, for a token created at
    /// `created_at` (422 `PolicyViolation` naming the rule).
    pub fn check(&self, r: &Restrictions, created_at: Timestamp) -> Result<(), Invalid> {
        if self.require_assigned_user && r.assigned_user_id.is_none() {
            return Err(violation(
                "assigned_user_id",
                "The account's token policy requires every token to be assigned to a user (require_assigned_user)."
                    .into(),
            ));
        }
        if self.require_expiry && r.expires_at.is_none() {
            return Err(violation(
                "expires_at",
                "The account's token policy requires every token to expire (require_expiry).".into(),
            ));
        }
        if let Some(days) = self.max_lifetime_days {
            let latest = created_at.plus_secs(days * DAY);
            if r.expires_at.is_none_or(|at| at > latest) {
                return Err(violation(
                    "expires_at",
                    format!(
                        "The account's token policy lets a token live at most {days} days (max_lifetime_days): it must expire by {}.",
                        latest.rfc3339()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// What the sweeper does to `token` at `now`, given the latest use this
    /// process knows of (`last_used` may be newer than the stored one).
    pub fn sweep(&self, token: &ApiToken, last_used: Option<Timestamp>, now: Timestamp) -> Option<SweepAction> {
        if token.active {
            if token.legacy && self.deactivate_legacy_tokens {
                return Some(SweepAction::DeactivateLegacy);
            }
            let days = self.deactivate_unused_after_days?;
            let since = last_used.max(token.last_used).unwrap_or(token.created_at);
            (now.secs_since(since) > days * DAY).then_some(SweepAction::Deactivate { days })
        } else {
            let days = self.delete_deactivated_after_days?;
            let since = token.deactivated_at.unwrap_or(token.updated_at);
            (now.secs_since(since) > days * DAY).then_some(SweepAction::Delete { days })
        }
    }

    /// Whether the sweeper has anything to judge under this policy.
    pub fn sweeps(&self) -> bool {
        self.deactivate_unused_after_days.is_some()
            || self.delete_deactivated_after_days.is_some()
            || self.deactivate_legacy_tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{AccountId, TokenId, UserId};

    const T0: Timestamp = Timestamp::from_unix(1_800_000_000);

    fn token() -> ApiToken {
        ApiToken {
            id: TokenId::new(1),
            account_id: AccountId::new(1),
            description: None,
            active: true,
            visible_token: "lk_abcd…wxyz".into(),
            user_id: None,
            assigned_user_id: None,
            scopes: None,
            expires_at: None,
            allowed_ips: None,
            rate_limit: None,
            leaked_at: None,
            created_at: T0,
            updated_at: T0,
            last_used: None,
            previous_visible_token: None,
            previous_expires_at: None,
            previous_last_used: None,
            deactivated_at: None,
            legacy: false,
        }
    }

    fn days(n: i64) -> i64 {
        n * DAY
    }

    #[test]
    fn each_rule_names_itself_when_broken() {
        let p = TokenPolicy {
            require_assigned_user: true,
            ..TokenPolicy::default()
        };
        let err = p.check(&Restrictions::default(), T0).expect_err("no user");
        assert_eq!(
            (err.field.as_str(), err.code),
            ("assigned_user_id", ErrorCode::PolicyViolation)
        );
        assert!(err.description.contains("require_assigned_user"));
        let p = TokenPolicy {
            require_expiry: true,
            ..TokenPolicy::default()
        };
        assert!(p
            .check(&Restrictions::default(), T0)
            .expect_err("no expiry")
            .description
            .contains("require_expiry"));
        let p = TokenPolicy {
            max_lifetime_days: Some(30),
            ..TokenPolicy::default()
        };
        let within = Restrictions {
            expires_at: Some(T0.plus_secs(days(30))),
            ..Restrictions::default()
        };
        assert!(p.check(&within, T0).is_ok());
        let beyond = Restrictions {
            expires_at: Some(T0.plus_secs(days(30) + 1)),
            ..Restrictions::default()
        };
        let err = p.check(&beyond, T0).expect_err("too long");
        assert!(
            err.description.contains("at most 30 days (max_lifetime_days)"),
            "{}",
            err.description
        );
        assert!(
            p.check(&Restrictions::default(), T0).is_err(),
            "a maximum lifetime needs an expiry"
        );
        let ok = Restrictions {
            assigned_user_id: Some(UserId::new(3)),
            expires_at: Some(T0.plus_secs(5)),
            ..Restrictions::default()
        };
        let all = TokenPolicy {
            max_lifetime_days: Some(1),
            require_expiry: true,
            require_assigned_user: true,
            ..TokenPolicy::default()
        };
        assert!(all.check(&ok, T0).is_ok());
        assert!(TokenPolicy::default().check(&Restrictions::default(), T0).is_ok());
    }

    #[test]
    fn the_sweeper_deactivates_the_unused_and_deletes_the_long_deactivated() {
        let p = TokenPolicy {
            deactivate_unused_after_days: Some(30),
            delete_deactivated_after_days: Some(60),
            ..TokenPolicy::default()
        };
        let t = token();
        // Never used: counted from creation; "longer than" 30 days.
        assert_eq!(p.sweep(&t, None, T0.plus_secs(days(30))), None);
        assert_eq!(
            p.sweep(&t, None, T0.plus_secs(days(30) + 1)),
            Some(SweepAction::Deactivate { days: 30 })
        );
        // A use this process saw, newer than the stored one, counts.
        let seen = Some(T0.plus_secs(days(10)));
        assert_eq!(p.sweep(&t, seen, T0.plus_secs(days(31))), None);
        let mut off = token();
        off.active = false;
        off.deactivated_at = Some(T0.plus_secs(days(1)));
        assert_eq!(p.sweep(&off, None, T0.plus_secs(days(61))), None);
        assert_eq!(
            p.sweep(&off, None, T0.plus_secs(days(61) + 1)),
            Some(SweepAction::Delete { days: 60 })
        );
        assert_eq!(SweepAction::Deactivate { days: 30 }.describe(), "unused for 30 days");
        assert_eq!(SweepAction::Delete { days: 60 }.describe(), "deactivated for 60 days");
        assert_eq!(TokenPolicy::default().sweep(&t, None, T0.plus_secs(days(9999))), None);
    }

    #[test]
    fn policy_changes_are_worded_per_field() {
        let patch = TokenPolicyPatch {
            require_expiry: Some(true),
            deactivate_unused_after_days: Some(Some(30)),
            max_lifetime_days: Some(None),
            ..TokenPolicyPatch::default()
        };
        let (next, changes) = patch.apply(&TokenPolicy::default());
        assert!(next.require_expiry);
        assert_eq!(
            changes,
            vec![
                "token_policy.deactivate_unused_after_days changed from not set to 30",
                "token_policy.require_expiry changed from false to true",
            ]
        );
        assert!(patch.apply(&next).1.is_empty());
        assert!(parse_days("x", 0).is_err() && parse_days("x", 3651).is_err() && parse_days("x", 3650).is_ok());
    }
}
