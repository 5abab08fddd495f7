//! The configuration file, `--config FILE` (README.md, "Configuration
//! file"): a TOML file whose top-level keys are the command line's long
//! options spelled with underscores, and whose `[[resources]]` declare the
//! resources, and so the scopes, a deployment offers.
//!
//! The options are read through clap itself rather than into a struct of
//! their own: the command line is parsed once, then every key of the file
//! that neither the command line nor a `LATCHKEY_*` variable set is added as
//! `--key=value` and the whole is parsed again. So a file can never hold a
//! value the command line would refuse (the same parsers check it, and a bad
//! value exits 2 as a bad argument does), the precedence (command line >
//! environment > file > default) is clap's own, and a new option can be
//! set in the file the day it is added, with no second list to keep in step.
//!
//! A key may name an option of any command, since one file serves them all:
//! it applies to the commands that take it (`token_prefix` to `serve` and
//! `token create`) and is ignored by the others (`listen` by `token list`).
//! A key that is no command's option and no section is an error, so that a
//! misspelt setting is never silently dropped.

use std::ffi::OsString;
use std::path::Path;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches, Parser};
use latchkey_core::scope::{ResourceDef, ScopeCatalog};
use latchkey_server::GithubKeys;
use serde::Deserialize;

use crate::cli::Cli;

/// The command line with the configuration file applied, and the scopes the
/// deployment offers.
#[derive(Debug)]
pub struct Loaded {
    pub cli: Cli,
    /// latchkey's own resources and the file's `[[resources]]`.
    pub scopes: ScopeCatalog,
    /// The file's `[[secret_scanning.github.public_keys]]`.
    pub github_keys: GithubKeys,
}

/// Why the command cannot run. Both exit 2 (README.md, "Command line").
#[derive(Debug)]
pub enum LoadError {
    /// The command line itself, or `--help` / `--version`: clap's error.
    Usage(clap::Error),
    /// The configuration file: one line naming it, without `error: `.
    Config(String),
}

/// The file as read: the sections latchkey knows, each a typed field, and
/// every other top-level key as an option's value.
#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    /// `[[resources]]`: the deployment's resources, offered beside
    /// latchkey's own.
    #[serde(default)]
    resources: Vec<ResourceDef>,
    /// `[[secret_scanning.github.public_keys]]`: the keys GitHub's
    /// secret-scanning reports are signed with (README.md, "Leaked tokens").
    #[serde(default)]
    secret_scanning: SecretScanning,
    // A new section is one more typed field here, and its name one more
    // item of `SECTIONS`.
    /// Every other top-level key, by its name: a command-line option.
    #[serde(flatten)]
    options: toml::Table,
}

/// `[secret_scanning]`, in GitHub's own field names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretScanning {
    #[serde(default)]
    github: GithubSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GithubSection {
    #[serde(default)]
    public_keys: Vec<GithubKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GithubKey {
    key_identifier: String,
    key: String,
}

/// The sections of [`ConfigFile`], as an unknown key's message lists them.
const SECTIONS: &[&str] = &["resources", "secret_scanning"];

/// The option the file may not set: it cannot name another file.
const CONFIG: &str = "config";

/// Parses `args` (the program name first), applying the file `--config` (or
/// `LATCHKEY_CONFIG`) names, if any.
pub fn load(args: Vec<OsString>) -> Result<Loaded, LoadError> {
    let mut matches = Cli::command().try_get_matches_from(&args).map_err(LoadError::Usage)?;
    let Some(path) = matches.get_one::<std::path::PathBuf>(CONFIG).cloned() else {
        let cli = Cli::from_arg_matches_mut(&mut matches).map_err(LoadError::Usage)?;
        return Ok(Loaded {
            cli,
            scopes: ScopeCatalog::builtin(),
            github_keys: GithubKeys::default(),
        });
    };
    let in_file = |message: String| LoadError::Config(format!("config {}: {message}", path.display()));
    let file = read(&path).map_err(in_file)?;
    let extra = arguments(&Cli::command(), &matches, &file.options).map_err(in_file)?;
    let scopes = ScopeCatalog::with_resources(file.resources).map_err(in_file)?;
    let keys: Vec<(String, String)> = file
        .secret_scanning
        .github
        .public_keys
        .into_iter()
        .map(|k| (k.key_identifier, k.key))
        .collect();
    let github_keys = GithubKeys::parse(&keys).map_err(in_file)?;
    let mut args = args;
    args.extend(extra.into_iter().map(OsString::from));
    // The command line parsed once already: what fails now is the file's.
    let cli = Cli::try_parse_from(args).map_err(|e| in_file(one_line(&e)))?;
    Ok(Loaded {
        cli,
        scopes,
        github_keys,
    })
}

/// Reads and parses the file; the message says what is wrong and where.
fn read(path: &Path) -> Result<ConfigFile, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
    parse(&text)
}

