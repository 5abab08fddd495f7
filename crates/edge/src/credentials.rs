//! Parsing the `Authorization` header (docs/api.md, "Sending credentials" and "When authentication fails"). Pure: no lookups,
//! so every hint it produces depends on the request's text alone. Any bytes
//! at all parse to some outcome; nothing here can panic.

use axum::http::{header, HeaderMap};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use latchkey_core::token::{has_valid_checksum, is_legacy_shaped, TokenHash};

/// What an `Authorization` header amounts to.
#[derive(PartialEq, Eq)]
pub enum Credentials {
    /// `{email}/token:{token}` with a token whose checksum is valid (or,
    /// while legacy tokens are accepted, of a legacy token's shape).
    ApiToken {
        /// The email, as sent (matched without regard to case).
        email: String,
        /// The token's SHA-256: the plaintext goes no further.
        hash: TokenHash,
    },
    /// Basic credentials that are not a usable API token.
    BadBasic {
        /// The password is a well-formed token but the user name lacks `/token`.
        token_hint: bool,
    },
    /// `Bearer …`.
    Bearer {
        /// The value is a well-formed API token.
        api_token: bool,
    },
    /// No header, an unknown scheme, or undecodable credentials.
    Missing,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the email/hash pair: it identifies a credential.
        match self {
            Credentials::ApiToken { .. } => f.write_str("ApiToken(<redacted>)"),
            Credentials::BadBasic { .. } => f.write_str("BadBasic"),
            Credentials::Bearer { api_token } => write!(f, "Bearer {{ api_token: {api_token} }}"),
            Credentials::Missing => f.write_str("Missing"),
        }
    }
}

const TOKEN_SUFFIX: &str = "/token";

/// Longest header value worth decoding; real credentials are far shorter.
const MAX_HEADER: usize = 4096;

/// The credentials of a request's headers. More than one `Authorization`
/// header is ambiguous: refused as malformed whatever each holds
/// (docs/api.md, "When authentication fails"). `legacy`: the deployment
/// holds legacy tokens (README.md, "Migrating from Zendesk"), so a password
/// without a latchkey checksum but of a legacy token's shape is hashed too.
pub fn from_headers(headers: &HeaderMap, legacy: bool) -> Credentials {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    match (values.next(), values.next()) {
        (first, None) => parse(first.map(|v| v.as_bytes()), legacy),
        (_, Some(_)) => Credentials::BadBasic { token_hint: false },
    }
}

/// What one `Authorization` header's value (`None`: no header) amounts to;
/// `legacy` as for [`from_headers`].
pub fn parse(header: Option<&[u8]>, legacy: bool) -> Credentials {
    let Some(raw) = header else {
        return Credentials::Missing;
    };
    if raw.len() > MAX_HEADER {
        return Credentials::BadBasic { token_hint: false };
    }
    let Ok(value) = std::str::from_utf8(raw) else {
        return Credentials::BadBasic { token_hint: false };
    };
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        parse_basic(rest, legacy)
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Credentials::Bearer {
            api_token: has_valid_checksum(rest),
        }
    } else {
        Credentials::Missing
    }
}

