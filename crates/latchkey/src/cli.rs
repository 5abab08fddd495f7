//! The command line, declared with clap: the doc comments are the `--help`.
//! The deployment's settings (the global options and `serve`'s) can also
//! come from `LATCHKEY_<OPTION>` environment variables and from the
//! configuration file `--config` names (`config.rs`). A command's own
//! arguments (`--account`, `--name`, …) read no environment variable, so a
//! variable exported for one command never fills another's.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use clap::builder::{BoolishValueParser, PossibleValuesParser};
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

    /// Read the database URL from this file instead (its first line), so
    /// that a password in it stays out of the process list and the
    /// environment.
    #[arg(
        long,
        global = true,
        env = "LATCHKEY_DATABASE_URL_FILE",
        value_name = "FILE",
        conflicts_with = "database_url"
    )]
    pub database_url_file: Option<PathBuf>,

    /// How long the first connection to PostgreSQL may take before the
    /// command fails, in seconds (fractions allowed).
    #[arg(long, global = true, env = "LATCHKEY_CONNECT_TIMEOUT", default_value = "5", value_parser = parse_seconds)]
    pub connect_timeout: std::time::Duration,

    /// Connections each process keeps to PostgreSQL for requests and
    /// commands (the change-log follower has 3 more of its own).
    #[arg(long, global = true, env = "LATCHKEY_POOL_SIZE", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub pool_size: u32,

    /// A TOML file of option values (keys spelled with underscores, such as
    /// `public_url`) and the deployment's `[[resources]]`; the command line
    /// and LATCHKEY_* variables win over it.
    #[arg(long, global = true, env = "LATCHKEY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// How to connect to PostgreSQL.
    pub fn connect_options(&self) -> latchkey_app::ConnectOptions {
        latchkey_app::ConnectOptions {
            connect_timeout: self.connect_timeout,
            pool_size: self.pool_size,
        }
    }

    /// The database URL: `--database-url`, or the first line of
    /// `--database-url-file`.
    pub fn database_url(&self) -> anyhow::Result<String> {
        let Some(path) = &self.database_url_file else {
            return Ok(self.database_url.clone());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read --database-url-file {}: {e}", path.display()))?;
        let url = text.lines().next().unwrap_or("").trim();
        anyhow::ensure!(!url.is_empty(), "--database-url-file {} is empty", path.display());
        Ok(url.to_owned())
    }
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
    /// Copy a SQLite database, consistently, while servers run on it, into a
    /// new file (for PostgreSQL, use pg_dump).
    Backup(BackupArgs),
    /// Copy every record from one database to another, empty one (for
    /// example from SQLite to PostgreSQL), keeping ids, token hashes, the
    /// audit chain and settings.
    CopyDb(CopyDbArgs),
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The new file to write (never overwritten), readable by its owner only.
    #[arg(long, value_name = "FILE")]
    pub to: PathBuf,
}

#[derive(Debug, Args)]
pub struct CopyDbArgs {
    /// The database to read: sqlite://FILE or postgres://...
    #[arg(long, env = "LATCHKEY_COPY_DB_FROM")]
    pub from: String,
    /// The database to write; it is migrated first and must hold no data.
    #[arg(long, env = "LATCHKEY_COPY_DB_TO")]
    pub to: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on, HOST:PORT (`0.0.0.0:8080`, `[::]:8080`,
    /// `localhost:8080`).
    #[arg(long, env = "LATCHKEY_LISTEN", default_value = "127.0.0.1:8080", value_parser = parse_listen)]
    pub listen: SocketAddr,
    /// Public base URL used in `url`, `Location` and links, such as
    /// `https://tokens.example.com` (default: from the request's Host).
    #[arg(long, env = "LATCHKEY_PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<String>,
    /// Prefix of new tokens; never change it on a live deployment.
    #[arg(long, env = "LATCHKEY_TOKEN_PREFIX", default_value = "lk")]
    pub token_prefix: String,
    /// A proxy whose X-Forwarded-For/-Host/-Proto headers are trusted: a
    /// network (`10.0.0.0/8`) or one address (`127.0.0.1` is /32);
    /// repeatable or comma-separated.
    #[arg(long, env = "LATCHKEY_TRUSTED_PROXY", value_delimiter = ',', value_parser = parse_network)]
    pub trusted_proxy: Vec<IpNet>,
    /// How often last_used is written to the database, in seconds (1 to 3600).
    #[arg(long, env = "LATCHKEY_FLUSH_INTERVAL_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub flush_interval_secs: u64,
    /// How often the change log is polled for other processes' changes, in
    /// milliseconds (5 to 60000; PostgreSQL also wakes a node at once).
    #[arg(long, env = "LATCHKEY_POLL_INTERVAL_MS", default_value_t = 25,
          value_parser = clap::value_parser!(u64).range(5..=60_000))]
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
    /// Audit retention: prune audit events older than this many days (1 to
    /// 36500), keeping the chain verifiable from a checkpoint event; checked
    /// every sweep interval, and an account is pruned at most once a day.
    /// Default: keep every event.
    #[arg(long, env = "LATCHKEY_AUDIT_RETENTION_DAYS", value_name = "DAYS", value_parser = parse_retention_days)]
    pub audit_retention_days: Option<u32>,
    /// Serve `/metrics` on this address (HOST:PORT) instead of the public
    /// one, where it then answers 404.
    #[arg(long, env = "LATCHKEY_METRICS_LISTEN", value_parser = parse_listen)]
    pub metrics_listen: Option<SocketAddr>,
    /// After SIGTERM, how long `/readyz` answers 503 while requests are still
    /// served (so load balancers stop sending first), in seconds (fractions
    /// allowed; 0: drain at once). A second SIGTERM cuts it short.
    #[arg(long, env = "LATCHKEY_SHUTDOWN_GRACE", default_value = "5", value_parser = parse_grace)]
    pub shutdown_grace: std::time::Duration,
    /// Subdomain of the account created on first run.
    #[arg(long, env = "LATCHKEY_BOOTSTRAP_SUBDOMAIN", default_value = "default")]
    pub bootstrap_subdomain: String,
    /// A file whose first line is the password of the admin created on
    /// first run (then none is printed); otherwise a random one is printed
    /// once.
    #[arg(long, env = "LATCHKEY_BOOTSTRAP_ADMIN_PASSWORD_FILE", value_name = "FILE")]
    pub bootstrap_admin_password_file: Option<PathBuf>,
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

