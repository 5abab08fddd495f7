//! The API token format (docs/api.md describes it) and the token rules
//! that need no storage: descriptions, the limit, and how an edit turns into
//! changes.
//!
//! A token is `{prefix}_{random}{checksum}`: a deployment prefix, 32 base62
//! characters from the OS CSPRNG, and 6 base62 characters of CRC32 over
//! `{prefix}_{random}`. Only SHA-256 of the whole token is ever stored.
//! Never change a live deployment's prefix: secret scanners are told about it.

use std::fmt;

use rand::{distributions::Alphanumeric, rngs::OsRng, Rng};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use strum::{Display, IntoStaticStr};

use crate::allowlist::IpAllowlist;
use crate::change::text_change;
use crate::error::{clean_text, ErrorCode, Invalid};
use crate::id::{AccountId, TokenId, UserId};
use crate::rate_limit::RateLimit;
use crate::scope::{self, Scopes};
use crate::time::Timestamp;

const RANDOM_LEN: usize = 32;
const CHECKSUM_LEN: usize = 6;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The most tokens an account may hold (the 422 `TokenLimitReached` of
/// docs/api.md), and the limit of an account that imported more than that.
pub const DEFAULT_TOKEN_LIMIT: i64 = 256;
pub const IMPORTED_TOKEN_LIMIT: i64 = 2048;
/// Longest description, in characters.
pub const DESCRIPTION_MAX: usize = 255;

/// A deployment's token prefix, `^[a-z][a-z0-9]{1,9}$`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPrefix(String);

impl TokenPrefix {
    pub fn parse(s: &str) -> Result<Self, String> {
        if is_prefix(s) {
            Ok(TokenPrefix(s.to_owned()))
        } else {
            Err(format!(
                "invalid token prefix {s:?}: it must match ^[a-z][a-z0-9]{{1,9}}$"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for TokenPrefix {
    fn default() -> Self {
        TokenPrefix("lk".to_owned())
    }
}

fn is_prefix(s: &str) -> bool {
    let b = s.as_bytes();
    (2..=10).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b[1..].iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

fn is_base62(b: &[u8]) -> bool {
    // Without early exit, so that it compiles to vector compares: every
    // request's token passes through here.
    b.iter().fold(true, |ok, &c| {
        ok & ((c.wrapping_sub(b'0') < 10) | ((c | 0x20).wrapping_sub(b'a') < 26))
    })
}

fn checksum(body: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut n = crc32fast::hash(body);
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out
}

/// A full token in plain text. It exists only between generation and the
/// response that shows it once, and while a request is being verified.
///
/// The text is held as a [`SecretString`]: it is wiped from memory when the
/// token is dropped, the type is neither `Clone` nor `PartialEq` nor
/// `Display`, its `Debug` is redacted, and the only way to read it is the
/// explicit [`PlainToken::expose`] (ARCHITECTURE.md, "Invariants").
#[derive(Debug)]
pub struct PlainToken(SecretString);

impl PlainToken {
    /// A new token from the OS CSPRNG.
    pub fn generate(prefix: &TokenPrefix) -> Self {
        // One buffer of exactly the token's length: the secret is never
        // copied, and turning it into the secret's box does not reallocate
        // (which would leave an unwiped copy behind).
        let mut token = String::with_capacity(prefix.as_str().len() + 1 + RANDOM_LEN + CHECKSUM_LEN);
        token.push_str(prefix.as_str());
        token.push('_');
        token.extend(OsRng.sample_iter(&Alphanumeric).take(RANDOM_LEN).map(char::from));
        let sum = checksum(token.as_bytes());
        token.extend(sum.iter().map(|&c| char::from(c)));
        PlainToken(SecretString::from(token))
    }

    /// Accepts a string only if it has the token shape and a valid checksum.
    /// This costs a CRC32, no lookup: mistyped and made-up tokens stop here.
    pub fn parse(s: &str) -> Option<Self> {
        has_valid_checksum(s).then(|| PlainToken(SecretString::from(s)))
    }

    /// The secret itself, to hand to its owner once. Every read of the
    /// text goes through here, so a search for `expose(` finds them all.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash::of(self.expose())
    }

    /// `{prefix}_{first 4 of random}…{last 4 of token}`, the `visible_token`
    /// of docs/api.md.
    pub fn visible(&self) -> String {
        visible_token(self.expose()).unwrap_or_default()
    }
}

/// True when `s` is `{prefix}_{32 base62}{6 base62 checksum}` and the
/// checksum matches.
pub fn has_valid_checksum(s: &str) -> bool {
    let b = s.as_bytes();
    let Some(us) = b.iter().position(|&c| c == b'_') else {
        return false;
    };
    let (prefix, rest) = (&s[..us], &b[us + 1..]);
    if !is_prefix(prefix) || rest.len() != RANDOM_LEN + CHECKSUM_LEN || !is_base62(rest) {
        return false;
    }
    let body_len = us + 1 + RANDOM_LEN;
    // Decoding the given checksum does not wait for the CRC, unlike
    // encoding the CRC to compare text, so the two overlap in the CPU.
    decode_base62(&b[body_len..]) == u64::from(crc32fast::hash(&b[..body_len]))
}

/// The value of base62 digits (already checked to be base62).
fn decode_base62(digits: &[u8]) -> u64 {
    digits.iter().fold(0u64, |n, &c| {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'A'..=b'Z' => c - b'A' + 10,
            _ => c.wrapping_sub(b'a').wrapping_add(36),
        };
        n * 62 + u64::from(d)
    })
}

/// The truncated form shown after creation, or `None` if `token` does not
/// have the token shape.
pub fn visible_token(token: &str) -> Option<String> {
    let us = token.find('_')?;
    let rest = token.get(us + 1..)?;
    if rest.len() != RANDOM_LEN + CHECKSUM_LEN || !rest.is_ascii() {
        return None;
    }
    Some(format!(
        "{}_{}\u{2026}{}",
        &token[..us],
        &rest[..4],
        &token[token.len() - 4..]
    ))
}

/// The shortest and longest legacy token accepted (README.md, "Migrating
/// from Zendesk"); a Zendesk token is 40 characters.
pub const LEGACY_LEN: std::ops::RangeInclusive<usize> = 16..=128;

/// True when `s` could be a token of another system: 16 to 128 characters
/// of ASCII letters, digits and `-_.~+/=` (Zendesk's are 40 letters and
/// digits). Such strings are hashed and looked up only while the deployment
/// holds legacy tokens.
pub fn is_legacy_shaped(s: &str) -> bool {
    LEGACY_LEN.contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~' | b'+' | b'/' | b'='))
}

/// What the list shows of a legacy token: its first and last four
/// characters, `abcd…wxyz`.
pub fn legacy_visible_token(token: &str) -> Option<String> {
    is_legacy_shaped(token).then(|| format!("{}\u{2026}{}", &token[..4], &token[token.len() - 4..]))
}

/// What the list shows of a token imported by its hash alone, with no
/// visible form given.
pub const IMPORTED_VISIBLE_TOKEN: &str = "imported";

/// SHA-256 of a token: what the database and the verifier hold.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    pub fn of(token: &str) -> Self {
        TokenHash(Sha256::digest(token.as_bytes()).into())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(TokenHash(out))
    }

    pub fn from_slice(b: &[u8]) -> Option<Self> {
        b.try_into().ok().map(TokenHash)
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A hash is not the secret, but it is what an attacker would need to
        // look a token up in a dump: show only enough to tell two apart.
        write!(f, "TokenHash({}…)", &self.to_hex()[..8])
    }
}

/// A token description: trimmed, ≤ 255 characters, no control characters;
/// empty means none.
pub fn parse_description(raw: &str) -> Result<Option<String>, Invalid> {
    clean_text("description", raw, DESCRIPTION_MAX)
}

/// Refuses a creation that would take the account over its limit (422
/// `TokenLimitReached`, docs/api.md).
pub fn check_room(count: i64, adding: i64, limit: i64) -> Result<(), Invalid> {
    if count + adding > limit {
        return Err(limit_reached(limit));
    }
    Ok(())
}

pub fn limit_reached(limit: i64) -> Invalid {
    Invalid::new(
        "base",
        ErrorCode::TokenLimitReached,
        format!("You have reached the maximum of {limit} API tokens. Delete an existing token to add a new one."),
    )
}

/// Refuses to delete an active token (422 `TokenActive`, docs/api.md).
pub fn check_deletable(active: bool) -> Result<(), Invalid> {
    if active {
        return Err(Invalid::new(
            "base",
            ErrorCode::TokenActive,
            "Deactivate the token before deleting it.",
        ));
    }
    Ok(())
}

/// Refuses to rotate a deactivated token (422 `TokenInactive`, docs/api.md).
pub fn check_rotatable(active: bool) -> Result<(), Invalid> {
    if !active {
        return Err(Invalid::new(
            "base",
            ErrorCode::TokenInactive,
            "Only an active token can be rotated; reactivate it first.",
        ));
    }
    Ok(())
}

/// The token limit after an import leaves the account with `count` tokens.
pub fn limit_after_import(current_limit: i64, count: i64) -> i64 {
    if count > DEFAULT_TOKEN_LIMIT {
        current_limit.max(IMPORTED_TOKEN_LIMIT)
    } else {
        current_limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_have_the_documented_shape() {
        let t = PlainToken::generate(&TokenPrefix::default());
        let s = t.expose();
        assert!(s.starts_with("lk_"));
        assert_eq!(s.len(), 3 + 32 + 6);
        assert!(has_valid_checksum(s));
        assert!(is_base62(&s.as_bytes()[3..]));
    }

    #[test]
    fn two_generated_tokens_differ() {
        let p = TokenPrefix::default();
        assert_ne!(PlainToken::generate(&p).expose(), PlainToken::generate(&p).expose());
    }

    #[test]
    fn checksum_is_crc32_in_base62_left_padded() {
        // CRC32("lk_") = 3276871007; in base62 that is "3ZlPqB".
        assert_eq!(crc32fast::hash(b"lk_"), 3_276_871_007);
        assert_eq!(&checksum(b"lk_"), b"3ZlPqB");
        // Small values keep six characters.
        let mut n = 0u32;
        let body = loop {
            let candidate = format!("x{n}");
            if crc32fast::hash(candidate.as_bytes()) < 62u32.pow(5) {
                break candidate;
            }
            n += 1;
        };
        assert_eq!(checksum(body.as_bytes())[0], b'0');
    }

    #[test]
    fn decoding_a_checksum_inverts_its_encoding() {
        for n in [0u32, 1, 61, 62, 3_276_871_007, u32::MAX] {
            let mut m = n;
            let mut text = [b'0'; CHECKSUM_LEN];
            for slot in text.iter_mut().rev() {
                *slot = BASE62[(m % 62) as usize];
                m /= 62;
            }
            assert_eq!(decode_base62(&text), u64::from(n));
        }
        assert_eq!(decode_base62(b"3ZlPqB"), 3_276_871_007);
        assert_eq!(decode_base62(b"zzzzzz"), 62u64.pow(6) - 1);
    }

    #[test]
    fn a_changed_character_breaks_the_checksum() {
        let t = PlainToken::generate(&TokenPrefix::default());
        let mut bytes = t.expose().as_bytes().to_vec();
        bytes[10] = if bytes[10] == b'a' { b'b' } else { b'a' };
        let broken = String::from_utf8(bytes).expect("ascii");
        assert!(!has_valid_checksum(&broken));
        assert!(PlainToken::parse(&broken).is_none());
    }

    #[test]
    fn malformed_strings_are_not_tokens() {
        for s in [
            "",
            "_",
            "lk_",
            "lk_short",
            "LK_4fQ9aaaaaaaaaaaaaaaaaaaaaaaaaaaa000000",
            "lkü_x",
            "l_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa000000",
        ] {
            assert!(!has_valid_checksum(s), "{s}");
        }
    }

    #[test]
    fn the_base62_check_agrees_with_ascii_alphanumeric_on_every_byte() {
        for c in 0..=u8::MAX {
            assert_eq!(is_base62(&[c]), c.is_ascii_alphanumeric(), "{c}");
        }
    }

    #[test]
    fn other_valid_prefixes_are_accepted() {
        let t = PlainToken::generate(&TokenPrefix::parse("acme2").expect("prefix"));
        assert!(t.expose().starts_with("acme2_"));
        assert!(has_valid_checksum(t.expose()));
    }

    #[test]
    fn prefixes_follow_the_pattern() {
        assert!(TokenPrefix::parse("lk").is_ok());
        assert!(TokenPrefix::parse("a123456789").is_ok());
        for bad in ["l", "1k", "Lk", "a1234567890", "l_k", ""] {
            assert!(TokenPrefix::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn visible_token_shows_prefix_four_and_last_four() {
        let t = PlainToken::generate(&TokenPrefix::default());
        let s = t.expose();
        let v = t.visible();
        assert_eq!(v, format!("lk_{}\u{2026}{}", &s[3..7], &s[s.len() - 4..]));
    }

    #[test]
    fn plain_token_debug_is_redacted() {
        let t = PlainToken::generate(&TokenPrefix::default());
        let shown = format!("{t:?}");
        assert!(!shown.contains(t.expose()), "{shown}");
        assert!(!shown.contains(&t.expose()[3..]), "{shown}");
        assert!(!shown.contains(&t.expose()[3..11]), "{shown}");
        assert!(shown.contains("REDACTED"), "{shown}");
        let parsed = PlainToken::parse(t.expose()).expect("a generated token parses");
        assert!(!format!("{parsed:?}").contains(&t.expose()[3..11]));
        assert!(!format!("{:?}", Some(&parsed)).contains(&t.expose()[3..11]));
    }

    #[test]
    fn a_parsed_token_exposes_exactly_what_was_given() {
        let t = PlainToken::generate(&TokenPrefix::default());
        let parsed = PlainToken::parse(t.expose()).expect("a generated token parses");
        assert_eq!(parsed.expose(), t.expose());
        assert_eq!(parsed.hash(), t.hash());
        assert_eq!(t.hash(), TokenHash::of(t.expose()));
    }

    #[test]
    fn descriptions_are_trimmed_and_bounded() {
        assert_eq!(parse_description("  Jira  "), Ok(Some("Jira".to_owned())));
        assert_eq!(parse_description("   "), Ok(None));
        assert_eq!(
            parse_description(&"é".repeat(255)).map(|d| d.map(|s| s.chars().count())),
            Ok(Some(255))
        );
        assert_eq!(
            parse_description(&"a".repeat(256)).map_err(|e| e.code),
            Err(ErrorCode::TooLong)
        );
        assert_eq!(
            parse_description("a\u{0}b").map_err(|e| e.code),
            Err(ErrorCode::InvalidValue)
        );
        assert_eq!(
            parse_description("a\nb").map_err(|e| e.code),
            Err(ErrorCode::InvalidValue)
        );
    }

    #[test]
    fn legacy_tokens_are_strings_of_another_systems_shape() {
        let zendesk = "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3fG5hJ7k";
        assert_eq!(zendesk.len(), 40);
        assert!(is_legacy_shaped(zendesk));
        assert_eq!(legacy_visible_token(zendesk).as_deref(), Some("aB3d\u{2026}hJ7k"));
        for bad in [
            "",
            "short",
            &"a".repeat(129),
            "has space in it and more",
            "colon:colon:colon:",
            "ünïcödé-ünïcödé-x",
        ] {
            assert!(!is_legacy_shaped(bad), "{bad}");
            assert_eq!(legacy_visible_token(bad), None);
        }
        assert!(is_legacy_shaped(&"a".repeat(16)) && is_legacy_shaped(&"a".repeat(128)));
    }

    #[test]
    fn the_limit_counts_every_token() {
        assert!(check_room(255, 1, 256).is_ok());
        let err = check_room(256, 1, 256).expect_err("full");
        assert_eq!(err.code, ErrorCode::TokenLimitReached);
        assert_eq!(
            err.description,
            "You have reached the maximum of 256 API tokens. Delete an existing token to add a new one."
        );
    }

    #[test]
    fn only_deactivated_tokens_can_be_deleted() {
        assert!(check_deletable(false).is_ok());
        assert_eq!(check_deletable(true).map_err(|e| e.code), Err(ErrorCode::TokenActive));
    }

    #[test]
    fn importing_past_256_raises_the_limit_for_good() {
        assert_eq!(limit_after_import(256, 256), 256);
        assert_eq!(limit_after_import(256, 257), 2048);
        assert_eq!(limit_after_import(2048, 3), 2048);
    }
}

/// Who created a token, as an admin sees it beside the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCreator {
    /// Made on the command line (or imported) by whoever runs latchkey.
    Operator,
    /// A user of the account, by name; `deleted` once that user is deleted.
    User { name: String, deleted: bool },
    /// The creating user's record is gone (it cannot be shown).
    Unknown,
}

/// An API token as stored, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: TokenId,
    pub account_id: AccountId,
    pub description: Option<String>,
    pub active: bool,
    pub visible_token: String,
    /// The creator; kept when that user is deleted.
    pub user_id: Option<UserId>,
    /// Null: any verified user of the account may use it; else only this
    /// user's email authenticates with it, and only while that user may
    /// authenticate.
    pub assigned_user_id: Option<UserId>,
    /// Null: the user's full access (Zendesk's tokens); else what the token
    /// may do (README.md, "Restricted tokens").
    pub scopes: Option<Scopes>,
    /// From this instant on the token fails to authenticate.
    pub expires_at: Option<Timestamp>,
    /// Null: any address; else only these networks (README.md, "IP allowlists and rate limits").
    pub allowed_ips: Option<IpAllowlist>,
    /// Null: no limit; else requests per window for the whole deployment
    /// (README.md, "IP allowlists and rate limits").
    pub rate_limit: Option<RateLimit>,
    /// When a leak report matched it (README.md, "Leaked tokens").
    pub leaked_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub last_used: Option<Timestamp>,
    /// After a rotation: the previous secret's visible form, when it stops
    /// (or stopped) authenticating, and its last use since the rotation.
    pub previous_visible_token: Option<String>,
    pub previous_expires_at: Option<Timestamp>,
    pub previous_last_used: Option<Timestamp>,
    /// When it was last deactivated (`None` while active); the policy's
    /// `delete_deactivated_after_days` counts from here.
    pub deactivated_at: Option<Timestamp>,
    /// Imported in another system's format, without a latchkey checksum
    /// (README.md, "Migrating from Zendesk"); a rotation ends it.
    pub legacy: bool,
}

/// A token's status as the list shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, IntoStaticStr, Display)]
#[strum(serialize_all = "snake_case")]
pub enum TokenStatus {
    Active,
    Deactivated,
    Expired,
}

impl ApiToken {
    /// Deactivated wins over expired: reactivating an expired token changes nothing.
    pub fn status(&self, now: Timestamp) -> TokenStatus {
        if !self.active {
            TokenStatus::Deactivated
        } else if self.expires_at.is_some_and(|at| at <= now) {
            TokenStatus::Expired
        } else {
            TokenStatus::Active
        }
    }

    /// `API token: Jira sync`, or `API token: lk_4fQ9…b3Z` without a description.
    pub fn source_label(&self) -> String {
        format!(
            "API token: {}",
            self.description.as_deref().unwrap_or(&self.visible_token)
        )
    }
}

/// A token about to be stored.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub hash: TokenHash,
    pub visible_token: String,
    pub description: Option<String>,
    pub active: bool,
    pub user_id: Option<UserId>,
    pub restrictions: Restrictions,
    /// For an import: when it was created and last used elsewhere (the
    /// policy judges that history); `None`: now, and never.
    pub created_at: Option<Timestamp>,
    pub last_used: Option<Timestamp>,
    /// A token of another system's format (README.md, "Migrating from Zendesk").
    pub legacy: bool,
}

/// What a token is restricted to, beyond Zendesk's tokens: each `None` is
/// no restriction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restrictions {
    pub scopes: Option<Scopes>,
    pub assigned_user_id: Option<UserId>,
    pub expires_at: Option<Timestamp>,
    /// Only requests from these networks authenticate.
    pub allowed_ips: Option<IpAllowlist>,
    /// At most this many requests per window, deployment-wide.
    pub rate_limit: Option<RateLimit>,
}

impl Restrictions {
    /// Refuses an expiry that is not in the future (422 `InvalidValue` on
    /// `expires_at`).
    pub fn check_new(&self, now: Timestamp) -> Result<(), Invalid> {
        match self.expires_at {
            Some(at) if at <= now => Err(expiry_not_in_future()),
            _ => Ok(()),
        }
    }
}

fn expiry_not_in_future() -> Invalid {
    Invalid::new(
        "expires_at",
        ErrorCode::InvalidValue,
        "The expiry must be in the future.",
    )
}

/// An edit of a token; `None` leaves a field alone. `description:
/// Some(None)` clears it; so does `Some(None)` for the restrictions (but an
/// expiry cannot be cleared: that would move it later).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenPatch {
    pub description: Option<Option<String>>,
    pub active: Option<bool>,
    pub scopes: Option<Option<Scopes>>,
    pub assigned_user_id: Option<Option<UserId>>,
    pub expires_at: Option<Option<Timestamp>>,
    pub allowed_ips: Option<Option<IpAllowlist>>,
    pub rate_limit: Option<Option<RateLimit>>,
}

/// What a [`TokenPatch`] does to a token, as the audit log records it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenChanges {
    /// Field clauses for one `update` event (empty: no such event).
    pub update: Vec<String>,
    /// `Some(true)`: reactivated; `Some(false)`: deactivated.
    pub status: Option<bool>,
}

impl TokenChanges {
    pub fn is_empty(&self) -> bool {
        self.update.is_empty() && self.status.is_none()
    }
}

impl TokenPatch {
    /// The token after this edit and what changed, or the rule the edit
    /// breaks: an expiry may only move earlier and stay in the future (422
    /// `InvalidValue` on `expires_at`). `who` names an assigned user for the
    /// audit log (`jane@example.com`).
    pub fn apply(
        &self,
        current: &ApiToken,
        now: Timestamp,
        who: &dyn Fn(UserId) -> String,
    ) -> Result<(ApiToken, TokenChanges), Invalid> {
        let mut next = current.clone();
        let mut changes = TokenChanges::default();
        if let Some(desc) = &self.description {
            if *desc != current.description {
                changes.update.push(text_change(
                    "description",
                    current.description.as_deref(),
                    desc.as_deref(),
                ));
                next.description = desc.clone();
            }
        }
        if let Some(scopes) = &self.scopes {
            if *scopes != current.scopes {
                changes.update.push(format!(
                    "scopes changed from {} to {}",
                    scope::describe(current.scopes.as_ref()),
                    scope::describe(scopes.as_ref())
                ));
                next.scopes = scopes.clone();
            }
        }
        if let Some(assigned) = self.assigned_user_id {
            if assigned != current.assigned_user_id {
                let show = |u: Option<UserId>| u.map_or_else(|| "anyone".to_owned(), who);
                changes.update.push(format!(
                    "assigned user changed from {} to {}",
                    show(current.assigned_user_id),
                    show(assigned)
                ));
                next.assigned_user_id = assigned;
            }
        }
        if let Some(expires_at) = self.expires_at {
            if expires_at != current.expires_at {
                let Some(at) = expires_at else {
                    return Err(Invalid::new(
                        "expires_at",
                        ErrorCode::InvalidValue,
                        "An expiry can only be moved earlier, never removed.",
                    ));
                };
                if current.expires_at.is_some_and(|cur| at > cur) {
                    return Err(Invalid::new(
                        "expires_at",
                        ErrorCode::InvalidValue,
                        "An expiry can only be moved earlier, never later.",
                    ));
                }
                if at <= now {
                    return Err(expiry_not_in_future());
                }
                let show = |t: Option<Timestamp>| t.map_or_else(|| "never".to_owned(), Timestamp::rfc3339);
                changes.update.push(format!(
                    "expires_at changed from {} to {}",
                    show(current.expires_at),
                    show(expires_at)
                ));
                next.expires_at = expires_at;
            }
        }
        if let Some(allowed) = &self.allowed_ips {
            if *allowed != current.allowed_ips {
                let show = |a: Option<&IpAllowlist>| {
                    a.map_or_else(|| "any address".to_owned(), |a| format!("\"{}\"", a.to_stored()))
                };
                changes.update.push(format!(
                    "allowed_ips changed from {} to {}",
                    show(current.allowed_ips.as_ref()),
                    show(allowed.as_ref())
                ));
                next.allowed_ips = allowed.clone();
            }
        }
        if let Some(limit) = self.rate_limit {
            if limit != current.rate_limit {
                let show = |l: Option<RateLimit>| l.map_or_else(|| "none".to_owned(), |l| l.describe());
                changes.update.push(format!(
                    "rate_limit changed from {} to {}",
                    show(current.rate_limit),
                    show(limit)
                ));
                next.rate_limit = limit;
            }
        }
        if let Some(active) = self.active {
            if active != current.active {
                changes.status = Some(active);
                next.active = active;
                next.deactivated_at = (!active).then_some(now);
            }
        }
        Ok((next, changes))
    }
}

#[cfg(test)]
mod patch_tests {
    use super::*;

    fn token() -> ApiToken {
        ApiToken {
            id: TokenId::new(7),
            account_id: AccountId::new(1),
            description: Some("A".into()),
            active: true,
            visible_token: "lk_abcd\u{2026}wxyz".into(),
            user_id: Some(UserId::new(1)),
            assigned_user_id: None,
            scopes: None,
            expires_at: None,
            allowed_ips: None,
            rate_limit: None,
            leaked_at: None,
            previous_visible_token: None,
            previous_expires_at: None,
            previous_last_used: None,
            deactivated_at: None,
            created_at: Timestamp::EPOCH,
            updated_at: Timestamp::EPOCH,
            last_used: None,
            legacy: false,
        }
    }

    #[test]
    fn a_patch_to_the_same_values_is_a_no_op() {
        let p = TokenPatch {
            description: Some(Some("A".into())),
            active: Some(true),
            scopes: Some(None),
            assigned_user_id: Some(None),
            expires_at: None,
            allowed_ips: Some(None),
            rate_limit: Some(None),
        };
        assert!(apply(&p, &token()).expect("valid").1.is_empty());
    }

    #[test]
    fn description_and_status_changes_are_reported_separately() {
        let p = TokenPatch {
            description: Some(None),
            active: Some(false),
            ..TokenPatch::default()
        };
        let (next, changes) = apply(&p, &token()).expect("valid");
        assert_eq!(next.description, None);
        assert!(!next.active);
        assert_eq!(changes.update, vec![r#"description changed from "A" to not set"#]);
        assert_eq!(changes.status, Some(false));
    }

    const NOW: Timestamp = Timestamp::from_unix(1_000);

    fn apply(p: &TokenPatch, t: &ApiToken) -> Result<(ApiToken, TokenChanges), Invalid> {
        p.apply(t, NOW, &|id| format!("user{}@example.com", id.get()))
    }

    #[test]
    fn restriction_changes_are_worded_for_the_audit_log() {
        let catalog = crate::scope::ScopeCatalog::builtin();
        let p = TokenPatch {
            scopes: Some(Some(catalog.parse_scopes(&["users:read", "account"]).expect("valid"))),
            assigned_user_id: Some(Some(UserId::new(4))),
            expires_at: Some(Some(Timestamp::from_unix(1_764_547_200))),
            ..TokenPatch::default()
        };
        let (next, changes) = apply(&p, &token()).expect("valid");
        assert_eq!(
            changes.update,
            vec![
                r#"scopes changed from full access to "users:read account""#,
                "assigned user changed from anyone to user4@example.com",
                "expires_at changed from never to 2025-12-01T00:00:00Z",
            ]
        );
        assert_eq!(next.assigned_user_id, Some(UserId::new(4)));
        let back = TokenPatch {
            scopes: Some(None),
            assigned_user_id: Some(None),
            ..TokenPatch::default()
        };
        let (_, changes) = apply(&back, &next).expect("valid");
        assert_eq!(
            changes.update,
            vec![
                r#"scopes changed from "users:read account" to full access"#,
                "assigned user changed from user4@example.com to anyone",
            ]
        );
    }

    #[test]
    fn an_expiry_moves_only_earlier_and_stays_in_the_future() {
        let mut t = token();
        t.expires_at = Some(Timestamp::from_unix(5_000));
        let set = |at: Option<i64>| TokenPatch {
            expires_at: Some(at.map(Timestamp::from_unix)),
            ..TokenPatch::default()
        };
        assert!(apply(&set(Some(4_000)), &t).is_ok());
        assert!(apply(&set(Some(5_000)), &t).expect("same").1.is_empty());
        for bad in [Some(5_001), None, Some(1_000), Some(10)] {
            let err = apply(&set(bad), &t).expect_err("refused");
            assert_eq!(
                (err.field.as_str(), err.code),
                ("expires_at", ErrorCode::InvalidValue),
                "{bad:?}"
            );
        }
        // Never expiring: any future instant is earlier.
        assert!(apply(&set(Some(1_001)), &token()).is_ok());
        assert!(Restrictions {
            expires_at: Some(NOW),
            ..Restrictions::default()
        }
        .check_new(NOW)
        .is_err());
    }

    #[test]
    fn deactivated_wins_over_expired_in_the_status() {
        let mut t = token();
        t.expires_at = Some(NOW);
        assert_eq!(t.status(NOW.minus_secs(1)), TokenStatus::Active);
        assert_eq!(t.status(NOW), TokenStatus::Expired);
        t.active = false;
        assert_eq!(t.status(NOW), TokenStatus::Deactivated);
    }

    #[test]
    fn source_labels_fall_back_to_the_visible_token() {
        let mut t = token();
        assert_eq!(t.source_label(), "API token: A");
        t.description = None;
        assert_eq!(t.source_label(), "API token: lk_abcd\u{2026}wxyz");
    }
}