fn parse(text: &str) -> Result<ConfigFile, String> {
    toml::from_str(text).map_err(|e| {
        let message = e.message().trim().lines().map(str::trim).collect::<Vec<_>>().join("; ");
        match e.span() {
            Some(span) => {
                let (line, column) = line_column(text, span.start);
                format!("TOML parse error at line {line}, column {column}: {message}")
            }
            None => format!("TOML parse error: {message}"),
        }
    })
}

/// The 1-based line and column (in characters) of byte `offset` of `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

/// clap's message on one line, without its `error: ` and hints.
fn one_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let lines: Vec<&str> = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let joined = lines.join(" ");
    joined.strip_prefix("error: ").unwrap_or(&joined).to_owned()
}

/// The command being run (`serve`, `token list`, …) and its matches: the
/// innermost subcommand, whose matches also hold the global options.
fn running<'a>(root: &'a Command, matches: &'a ArgMatches) -> (Vec<&'a Command>, &'a ArgMatches) {
    let mut path = vec![root];
    let mut current = matches;
    let mut command = root;
    while let Some((name, sub)) = current.subcommand() {
        let Some(next) = command.find_subcommand(name) else {
            break;
        };
        path.push(next);
        command = next;
        current = sub;
    }
    (path, current)
}

/// The options the file may set: every long option but `--config`, help
/// and version.
fn settable(arg: &Arg) -> bool {
    arg.get_long().is_some_and(|l| l != CONFIG)
        && !matches!(
            arg.get_action(),
            ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
        )
}

/// Whether some command of `cmd`'s tree has the long option `long`.
fn any_command_has(cmd: &Command, long: &str) -> bool {
    cmd.get_arguments().any(|a| settable(a) && a.get_long() == Some(long))
        || cmd.get_subcommands().any(|sub| any_command_has(sub, long))
}

