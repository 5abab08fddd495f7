//! The command line, declared with clap: the doc comments are the `--help`.
//! Every option can also come from a `LATCHKEY_<OPTION>` environment variable,
//! and from the configuration file `--config` names (`config.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::builder::PossibleValuesParser;
use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::IpNet;
use latchkey_core::account::Plan;
use latchkey_core::rate_limit::RateLimit;
use latchkey_core::time::Timestamp;
use latchkey_core::token::TokenPrefix;
use latchkey_core::user::Role;
use strum::VariantNames;

/// latchkey: API tokens for a multi-tenant SaaS.
#[derive(Debug, Parser)]
#[command(name = "latchkey", version, about)]
pub struct Cli {
    /// Database to use: sqlite://FILE (created if missing) or
    /// postgres://USER@HOST:PORT/DATABASE (shared by several nodes).
    #[arg(
        long,
        global = true,
        env = "LATCHKEY_DATABASE_URL",
        default_value = "sqlite://latchkey.db"
    )]
    pub database_url: String,

    /// A TOML file of option values (keys spelled with underscores, such as
    /// `public_url`) and the deployment's `[[resources]]`; the command line
    /// and LATCHKEY_* variables win over it.
    #[arg(long, global = true, env = "LATCHKEY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (REST API and verification); migrates on start.
    Serve(ServeArgs),
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Create and change accounts.
    #[command(subcommand)]
    Account(AccountCmd),
    /// Create users.
    #[command(subcommand)]
    User(UserCmd),
    /// Create, list and import API tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Check the audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Apply the accounts' token policies.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Copy every record from one database to another, empty one (for
    /// example from SQLite to PostgreSQL), keeping ids, token hashes, the
    /// audit chain and settings.
    CopyDb(CopyDbArgs),
}

#[derive(Debug, Args)]
pub struct CopyDbArgs {
    /// The database to read: sqlite://FILE or postgres://...
    #[arg(long)]
    pub from: String,
    /// The database to write; it is migrated first and must hold no data.
    #[arg(long)]
    pub to: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "LATCHKEY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Public base URL used in `url`, `Location` and links (default: from the request's Host).
    #[arg(long, env = "LATCHKEY_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Prefix of new tokens; never change it on a live deployment.
    #[arg(long, env = "LATCHKEY_TOKEN_PREFIX", default_value = "lk")]
    pub token_prefix: String,
    /// A proxy (CIDR) whose X-Forwarded-For/-Host/-Proto headers are trusted; repeatable.
    #[arg(long, env = "LATCHKEY_TRUSTED_PROXY", value_delimiter = ',')]
    pub trusted_proxy: Vec<IpNet>,
    /// How often last_used is written to the database, in seconds.
    #[arg(long, env = "LATCHKEY_FLUSH_INTERVAL_SECS", default_value_t = 10)]
    pub flush_interval_secs: u64,
    /// How often the change log is polled for other processes' changes, in milliseconds.
    #[arg(long, env = "LATCHKEY_POLL_INTERVAL_MS", default_value_t = 25)]
    pub poll_interval_ms: u64,
    /// Failed authentications allowed per client address per minute.
    #[arg(long, env = "LATCHKEY_FAILED_AUTH_PER_MINUTE", default_value_t = 100)]
    pub failed_auth_per_minute: u32,
    /// How long a node that has lost its database keeps verifying from
    /// memory before it answers 503, in seconds (fractions allowed).
    #[arg(long, env = "LATCHKEY_MAX_STALENESS", default_value = "5", value_parser = parse_seconds)]
    pub max_staleness: std::time::Duration,
    /// How long a client may take to send a request's line and headers, in
    /// seconds (fractions allowed): counted from the connection's opening
    /// for its first request, from the first byte for later ones. A slower
    /// client's connection is closed.
    #[arg(long, env = "LATCHKEY_HEADER_READ_TIMEOUT", default_value = "10", value_parser = parse_seconds)]
    pub header_read_timeout: std::time::Duration,
    /// How long a connection may stay open with no request in flight (a
    /// keep-alive waiting for the next request), or with no byte moving
    /// either way, in seconds (fractions allowed).
    #[arg(long, env = "LATCHKEY_IDLE_TIMEOUT", default_value = "60", value_parser = parse_seconds)]
    pub idle_timeout: std::time::Duration,
    /// How many client connections may be open at once; a connection over
    /// it is closed as soon as it is accepted, and the open ones are served
    /// on. Lowered at start to what the open-file limit leaves room for.
    #[arg(long, env = "LATCHKEY_MAX_CONNECTIONS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// How often the token policy's sweeper deactivates unused tokens and
    /// deletes long-deactivated ones, in seconds.
    #[arg(long, env = "LATCHKEY_SWEEP_INTERVAL_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub sweep_interval_secs: u64,
    /// Subdomain of the account created on first run.
    #[arg(long, env = "LATCHKEY_BOOTSTRAP_SUBDOMAIN", default_value = "default")]
    pub bootstrap_subdomain: String,
    /// Email of the admin created on first run.
    #[arg(long, env = "LATCHKEY_BOOTSTRAP_ADMIN_EMAIL", default_value = "admin@localhost")]
    pub bootstrap_admin_email: String,
    /// Log format.
    #[arg(long, env = "LATCHKEY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl ServeArgs {
    pub fn token_prefix(&self) -> anyhow::Result<TokenPrefix> {
        parse_prefix(&self.token_prefix)
    }
}

