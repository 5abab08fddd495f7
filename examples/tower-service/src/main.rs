//! `tower-service`: the example service of `latchkey-tower`, run as
//!
//! ```sh
//! cargo run -p latchkey-tower-example -- --database-url sqlite://latchkey.db --listen 127.0.0.1:3000
//! ```
//!
//! beside `latchkey serve` on the same database. It prints the address it
//! listens on, serves until Ctrl-C or SIGTERM, then writes `last_used` once
//! more.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use latchkey_tower::{IpNet, Latchkey};

/// A tiny service whose API authenticates latchkey tokens in process.
#[derive(Debug, Parser)]
struct Args {
    /// The latchkey database, as `latchkey serve --database-url` takes it.
    #[arg(long, env = "LATCHKEY_DATABASE_URL", default_value = "sqlite://latchkey.db")]
    database_url: String,
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: std::net::SocketAddr,
    /// A proxy in front of the service whose forwarding headers are believed (repeatable).
    #[arg(long = "trusted-proxy")]
    trusted_proxies: Vec<IpNet>,
    /// Seconds out of touch with the database before every request gets 503.
    #[arg(long, default_value = "5")]
    max_staleness: f64,
    /// A latchkey configuration file whose `[[resources]]` tokens' scopes are
    /// also checked against by path, as the REST API does.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let max_staleness = Duration::try_from_secs_f64(args.max_staleness)?;
    let mut builder = Latchkey::builder(args.database_url)
        .max_staleness(max_staleness)
        .trusted_proxies(args.trusted_proxies);
    if let Some(config) = args.config {
        builder = builder.scopes_by_path_from_config(config);
    }
    let latchkey = builder.open().await?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("tower-service: listening on http://{}", listener.local_addr()?);
    let router = latchkey_tower_example::router(latchkey.clone());
    latchkey_tower_example::serve(listener, router, shutdown_signal()).await?;
    latchkey.shutdown().await;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
