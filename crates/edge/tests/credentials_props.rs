//! Property tests of the `Authorization` header parser (docs/api.md,
//! "Sending credentials"): no input makes it panic, and
//! `Basic base64("{email}/token:{token}")` comes back as the same email and
//! the token's hash for every valid email and token.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use latchkey_core::token::{PlainToken, TokenHash, TokenPrefix};
use latchkey_core::user::Email;
use latchkey_edge::credentials::{parse, Credentials};
use proptest::prelude::*;

fn basic(credentials: &str) -> Vec<u8> {
    format!("Basic {}", STANDARD.encode(credentials)).into_bytes()
}

/// Emails `Email::parse` accepts: plain ones, and any text it lets through
/// (non-ASCII, `/`, quotes, several dots, `/token` inside).
fn email() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9._%+-]{1,30}@[a-z0-9-]{1,20}(\\.[a-z]{2,6}){0,2}",
        "[^\\s:@]{1,20}@[^\\s:@]{1,20}",
        "[a-z]{1,5}/token@x\\.io",
    ]
    .prop_filter("Email::parse accepts it", |e| Email::parse(e).is_ok())
}

fn prefix() -> impl Strategy<Value = TokenPrefix> {
    "[a-z][a-z0-9]{1,9}".prop_map(|p| TokenPrefix::parse(&p).unwrap())
}

/// Header values that are not random noise only: schemes in any case,
/// base64 of arbitrary text, colons and `/token` in odd places.
fn header() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<Vec<u8>>(),
        any::<String>().prop_map(String::into_bytes),
        ("(?i)(basic|bearer|digest)?[ \t]{0,3}", any::<String>())
            .prop_map(|(s, rest)| format!("{s}{rest}").into_bytes()),
        ("[bB][aA][sS][iI][cC]", "[ \t]{0,3}", any::<Vec<u8>>(), "[ \t]{0,3}")
            .prop_map(|(s, sp, raw, tail)| { format!("{s}{sp}{}{tail}", STANDARD.encode(raw)).into_bytes() }),
        ("[^:]{0,20}", "(/token)?", "(:[a-z0-9_A-Z:]{0,50})?").prop_map(|(u, t, p)| basic(&format!("{u}{t}{p}"))),
        proptest::collection::vec(any::<u8>(), 4000..5000),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn no_header_value_makes_it_panic(raw in header(), legacy in any::<bool>()) {
        let c = parse(Some(&raw), legacy);
        // An ApiToken only ever comes from well-formed Basic credentials.
        if let Credentials::ApiToken { email, .. } = &c {
            prop_assert!(!email.is_empty());
        }
    }

    #[test]
    fn basic_email_token_round_trips(email in email(), p in prefix(), scheme in "[bB][aA][sS][iI][cC]", pad in "[ ]{0,2}") {
        let email = Email::parse(&email).unwrap();
        let t = PlainToken::generate(&p);
        let header = format!("{pad}{scheme} {}{pad}", STANDARD.encode(format!("{}/token:{}", email.as_str(), t.expose())));
        prop_assert_eq!(
            parse(Some(header.as_bytes()), false),
            Credentials::ApiToken { email: email.as_str().to_owned(), hash: TokenHash::of(t.expose()) }
        );
    }

    #[test]
    fn a_token_with_a_broken_checksum_never_authenticates(email in email(), at in 0usize..38, c in "[0-9A-Za-z]") {
        let t = PlainToken::generate(&TokenPrefix::default());
        let mut b = t.expose().as_bytes().to_vec();
        let c = c.as_bytes()[0];
        prop_assume!(b[3 + at] != c);
        b[3 + at] = c;
        let broken = String::from_utf8(b).unwrap();
        let header = basic(&format!("{email}/token:{broken}"));
        prop_assert_eq!(parse(Some(&header), false), Credentials::BadBasic { token_hint: false });
        let bearer = format!("Bearer {broken}");
        prop_assert_eq!(parse(Some(bearer.as_bytes()), false), Credentials::Bearer { api_token: false });
    }

    #[test]
    fn a_valid_token_without_slash_token_gets_the_hint(email in email()) {
        let t = PlainToken::generate(&TokenPrefix::default());
        let header = basic(&format!("{email}:{}", t.expose()));
        prop_assert_eq!(parse(Some(&header), false), Credentials::BadBasic { token_hint: true });
    }
}