/// A positive number of seconds, such as `5` or `0.5`.
fn parse_seconds(s: &str) -> Result<std::time::Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
        return Err(format!("{s:?} must be more than 0 and at most 86400 seconds"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// An RFC 3339 time, such as `2027-03-01T00:00:00Z`.
fn parse_time(s: &str) -> Result<Timestamp, String> {
    Timestamp::parse_rfc3339(s).ok_or_else(|| format!("{s:?} is not an RFC 3339 time such as 2027-03-01T00:00:00Z"))
}

/// `100/60`: 100 requests per 60 seconds.
fn parse_rate_limit(s: &str) -> Result<RateLimit, String> {
    let (requests, seconds) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not REQUESTS/SECONDS, such as 100/60"))?;
    let number = |n: &str| {
        n.trim()
            .parse::<i64>()
            .map_err(|_| format!("{s:?} is not REQUESTS/SECONDS, such as 100/60"))
    };
    RateLimit::new(number(requests)?, number(seconds)?).map_err(|e| e.description)
}

pub fn parse_prefix(s: &str) -> anyhow::Result<TokenPrefix> {
    TokenPrefix::parse(s).map_err(anyhow::Error::msg)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

/// The plans an account can have (their wire spellings, from `Plan`); a
/// value outside them is a bad argument (exit 2).
fn plans() -> PossibleValuesParser {
    PossibleValuesParser::new(Plan::VARIANTS)
}

/// The roles a user can have (their wire spellings, from `Role`).
fn roles() -> PossibleValuesParser {
    PossibleValuesParser::new(Role::VARIANTS)
}

#[derive(Debug, Subcommand)]
pub enum AccountCmd {
    /// Create an account with its first admin.
    Create(AccountCreate),
    /// Change an account's name, plan or API token access.
    Update(AccountUpdate),
}

#[derive(Debug, Args)]
pub struct AccountCreate {
    #[arg(long, env = "LATCHKEY_SUBDOMAIN")]
    pub subdomain: String,
    #[arg(long, env = "LATCHKEY_NAME")]
    pub name: String,
    #[arg(long, env = "LATCHKEY_PLAN", value_parser = plans())]
    pub plan: String,
    /// Turn API token access on from the start.
    #[arg(long, env = "LATCHKEY_API_TOKEN_ACCESS")]
    pub api_token_access: bool,
    #[arg(long, env = "LATCHKEY_ADMIN_EMAIL")]
    pub admin_email: String,
    #[arg(long, env = "LATCHKEY_ADMIN_NAME", default_value = "Admin")]
    pub admin_name: String,
    /// Read the admin's password from the first line of standard input
    /// (otherwise a random one is printed once).
    #[arg(long, env = "LATCHKEY_ADMIN_PASSWORD_STDIN")]
    pub admin_password_stdin: bool,
}

#[derive(Debug, Args)]
pub struct AccountUpdate {
    #[arg(long, env = "LATCHKEY_SUBDOMAIN")]
    pub subdomain: String,
    #[arg(long, env = "LATCHKEY_NAME")]
    pub name: Option<String>,
    #[arg(long, env = "LATCHKEY_PLAN", value_parser = plans())]
    pub plan: Option<String>,
    #[arg(long, env = "LATCHKEY_API_TOKEN_ACCESS", value_enum)]
    pub api_token_access: Option<OnOff>,
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Create a user in an account.
    Create(UserCreate),
}

#[derive(Debug, Args)]
pub struct UserCreate {
    /// The account's subdomain.
    #[arg(long, env = "LATCHKEY_ACCOUNT")]
    pub account: String,
    #[arg(long, env = "LATCHKEY_EMAIL")]
    pub email: String,
    #[arg(long, env = "LATCHKEY_NAME")]
    pub name: String,
    #[arg(long, env = "LATCHKEY_ROLE", value_parser = roles())]
    pub role: String,
    /// Create the user unverified (it cannot use API tokens until verified).
    #[arg(long, env = "LATCHKEY_UNVERIFIED")]
    pub unverified: bool,
    /// Read a web sign-in password from the first line of standard input.
    #[arg(long, env = "LATCHKEY_PASSWORD_STDIN")]
    pub password_stdin: bool,
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Generate a token; prints the token alone (shown this once).
    Create {
        #[arg(long, env = "LATCHKEY_ACCOUNT")]
        account: String,
        #[arg(long, env = "LATCHKEY_DESCRIPTION")]
        description: Option<String>,
        /// Prefix of the new token.
        #[arg(long, env = "LATCHKEY_TOKEN_PREFIX", default_value = "lk")]
        token_prefix: String,
        /// Restrict the token to these scopes, comma-separated
        /// (`tickets:read,users:read`); without it the token has its user's
        /// full access. `GET /api/v2/scopes` lists the offered ones.
        #[arg(long, env = "LATCHKEY_SCOPES", value_delimiter = ',')]
        scopes: Option<Vec<String>>,
        /// Only this user (by email) may authenticate with the token.
        #[arg(long, env = "LATCHKEY_ASSIGNED_USER")]
        assigned_user: Option<String>,
        /// When the token stops working, RFC 3339 (`2027-03-01T00:00:00Z`).
        #[arg(long, env = "LATCHKEY_EXPIRES_AT", value_parser = parse_time)]
        expires_at: Option<Timestamp>,
        /// Only requests from these networks authenticate, comma-separated
        /// (`10.0.0.0/8,2001:db8::/32`; a bare address is /32 or /128).
        #[arg(long, env = "LATCHKEY_ALLOWED_IPS", value_delimiter = ',')]
        allowed_ips: Option<Vec<String>>,
        /// At most this many requests per window for the whole deployment,
        /// as `REQUESTS/SECONDS` (`100/60`: 100 a minute).
        #[arg(long, env = "LATCHKEY_RATE_LIMIT", value_parser = parse_rate_limit)]
        rate_limit: Option<RateLimit>,
    },
    /// List an account's tokens, newest first.
    List {
        #[arg(long, env = "LATCHKEY_ACCOUNT")]
        account: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke tokens found in public: every line of the file that is one of
    /// this deployment's tokens deactivates it (audited as `reported leaked`).
    RevokeLeaked {
        /// One token a line; other lines are ignored.
        #[arg(long)]
        file: PathBuf,
    },
    /// Import tokens from a JSON-lines file of plaintext tokens or SHA-256 hashes.
    Import {
        #[arg(long, env = "LATCHKEY_ACCOUNT")]
        account: String,
        #[arg(long)]
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Run one sweep now: deactivate tokens unused for longer than the
    /// policy allows and delete tokens deactivated for longer; prints each
    /// change (or, with --dry-run, what it would change).
    Sweep {
        /// Only this account (default: every account with such a policy).
        #[arg(long, env = "LATCHKEY_ACCOUNT")]
        account: Option<String>,
        /// Judge as of this instant, RFC 3339 (default: now): shows what a
        /// later date would bring, with --dry-run.
        #[arg(long, value_parser = parse_time)]
        as_of: Option<Timestamp>,
        /// Change nothing; print what would change.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Check an account's audit hash chain; exits 1 naming the first broken event.
    Verify {
        #[arg(long, env = "LATCHKEY_ACCOUNT")]
        account: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
