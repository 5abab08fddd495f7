//! The `latchkey` command: run the server, migrate, and manage accounts,
//! users and tokens directly on the database (README.md, "Command line"). The CLI acts as
//! the operator: every command goes through the service layer
//! (`latchkey_app::App`) with the operator's `AdminAccess`, obtained by
//! resolving the account's subdomain (`App::operator`); its changes are
//! audited with `actor_type` `operator`, and a running server picks them up
//! from the change log within 100 ms.

/// `println!` for the CLI's output, without its panic when the reader has
/// gone (`latchkey token list | head`): the process ends as a Unix tool
/// killed by SIGPIPE would, with status 141 and nothing on standard error.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            $crate::output_failed(e);
        }
    }};
}

mod cli;
mod config;
mod progress;

use std::io::BufRead;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use latchkey_app::password::{ExposeSecret, SecretString};
use latchkey_app::{password, AdminAccess, App, AppError};
use latchkey_core::{
    account::{parse_account_name, AccountPatch, NewAccount, Plan, Subdomain},
    allowlist::IpAllowlist,
    audit::Verdict,
    policy::SweepAction,
    time::{rfc3339, Timestamp},
    token::{
        has_valid_checksum, legacy_visible_token, parse_description, visible_token, NewToken, Restrictions, TokenHash,
        TokenStatus, IMPORTED_VISIBLE_TOKEN,
    },
    user::{parse_user_name, Email, NewUser, Role, UserPatch},
    DomainError,
};
use latchkey_server::{run, ServerConfig};

use cli::{AccountCmd, AuditCmd, Cli, Command, LogFormat, PolicyCmd, TokenCmd, UserCmd};

/// A failure the operator caused (exit 1 with a one-line message), as
/// opposed to a bug or an unreachable database (also exit 1, with context).
fn main() -> ExitCode {
    let cli = match config::load(std::env::args_os().collect()) {
        Ok(loaded) => {
            SCOPES.get_or_init(|| loaded.scopes);
            GITHUB_KEYS.get_or_init(|| loaded.github_keys);
            loaded.cli
        }
        Err(config::LoadError::Usage(e)) => return usage_error(e),
        Err(config::LoadError::Config(line)) => {
            eprintln!("error: {line}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// Where [`out!`] goes when standard output cannot take more.
fn output_failed(e: std::io::Error) {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(141);
    }
    eprintln!("error: cannot write to standard output: {e}");
    std::process::exit(1);
}

/// `--help` and `--version` print as clap renders them; bad arguments exit 2
/// with clap's message folded onto one line (README.md, "Command line").
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        eprintln!("error: a command is required (see --help)");
        return ExitCode::from(2);
    }
    let text = e.render().to_string();
    let message: Vec<&str> = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    eprintln!("{} (see --help)", message.join(" "));
    ExitCode::from(2)
}

/// One line for the operator; domain refusals read as the rule they broke.
fn describe(e: &anyhow::Error) -> String {
    let Some(AppError::Domain(domain)) = e.downcast_ref::<AppError>() else {
        let text = chain_once(e);
        return match database_hint(&text) {
            Some(hint) => format!("{text}\nhint: {hint}"),
            None => text,
        };
    };
    match domain {
        DomainError::Invalid(list) => list
            .iter()
            .map(|i| i.description.clone())
            .collect::<Vec<_>>()
            .join("; "),
        d => d.to_string(),
    }
}

/// What to change when the database could not be reached, for the errors
/// whose cause says it (README.md, "Managed PostgreSQL").
fn database_hint(text: &str) -> Option<&'static str> {
    const HINTS: [(&str, &str); 6] = [
        (
            "did not accept a connection within",
            "check the host and port in the database URL and that nothing between \
             blocks them; --connect-timeout waits longer",
        ),
        (
            "Connection refused",
            "nothing listens at that host and port: check the database URL, and that \
             PostgreSQL runs and listens on that address (listen_addresses)",
        ),
        (
            "invalid peer certificate",
            "the server's TLS certificate was not accepted: name its CA with \
             sslrootcert=FILE in the database URL, connect by the host name on the \
             certificate (verify-full) or check the CA without the host name \
             (sslmode=verify-ca), or use sslmode=require to encrypt without checking it",
        ),
        (
            "server does not support TLS",
            "the server offers no TLS: turn on ssl in PostgreSQL, or (on a trusted \
             network only) use sslmode=prefer or sslmode=disable",
        ),
        (
            "password authentication failed",
            "check the user and password in the database URL",
        ),
        (
            "no pg_hba.conf entry",
            "the server refuses this client: allow it in pg_hba.conf, or connect \
             with TLS (sslmode=require) if the server only accepts hostssl",
        ),
    ];
    HINTS
        .iter()
        .find(|(cause, _)| text.contains(cause))
        .map(|(_, hint)| *hint)
}

