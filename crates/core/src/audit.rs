//! Audit events (README.md, "Audit log"; the record's fields are in
//! docs/api.md): what every change records, in the same transaction as the
//! change, and the hash chain that makes tampering visible.
//!
//! Each account's events form a chain: an event's `hash` is
//! `SHA-256(previous hash || canonical content)`, the first event's previous
//! hash being 32 zero bytes. The canonical content is the event's fields as
//! compact JSON in a fixed order (see [`AuditEvent::canonical`]).
//!
//! Two records make truncation and retention visible (README.md, "Audit
//! retention"): every account's [`Head`] (its newest event's id and hash,
//! written in the same transaction as each event), and the [`Checkpoint`]
//! event that retention writes when it prunes old events, recording the
//! hash the remaining chain continues from. [`verify`] checks both.

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
    /// Audit retention removed the account's oldest events; the event is a
    /// [`Checkpoint`] (docs/api.md, "Audit log").
    Prune,
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
            Action::Prune => "Pruned",
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

/// What a checkpoint event's source is: the account's audit log itself.
pub const CHECKPOINT_SOURCE_LABEL: &str = "Audit log";

/// What audit retention records when it prunes an account's oldest events,
/// as the `change_description` of a `prune` event by `system` (README.md,
/// "Audit retention"). The event is part of the chain, so what it records
/// is itself protected by the chain. The remaining chain is verified from
/// `from_hash`, the hash of the last pruned event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// How many events this checkpoint's pruning removed.
    pub pruned: i64,
    /// They were all created before this time.
    pub before: Timestamp,
    /// The deployment's retention when they were pruned.
    pub retention_days: u32,
    /// How many events retention has removed from the account in all.
    pub pruned_total: i64,
    /// The last event removed: the remaining chain follows it.
    pub after_event: AuditEventId,
    /// That event's hash: the previous hash of the first event kept.
    pub from_hash: [u8; 32],
}

impl Checkpoint {
    /// The event's source: the account's audit log (`source_type`
    /// `account`, the account's id, labelled `Audit log`).
    pub fn source(account_id: AccountId) -> Source {
        Source {
            source_type: SourceType::Account,
            id: account_id.get(),
            label: CHECKPOINT_SOURCE_LABEL.to_owned(),
        }
    }

    /// The `change_description`, as docs/api.md spells it:
    /// `1234 events created before 2026-01-01T00:00:00Z pruned by audit
    /// retention (365 days); 1234 pruned in all; the chain continues after
    /// event 5678 from hash 3f…` (64 hexadecimal digits).
    pub fn describe(&self) -> String {
        format!(
            "{} events created before {} pruned by audit retention ({} days); {} pruned in all; \
             the chain continues after event {} from hash {}",
            self.pruned,
            self.before.rfc3339(),
            self.retention_days,
            self.pruned_total,
            self.after_event,
            hex::encode(self.from_hash)
        )
    }

    /// Reads a description [`Checkpoint::describe`] wrote, exactly.
    pub fn parse(description: &str) -> Option<Checkpoint> {
        let (pruned, rest) = description.split_once(" events created before ")?;
        let (before, rest) = rest.split_once(" pruned by audit retention (")?;
        let (days, rest) = rest.split_once(" days); ")?;
        let (total, rest) = rest.split_once(" pruned in all; the chain continues after event ")?;
        let (after, hash) = rest.split_once(" from hash ")?;
        let mut from_hash = [0u8; 32];
        hex::decode_to_slice(hash, &mut from_hash).ok()?;
        let c = Checkpoint {
            pruned: pruned.parse().ok()?,
            before: Timestamp::parse_rfc3339(before)?,
            retention_days: days.parse().ok()?,
            pruned_total: total.parse().ok()?,
            after_event: AuditEventId::new(after.parse().ok()?),
            from_hash,
        };
        (c.describe() == description).then_some(c)
    }
}

/// The start of the UTC day `days` days before `now`: retention prunes the
/// events created before it, so an account's pruning happens at most once
/// a day (README.md, "Audit retention").
pub fn retention_cutoff(now: Timestamp, days: u32) -> Timestamp {
    let t = now.minus_secs(i64::from(days) * 86_400).unix();
    Timestamp::from_unix(t - t.rem_euclid(86_400))
}

