//! The server's settings, as given on the command line or in `LATCHKEY_*`
//! environment variables (the binary parses them; this is the typed result).

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use latchkey_core::token::TokenPrefix;

use crate::http::leaks::GithubKeys;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Base of every absolute URL the API returns; else the request's Host.
    pub public_url: Option<String>,
    pub token_prefix: TokenPrefix,
    /// Proxies whose `X-Forwarded-*` headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// How often `last_used` is written (at most once per token per interval).
    pub flush_interval: Duration,
    /// How often the change log is polled for other processes' changes.
    pub poll_interval: Duration,
    /// Failed authentications allowed per client address per minute.
    pub failed_auth_per_minute: u32,
    /// How long a process that has lost its database keeps verifying from
    /// memory before it answers 503 (README.md, "Running several nodes").
    pub max_staleness: Duration,
    /// How long a request's head may take to arrive (README.md, "Configuration").
    pub header_read_timeout: Duration,
    /// How long a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// How many connections may be open at once.
    pub max_connections: usize,
    /// How often the token policy's sweeper runs (README.md, "Token policy").
    pub sweep_interval: Duration,
    /// Audit retention: prune events older than this many days, keeping the
    /// chain verifiable from a checkpoint (README.md, "Audit retention");
    /// `None` keeps every event. Runs with the sweeper, every
    /// `sweep_interval`.
    pub audit_retention_days: Option<u32>,
    /// After SIGTERM, how long `/readyz` answers 503 while requests are
    /// still served, so load balancers stop sending before the drain
    /// (README.md, "Running several nodes").
    pub shutdown_grace: Duration,
    /// Serve `/metrics` on this address instead of the public listener
    /// (README.md, "Production checklist").
    pub metrics_listen: Option<SocketAddr>,
    /// The keys GitHub's secret-scanning reports must be signed with
    /// (README.md, "Leaked tokens"); none: every report is refused.
    pub github_keys: GithubKeys,
}

impl Default for ServerConfig {
    fn default() -> Self {
        // Keeping current: the same defaults as every verifying process.
        let upkeep = latchkey_app::Upkeep::default();
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            token_prefix: TokenPrefix::default(),
            trusted_proxies: Vec::new(),
            flush_interval: upkeep.flush_interval,
            poll_interval: upkeep.poll_interval,
            failed_auth_per_minute: 100,
            max_staleness: upkeep.max_staleness,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            sweep_interval: Duration::from_secs(60),
            audit_retention_days: None,
            shutdown_grace: Duration::from_secs(5),
            metrics_listen: None,
            github_keys: GithubKeys::default(),
        }
    }
}
