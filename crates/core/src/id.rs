//! Record ids as types: an [`AccountId`], a [`UserId`], a [`TokenId`] and an
//! [`AuditEventId`] are each one `i64` (the database's row id), but a value
//! of one cannot be passed where another is expected. They cost nothing at
//! run time (`#[repr(transparent)]`, and the derived `Hash` hashes the one
//! `i64`), and their JSON is the plain number docs/api.md shows.
//!
//! ```compile_fail
//! use latchkey_core::id::{AccountId, TokenId};
//!
//! fn account_only(_: AccountId) {}
//! account_only(TokenId::new(7));
//! ```

use std::fmt;
use std::num::ParseIntError;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Declares each id newtype once, so that all of them have the same
/// derives, constructors, `Display` and `FromStr`.
macro_rules! ids {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        #[repr(transparent)]
        pub struct $name(i64);

        impl $name {
            /// The id whose row id is `id`.
            pub const fn new(id: i64) -> Self {
                $name(id)
            }

            /// The row id.
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = ParseIntError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map($name)
            }
        }
    )*};
}

ids! {
    /// An account's id.
    AccountId;
    /// A user's id.
    UserId;
    /// An API token's id.
    TokenId;
    /// An audit event's id; ids grow with time, so they order the log.
    AuditEventId;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::DefaultHasher;
    use std::hash::{Hash, Hasher};

    #[test]
    fn ids_are_plain_numbers_in_json() {
        assert_eq!(serde_json::to_string(&AccountId::new(42)).expect("json"), "42");
        assert_eq!(serde_json::to_string(&Some(UserId::new(-1))).expect("json"), "-1");
        assert_eq!(serde_json::to_string(&None::<TokenId>).expect("json"), "null");
        assert_eq!(
            serde_json::from_str::<AuditEventId>("9007199254740993").expect("json"),
            AuditEventId::new(9_007_199_254_740_993)
        );
        assert!(serde_json::from_str::<TokenId>("\"7\"").is_err());
    }

    #[test]
    fn ids_display_and_parse_as_the_number() {
        assert_eq!(TokenId::new(7).to_string(), "7");
        assert_eq!(format!("{:>4}", UserId::new(7)), "   7");
        assert_eq!("123".parse::<AccountId>(), Ok(AccountId::new(123)));
        assert!("x".parse::<AccountId>().is_err());
        assert_eq!(AuditEventId::new(5).get(), 5);
    }

    #[test]
    fn ids_order_and_hash_as_their_number() {
        assert!(AuditEventId::new(2) > AuditEventId::new(1));
        let hash = |h: &dyn Fn(&mut DefaultHasher)| {
            let mut s = DefaultHasher::new();
            h(&mut s);
            s.finish()
        };
        assert_eq!(hash(&|s| TokenId::new(7).hash(s)), hash(&|s| 7i64.hash(s)));
        assert_eq!(
            std::mem::size_of::<Option<UserId>>(),
            std::mem::size_of::<Option<i64>>()
        );
        assert_eq!(std::mem::size_of::<AccountId>(), std::mem::size_of::<i64>());
    }
}
