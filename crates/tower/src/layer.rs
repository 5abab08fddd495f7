//! [`LatchkeyLayer`]: the tower `Layer` that authenticates every request
//! before the service behind it runs.
//!
//! Authentication is synchronous and answers from memory
//! ([`latchkey_edge::Gate::authenticate`] on the process's verifier), so a
//! request never waits on the database; only the inner service's future is
//! awaited. The response body is axum's [`Body`], so the layer fits
//! `axum::Router::layer` and `route_layer` as they are, and any tower
//! service whose body axum can take.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::http::{Request, Response};
use axum::response::IntoResponse;
use axum::BoxError;
use latchkey_core::rate_limit::RateStatus;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::latchkey::Shared;

/// Authenticates each request with `Authorization: Basic
/// base64({email}/token:{token})`, exactly as latchkey's REST API does, and
/// puts the [`crate::Principal`] into the request's extensions for the
/// service behind it. A refused request never reaches that service: it gets
/// latchkey's own answer (401 with `WWW-Authenticate`, 403 naming a missing
/// scope when path scopes are on, 429 with `Retry-After`, 503 when stale).
/// For a token with a rate limit every response, the service's included,
/// carries the four rate-limit headers.
///
/// Made by [`crate::Latchkey::layer`]; cheap to clone.
#[derive(Clone)]
pub struct LatchkeyLayer {
    pub(crate) shared: Arc<Shared>,
}

impl<S> Layer<S> for LatchkeyLayer {
    type Service = LatchkeyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LatchkeyService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service [`LatchkeyLayer`] wraps around `S`.
#[derive(Clone)]
pub struct LatchkeyService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for LatchkeyService<S>
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

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        match self.shared.authenticate(&req) {
            Ok(principal) => {
                let rate = principal.rate();
                req.extensions_mut().insert(principal);
                ResponseFuture::inner(self.inner.call(req), rate)
            }
            Err(failure) => ResponseFuture::answered(failure.into_response()),
        }
    }
}

pin_project! {
    /// The response of [`LatchkeyService`] and
    /// [`crate::RequireScopeService`]: the inner service's, with the
    /// token's rate-limit headers added, or the refusal made without it.
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Inner {
            #[pin]
            future: F,
            rate: Option<RateStatus>,
        },
        Answered {
            response: Option<Response<Body>>,
        },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn inner(future: F, rate: Option<RateStatus>) -> Self {
        ResponseFuture {
            state: State::Inner { future, rate },
        }
    }

    pub(crate) fn answered(response: Response<Body>) -> Self {
        ResponseFuture {
            state: State::Answered {
                response: Some(response),
            },
        }
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { future, rate } => {
                let response = std::task::ready!(future.poll(cx))?;
                let mut response = response.map(Body::new);
                if let Some(status) = rate {
                    latchkey_edge::rate_headers::insert(response.headers_mut(), status);
                }
                Poll::Ready(Ok(response))
            }
            // Polled again after it answered: the answer was taken, and a
            // future polled past its end may do anything but panic.
            StateProj::Answered { response } => Poll::Ready(Ok(response.take().unwrap_or_default())),
        }
    }
}
