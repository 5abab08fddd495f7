//! A tiny axum service that authenticates its API with latchkey tokens in
//! process (`latchkey-tower`), beside the latchkey servers of the same
//! database:
//!
//! | route | needs |
//! |---|---|
//! | `GET /api/v2/tickets` | a token with `tickets:read` (or unrestricted) |
//! | `POST /api/v2/tickets` | a token with `tickets:write` (or unrestricted) |
//! | `GET /api/v2/me` | any valid token: answers its [`Principal`] as JSON |
//! | `GET /healthz` | nothing: 200 `ok`, or 503 `stale` when the verifier is |
//!
//! The router lives in this library so that the binary (`src/main.rs`) and
//! the integration test that runs it beside a real `latchkey serve` serve
//! the very same one.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use latchkey_tower::{require_scope, Latchkey, Principal};
use serde::Serialize;

/// What the handlers share: the verifier's handle (for `/healthz`) and the
/// next ticket's number.
#[derive(Clone)]
struct Service {
    latchkey: Latchkey,
    next_ticket: Arc<AtomicU64>,
}

/// The whole service: the API behind the latchkey layer, `/healthz` beside it.
pub fn router(latchkey: Latchkey) -> Router {
    let api = Router::new()
        .route(
            "/api/v2/tickets",
            get(list_tickets).route_layer(require_scope("tickets:read")),
        )
        .route(
            "/api/v2/tickets",
            post(create_ticket).route_layer(require_scope("tickets:write")),
        )
        .route("/api/v2/me", get(me))
        .layer(latchkey.layer());
    let service = Service {
        latchkey,
        next_ticket: Arc::new(AtomicU64::new(1)),
    };
    Router::new()
        .route("/healthz", get(healthz))
        .merge(api)
        .with_state(service)
}

/// Serves `router` on `listener` until `shutdown` resolves, with the peer's
/// address recorded for latchkey (`ConnectInfo`), then lets in-flight
/// requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

/// `GET /tickets`: the (empty) tickets of the caller's account.
#[derive(Serialize)]
struct TicketList {
    tickets: [u64; 0],
    account: String,
}

/// `POST /tickets`: the ticket made, with who asked for it.
#[derive(Serialize)]
struct Created {
    ticket: Ticket,
}

#[derive(Serialize)]
struct Ticket {
    id: u64,
    requester_id: i64,
}

async fn list_tickets(principal: Principal) -> Json<TicketList> {
    Json(TicketList {
        tickets: [],
        account: principal.subdomain().to_owned(),
    })
}

async fn create_ticket(State(service): State<Service>, principal: Principal) -> (StatusCode, Json<Created>) {
    let ticket = Ticket {
        id: service.next_ticket.fetch_add(1, Ordering::Relaxed),
        requester_id: principal.user_id().get(),
    };
    (StatusCode::CREATED, Json(Created { ticket }))
}

async fn me(principal: Principal) -> Json<Principal> {
    Json(principal)
}

async fn healthz(State(service): State<Service>) -> (StatusCode, &'static str) {
    if service.latchkey.is_stale() {
        (StatusCode::SERVICE_UNAVAILABLE, "stale")
    } else {
        (StatusCode::OK, "ok")
    }
}