/// The arguments that bring the file's `options` to the command `matches`
/// (parsed with `root`) runs, in key order: `--key=value` for each option
/// the command takes that neither the command line nor the environment set,
/// one per item of an array; `--key` for a flag set to true.
fn arguments(root: &Command, matches: &ArgMatches, options: &toml::Table) -> Result<Vec<String>, String> {
    let (path, leaf_matches) = running(root, matches);
    let (leaf, ancestors) = path.split_last().ok_or("no command")?;
    // What the running command takes: its own options and its ancestors'
    // global ones (clap gives the latter to every subcommand).
    let takes: Vec<&Arg> = leaf
        .get_arguments()
        .chain(
            ancestors
                .iter()
                .flat_map(|c| c.get_arguments().filter(|a| a.is_global_set())),
        )
        .filter(|a| settable(a))
        .collect();
    let mut out = Vec::new();
    for (key, value) in options {
        if key == CONFIG {
            return Err(format!("key {key:?}: the file cannot name another configuration file"));
        }
        if key.contains('-') {
            let hint = if any_command_has(root, key) {
                format!(" (spell it {:?})", key.replace('-', "_"))
            } else {
                String::new()
            };
            return Err(format!("unknown key {key:?}{hint}"));
        }
        let long = key.replace('_', "-");
        let Some(arg) = takes.iter().find(|a| a.get_long() == Some(long.as_str())) else {
            if any_command_has(root, &long) {
                continue; // another command's option (`listen` for `token list`)
            }
            return Err(format!(
                "unknown key {key:?}: it is no command's option and no section ({})",
                SECTIONS.join(", ")
            ));
        };
        // clap keeps, for each global option, the strongest source any level saw.
        if matches!(
            leaf_matches.value_source(arg.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        out.extend(option_arguments(key, &long, arg.get_action(), value)?);
    }
    Ok(out)
}

/// `value` of the file's `key` as arguments of the option `--long`.
fn option_arguments(key: &str, long: &str, action: &ArgAction, value: &toml::Value) -> Result<Vec<String>, String> {
    if !action.takes_values() {
        // A flag: true sets it; false leaves it at its default.
        let set = match (action, value) {
            (ArgAction::SetTrue, toml::Value::Boolean(b)) => *b,
            (ArgAction::SetFalse, toml::Value::Boolean(b)) => !*b,
            _ => return Err(format!("key {key:?} must be true or false")),
        };
        return Ok(if set { vec![format!("--{long}")] } else { Vec::new() });
    }
    let items = match value {
        toml::Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    items
        .into_iter()
        .map(|item| {
            let text = match item {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Datetime(_) | toml::Value::Array(_) | toml::Value::Table(_) => {
                    return Err(format!(
                        "key {key:?} must be a string, a number, a boolean or an array of them"
                    ))
                }
            };
            Ok(format!("--{long}={text}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Command as Cmd;

    fn args(argv: &[&str]) -> Vec<OsString> {
        std::iter::once("latchkey")
            .chain(argv.iter().copied())
            .map(OsString::from)
            .collect()
    }

    /// What `options` adds to the command line `argv` of the real CLI.
    fn added(argv: &[&str], options: &str) -> Result<Vec<String>, String> {
        let file = parse(options)?;
        let matches = Cli::command()
            .try_get_matches_from(args(argv))
            .expect("a valid command line");
        arguments(&Cli::command(), &matches, &file.options)
    }

    /// Loads `argv` with `--config` naming a file holding `text`.
    fn load_with(argv: &[&str], text: &str) -> Result<Loaded, LoadError> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("latchkey.toml");
        std::fs::write(&path, text).expect("write the file");
        let mut all = vec!["--config", path.to_str().expect("utf-8 path")];
        all.extend_from_slice(argv);
        load(args(&all))
    }

    fn config_error(r: Result<Loaded, LoadError>) -> String {
        match r {
            Err(LoadError::Config(line)) => line,
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn the_file_fills_in_what_the_command_line_leaves_at_its_default() {
        let add = added(
            &["serve", "--listen", "127.0.0.1:1"],
            r#"
            listen = "0.0.0.0:9"
            public_url = "https://tokens.example.com"
            flush_interval_secs = 3
            max_staleness = 0.5
            "#,
        )
        .expect("valid");
        // Sorted by key (TOML tables are); the command line's --listen wins.
        assert_eq!(
            add,
            [
                "--flush-interval-secs=3",
                "--max-staleness=0.5",
                "--public-url=https://tokens.example.com"
            ]
        );
    }

    #[test]
    fn the_command_line_wins_over_the_file_and_the_file_over_the_default() {
        let loaded = load_with(
            &["serve", "--token-prefix", "cli"],
            "token_prefix = \"file\"\nfailed_auth_per_minute = 7\nlog_format = \"json\"\n",
        )
        .expect("loads");
        let Cmd::Serve(serve) = loaded.cli.command else {
            panic!("not serve")
        };
        assert_eq!(serve.token_prefix, "cli");
        assert_eq!(serve.failed_auth_per_minute, 7);
        assert!(matches!(serve.log_format, crate::cli::LogFormat::Json));
        assert_eq!(serve.listen.to_string(), "127.0.0.1:8080", "the default stays");
    }

    #[test]
    fn an_environment_variable_wins_over_the_file() {
        // A command of its own, with a variable no other test sets.
        let cmd = || {
            Command::new("t").subcommand(
                Command::new("run")
                    .arg(Arg::new("level").long("level").env("LATCHKEY_CONFIG_UNIT_TEST_LEVEL"))
                    .arg(Arg::new("other").long("other").default_value("d")),
            )
        };
        std::env::set_var("LATCHKEY_CONFIG_UNIT_TEST_LEVEL", "from-env");
        let matches = cmd().try_get_matches_from(["t", "run"]).expect("valid");
        let file = parse("level = \"from-file\"\nother = \"from-file\"").expect("valid");
        let add = arguments(&cmd(), &matches, &file.options).expect("valid");
        std::env::remove_var("LATCHKEY_CONFIG_UNIT_TEST_LEVEL");
        assert_eq!(add, ["--other=from-file"]);
    }

    #[test]
    fn the_global_database_url_comes_from_the_file_unless_given() {
        let text = "database_url = \"sqlite://from-file.db\"";
        // (The tests' environment may set LATCHKEY_DATABASE_URL; then it wins.)
        if std::env::var_os("LATCHKEY_DATABASE_URL").is_none() {
            assert_eq!(
                added(&["token", "list", "--account", "a"], text).expect("valid"),
                ["--database-url=sqlite://from-file.db"]
            );
        }
        for argv in [
            &["--database-url", "sqlite://cli.db", "token", "list", "--account", "a"][..],
            &["token", "list", "--account", "a", "--database-url", "sqlite://cli.db"],
        ] {
            assert_eq!(added(argv, text).expect("valid"), Vec::<String>::new(), "{argv:?}");
        }
    }

    #[test]
    fn arrays_become_repeated_options_and_are_checked_by_clap() {
        let loaded = load_with(&["serve"], "trusted_proxy = [\"10.0.0.0/8\", \"192.168.1.0/24\"]\n").expect("loads");
        let Cmd::Serve(serve) = loaded.cli.command else {
            panic!("not serve")
        };
        let proxies: Vec<String> = serve.trusted_proxy.iter().map(ToString::to_string).collect();
        assert_eq!(proxies, ["10.0.0.0/8", "192.168.1.0/24"]);

        let err = config_error(load_with(&["serve"], "trusted_proxy = [\"10.0.0.0/8\", \"nope\"]\n"));
        assert!(err.contains("latchkey.toml") && err.contains("'nope'"), "{err}");
        let err = config_error(load_with(&["serve"], "listen = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n"));
        assert!(err.contains("--listen"), "{err}");
        let err = config_error(load_with(&["serve"], "max_connections = 0\n"));
        assert!(err.contains("--max-connections"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }

    #[test]
    fn options_of_other_commands_are_ignored_and_flags_take_booleans() {
        let text = "listen = \"127.0.0.1:1\"\njson = true\ntoken_prefix = \"acme\"\n";
        assert_eq!(
            added(&["token", "list", "--account", "a"], text).expect("valid"),
            ["--json"]
        );
        assert_eq!(
            added(&["token", "create", "--account", "a"], text).expect("valid"),
            ["--token-prefix=acme"]
        );
        assert_eq!(
            added(&["token", "list", "--account", "a"], "json = false").expect("valid"),
            Vec::<String>::new()
        );
        let err = added(&["token", "list", "--account", "a"], "json = \"yes\"").expect_err("not a boolean");
        assert!(err.contains("\"json\" must be true or false"), "{err}");
        let err = added(&["serve"], "[listen]\nport = 1").expect_err("a table");
        assert!(err.contains("\"listen\" must be"), "{err}");
    }

    #[test]
    fn an_unknown_key_is_an_error_naming_it() {
        for (text, named) in [
            ("colour = \"red\"", "unknown key \"colour\""),
            ("[secret_scanning.github]\nenabled = true", "unknown field `enabled`"),
            ("[usage]\ndays = 3", "\"usage\""),
            ("public-url = \"https://x\"", "spell it \"public_url\""),
            ("help = true", "\"help\""),
            ("config = \"other.toml\"", "another configuration file"),
        ] {
            let err = added(&["serve"], text).expect_err(text);
            assert!(err.contains(named), "{text}: {err}");
        }
        let err = config_error(load_with(&["migrate"], "lisen = 1\n"));
        assert!(
            err.starts_with("config ") && err.contains("latchkey.toml: unknown key \"lisen\""),
            "{err}"
        );
    }

    #[test]
    fn resources_are_read_into_the_catalog() {
        let loaded = load_with(
            &["migrate"],
            r#"
            [[resources]]
            name = "tickets"
            description = "Tickets and their comments"
            paths = ["/api/v2/tickets", "/api/v2/tickets/**"]

            [[resources]]
            name = "organizations"
            description = "Organizations"
            paths = ["/api/v2/organizations/**"]
            "#,
        )
        .expect("loads");
        assert_eq!(loaded.scopes.resource_of("/api/v2/tickets/7/comments"), Some("tickets"));
        assert_eq!(
            loaded.scopes.resource_of("/api/v2/organizations/3.json"),
            Some("organizations")
        );
        assert_eq!(loaded.scopes.resource_of("/api/v2/users/me"), Some("users"));
        assert!(loaded.scopes.parse_scope("tickets:read").is_ok());
        assert!(load_with(&["migrate"], "")
            .expect("loads")
            .scopes
            .parse_scope("tickets")
            .is_err());
    }

    #[test]
    fn a_bad_resource_is_an_error_with_its_place() {
        let err = config_error(load_with(
            &["migrate"],
            "[[resources]]\nname = \"tickets\"\ndescription = \"T\"\npath = [\"/t\"]\n",
        ));
        assert!(err.contains("line ") && err.contains("path"), "{err}");
        let err = config_error(load_with(
            &["migrate"],
            "[[resources]]\nname = \"users\"\ndescription = \"Again\"\npaths = [\"/u\"]\n",
        ));
        assert!(err.contains("\"users\" is declared twice"), "{err}");
        let err = config_error(load_with(&["migrate"], "resources = 3\n"));
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn bad_toml_and_a_missing_file_are_one_line_with_the_place() {
        let err = config_error(load_with(
            &["migrate"],
            "listen = \"127.0.0.1:1\"\nmax_connections = \n",
        ));
        assert!(
            err.contains("latchkey.toml: TOML parse error at line 2, column"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        let err = config_error(load(args(&["--config", "/nonexistent/latchkey.toml", "migrate"])));
        assert!(
            err.starts_with("config /nonexistent/latchkey.toml: cannot read it"),
            "{err}"
        );
    }

    #[test]
    fn help_and_bad_command_lines_are_clap_errors_before_the_file_is_read() {
        for argv in [
            &["--config", "/nonexistent.toml", "--help"][..],
            &["--config", "/nonexistent.toml"],
        ] {
            assert!(matches!(load(args(argv)), Err(LoadError::Usage(_))), "{argv:?}");
        }
    }

    #[test]
    fn line_and_column_count_characters() {
        assert_eq!(line_column("ab\ncdé\nx", 8), (3, 1));
        assert_eq!(line_column("ab\ncdé\nx", 7), (2, 4));
        assert_eq!(line_column("", 0), (1, 1));
    }
}
