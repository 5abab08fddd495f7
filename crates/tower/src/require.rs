//! [`require_scope`]: a per-route scope requirement, for routes behind
//! [`crate::LatchkeyLayer`].
//!
//! The layer knows who the token is; only the route knows what it does. So
//! the requirement is a second, inner layer (`route_layer` on a route or a
//! router of routes) that reads the [`Principal`] the outer one put in the
//! request and refuses a token whose scopes do not cover the named scope,
//! with latchkey's own 403 (`X-Latchkey-Required-Scope` and the same body
//! as the REST API's scope refusal). An unrestricted token is never
//! refused. The rate-limit headers of a limited token are added to the 403
//! by the outer layer, as to every response.
//!
//! The verifier has already counted the request as allowed in the token's
//! hourly usage by then: a refusal here is the service's own rule, shown in
//! the Admin Center's usage chart as an allowed request. (Scopes checked by
//! path, with [`crate::LatchkeyBuilder::scopes_by_path`], are checked by the
//! verifier and counted as refusals, as latchkey's server counts them.)

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::http::{Request, Response};
use axum::response::IntoResponse;
use axum::BoxError;
use latchkey_core::scope::Scope;
use latchkey_edge::AuthFailure;
use tower::{Layer, Service};

use crate::layer::ResponseFuture;
use crate::principal::{NotBehindTheLayer, Principal};

/// A layer that lets a request through only if its token's scopes cover
/// `scope` (`tickets:write`, `tickets:read`, `tickets`, `read`, `write`);
/// otherwise the answer is
///
/// ```text
/// HTTP/1.1 403 Forbidden
/// X-Latchkey-Required-Scope: tickets:write
///
/// {"error":"Forbidden","description":"This API token lacks the scope tickets:write."}
/// ```
///
/// Put it inside [`crate::LatchkeyLayer`] (which must run first, to find
/// the [`Principal`]), usually with `route_layer` so that it applies to the
/// matched route only:
///
/// ```no_run
/// # use axum::{routing::post, Router};
/// # async fn create_ticket() {}
/// # fn tickets(latchkey: &latchkey_tower::Latchkey) -> Router {
/// Router::new()
///     .route("/api/v2/tickets", post(create_ticket))
///     .route_layer(latchkey_tower::require_scope("tickets:write"))
///     .layer(latchkey.layer())
/// # }
/// ```
///
/// Without the latchkey layer in front, every request gets a 500 and the
/// log says why.
///
/// # Panics
///
/// When `scope` is not a scope name (`{resource}`, `{resource}:read`,
/// `{resource}:write`, `read` or `write`, with a resource name of
/// `[a-z][a-z0-9_]*`): a mistake in the router's code, found when the
/// router is built.
pub fn require_scope(scope: &str) -> RequireScopeLayer {
    let Some(parsed) = Scope::from_stored(scope) else {
        panic!(
            "require_scope({scope:?}): not a scope name; write `{{resource}}`, `{{resource}}:read`, \
             `{{resource}}:write`, `read` or `write`"
        );
    };
    RequireScopeLayer {
        required: Arc::new(Required {
            name: parsed.to_string(),
            scope: parsed,
        }),
    }
}

/// The scope a route needs, parsed once.
#[derive(Debug)]
struct Required {
    scope: Scope,
    /// Its name, as the 403 spells it.
    name: String,
}

/// Made by [`require_scope`].
#[derive(Debug, Clone)]
pub struct RequireScopeLayer {
    required: Arc<Required>,
}

impl<S> Layer<S> for RequireScopeLayer {
    type Service = RequireScopeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireScopeService {
            inner,
            required: self.required.clone(),
        }
    }
}

/// The service [`RequireScopeLayer`] wraps around `S`.
#[derive(Debug, Clone)]
pub struct RequireScopeService<S> {
    inner: S,
    required: Arc<Required>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequireScopeService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        match req.extensions().get::<Principal>() {
            Some(principal) if principal.allows(&self.required.scope) => {
                ResponseFuture::inner(self.inner.call(req), None)
            }
            Some(_) => ResponseFuture::answered(
                AuthFailure::MissingScope {
                    scope: self.required.name.clone(),
                    rate: None,
                }
                .into_response(),
            ),
            None => ResponseFuture::answered(NotBehindTheLayer.into_response()),
        }
    }
}