fn parse_basic(encoded: &str, legacy: bool) -> Credentials {
    let bad = Credentials::BadBasic { token_hint: false };
    let Ok(decoded) = STANDARD.decode(encoded) else {
        return bad;
    };
    let Ok(text) = String::from_utf8(decoded) else {
        return bad;
    };
    let Some((user, password)) = text.split_once(':') else {
        return bad;
    };
    // The checksum refuses a mistyped or made-up token before any hash; only
    // while legacy tokens exist does a checksum-less string cost one.
    let latchkey = has_valid_checksum(password);
    if !(latchkey || (legacy && is_legacy_shaped(password))) {
        return bad;
    }
    match user.strip_suffix(TOKEN_SUFFIX) {
        Some(email) if !email.is_empty() => Credentials::ApiToken {
            email: email.to_owned(),
            hash: TokenHash::of(password),
        },
        Some(_) => bad,
        // A legacy token's shape is also a password's: no hint for it.
        None => Credentials::BadBasic { token_hint: latchkey },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_core::token::{PlainToken, TokenPrefix};

    fn basic(s: &str) -> Vec<u8> {
        format!("Basic {}", STANDARD.encode(s)).into_bytes()
    }

    #[test]
    fn email_slash_token_with_a_valid_token_parses() {
        let t = PlainToken::generate(&TokenPrefix::default());
        let c = parse(Some(&basic(&format!("Jane@x.io/token:{}", t.expose()))), false);
        assert_eq!(
            c,
            Credentials::ApiToken {
                email: "Jane@x.io".into(),
                hash: t.hash()
            }
        );
    }

    #[test]
    fn a_checksum_less_password_is_hashed_only_while_legacy_tokens_exist() {
        let zendesk = "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3fG5hJ7k";
        let header = basic(&format!("jane@x.io/token:{zendesk}"));
        assert_eq!(parse(Some(&header), false), Credentials::BadBasic { token_hint: false });
        assert_eq!(
            parse(Some(&header), true),
            Credentials::ApiToken {
                email: "jane@x.io".into(),
                hash: TokenHash::of(zendesk)
            }
        );
        // Not a legacy token's shape: refused unseen either way.
        let odd = basic("jane@x.io/token:not a token at all, spaces");
        assert_eq!(parse(Some(&odd), true), Credentials::BadBasic { token_hint: false });
        // A password of that shape without `/token` gets no token hint.
        let password = basic(&format!("jane@x.io:{zendesk}"));
        assert_eq!(
            parse(Some(&password), true),
            Credentials::BadBasic { token_hint: false }
        );
    }

    #[test]
    fn the_password_may_contain_colons_only_after_the_first() {
        // Split on the first colon: a token never contains one, so this fails.
        let c = parse(Some(&basic("a@x.io/token:lk_a:b")), false);
        assert_eq!(c, Credentials::BadBasic { token_hint: false });
    }

    #[test]
    fn a_token_without_slash_token_gets_the_hint() {
        let t = PlainToken::generate(&TokenPrefix::default());
        let c = parse(Some(&basic(&format!("a@x.io:{}", t.expose()))), false);
        assert_eq!(c, Credentials::BadBasic { token_hint: true });
    }

    #[test]
    fn garbage_never_panics() {
        let inputs: Vec<&[u8]> = vec![
            b"",
            b"Basic",
            b"Basic ",
            b"Basic !!!",
            b"Basic \xff\xfe",
            b"\xff\xff",
            b"Digest x",
            b"Bearer",
            b"basic Og==",
            b"Basic //8=",
        ];
        for i in inputs {
            let _ = parse(Some(i), false);
        }
        assert_eq!(parse(None, false), Credentials::Missing);
        assert_eq!(
            parse(Some(&[b'a'; 10_000]), false),
            Credentials::BadBasic { token_hint: false }
        );
    }

    #[test]
    fn two_authorization_headers_are_malformed_whatever_they_hold() {
        let t = PlainToken::generate(&TokenPrefix::default());
        let good = basic(&format!("a@x.io/token:{}", t.expose()));
        let mut headers = HeaderMap::new();
        headers.append(header::AUTHORIZATION, good.clone().try_into().expect("a header value"));
        assert!(matches!(from_headers(&headers, false), Credentials::ApiToken { .. }));
        headers.append(header::AUTHORIZATION, good.try_into().expect("a header value"));
        assert_eq!(
            from_headers(&headers, false),
            Credentials::BadBasic { token_hint: false }
        );
        assert_eq!(from_headers(&HeaderMap::new(), false), Credentials::Missing);
    }

    #[test]
    fn bearer_values_are_classified_by_checksum_only() {
        let t = PlainToken::generate(&TokenPrefix::default());
        assert_eq!(
            parse(Some(format!("Bearer {}", t.expose()).as_bytes()), false),
            Credentials::Bearer { api_token: true }
        );
        assert_eq!(
            parse(Some(b"bearer abc"), false),
            Credentials::Bearer { api_token: false }
        );
    }
}