/// HOST:PORT: an address, or a name resolved once at start (its first IPv4
/// address, else its first address).
fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    let bad = || format!("{s:?} is not HOST:PORT, such as 127.0.0.1:8080 or localhost:8080");
    if !s.contains(':') {
        return Err(bad());
    }
    let addrs: Vec<SocketAddr> = s.to_socket_addrs().map_err(|_| bad())?.collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(bad)
}

/// A network in CIDR notation, or one address (a /32 or /128 network).
pub fn parse_network(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not an address or a network such as 10.0.0.0/8"))
}

/// An absolute http(s) URL with a host and nothing after the path: the base
/// of the links latchkey writes. Kept without a final `/`.
fn parse_public_url(s: &str) -> Result<String, String> {
    let bad = || format!("{s:?} is not a base URL such as https://tokens.example.com");
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or_else(bad)?;
    let host = rest.split('/').next().unwrap_or("");
    let fine = |c: char| c.is_ascii_alphanumeric() || "-._:[]".contains(c);
    if host.is_empty() || !host.chars().all(fine) || rest.contains(['?', '#', ' ', '\\']) || rest.contains("//") {
        return Err(bad());
    }
    Ok(s.trim_end_matches('/').to_owned())
}

/// `on`/`off`, `true`/`false`, `yes`/`no`, `1`/`0`: every boolean value of
/// the command line and the configuration file.
fn boolish() -> BoolishValueParser {
    BoolishValueParser::new()
}

/// 0 to 300 seconds, fractions allowed.
fn parse_grace(s: &str) -> Result<std::time::Duration, String> {
    match s.trim().parse::<f64>() {
        Ok(secs) if secs.is_finite() && (0.0..=300.0).contains(&secs) => Ok(std::time::Duration::from_secs_f64(secs)),
        _ => Err(format!("{s:?} must be a number of seconds from 0 to 300")),
    }
}

/// A whole number of days from 1 to 36500 (a hundred years).
fn parse_retention_days(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(days) if (1..=36_500).contains(&days) => Ok(days),
        _ => Err(format!("{s:?} must be a whole number of days from 1 to 36500")),
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
    /// Change an account's name, plan, API token access or token limit.
    Update(AccountUpdate),
    /// Delete an account with its users, tokens, sessions and audit log
    /// (export the audit log first: `latchkey audit export`).
    Delete {
        /// The account to delete.
        #[arg(long)]
        subdomain: String,
        /// The subdomain again, to confirm: nothing is deleted without it.
        #[arg(long, value_name = "SUBDOMAIN")]
        confirm: Option<String>,
    },
    /// List every account.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct AccountCreate {
    /// The account's subdomain (`[a-z0-9-]`), its identity in URLs and commands.
    #[arg(long)]
    pub subdomain: String,
    /// The account's display name.
    #[arg(long)]
    pub name: String,
    /// The account's plan.
    #[arg(long, value_parser = plans())]
    pub plan: String,
    /// Turn API token access on from the start: alone, or with on/off
    /// (true/false) after it.
    #[arg(long, value_parser = boolish(), num_args = 0..=1, default_value = "off",
          default_missing_value = "on", value_name = "on|off")]
    pub api_token_access: bool,
    /// The email of the account's first admin.
    #[arg(long)]
    pub admin_email: String,
    /// The first admin's name.
    #[arg(long, default_value = "Admin")]
    pub admin_name: String,
    /// Read the admin's password from the first line of standard input
    /// (otherwise a random one is printed once).
    #[arg(long)]
    pub admin_password_stdin: bool,
}