/// An account's recorded chain head: the newest event's id and hash,
/// written in the same transaction as the event (and by retention), so that
/// deleting the newest events leaves a chain that no longer reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub event_id: AuditEventId,
    pub hash: [u8; 32],
    /// How many events retention has removed from the account in all.
    pub pruned: i64,
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every event chains onto the one before it, from the newest
    /// checkpoint (or from the start), and the recorded head is among them.
    Intact {
        events: usize,
        /// The checkpoint the chain was verified from, if retention pruned.
        checkpoint: Option<Checkpoint>,
        /// The recorded head; `None` for an account without events.
        head: Option<AuditEventId>,
        /// Events after the recorded head that chain onto it (written by a
        /// node of an earlier release, which did not record heads).
        after_head: usize,
    },
    /// This event does not match its hash chain (an edited, deleted or
    /// moved row; or a `prune` event that is not a checkpoint).
    Broken(AuditEventId),
    /// The recorded head is not in the log: its newest events were
    /// deleted. `newest` is the event the log now ends at.
    HeadMissing {
        head: AuditEventId,
        newest: Option<AuditEventId>,
    },
    /// The account has events but no recorded head.
    NoHead { newest: AuditEventId },
}

/// Checks an account's chain (its events in id order with their stored
/// hashes) against its recorded head: from the newest checkpoint's hash
/// (or from [`GENESIS`] when nothing was pruned) every event must chain
/// onto the one before it, and the recorded head must be one of them,
/// with the same hash.
pub fn verify(events: &[(AuditEvent, [u8; 32])], head: Option<&Head>) -> Verdict {
    let checkpoint = match events.iter().rev().find(|(e, _)| e.action == Action::Prune) {
        Some((e, _)) => match Checkpoint::parse(&e.change_description) {
            Some(c) => Some(c),
            None => return Verdict::Broken(e.id),
        },
        None => None,
    };
    let mut previous = checkpoint.as_ref().map_or(GENESIS, |c| c.from_hash);
    for (event, stored) in events {
        if event.chain_hash(&previous) != *stored {
            return Verdict::Broken(event.id);
        }
        previous = *stored;
    }
    let newest = events.last().map(|(e, _)| e.id);
    let Some(head) = head else {
        return match newest {
            Some(newest) => Verdict::NoHead { newest },
            None => Verdict::Intact {
                events: 0,
                checkpoint,
                head: None,
                after_head: 0,
            },
        };
    };
    match events.iter().position(|(e, _)| e.id == head.event_id) {
        Some(at) if events[at].1 == head.hash => Verdict::Intact {
            events: events.len(),
            checkpoint,
            head: Some(head.event_id),
            after_head: events.len() - at - 1,
        },
        // The head's row is there with another hash: the chain from it on
        // was rewritten.
        Some(_) => Verdict::Broken(head.event_id),
        None => Verdict::HeadMissing {
            head: head.event_id,
            newest,
        },
    }
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
    fn the_list_of_all_actions_is_every_variant_in_order() {
        assert_eq!(
            Action::VARIANTS,
            [
                "create",
                "update",
                "deactivate",
                "reactivate",
                "rotate",
                "destroy",
                "prune"
            ]
        );
        assert_eq!(Action::Prune.label(), "Pruned");
    }

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            pruned: 1234,
            before: Timestamp::from_unix(1_767_225_600),
            retention_days: 365,
            pruned_total: 2000,
            after_event: AuditEventId::new(5678),
            from_hash: [0xab; 32],
        }
    }

    #[test]
    fn a_checkpoint_reads_back_exactly_what_it_wrote() {
        let c = checkpoint();
        let text = c.describe();
        assert_eq!(
            text,
            format!(
                "1234 events created before 2026-01-01T00:00:00Z pruned by audit retention (365 days); \
                 2000 pruned in all; the chain continues after event 5678 from hash {}",
                "ab".repeat(32)
            )
        );
        assert_eq!(Checkpoint::parse(&text), Some(c));
        for bad in [
            "",
            "description changed",
            &text.replace("5678", "x"),
            &text[..text.len() - 2],
            &text.replace("2026-01-01T00:00:00Z", "2026-01-01T01:00:00+01:00"),
            &format!("{text} "),
        ] {
            assert_eq!(Checkpoint::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_retention_cutoff_is_the_start_of_a_utc_day() {
        // 2026-01-31T13:45:00Z, 30 days: 2026-01-01T00:00:00Z.
        let now = Timestamp::from_unix(1_769_867_100);
        assert_eq!(retention_cutoff(now, 30).rfc3339(), "2026-01-01T00:00:00Z");
        assert_eq!(
            retention_cutoff(Timestamp::from_unix(1_767_225_600), 1).rfc3339(),
            "2025-12-31T00:00:00Z"
        );
    }

    /// A chain of `n` events from `previous`, ids from `first`.
    fn chain(first: i64, n: i64, mut previous: [u8; 32]) -> Vec<(AuditEvent, [u8; 32])> {
        (0..n)
            .map(|i| {
                let mut e = event(&format!("e{i}"));
                e.id = AuditEventId::new(first + i);
                let h = e.chain_hash(&previous);
                previous = h;
                (e, h)
            })
            .collect()
    }

    fn head_of(events: &[(AuditEvent, [u8; 32])]) -> Head {
        let (e, h) = events.last().expect("an event");
        Head {
            event_id: e.id,
            hash: *h,
            pruned: 0,
        }
    }

    #[test]
    fn verify_checks_the_chain_and_the_recorded_head() {
        let events = chain(1, 5, GENESIS);
        let head = head_of(&events);
        assert_eq!(
            verify(&events, Some(&head)),
            Verdict::Intact {
                events: 5,
                checkpoint: None,
                head: Some(AuditEventId::new(5)),
                after_head: 0
            }
        );
        // The newest two deleted: the chain verifies, the head is missing.
        assert_eq!(
            verify(&events[..3], Some(&head)),
            Verdict::HeadMissing {
                head: AuditEventId::new(5),
                newest: Some(AuditEventId::new(3))
            }
        );
        assert_eq!(
            verify(&[], Some(&head)),
            Verdict::HeadMissing {
                head: AuditEventId::new(5),
                newest: None
            }
        );
        assert_eq!(
            verify(&events, None),
            Verdict::NoHead {
                newest: AuditEventId::new(5)
            }
        );
        assert!(matches!(verify(&[], None), Verdict::Intact { events: 0, .. }));
        // Events after the head that chain onto it are accepted and counted.
        let older_head = head_of(&events[..4]);
        assert!(matches!(
            verify(&events, Some(&older_head)),
            Verdict::Intact { after_head: 1, .. }
        ));
        // An edited event is named, before any head check.
        let mut edited = events.clone();
        edited[1].0.change_description = "z".into();
        assert_eq!(verify(&edited, Some(&head)), Verdict::Broken(AuditEventId::new(2)));
    }

    #[test]
    fn verify_starts_from_the_newest_checkpoint() {
        // Events 1..=10 existed; 1..=6 were pruned; the checkpoint is 11.
        let all = chain(1, 10, GENESIS);
        let c = Checkpoint {
            pruned: 6,
            before: Timestamp::from_unix(1_767_225_600),
            retention_days: 30,
            pruned_total: 6,
            after_event: AuditEventId::new(6),
            from_hash: all[5].1,
        };
        let mut kept: Vec<(AuditEvent, [u8; 32])> = all[6..].to_vec();
        let mut cp = AuditEvent::new(
            AccountId::new(1),
            &Actor::system(),
            Action::Prune,
            Checkpoint::source(AccountId::new(1)),
            c.describe(),
            Timestamp::from_unix(1_769_867_100),
        );
        cp.id = AuditEventId::new(11);
        let h = cp.chain_hash(&kept[kept.len() - 1].1);
        kept.push((cp, h));
        let head = head_of(&kept);
        assert_eq!(
            verify(&kept, Some(&head)),
            Verdict::Intact {
                events: 5,
                checkpoint: Some(c.clone()),
                head: Some(AuditEventId::new(11)),
                after_head: 0
            }
        );
        // The oldest kept event deleted too: the next one does not chain
        // from the checkpoint's hash.
        assert_eq!(verify(&kept[1..], Some(&head)), Verdict::Broken(AuditEventId::new(8)));
        // A prune event that is not a checkpoint is named.
        let mut forged = kept.clone();
        forged[4].0.change_description = "pruned".into();
        assert_eq!(verify(&forged, Some(&head)), Verdict::Broken(AuditEventId::new(11)));
    }

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