/// The error and its causes joined by ": ", each said once: most layers
/// (sqlx's among them) already repeat their cause in their own message.
fn chain_once(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// The log goes to standard error, filtered by `LATCHKEY_LOG`, else
/// `RUST_LOG`, else `info`; colours only on a terminal (README.md, "Production checklist").
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal as _;
    let directives = ["LATCHKEY_LOG", "RUST_LOG"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .find(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "info".to_owned());
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let url = cli.database_url()?;
    let connect = cli.connect_options();
    CONNECT.get_or_init(|| connect);
    match cli.command {
        Command::Serve(args) => {
            init_logging(args.log_format);
            serve(&url, args).await?;
        }
        Command::Migrate => {
            latchkey_app::database::migrate(&url, connect).await?;
            out!("database is up to date");
        }
        Command::Account(cmd) => account(&url, cmd).await?,
        Command::User(cmd) => user(&url, cmd).await?,
        Command::Token(cmd) => token(&url, cmd).await?,
        Command::Audit(AuditCmd::Verify { account }) => return audit_verify(&url, &account).await,
        Command::Audit(AuditCmd::Export {
            account,
            format,
            public_url,
        }) => audit_export(&url, &account, format, public_url.as_deref().unwrap_or("")).await?,
        Command::Policy(PolicyCmd::Sweep {
            account,
            as_of,
            dry_run,
        }) => return policy_sweep(&url, account.as_deref(), as_of, dry_run).await,
        Command::Backup(args) => {
            latchkey_app::database::backup(&url, &args.to).await?;
            out!("backed up to {}", args.to.display());
        }
        Command::CopyDb(args) => {
            let bars = progress::TableBars::default();
            let report = latchkey_app::database::copy_db(&args.from, &args.to, &|t: &str, n: u64, of: u64| {
                bars.update(t, n, of)
            })
            .await;
            bars.finish();
            let report = report?;
            for (table, rows) in &report.tables {
                out!("copied {rows} rows of {table}");
            }
            out!("copy complete; start the servers on the new database");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The scopes this deployment offers (latchkey's own resources and the
/// configuration file's), set once in `main`: every `App` a command opens
/// offers them, so `serve` serves them and the CLI checks scopes against them.
static SCOPES: OnceLock<latchkey_core::scope::ScopeCatalog> = OnceLock::new();
/// The configuration file's GitHub secret-scanning keys, for `serve`.
static GITHUB_KEYS: OnceLock<latchkey_server::GithubKeys> = OnceLock::new();

/// `--connect-timeout` and `--pool-size`, set once in `dispatch`.
static CONNECT: OnceLock<latchkey_app::ConnectOptions> = OnceLock::new();

async fn open(url: &str, prefix: latchkey_core::token::TokenPrefix) -> anyhow::Result<App> {
    let scopes = SCOPES.get().cloned().unwrap_or_default();
    let connect = CONNECT.get().copied().unwrap_or_default();
    Ok(App::open_with_connect(url, prefix, connect)
        .await?
        .with_scope_catalog(scopes))
}

async fn serve(url: &str, args: cli::ServeArgs) -> anyhow::Result<()> {
    let prefix = args.token_prefix()?;
    let app = Arc::new(open(url, prefix.clone()).await?);
    let config = ServerConfig {
        listen: args.listen,
        public_url: args.public_url.clone(),
        token_prefix: prefix,
        trusted_proxies: args.trusted_proxy.clone(),
        flush_interval: std::time::Duration::from_secs(args.flush_interval_secs.max(1)),
        poll_interval: std::time::Duration::from_millis(args.poll_interval_ms.max(1)),
        failed_auth_per_minute: args.failed_auth_per_minute,
        max_staleness: args.max_staleness,
        header_read_timeout: args.header_read_timeout,
        idle_timeout: args.idle_timeout,
        max_connections: args.max_connections as usize,
        sweep_interval: std::time::Duration::from_secs(args.sweep_interval_secs),
        audit_retention_days: args.audit_retention_days,
        shutdown_grace: args.shutdown_grace,
        metrics_listen: args.metrics_listen,
        github_keys: GITHUB_KEYS.get().cloned().unwrap_or_default(),
    };
    // Bind first: a busy port must not leave behind a first admin whose
    // printed password nobody saw.
    let listener = run::bind(&config)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let given = match &args.bootstrap_admin_password_file {
        Some(path) => Some(read_password_file(path)?),
        None => None,
    };
    let first = app
        .bootstrap_with(&args.bootstrap_subdomain, &args.bootstrap_admin_email, given)
        .await?;
    let running = run::start_on(listener, app, config).await?;
    let listening = format!("http://{}", running.addr);
    let base = args
        .public_url
        .as_deref()
        .map_or(listening.clone(), |u| u.trim_end_matches('/').to_owned());
    if let Some(b) = first {
        out!(
            "latchkey: created the first account \"{}\" with admin {}",
            b.subdomain,
            b.email
        );
        if args.bootstrap_admin_password_file.is_none() {
            out!(
                "latchkey: its password, shown this once: {}",
                b.password.expose_secret()
            );
        }
        out!("latchkey: sign in at {base}/login (API token access starts off: turn it on under Admin Center > Configuration)");
    }
    if base != listening {
        out!("latchkey: public URL {base}");
    }
    if let Some(at) = running.metrics_addr {
        out!("latchkey: metrics on http://{at}/metrics");
    }
    // The bound address, even with a public URL: with `--listen …:0` it is
    // the only way to learn the port.
    out!("latchkey: listening on {listening}");
    tracing::info!(addr = %running.addr, "listening");
    latchkey_server::tasks::shutdown_signal().await;
    running
        .drain_then_stop(latchkey_server::tasks::shutdown_signal())
        .await?;
    tracing::info!("stopped: requests drained and last_used written");
    Ok(())
}

/// The operator's access to the account at `subdomain`, and the account.
async fn operator(app: &App, subdomain: &str) -> anyhow::Result<(AdminAccess, latchkey_core::account::Account)> {
    Ok(app.operator(subdomain).await?)
}

fn read_secret_line() -> anyhow::Result<SecretString> {
    // The line is a SecretString at once, so that it is wiped when dropped.
    let mut text = String::new();
    let read = std::io::stdin().lock().read_line(&mut text);
    let line = SecretString::from(text);
    read?;
    let secret = SecretString::from(line.expose_secret().trim_end_matches(['\r', '\n']));
    anyhow::ensure!(
        !secret.expose_secret().is_empty(),
        "the password read from standard input is empty"
    );
    Ok(secret)
}

/// `audit export`: every event, oldest first, one batch in memory at a time.
async fn audit_export(url: &str, account: &str, format: cli::ExportFormat, base: &str) -> anyhow::Result<()> {
    use futures_util::StreamExt as _;
    use std::io::Write as _;
    let app = open(url, Default::default()).await?;
    let (access, _) = operator(&app, account).await?;
    let query = latchkey_core::audit_query::AuditQuery::from_api_pairs([("sort", "created_at")])
        .map_err(|e| anyhow::anyhow!(e.0))?;
    let mut batches = app.audit_export(&access, &query);
    let mut first = true;
    let mut stdout = std::io::stdout().lock();
    while let Some(batch) = batches.next().await {
        let rows = latchkey_server::http::audit::export_rows(format == cli::ExportFormat::Jsonl, base, &batch?, first)?;
        first = false;
        if let Err(e) = stdout.write_all(&rows) {
            output_failed(e);
        }
    }
    if first {
        // No event at all: the CSV still has its header row.
        let rows = latchkey_server::http::audit::export_rows(format == cli::ExportFormat::Jsonl, base, &[], true)?;
        if let Err(e) = stdout.write_all(&rows) {
            output_failed(e);
        }
    }
    if let Err(e) = stdout.flush() {
        output_failed(e);
    }
    Ok(())
}

/// `token deactivate` / `token reactivate`.
async fn set_token_active(url: &str, t: &cli::TokenRef, active: bool) -> anyhow::Result<()> {
    let app = open(url, Default::default()).await?;
    let (access, acct) = operator(&app, &t.account).await?;
    let patch = latchkey_core::token::TokenPatch {
        active: Some(active),
        ..Default::default()
    };
    let token = app
        .update_token(&access, latchkey_core::id::TokenId::new(t.id), &patch)
        .await?;
    out!(
        "token {} ({}) in {} is {}",
        token.id,
        token.visible_token,
        acct.subdomain,
        if active { "active" } else { "deactivated" }
    );
    Ok(())
}

/// The user of the operator's account with `email`, or a refusal naming both.
async fn user_named(
    app: &App,
    access: &AdminAccess,
    email: &str,
    subdomain: &Subdomain,
) -> anyhow::Result<latchkey_core::user::User> {
    app.user_by_email(access, email)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no user {email} in {subdomain}"))
}

/// `user list`: every user of the account, oldest first.
async fn user_list(app: &App, account: &str, json: bool) -> anyhow::Result<()> {
    let (access, _) = operator(app, account).await?;
    let mut users = Vec::new();
    let mut page = latchkey_app::Page {
        after: None,
        before: None,
        size: 100,
    };
    loop {
        let (batch, more) = app.users_page(&access, page).await?;
        page.after = batch.last().map(|u| u.id);
        users.extend(batch);
        if !more || page.after.is_none() {
            break;
        }
    }
    if json {
        let list: Vec<UserLine<'_>> = users.iter().map(UserLine::of).collect();
        out!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    out!("{:>6}  {:<9}  {:<10}  {:<40}  NAME", "ID", "ROLE", "STATE", "EMAIL");
    for u in &users {
        let state = if u.suspended {
            "suspended"
        } else if u.verified {
            "verified"
        } else {
            "unverified"
        };
        out!(
            "{:>6}  {:<9}  {:<10}  {:<40}  {}",
            u.id,
            u.role.as_str(),
            state,
            u.email.as_str(),
            u.name
        );
    }
    Ok(())
}

/// The first line of a file holding a password (`--bootstrap-admin-password-file`).
fn read_password_file(path: &std::path::Path) -> anyhow::Result<SecretString> {
    let text = SecretString::from(
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?,
    );
    let line = text.expose_secret().lines().next().unwrap_or("");
    anyhow::ensure!(
        !line.is_empty(),
        "{} holds no password on its first line",
        path.display()
    );
    Ok(SecretString::from(line))
}

fn domain<T>(r: Result<T, latchkey_core::Invalid>) -> Result<T, AppError> {
    r.map_err(AppError::from)
}

async fn account(url: &str, cmd: AccountCmd) -> anyhow::Result<()> {
    let app = open(url, Default::default()).await?;
    match cmd {
        AccountCmd::List { json } => {
            let accounts = app.accounts().await?;
            if json {
                let list: Vec<AccountLine<'_>> = accounts.iter().map(AccountLine::of).collect();
                out!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                out!(
                    "{:>6}  {:<24}  {:<12}  {:<6}  NAME",
                    "ID",
                    "SUBDOMAIN",
                    "PLAN",
                    "TOKENS"
                );
                for a in &accounts {
                    let access = if a.api_token_access { "on" } else { "off" };
                    out!(
                        "{:>6}  {:<24}  {:<12}  {:<6}  {}",
                        a.id,
                        a.subdomain.as_str(),
                        a.plan.as_str(),
                        access,
                        a.name
                    );
                }
            }
        }
        AccountCmd::Create(a) => {
            let new = NewAccount {
                subdomain: domain(Subdomain::parse(&a.subdomain))?,
                name: domain(parse_account_name(&a.name))?,
                plan: domain(Plan::parse(&a.plan))?,
                api_token_access: a.api_token_access,
            };
            let (secret, shown) = if a.admin_password_stdin {
                (read_secret_line()?, false)
            } else {
                (password::generate(), true)
            };
            let admin = NewUser {
                name: domain(parse_user_name(&a.admin_name))?,
                email: domain(Email::parse(&a.admin_email))?,
                role: Role::Admin,
                verified: true,
                password_hash: Some(password::hash(secret.clone()).await?),
            };
            let (account, user) = app.create_account(new, admin).await?;
            out!(
                "created account {} (id {}) with admin {} (id {})",
                account.subdomain,
                account.id,
                user.email,
                user.id
            );
            if shown {
                out!("admin password, shown this once: {}", secret.expose_secret());
            }
        }
        AccountCmd::Update(a) => {
            let (access, _) = operator(&app, &a.subdomain).await?;
            let patch = AccountPatch {
                name: domain(a.name.as_deref().map(parse_account_name).transpose())?,
                plan: domain(a.plan.as_deref().map(Plan::parse).transpose())?,
                api_token_access: a.api_token_access,
                token_policy: None,
                token_limit: a.token_limit,
            };
            let updated = app.update_account(&access, &patch).await?;
            out!(
                "account {}: name {:?}, plan {}, api_token_access {}, token_limit {}",
                updated.subdomain,
                updated.name,
                updated.plan.as_str(),
                if updated.api_token_access { "on" } else { "off" },
                updated.token_limit
            );
        }
        AccountCmd::Delete { subdomain, confirm } => {
            if confirm.as_deref() != Some(subdomain.as_str()) {
                anyhow::bail!(
                    "deleting account {subdomain} removes its users, tokens and audit log for good; \
                     export the audit log first (latchkey audit export --account {subdomain} --format jsonl) \
                     and confirm with --confirm {subdomain}"
                );
            }
            let (access, _) = operator(&app, &subdomain).await?;
            let (users, tokens) = app.delete_account(&access).await?;
            tracing::info!(account = %subdomain, users, tokens, "account deleted by the operator");
            out!("deleted account {subdomain} with {users} users and {tokens} tokens");
        }
    }
    Ok(())
}

async fn user(url: &str, cmd: UserCmd) -> anyhow::Result<()> {
    let app = open(url, Default::default()).await?;
    let u = match cmd {
        UserCmd::Create(u) => u,
        UserCmd::List { account, json } => return user_list(&app, &account, json).await,
        UserCmd::Update(u) => {
            let (access, account) = operator(&app, &u.account).await?;
            let user = user_named(&app, &access, &u.email, &account.subdomain).await?;
            let patch = UserPatch {
                name: u
                    .name
                    .as_deref()
                    .map(parse_user_name)
                    .transpose()
                    .map_err(AppError::from)?,
                role: u.role.as_deref().map(Role::parse).transpose().map_err(AppError::from)?,
                suspended: u.suspended,
                verified: u.verified,
                ..Default::default()
            };
            let user = app.update_user(&access, user.id, &patch).await?;
            out!(
                "user {} in {}: role {}, {}, {}",
                user.email,
                account.subdomain,
                user.role.as_str(),
                if user.suspended { "suspended" } else { "not suspended" },
                if user.verified { "verified" } else { "unverified" }
            );
            return Ok(());
        }
        UserCmd::Delete { account, email } => {
            let (access, account) = operator(&app, &account).await?;
            let user = user_named(&app, &access, &email, &account.subdomain).await?;
            app.delete_user(&access, user.id).await?;
            out!("deleted user {} from {}", user.email, account.subdomain);
            return Ok(());
        }
        UserCmd::SetPassword(p) => {
            let (access, account) = operator(&app, &p.account).await?;
            let user = user_named(&app, &access, &p.email, &account.subdomain).await?;
            anyhow::ensure!(
                p.password_stdin,
                "give the password on standard input with --password-stdin"
            );
            app.set_password(&access, user.id, read_secret_line()?).await?;
            out!("password set for {} in {}", user.email, account.subdomain);
            return Ok(());
        }
    };
    let (access, account) = operator(&app, &u.account).await?;
    let password_hash = if u.password_stdin {
        Some(password::hash(read_secret_line()?).await?)
    } else {
        None
    };
    let new = NewUser {
        name: domain(parse_user_name(&u.name))?,
        email: domain(Email::parse(&u.email))?,
        role: domain(Role::parse(&u.role))?,
        verified: !u.unverified,
        password_hash,
    };
    let user = app.create_user(&access, new).await?;
    out!("created user {} (id {}) in {}", user.email, user.id, account.subdomain);
    Ok(())
}

async fn token(url: &str, cmd: TokenCmd) -> anyhow::Result<()> {
    match cmd {
        TokenCmd::Create {
            account,
            description,
            token_prefix,
            scopes,
            assigned_user,
            expires_at,
            allowed_ips,
            rate_limit,
        } => {
            let prefix = cli::parse_prefix(&token_prefix)?;
            let app = open(url, prefix).await?;
            let (access, _) = operator(&app, &account).await?;
            let description = match description {
                Some(d) => domain(parse_description(&d))?,
                None => None,
            };
            let scopes = match scopes {
                Some(names) => Some(domain(app.scope_catalog().parse_scopes(&names))?),
                None => None,
            };
            let assigned_user_id = match assigned_user {
                Some(email) => Some(
                    app.user_by_email(&access, &email)
                        .await?
                        .ok_or_else(|| anyhow::anyhow!("no user {email} in {account}"))?
                        .id,
                ),
                None => None,
            };
            let allowed_ips = match allowed_ips {
                Some(entries) => Some(domain(IpAllowlist::parse(&entries))?),
                None => None,
            };
            let restrictions = Restrictions {
                scopes,
                assigned_user_id,
                expires_at,
                allowed_ips,
                rate_limit,
            };
            let (_, plain) = app.create_token(&access, description, restrictions).await?;
            out!("{}", plain.expose());
        }
        TokenCmd::Deactivate(t) => set_token_active(url, &t, false).await?,
        TokenCmd::Reactivate(t) => set_token_active(url, &t, true).await?,
        TokenCmd::Delete(t) => {
            let app = open(url, Default::default()).await?;
            let (access, acct) = operator(&app, &t.account).await?;
            app.delete_token(&access, latchkey_core::id::TokenId::new(t.id)).await?;
            out!("deleted token {} from {}", t.id, acct.subdomain);
        }
        TokenCmd::List { account, json } => {
            let app = open(url, Default::default()).await?;
            let (access, acct) = operator(&app, &account).await?;
            let tokens = app.tokens(&access).await?;
            let now = app.now();
            if json {
                let list: Vec<TokenLine<'_>> = tokens.iter().map(|t| TokenLine::of(t, now)).collect();
                out!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                out!(
                    "{:>6}  {:<11}  {:<18}  {:<20}  {:<20}  {:<24}  {:<20}  DESCRIPTION",
                    "ID",
                    "STATUS",
                    "TOKEN",
                    "CREATED",
                    "EXPIRES",
                    "SCOPES",
                    "ASSIGNED"
                );
                for t in &tokens {
                    let status = match t.status(now) {
                        TokenStatus::Active => "Active",
                        TokenStatus::Deactivated => "Deactivated",
                        TokenStatus::Expired => "Expired",
                    };
                    let scopes = t.scopes.as_ref().map_or("full access".to_owned(), |s| s.to_stored());
                    let assigned = match t.assigned_user_id {
                        Some(id) => app
                            .user_including_deleted(&access, id)
                            .await?
                            .map_or_else(|| format!("user {id}"), |u| u.email.as_str().to_owned()),
                        None => "anyone".to_owned(),
                    };
                    out!(
                        "{:>6}  {:<11}  {:<18}  {:<20}  {:<20}  {:<24}  {:<20}  {}",
                        t.id,
                        status,
                        if t.legacy {
                            format!("{} (legacy)", t.visible_token)
                        } else {
                            t.visible_token.clone()
                        },
                        rfc3339(t.created_at),
                        t.expires_at.map_or("never".to_owned(), rfc3339),
                        scopes,
                        assigned,
                        t.description.as_deref().unwrap_or("")
                    );
                }
                out!("{} of {} tokens", tokens.len(), acct.token_limit);
            }
        }
        TokenCmd::RevokeLeaked { file } => {
            let app = open(url, Default::default()).await?;
            let text =
                std::fs::read_to_string(&file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            let matched = app.report_leaked(&lines, None).await?;
            let n = matched.iter().filter(|m| **m).count();
            out!(
                "{n} of {} lines matched a token; matching tokens are deactivated",
                lines.len()
            );
        }
        TokenCmd::Import { account, file } => {
            let app = open(url, Default::default()).await?;
            let (access, acct) = operator(&app, &account).await?;
            let text =
                std::fs::read_to_string(&file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            let lines = text.lines().filter(|l| !l.trim().is_empty()).count() as u64;
            let reading = progress::bar("reading", lines);
            let tokens = parse_import(&text, app.now(), &|| reading.inc(1));
            reading.finish_and_clear();
            let tokens = tokens?;
            let n = tokens.len();
            let storing = progress::spinner(&format!("storing {n} tokens"));
            let stored = app.import_tokens(&access, tokens).await;
            storing.finish_and_clear();
            stored?;
            out!("imported {n} tokens into {}", acct.subdomain);
        }
    }
    Ok(())
}

/// One user as `user list --json` prints it.
#[derive(serde::Serialize)]
struct UserLine<'a> {
    id: latchkey_core::id::UserId,
    name: &'a str,
    email: &'a str,
    role: &'static str,
    verified: bool,
    suspended: bool,
}

impl<'a> UserLine<'a> {
    fn of(u: &'a latchkey_core::user::User) -> Self {
        UserLine {
            id: u.id,
            name: &u.name,
            email: u.email.as_str(),
            role: u.role.as_str(),
            verified: u.verified,
            suspended: u.suspended,
        }
    }
}

/// One account as `account list --json` prints it.
#[derive(serde::Serialize)]
struct AccountLine<'a> {
    id: latchkey_core::id::AccountId,
    subdomain: &'a str,
    name: &'a str,
    plan: &'static str,
    api_token_access: bool,
    token_limit: i64,
    created_at: String,
}

impl<'a> AccountLine<'a> {
    fn of(a: &'a latchkey_core::account::Account) -> Self {
        AccountLine {
            id: a.id,
            subdomain: a.subdomain.as_str(),
            name: &a.name,
            plan: a.plan.as_str(),
            api_token_access: a.api_token_access,
            token_limit: a.token_limit,
            created_at: rfc3339(a.created_at),
        }
    }
}

/// One token as `token list --json` prints it: the REST record's fields,
/// without the URL (README.md, "Command line").
#[derive(serde::Serialize)]
struct TokenLine<'a> {
    id: latchkey_core::id::TokenId,
    description: Option<&'a str>,
    active: bool,
    visible_token: &'a str,
    user_id: Option<latchkey_core::id::UserId>,
    assigned_user_id: Option<latchkey_core::id::UserId>,
    scopes: Option<Vec<String>>,
    expires_at: Option<String>,
    allowed_ips: Option<Vec<String>>,
    /// `100/60`: 100 requests per 60 seconds.
    rate_limit: Option<String>,
    leaked_at: Option<String>,
    status: &'static str,
    created_at: String,
    updated_at: String,
    last_used: Option<String>,
    legacy: bool,
}

impl<'a> TokenLine<'a> {
    fn of(t: &'a latchkey_core::token::ApiToken, now: Timestamp) -> Self {
        TokenLine {
            id: t.id,
            description: t.description.as_deref(),
            active: t.active,
            visible_token: &t.visible_token,
            user_id: t.user_id,
            assigned_user_id: t.assigned_user_id,
            scopes: t.scopes.as_ref().map(|s| s.names().collect()),
            expires_at: t.expires_at.map(rfc3339),
            allowed_ips: t.allowed_ips.as_ref().map(|a| a.names().collect()),
            rate_limit: t.rate_limit.map(|l| format!("{}/{}", l.requests, l.per_seconds)),
            leaked_at: t.leaked_at.map(rfc3339),
            status: t.status(now).into(),
            created_at: rfc3339(t.created_at),
            updated_at: rfc3339(t.updated_at),
            last_used: t.last_used.map(rfc3339),
            legacy: t.legacy,
        }
    }
}

/// Reads the import file: one JSON object per line, either
/// `{"token": "…"}` or `{"token_sha256": "<64 hex>", "visible_token": "…"}`,
/// each with optional `"description"`, `"active"` (default true),
/// `"created_at"` / `"last_used"` (RFC 3339; the history the token policy
/// judges, kept from the system the tokens come from) and `"legacy"`.
/// A plaintext token without a latchkey checksum but of a legacy token's
/// shape (a Zendesk token) is legacy without saying so; a hash is legacy
/// only with `"legacy": true`, and without `visible_token` it is listed as
/// `imported` (README.md, "Migrating from Zendesk").
fn parse_import(text: &str, now: Timestamp, on_line: &dyn Fn()) -> anyhow::Result<Vec<NewToken>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Line {
        token: Option<String>,
        token_sha256: Option<String>,
        visible_token: Option<String>,
        description: Option<String>,
        active: Option<bool>,
        created_at: Option<String>,
        last_used: Option<String>,
        legacy: Option<bool>,
    }
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        on_line();
        // serde's message could quote the line, and the line may hold a secret.
        let line: Line = serde_json::from_str(raw).map_err(|e| {
            anyhow::anyhow!("line {n}: not a valid import record (column {}; expected token or token_sha256, visible_token, description, active, created_at, last_used, legacy)", e.column())
        })?;
        let (hash, visible, legacy) = match (line.token, line.token_sha256) {
            (Some(t), None) if has_valid_checksum(&t) => {
                anyhow::ensure!(
                    line.legacy != Some(true),
                    "line {n}: token is a latchkey token; \"legacy\": true is for tokens of another format"
                );
                (TokenHash::of(&t), visible_token(&t).unwrap_or_default(), false)
            }
            (Some(t), None) => {
                let visible = legacy_visible_token(&t).ok_or_else(|| {
                    anyhow::anyhow!("line {n}: token is neither a latchkey token nor a legacy token (16 to 128 letters, digits and -_.~+/=)")
                })?;
                anyhow::ensure!(
                    line.legacy != Some(false),
                    "line {n}: token has no latchkey checksum, so it can only be imported as legacy (drop \"legacy\": false)"
                );
                (TokenHash::of(&t), visible, true)
            }
            (None, Some(h)) => {
                let hash = TokenHash::from_hex(&h.to_ascii_lowercase())
                    .ok_or_else(|| anyhow::anyhow!("line {n}: token_sha256 must be 64 hexadecimal characters"))?;
                let visible = line.visible_token.unwrap_or_else(|| IMPORTED_VISIBLE_TOKEN.to_owned());
                anyhow::ensure!(
                    !visible.is_empty() && visible.chars().count() <= 64 && !visible.chars().any(char::is_control),
                    "line {n}: visible_token must be 1 to 64 printable characters"
                );
                (hash, visible, line.legacy.unwrap_or(false))
            }
            _ => anyhow::bail!("line {n}: give exactly one of token and token_sha256"),
        };
        let description = match line.description {
            Some(d) => parse_description(&d).map_err(|e| anyhow::anyhow!("line {n}: {}", e.description))?,
            None => None,
        };
        let time = |field: &str, value: Option<String>| -> anyhow::Result<Option<Timestamp>> {
            value
                .map(|v| {
                    Timestamp::parse_rfc3339(&v).ok_or_else(|| {
                        anyhow::anyhow!("line {n}: {field} must be an RFC 3339 time such as 2026-01-31T09:00:00Z")
                    })
                })
                .transpose()
        };
        let created_at = time("created_at", line.created_at)?;
        let last_used = time("last_used", line.last_used)?;
        anyhow::ensure!(
            created_at.is_none_or(|c| c <= now) && last_used.is_none_or(|u| u <= now),
            "line {n}: created_at and last_used must not be in the future"
        );
        out.push(NewToken {
            created_at,
            last_used,
            hash,
            visible_token: visible,
            description,
            active: line.active.unwrap_or(true),
            user_id: None,
            restrictions: Restrictions::default(),
            legacy,
        });
    }
    anyhow::ensure!(!out.is_empty(), "the file holds no tokens");
    Ok(out)
}

/// `policy sweep`: one line per change, `{subdomain}  {id}  {visible token}
/// deactivated|deleted  ({reason})`, then a count.
async fn policy_sweep(
    url: &str,
    account: Option<&str>,
    as_of: Option<latchkey_core::time::Timestamp>,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    let app = open(url, Default::default()).await?;
    let access = match account {
        Some(subdomain) => Some(operator(&app, subdomain).await?.0),
        None => None,
    };
    let Some(done) = app.sweep(access.as_ref(), as_of, dry_run, false).await? else {
        eprintln!("error: another process is sweeping right now; try again in a moment");
        return Ok(ExitCode::FAILURE);
    };
    let (deactivate, delete) = if dry_run {
        ("would deactivate", "would delete")
    } else {
        ("deactivated", "deleted")
    };
    for (account, token, action) in &done {
        let verb = match action {
            SweepAction::Deactivate { .. } | SweepAction::DeactivateLegacy => deactivate,
            SweepAction::Delete { .. } => delete,
        };
        out!(
            "{}  {:>6}  {}  {verb}  ({})",
            account.subdomain,
            token.id,
            token.visible_token,
            action.describe()
        );
    }
    let what = if dry_run { "would change" } else { "changed" };
    out!("sweep {what} {} tokens", done.len());
    Ok(ExitCode::SUCCESS)
}

async fn audit_verify(url: &str, subdomain: &str) -> anyhow::Result<ExitCode> {
    let app = open(url, Default::default()).await?;
    let (access, _) = operator(&app, subdomain).await?;
    let (line, intact) = describe_verdict(subdomain, &app.verify_audit(&access).await?);
    out!("{line}");
    Ok(if intact { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `audit verify`'s one line (README.md, "Audit retention"), and whether
/// the log is intact: what was checked, or the first record that does not
/// match.
fn describe_verdict(subdomain: &str, verdict: &Verdict) -> (String, bool) {
    match verdict {
        Verdict::Intact {
            events,
            checkpoint,
            head,
            after_head,
        } => {
            let mut line = format!("audit log of {subdomain} is intact ({events} events)");
            if let Some(c) = checkpoint {
                let day = c.before.rfc3339();
                line.push_str(&format!(
                    ": chain verified from the checkpoint of {} ({} events pruned by retention)",
                    day.get(..10).unwrap_or(&day),
                    c.pruned_total
                ));
            }
            if let Some(head) = head {
                line.push_str(&format!("; head matches (event {head})"));
            }
            if *after_head > 0 {
                line.push_str(&format!(
                    ", and {after_head} later events, written before heads were recorded, chain onto it"
                ));
            }
            (line, true)
        }
        Verdict::Broken(id) => (
            format!("audit log of {subdomain} is broken: event {id} does not match its hash chain"),
            false,
        ),
        Verdict::HeadMissing { head, newest } => {
            let ends = match newest {
                Some(id) => format!("the log ends at event {id}"),
                None => "the log is empty".to_owned(),
            };
            (
                format!(
                    "audit log of {subdomain} is broken: event {head}, its recorded head, is missing \
                     ({ends}): its newest events were deleted"
                ),
                false,
            )
        }
        Verdict::NoHead { newest } => (
            format!("audit log of {subdomain} is broken: it has no recorded head (its newest event is {newest})"),
            false,
        ),
    }
}