#[derive(Debug, Args)]
pub struct AccountUpdate {
    /// The account to change.
    #[arg(long)]
    pub subdomain: String,
    /// A new display name.
    #[arg(long)]
    pub name: Option<String>,
    /// A new plan.
    #[arg(long, value_parser = plans())]
    pub plan: Option<String>,
    /// Turn API token access on or off (on/off, true/false).
    #[arg(long, value_parser = boolish(), value_name = "on|off")]
    pub api_token_access: Option<bool>,
    /// The most tokens the account may hold, 1 to 10000 and not fewer than
    /// it holds (the operator's override, e.g. for a migration).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(1..=10_000))]
    pub token_limit: Option<i64>,
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Create a user in an account.
    Create(UserCreate),
    /// Set or replace a user's web sign-in password (recovering an admin
    /// who lost theirs); audited as the operator.
    SetPassword(UserSetPassword),
    /// List an account's users.
    List {
        /// The account's subdomain.
        #[arg(long)]
        account: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Change a user's role, or suspend or unsuspend them (a suspended
    /// user's tokens stop authenticating at once); audited as the operator.
    Update(UserUpdate),
    /// Delete a user (their tokens stop authenticating); audited as the operator.
    Delete {
        /// The account's subdomain.
        #[arg(long)]
        account: String,
        /// The user's email.
        #[arg(long)]
        email: String,
    },
}

#[derive(Debug, Args)]
pub struct UserUpdate {
    /// The account's subdomain.
    #[arg(long)]
    pub account: String,
    /// The user's email.
    #[arg(long)]
    pub email: String,
    /// A new name.
    #[arg(long)]
    pub name: Option<String>,
    /// A new role.
    #[arg(long, value_parser = roles())]
    pub role: Option<String>,
    /// Suspend (on) or unsuspend (off) the user.
    #[arg(long, value_parser = boolish(), value_name = "on|off")]
    pub suspended: Option<bool>,
    /// Mark the email verified (on) or not (off).
    #[arg(long, value_parser = boolish(), value_name = "on|off")]
    pub verified: Option<bool>,
}

#[derive(Debug, Args)]
pub struct UserSetPassword {
    /// The account's subdomain.
    #[arg(long)]
    pub account: String,
    /// The user's email.
    #[arg(long)]
    pub email: String,
    /// Read the new password from the first line of standard input
    /// (required: a password never goes on the command line).
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Args)]
pub struct UserCreate {
    /// The account's subdomain.
    #[arg(long)]
    pub account: String,
    /// The user's email, unique in the account.
    #[arg(long)]
    pub email: String,
    /// The user's name.
    #[arg(long)]
    pub name: String,
    /// The user's role.
    #[arg(long, value_parser = roles())]
    pub role: String,
    /// Create the user unverified (it cannot use API tokens until verified).
    #[arg(long)]
    pub unverified: bool,
    /// Read a web sign-in password from the first line of standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Generate a token; prints the token alone (shown this once).
    Create {
        /// The account's subdomain.
        #[arg(long)]
        account: String,
        /// What the token is for (at most 255 characters).
        #[arg(long)]
        description: Option<String>,
        /// Prefix of the new token.
        #[arg(long, env = "LATCHKEY_TOKEN_PREFIX", default_value = "lk")]
        token_prefix: String,
        /// Restrict the token to these scopes, comma-separated
        /// (`tickets:read,users:read`); without it the token has its user's
        /// full access. `GET /api/v2/scopes` lists the offered ones.
        #[arg(long, value_delimiter = ',')]
        scopes: Option<Vec<String>>,
        /// Only this user (by email) may authenticate with the token.
        #[arg(long)]
        assigned_user: Option<String>,
        /// When the token stops working, RFC 3339 (`2027-03-01T00:00:00Z`).
        #[arg(long, value_parser = parse_time)]
        expires_at: Option<Timestamp>,
        /// Only requests from these networks authenticate, comma-separated
        /// (`10.0.0.0/8,2001:db8::/32`; a bare address is /32 or /128).
        #[arg(long, value_delimiter = ',')]
        allowed_ips: Option<Vec<String>>,
        /// At most this many requests per window for the whole deployment,
        /// as `REQUESTS/SECONDS` (`100/60`: 100 a minute).
        #[arg(long, value_parser = parse_rate_limit)]
        rate_limit: Option<RateLimit>,
    },
    /// List an account's tokens, newest first.
    List {
        /// The account's subdomain.
        #[arg(long)]
        account: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Deactivate a token (it stops authenticating at once, everywhere);
    /// audited as the operator.
    Deactivate(TokenRef),
    /// Reactivate a deactivated token; audited as the operator.
    Reactivate(TokenRef),
    /// Delete a token for good; audited as the operator.
    Delete(TokenRef),
    /// Revoke tokens found in public: every line of the file that is one of
    /// this deployment's tokens deactivates it (audited as `reported leaked`).
    RevokeLeaked {
        /// One token a line; other lines are ignored.
        #[arg(long)]
        file: PathBuf,
    },
    /// Import tokens from a JSON-lines file of plaintext tokens or SHA-256 hashes.
    Import {
        /// The account's subdomain.
        #[arg(long)]
        account: String,
        /// The JSON-lines file, one token a line (README.md, "Command line").
        #[arg(long)]
        file: PathBuf,
    },
}

/// One token of one account.
#[derive(Debug, Args)]
pub struct TokenRef {
    /// The account's subdomain.
    #[arg(long)]
    pub account: String,
    /// The token's id (`token list` shows it).
    #[arg(long)]
    pub id: i64,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Run one sweep now: deactivate tokens unused for longer than the
    /// policy allows and delete tokens deactivated for longer; prints each
    /// change (or, with --dry-run, what it would change).
    Sweep {
        /// Only this account (default: every account with such a policy).
        #[arg(long)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Csv,
    Jsonl,
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Write every audit event of an account to standard output, oldest
    /// first, as CSV or JSON lines (the REST API's export format).
    Export {
        /// The account's subdomain.
        #[arg(long)]
        account: String,
        /// csv (a header row, then one row an event) or jsonl (one JSON object a line).
        #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
        format: ExportFormat,
        /// The base of each event's `url` (default: none, so `url` is a path).
        #[arg(long, env = "LATCHKEY_PUBLIC_URL")]
        public_url: Option<String>,
    },
    /// Check an account's audit hash chain; exits 1 naming the first broken event.
    Verify {
        /// The account's subdomain.
        #[arg(long)]
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

    #[test]
    fn every_argument_says_what_it_is_for() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} --{}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "latchkey", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
    }

