//! [`Principal`]: who an authenticated request runs as, put into the
//! request's extensions by the layer and read by handlers as an axum
//! extractor.
//!
//! It holds the verifier's own entries (two `Arc`s) rather than copies of
//! their strings, so making one per request allocates nothing for an
//! unrestricted token; a restricted token's scopes are copied.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use latchkey_core::id::{AccountId, TokenId, UserId};
use latchkey_core::rate_limit::RateStatus;
use latchkey_core::scope::{Access, Scope, Scopes};
use latchkey_core::user::{Role, User};
use latchkey_core::verifier::{AccountEntry, IdentityRef};
use serde::ser::{Serialize, SerializeStruct, Serializer};

/// Who an authenticated request runs as: the account, the user, the token
/// and what the token may do.
///
/// An axum extractor: a handler behind [`crate::LatchkeyLayer`] takes it as
/// an argument. On a route the layer does not cover, extracting it fails
/// with a 500 (and an error in the log), since that is a wiring mistake,
/// not a client's.
///
/// Serialises as
/// `{"account_id":1,"subdomain":"acme","user_id":2,"email":"jane@acme.test","role":"admin","token_id":3,"scopes":null}`
/// (`scopes` is `null` for an unrestricted token, else the list of names).
#[derive(Debug, Clone)]
pub struct Principal {
    account: Arc<AccountEntry>,
    user: Arc<User>,
    token_id: TokenId,
    scopes: Option<Scopes>,
    rate: Option<RateStatus>,
}

impl Principal {
    /// Takes what the verifier lends for one request.
    pub(crate) fn from_identity(id: IdentityRef<'_>) -> Principal {
        let scopes = id.scopes.cloned();
        let identity = id.to_identity();
        Principal {
            account: identity.account,
            user: identity.user,
            token_id: identity.token_id,
            scopes,
            rate: identity.rate,
        }
    }

    /// The account's id.
    pub fn account_id(&self) -> AccountId {
        self.account.id
    }

    /// The account's subdomain (`acme`).
    pub fn subdomain(&self) -> &str {
        self.account.subdomain.as_str()
    }

    /// The user's id.
    pub fn user_id(&self) -> UserId {
        self.user.id
    }

    /// The user's email, as stored (the credentials' email matched it
    /// without regard to case).
    pub fn email(&self) -> &str {
        self.user.email.as_str()
    }

    /// The user's role in the account.
    pub fn role(&self) -> Role {
        self.user.role
    }

    /// The token's id.
    pub fn token_id(&self) -> TokenId {
        self.token_id
    }

    /// The token's scopes: `None` for an unrestricted token (the user's full
    /// access), else the scopes it is restricted to.
    pub fn scopes(&self) -> Option<&Scopes> {
        self.scopes.as_ref()
    }

    /// Whether the token may do what the scope `name` names (`tickets:write`,
    /// `tickets`, `read`): always for an unrestricted token; for a
    /// restricted one, when its scopes cover it. A malformed name is
    /// covered only by an unrestricted token.
    pub fn has_scope(&self, name: &str) -> bool {
        match (&self.scopes, Scope::from_stored(name)) {
            (None, _) => true,
            (Some(scopes), Some(required)) => covers(scopes, &required),
            (Some(_), None) => false,
        }
    }

    /// Whether the token may do what `required` names.
    pub(crate) fn allows(&self, required: &Scope) -> bool {
        self.scopes.as_ref().is_none_or(|scopes| covers(scopes, required))
    }

    /// The token's rate limit as this request left it, for the headers.
    pub(crate) fn rate(&self) -> Option<RateStatus> {
        self.rate
    }
}

/// Whether `scopes` cover what `required` names: its resource (none: any
/// path, as the global `read` and `write` are) with its access, or with
/// both when it names none (`tickets` needs reading and writing tickets).
fn covers(scopes: &Scopes, required: &Scope) -> bool {
    let resource = required.resource();
    match required.access() {
        Some(access) => scopes.cover(resource, access),
        None => scopes.cover(resource, Access::Read) && scopes.cover(resource, Access::Write),
    }
}

impl Serialize for Principal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Principal", 7)?;
        s.serialize_field("account_id", &self.account_id().get())?;
        s.serialize_field("subdomain", self.subdomain())?;
        s.serialize_field("user_id", &self.user_id().get())?;
        s.serialize_field("email", self.email())?;
        s.serialize_field("role", self.role().as_str())?;
        s.serialize_field("token_id", &self.token_id().get())?;
        let scopes: Option<Vec<String>> = self.scopes.as_ref().map(|s| s.names().collect());
        s.serialize_field("scopes", &scopes)?;
        s.end()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = NotBehindTheLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Principal>().cloned().ok_or(NotBehindTheLayer)
    }
}

/// A [`Principal`] was asked for on a route that [`crate::LatchkeyLayer`]
/// does not cover: answered 500 (`{"error":"InternalError",…}`, as
/// latchkey answers a bug), and logged as an error naming the cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotBehindTheLayer;

impl IntoResponse for NotBehindTheLayer {
    fn into_response(self) -> Response {
        tracing::error!(
            "a route asked for the latchkey Principal (or a scope) without the latchkey layer in front of it: \
             add `.layer(latchkey.layer())` to the router that holds the route"
        );
        latchkey_edge::answer::internal_error()
    }
}
