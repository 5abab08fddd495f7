//! Audit events (README.md, "Audit log"; the record's fields are in
//! docs/api.md): what every change records, in the same transaction as the
//! change, and the hash chain that makes tampering visible.
//!
//! Each account's events form a chain: an event's `hash` is
//! `SHA-256(previous hash || canonical content)`, the first event's previous
//! hash being 32 zero bytes. The canonical content is the event's fields as
//! compact JSON in a fixed order (see [`AuditEvent::canonical`]).

use serde::Serialize;
use sha2::{Digest, Sha256};
use strum::{Display, EnumIter, EnumString, IntoStaticStr, VariantNames};

use crate::account::Account;
use crate::id::{AccountId, AuditEventId, UserId};
use crate::time::Timestamp;
use crate::token::ApiToken;
use crate::user::User;

/// What an event is about, spelled on the wire as docs/api.md shows
/// (`api_token`, ...).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, IntoStaticStr, EnumString, VariantNames, EnumIter, Display,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum SourceType {
    /// Parsed from `apitoken` too, an alias README.md's audit log section
    /// lists for `filter[source_type]`.
    #[strum(to_string = "api_token", serialize = "apitoken")]
    ApiToken,
    AccountSetting,
    Account,
    User,
}

impl SourceType {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Parses a source type; `apitoken` is accepted as an alias.
    pub fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
    }
}

/// What a change did.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, IntoStaticStr, EnumString, VariantNames, EnumIter, Display,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    Deactivate,
    Reactivate,
    Rotate,
    Destroy,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The past-tense label people read ("Deleted" for `destroy`); not a
    /// wire spelling.
    pub fn label(self) -> &'static str {
        match self {
            Action::Create => "Created",
            Action::Update => "Updated",
            Action::Deactivate => "Deactivated",
            Action::Reactivate => "Reactivated",
            Action::Rotate => "Rotated",
            Action::Destroy => "Deleted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
    }
}

/// Who is behind a change, as the audit log's `actor_type` spells it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, IntoStaticStr, EnumString, VariantNames, EnumIter, Display,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ActorType {
    /// A signed-in user or an API request.
    User,
    /// Whoever runs the `latchkey` CLI on the database.
    Operator,
    /// latchkey itself (first-run bootstrap, policy sweeps).
    System,
}

impl ActorType {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
    }
}

/// Who made a change, and from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub actor_type: ActorType,
    pub id: Option<UserId>,
    pub name: String,
    /// Where the actor acted from; formatted only when an event is written,
    /// not on every authenticated request.
    pub ip_address: Option<std::net::IpAddr>,
}

impl Actor {
    pub fn user(id: UserId, name: &str, ip_address: Option<std::net::IpAddr>) -> Self {
        Actor {
            actor_type: ActorType::User,
            id: Some(id),
            name: name.to_owned(),
            ip_address,
        }
    }

    pub fn operator() -> Self {
        Self::operator_named("Operator".to_owned())
    }

    /// The operator, named as the audit log shows them: the CLI writes
    /// `operator (root@db-1)`, after the OS user and host that ran the command.
    pub fn operator_named(name: String) -> Self {
        Actor {
            actor_type: ActorType::Operator,
            id: None,
            name,
            ip_address: None,
        }
    }

    pub fn system() -> Self {
        Actor {
            actor_type: ActorType::System,
            id: None,
            name: "System".to_owned(),
            ip_address: None,
        }
    }
}

/// One audit event, before (`id: 0`) or after it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub id: AuditEventId,
    pub account_id: AccountId,
    pub action: Action,
    pub actor_type: ActorType,
    pub actor_id: Option<UserId>,
    pub actor_name: String,
    pub source_type: SourceType,
    /// The id of what `source_type` names: a token's, a user's or an
    /// account's (for account settings too), so a plain row id rather than
    /// one of the id types; `source_type` says which kind it is.
    pub source_id: i64,
    pub source_label: String,
    pub change_description: String,
    pub ip_address: Option<String>,
    pub created_at: Timestamp,
}

/// The hashed form of an event. Its fields are plain numbers and strings,
/// whatever types the event uses, so the chain's bytes never depend on them.
#[derive(Serialize)]
struct Canonical<'a> {
    account_id: i64,
    action: &'a str,
    actor_type: &'a str,
    actor_id: Option<i64>,
    actor_name: &'a str,
    source_type: &'a str,
    source_id: i64,
    source_label: &'a str,
    change_description: &'a str,
    ip_address: Option<&'a str>,
    created_at: i64,
}

/// What an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub source_type: SourceType,
    /// A row id of the kind `source_type` names (see
    /// [`AuditEvent::source_id`]).
    pub id: i64,
    pub label: String,
}

impl Source {
    pub fn token(t: &ApiToken) -> Self {
        Source {
            source_type: SourceType::ApiToken,
            id: t.id.get(),
            label: t.source_label(),
        }
    }

    pub fn user(u: &User) -> Self {
        Source {
            source_type: SourceType::User,
            id: u.id.get(),
            label: u.source_label(),
        }
    }

    pub fn account(a: &Account) -> Self {
        Source {
            source_type: SourceType::Account,
            id: a.id.get(),
            label: format!("Account: {}", a.name),
        }
    }