    /// `account create` with `extra` after its required arguments.
    fn account_create(extra: &[&str]) -> AccountCreate {
        let mut args = vec![
            "latchkey",
            "account",
            "create",
            "--subdomain",
            "s",
            "--name",
            "N",
            "--plan",
            "team",
        ];
        args.extend_from_slice(extra);
        let Command::Account(AccountCmd::Create(c)) = Cli::try_parse_from(args).unwrap().command else {
            panic!("account create")
        };
        c
    }

    #[test]
    fn values_read_the_same_everywhere() {
        assert_eq!(parse_network("127.0.0.1").unwrap().to_string(), "127.0.0.1/32");
        assert_eq!(parse_network("::1").unwrap().to_string(), "::1/128");
        assert_eq!(parse_network("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert!(parse_network("10.0.0.0/33").is_err());
        assert_eq!(parse_listen("localhost:8080").unwrap().port(), 8080);
        assert!(parse_listen("localhost:8080").unwrap().ip().is_loopback());
        assert_eq!(parse_listen("[::1]:9").unwrap().to_string(), "[::1]:9");
        assert!(parse_listen("localhost").is_err());
        assert_eq!(
            parse_public_url("https://tokens.example.com/").unwrap(),
            "https://tokens.example.com"
        );
        assert_eq!(
            parse_public_url("http://127.0.0.1:8080/latchkey").unwrap(),
            "http://127.0.0.1:8080/latchkey"
        );
        for bad in [
            "tokens.example.com",
            "ftp://x",
            "https://",
            "https://x.com/?a=1",
            "https://x y",
            "https:///x",
        ] {
            assert!(parse_public_url(bad).is_err(), "{bad}");
        }
        for (text, value) in [
            ("on", true),
            ("true", true),
            ("yes", true),
            ("off", false),
            ("false", false),
            ("0", false),
        ] {
            let cli = Cli::try_parse_from([
                "latchkey",
                "account",
                "update",
                "--subdomain",
                "s",
                "--api-token-access",
                text,
            ])
            .unwrap();
            let Command::Account(AccountCmd::Update(u)) = cli.command else {
                panic!("account update")
            };
            assert_eq!(u.api_token_access, Some(value), "{text}");
            let c = account_create(&["--admin-email", "a@b.c", "--api-token-access", text]);
            assert_eq!(c.api_token_access, value, "{text}");
        }
        assert!(
            account_create(&["--api-token-access", "--admin-email", "a@b.c"]).api_token_access,
            "the flag alone turns it on"
        );
        assert!(
            !account_create(&["--admin-email", "a@b.c"]).api_token_access,
            "off unless asked"
        );
    }
}
