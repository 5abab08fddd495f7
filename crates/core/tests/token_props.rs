//! Property tests of the token format of docs/api.md ("API tokens"):
//! `{prefix}_{32 base62}{6 base62 of CRC32 over "{prefix}_{random}"}`.
//!
//! What the checksum guarantees, and what these tests hold it to:
//! - a token passes `has_valid_checksum` exactly when it has that shape and
//!   its last six characters are CRC32 of the rest, in base62, left-padded
//!   (checked against an independent implementation on arbitrary input);
//! - every single-character substitution of a valid token fails: inside
//!   `{prefix}_{random}` it is a one-byte change (or a change of shape),
//!   which CRC32 always detects (it detects every error burst of up to 32
//!   bits); inside the checksum it changes the number the six digits
//!   spell, and each number below 62^6 has exactly one six-digit spelling;
//! - every swap of two adjacent, different characters inside
//!   `{prefix}_{random}` (a burst of at most 16 bits) or inside the
//!   checksum fails too. A swap across the boundary of the two, or a
//!   change of length inside a longer prefix, is only caught with CRC32's
//!   ordinary odds (about 1 in 2^32), so it is not claimed here;
//! - `visible_token` shows the prefix, the first four and the last four of
//!   the 38 characters after it, never more.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use latchkey_core::token::{has_valid_checksum, visible_token, PlainToken, TokenHash, TokenPrefix};
use proptest::prelude::*;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The checksum as docs/api.md states it, written independently of the crate.
fn reference_checksum(body: &str) -> String {
    let mut n = crc32fast::hash(body.as_bytes());
    let mut digits = [b'0'; 6];
    for d in digits.iter_mut().rev() {
        *d = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(digits.to_vec()).unwrap()
}

/// True when `s` is a token by the documented rule, written independently.
fn reference_valid(s: &str) -> bool {
    let Some((prefix, rest)) = s.split_once('_') else {
        return false;
    };
    let prefix_ok = (2..=10).contains(&prefix.len())
        && prefix.starts_with(|c: char| c.is_ascii_lowercase())
        && prefix.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !prefix_ok || rest.len() != 38 || !rest.chars().all(|c| c.is_ascii_alphanumeric()) {
        return false;
    }
    let (random, sum) = rest.split_at(32);
    reference_checksum(&format!("{prefix}_{random}")) == sum
}

fn prefix() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9]{1,9}"
}

/// A valid token built from proptest's choices (not the OS's), so that
/// shrinking can name a failing one.
fn token() -> impl Strategy<Value = String> {
    (prefix(), "[0-9A-Za-z]{32}").prop_map(|(p, r)| {
        let body = format!("{p}_{r}");
        let sum = reference_checksum(&body);
        body + &sum
    })
}

/// Text that looks like a token often enough to reach every branch.
fn token_like() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z0-9_A-Z]{0,50}",
        "[a-z][a-z0-9]{0,10}_[0-9A-Za-z\u{e9}\u{2026}_]{36,40}",
        token(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn generated_tokens_always_pass(p in prefix()) {
        let prefix = TokenPrefix::parse(&p).unwrap();
        let t = PlainToken::generate(&prefix);
        let s = t.expose();
        prop_assert!(has_valid_checksum(s));
        prop_assert!(reference_valid(s));
        prop_assert_eq!(s.len(), p.len() + 1 + 32 + 6);
        let head = format!("{p}_");
        prop_assert!(s.starts_with(&head));
        let parsed = PlainToken::parse(s).expect("a generated token parses");
        prop_assert_eq!(parsed.hash(), TokenHash::of(s));
    }

    #[test]
    fn the_check_is_the_documented_rule_on_any_text(s in token_like()) {
        prop_assert_eq!(has_valid_checksum(&s), reference_valid(&s), "{:?}", s);
        prop_assert_eq!(PlainToken::parse(&s).is_some(), reference_valid(&s));
        // Never panics, whatever the text.
        let _ = visible_token(&s);
        let _ = TokenPrefix::parse(&s);
    }

    #[test]
    fn every_single_character_substitution_fails(t in token(), at in any::<prop::sample::Index>(), c in any::<char>()) {
        prop_assert!(has_valid_checksum(&t));
        let chars: Vec<char> = t.chars().collect();
        let i = at.index(chars.len());
        prop_assume!(chars[i] != c);
        let mut changed = chars;
        changed[i] = c;
        let changed: String = changed.into_iter().collect();
        prop_assert!(!has_valid_checksum(&changed), "{:?} still passes", changed);
        prop_assert!(PlainToken::parse(&changed).is_none());
    }

    #[test]
    fn every_base62_substitution_fails(t in token(), at in any::<prop::sample::Index>(), c in "[0-9A-Za-z]") {
        // The same property where it is hardest: the replacement keeps the shape.
        let mut b = t.clone().into_bytes();
        let i = at.index(b.len());
        let c = c.as_bytes()[0];
        prop_assume!(b[i] != c);
        b[i] = c;
        let changed = String::from_utf8(b).unwrap();
        prop_assert!(!has_valid_checksum(&changed), "{:?} still passes", changed);
    }

    #[test]
    fn adjacent_swaps_inside_the_body_or_the_checksum_fail(t in token(), at in any::<prop::sample::Index>()) {
        let b = t.as_bytes();
        let body_len = b.len() - 6;
        // Pairs (i, i+1) that lie wholly in the body or wholly in the checksum.
        let pairs: Vec<usize> = (0..b.len() - 1).filter(|&i| i + 1 < body_len || i >= body_len).collect();
        let i = pairs[at.index(pairs.len())];
        prop_assume!(b[i] != b[i + 1]);
        let mut swapped = b.to_vec();
        swapped.swap(i, i + 1);
        let swapped = String::from_utf8(swapped).unwrap();
        prop_assert!(!has_valid_checksum(&swapped), "{:?} still passes", swapped);
    }

    #[test]
    fn the_visible_form_shows_eight_characters_of_the_secret_at_most(t in token()) {
        let v = visible_token(&t).expect("a token has a visible form");
        let (prefix, secret) = t.split_once('_').unwrap();
        prop_assert_eq!(&v, &format!("{prefix}_{}\u{2026}{}", &secret[..4], &secret[34..]));
        // Four and four characters of the 38 after the prefix; none of the middle 30.
        let shown = v.strip_prefix(&format!("{prefix}_")).unwrap();
        prop_assert_eq!(shown.chars().filter(|c| c.is_ascii_alphanumeric()).count(), 8);
        prop_assert!(!v.contains(&secret[..5]) && !v.contains(&secret[33..]));
    }

    #[test]
    fn the_visible_form_of_any_text_is_bounded(s in token_like()) {
        if let Some(v) = visible_token(&s) {
            // Only something with 38 characters after its first `_` has a
            // visible form, and it shows 4 + 4 of them.
            let (prefix, rest) = s.split_once('_').unwrap();
            prop_assert_eq!(rest.chars().count(), 38);
            prop_assert_eq!(v, format!("{prefix}_{}\u{2026}{}", &rest[..4], &rest[34..]));
        }
    }
}