    pub fn settings(account_id: AccountId) -> Self {
        Source {
            source_type: SourceType::AccountSetting,
            id: account_id.get(),
            label: "Account settings".to_owned(),
        }
    }
}

impl AuditEvent {
    pub fn new(
        account_id: AccountId,
        actor: &Actor,
        action: Action,
        source: Source,
        change_description: String,
        now: Timestamp,
    ) -> Self {
        AuditEvent {
            id: AuditEventId::new(0),
            account_id,
            action,
            actor_type: actor.actor_type,
            actor_id: actor.id,
            actor_name: actor.name.clone(),
            source_type: source.source_type,
            source_id: source.id,
            source_label: source.label,
            change_description,
            ip_address: actor.ip_address.map(|ip| ip.to_string()),
            created_at: now,
        }
    }

    /// The event's content as compact JSON with a fixed field order; the id
    /// is not part of it (the chain's order is the ids' order).
    pub fn canonical(&self) -> Vec<u8> {
        let c = Canonical {
            account_id: self.account_id.get(),
            action: self.action.as_str(),
            actor_type: self.actor_type.as_str(),
            actor_id: self.actor_id.map(UserId::get),
            actor_name: &self.actor_name,
            source_type: self.source_type.as_str(),
            source_id: self.source_id,
            source_label: &self.source_label,
            change_description: &self.change_description,
            ip_address: self.ip_address.as_deref(),
            created_at: self.created_at.unix(),
        };
        // Serialising plain strings and integers cannot fail.
        serde_json::to_vec(&c).unwrap_or_default()
    }

    /// This event's link in its account's chain.
    pub fn chain_hash(&self, previous: &[u8; 32]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(previous);
        h.update(self.canonical());
        h.finalize().into()
    }
}

/// The previous hash of an account's first event.
pub const GENESIS: [u8; 32] = [0; 32];

/// Walks events in id order and returns the id of the first whose stored
/// hash does not match, or `None` when the chain is intact.
pub fn first_broken<'a>(events: impl IntoIterator<Item = (&'a AuditEvent, [u8; 32])>) -> Option<AuditEventId> {
    let mut previous = GENESIS;
    for (event, stored) in events {
        let expected = event.chain_hash(&previous);
        if expected != stored {
            return Some(event.id);
        }
        previous = stored;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(desc: &str) -> AuditEvent {
        AuditEvent::new(
            AccountId::new(1),
            &Actor::user(UserId::new(3), "Jane", Some(std::net::IpAddr::from([127, 0, 0, 1]))),
            Action::Update,
            Source {
                source_type: SourceType::ApiToken,
                id: 7,
                label: "API token: Jira".into(),
            },
            desc.into(),
            Timestamp::from_unix(1_795_770_897),
        )
    }

    #[test]
    fn labels_and_aliases() {
        assert_eq!(Action::Destroy.label(), "Deleted");
        assert_eq!(SourceType::parse("apitoken"), Some(SourceType::ApiToken));
        assert_eq!(SourceType::parse("token"), None);
        assert_eq!(SourceType::ApiToken.as_str(), "api_token");
        assert_eq!(
            SourceType::VARIANTS,
            ["api_token", "account_setting", "account", "user"]
        );
    }

    #[test]
    fn serde_and_strum_spell_every_variant_alike() {
        crate::wire::assert_one_spelling::<SourceType>();
        crate::wire::assert_one_spelling::<Action>();
        crate::wire::assert_one_spelling::<ActorType>();
    }

    #[test]
    fn the_list_of_all_actions_is_every_variant_in_order() {}

    #[test]
    fn a_chain_detects_an_edited_event() {
        let mut a = event("x");
        a.id = AuditEventId::new(1);
        let mut b = event("y");
        b.id = AuditEventId::new(2);
        let ha = a.chain_hash(&GENESIS);
        let hb = b.chain_hash(&ha);
        assert_eq!(first_broken([(&a, ha), (&b, hb)]), None);
        let mut edited = b.clone();
        edited.change_description = "z".into();
        assert_eq!(first_broken([(&a, ha), (&edited, hb)]), Some(AuditEventId::new(2)));
    }

    #[test]
    fn the_canonical_content_is_pinned_byte_for_byte() {
        // The chains already stored hash exactly these bytes: ids, times and
        // the actor id are plain numbers, whatever their types.
        let e = event("x");
        assert_eq!(
            String::from_utf8(e.canonical()).expect("utf-8"),
            concat!(
                r#"{"account_id":1,"action":"update","actor_type":"user","actor_id":3,"#,
                r#""actor_name":"Jane","source_type":"api_token","source_id":7,"#,
                r#""source_label":"API token: Jira","change_description":"x","#,
                r#""ip_address":"127.0.0.1","created_at":1795770897}"#
            )
        );
        let mut system = e.clone();
        system.actor_id = None;
        assert!(String::from_utf8(system.canonical())
            .expect("utf-8")
            .contains(r#""actor_id":null"#));
        assert_eq!(
            hex::encode(e.chain_hash(&GENESIS)),
            hex::encode(Sha256::digest([&GENESIS[..], &e.canonical()].concat()))
        );
    }
}
