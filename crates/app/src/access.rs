//! The capabilities every [`crate::App`] read and write takes: each names
//! the account it acts in and who is acting. None can be built from a bare
//! account id outside this crate:
//!
//! - [`UserAccess`]: an authenticated user (any role), made only by a
//!   successful authentication ([`crate::App::authenticate`], a live
//!   session from [`crate::App::session`]).
//! - [`AdminAccess`]: the right to change an account, made only from a
//!   [`UserAccess`] whose user is an admin ([`UserAccess::admin`]) or for the
//!   operator's command line ([`crate::App::operator`]).

use std::net::IpAddr;

use latchkey_core::{
    audit::Actor,
    id::{AccountId, UserId},
    user::{Role, User},
};

mod sealed {
    pub trait Sealed {}
}

/// Any capability: what reads need (the account they read in).
pub trait Access: sealed::Sealed {
    fn account_id(&self) -> AccountId;
    fn actor(&self) -> &Actor;
}

/// An authenticated user of one account, acting from one address.
#[derive(Debug, Clone)]
pub struct UserAccess {
    account_id: AccountId,
    user_id: UserId,
    role: Role,
    actor: Actor,
}

impl UserAccess {
    pub(crate) fn new(user: &User, ip: IpAddr) -> Self {
        UserAccess {
            account_id: user.account_id,
            user_id: user.id,
            role: user.role,
            actor: Actor::user(user.id, &user.name, Some(ip)),
        }
    }

    pub fn user_id(&self) -> UserId {
        self.user_id
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// The right to change the account, when the user is its admin.
    pub fn admin(&self) -> Option<AdminAccess> {
        (self.role == Role::Admin).then(|| AdminAccess {
            account_id: self.account_id,
            actor: self.actor.clone(),
        })
    }
}

/// The right to change one account, and who is using it.
#[derive(Debug, Clone)]
pub struct AdminAccess {
    account_id: AccountId,
    actor: Actor,
}

impl AdminAccess {
    /// Whoever runs the CLI on the database acts as the operator.
    pub(crate) fn operator(account_id: AccountId) -> Self {
        AdminAccess {
            account_id,
            actor: operator_actor(),
        }
    }
}

impl sealed::Sealed for UserAccess {}
impl sealed::Sealed for AdminAccess {}

impl Access for UserAccess {
    fn account_id(&self) -> AccountId {
        self.account_id
    }

    fn actor(&self) -> &Actor {
        &self.actor
    }
}

impl Access for AdminAccess {
    fn account_id(&self) -> AccountId {
        self.account_id
    }

    fn actor(&self) -> &Actor {
        &self.actor
    }
}

/// The operator as the audit log names them: `operator (user@host)`, from
/// the environment's `USER` (or `LOGNAME`) and the kernel's host name, read
/// once per process.
pub(crate) fn operator_actor() -> Actor {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let name = NAME.get_or_init(|| {
        let user = ["USER", "LOGNAME"]
            .iter()
            .filter_map(|v| std::env::var(v).ok())
            .find(|v| !v.trim().is_empty())
            .unwrap_or_else(|| "unknown".to_owned());
        let host = ["/proc/sys/kernel/hostname", "/etc/hostname"]
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .map(|h| h.trim().to_owned())
            .find(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_owned());
        format!("operator ({}@{})", user.trim(), host)
    });
    Actor::operator_named(name.clone())
}
