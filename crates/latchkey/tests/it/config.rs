//! README.md, "Configuration file", with the real binary: `--config FILE`
//! (or `LATCHKEY_CONFIG`) sets options, the command line and `LATCHKEY_*`
//! variables win over it, options of other commands are ignored, and an
//! unknown key, a bad value, bad TOML or a bad resource exits 2 with one line
//! naming the file.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::*;

/// A configuration file, removed with its directory when dropped.
struct ConfigFile {
    _dir: tempfile::TempDir,
    path: String,
}

fn config_file(text: &str) -> ConfigFile {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("latchkey.toml");
    std::fs::write(&path, text).expect("write the configuration file");
    ConfigFile {
        path: path.to_str().expect("utf-8 path").to_owned(),
        _dir: dir,
    }
}

/// A `latchkey serve` started with no `--listen` of its own (so the file's
/// applies), on `db`, with `args` and `env`.
struct Served {
    child: tokio::process::Child,
    addr: SocketAddr,
    banner: Vec<String>,
}

async fn serve(db: &TestDatabase, args: &[&str], env: &[(&str, &str)]) -> Served {
    let mut cmd = latchkey_command(&db.url);
    cmd.arg("serve").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start latchkey serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut banner = Vec::new();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if let Some(rest) = line.strip_prefix("latchkey: listening on http://") {
                return rest.trim().parse::<SocketAddr>().expect("listen address");
            }
            banner.push(line);
        }
        panic!("latchkey serve exited before listening; printed {banner:?}");
    })
    .await
    .expect("latchkey serve listened within 30 s");
    // Keep draining stdout so the process never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Served { child, addr, banner }
}

impl Served {
    fn public_url(&self) -> Option<&str> {
        self.banner.iter().find_map(|l| l.strip_prefix("latchkey: public URL "))
    }

    async fn kill(mut self) {
        self.child.kill().await.expect("SIGKILL latchkey");
    }
}

fn one_line(s: &str) -> bool {
    s.trim_end().lines().count() == 1
}

/// Exit 2 with one line on standard error that starts `error: config FILE:`
/// and holds each of `words`.
fn assert_config_error(out: &CliOutput, file: &ConfigFile, words: &[&str]) {
    assert_eq!(out.code, 2, "{out:?}");
    assert!(one_line(&out.stderr), "not one line: {:?}", out.stderr);
    let prefix = format!("error: config {}: ", file.path);
    assert!(out.stderr.starts_with(&prefix), "{:?}", out.stderr);
    for w in words {
        assert!(out.stderr.contains(w), "{w:?} missing from {:?}", out.stderr);
    }
}

const RESOURCES: &str = r#"
[[resources]]
name = "tickets"
description = "Tickets and their comments"
paths = ["/api/v2/tickets", "/api/v2/tickets/**"]

[[resources]]
name = "organizations"
description = "Organizations and their memberships"
paths = ["/api/v2/organizations", "/api/v2/organizations/**"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_takes_its_options_and_resources_from_the_file() {
    let db = test_database_url().await;
    let file = config_file(&format!(
        r#"
listen = "127.0.0.1:0"
public_url = "https://tokens.example.com"
token_prefix = "acme"
trusted_proxy = ["10.0.0.0/8", "192.168.0.0/16"]
flush_interval_secs = 5
poll_interval_ms = 20
failed_auth_per_minute = 1000
max_staleness = 2.5
header_read_timeout = 5
idle_timeout = 30
max_connections = 100
bootstrap_subdomain = "fromfile"
bootstrap_admin_email = "boss@file.test"
log_format = "json"
{RESOURCES}"#
    ));
    let server = serve(&db, &["--config", &file.path], &[]).await;
    // The file's listen (port 0), not the default 127.0.0.1:8080.
    assert_eq!(server.addr.ip().to_string(), "127.0.0.1");
    assert_ne!(server.addr.port(), 8080);
    let banner = server.banner.join("\n");
    assert!(banner.contains("\"fromfile\" with admin boss@file.test"), "{banner}");
    assert!(
        banner.contains("sign in at https://tokens.example.com/login"),
        "{banner}"
    );
    assert_eq!(server.public_url(), Some("https://tokens.example.com"));

    // The CLI reads the same file, ignoring the options only serve takes.
    let on = db
        .cli(&[
            "--config",
            &file.path,
            "account",
            "update",
            "--subdomain",
            "fromfile",
            "--api-token-access",
            "on",
        ])
        .await;
    assert_eq!(on.code, 0, "{on:?}");
    // token create takes token_prefix too.
    let out = db
        .cli(&["token", "create", "--account", "fromfile", "--config", &file.path])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let token = out.stdout.trim().to_owned();
    assert!(token.starts_with("acme_"), "{token}");

    // The server's answers build their urls from the file's public_url.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = client()
        .get(format!("http://{}/api/v2/users/me", server.addr))
        .header("authorization", basic("boss@file.test", &token))
        .send()
        .await
        .expect("request");
    let r = Reply::from(r).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let url = r.json()["user"]["url"].as_str().expect("url").to_owned();
    assert!(url.starts_with("https://tokens.example.com/api/v2/users/"), "{url}");
    server.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_wins_over_the_file() {
    let db = test_database_url().await;
    // Were the file's listen used, serve could not bind (a documentation address).
    let file = config_file("listen = \"192.0.2.1:8080\"\npublic_url = \"https://file.example.com\"\n");
    let server = ServeProcess::start(
        &db.url,
        &["--config", &file.path, "--public-url", "https://cli.example.com"],
    )
    .await;
    assert_eq!(server.addr.ip().to_string(), "127.0.0.1");
    assert!(
        server
            .banner
            .iter()
            .any(|l| l == "latchkey: public URL https://cli.example.com"),
        "{:?}",
        server.banner
    );
    server.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_variable_wins_over_the_file_and_can_name_it() {
    let db = test_database_url().await;
    let file = config_file("listen = \"127.0.0.1:0\"\npublic_url = \"https://file.example.com\"\n");
    // LATCHKEY_CONFIG names the file, LATCHKEY_PUBLIC_URL wins over it, and
    // its listen applies.
    let server = serve(
        &db,
        &[],
        &[
            ("LATCHKEY_CONFIG", &file.path),
            ("LATCHKEY_PUBLIC_URL", "https://env.example.com"),
        ],
    )
    .await;
    assert_ne!(server.addr.port(), 8080);
    assert_eq!(server.public_url(), Some("https://env.example.com"));
    server.kill().await;
    let server = serve(&db, &[], &[("LATCHKEY_CONFIG", &file.path)]).await;
    assert_eq!(server.public_url(), Some("https://file.example.com"));
    server.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_url_comes_from_the_file_unless_the_environment_sets_it() {
    let db = test_database_url().await;
    let (subdomain, _, _) = db.cli_account("enterprise").await;
    let list = ["token", "list", "--account", subdomain.as_str(), "--json"];

    let file = config_file(&format!("database_url = {:?}\n", db.url));
    let mut cmd = latchkey_command("unused");
    cmd.env_remove("LATCHKEY_DATABASE_URL")
        .args(["--config", &file.path])
        .args(list);
    let out = cmd.output().await.expect("run latchkey");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let tokens: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(tokens.as_array().map(Vec::len), Some(1), "{tokens}");

    // LATCHKEY_DATABASE_URL (set by the harness) wins over a file naming no usable database.
    let elsewhere = config_file("database_url = \"mysql://nowhere/latchkey\"\n");
    let mut args = vec!["--config", elsewhere.path.as_str()];
    args.extend(list);
    let out = db.cli(&args).await;
    assert_eq!(out.code, 0, "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_key_exits_2_naming_it_and_the_file() {
    let db = test_database_url().await;
    let file = config_file("listen = \"127.0.0.1:0\"\nlisten_addres = \"127.0.0.1:0\"\n");
    for args in [
        &["--config", &file.path, "serve"][..],
        &["token", "list", "--account", "x", "--config", &file.path],
        &["--config", &file.path, "migrate"],
    ] {
        let out = db.cli(args).await;
        assert_config_error(&out, &file, &["unknown key \"listen_addres\""]);
    }
    // A misspelt field inside a known section is named too.
    let file = config_file("[secret_scanning.github]\nenabled = true\n");
    let out = db.cli(&["--config", &file.path, "migrate"]).await;
    assert_config_error(&out, &file, &["unknown field `enabled`"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_value_bad_toml_or_a_missing_file_exits_2_with_one_line() {
    let db = test_database_url().await;
    for (text, words) in [
        ("max_connections = 0\n", &["--max-connections", "0"][..]),
        (
            "trusted_proxy = [\"10.0.0.0/8\", \"nope\"]\n",
            &["--trusted-proxy", "nope"],
        ),
        ("max_staleness = -1\n", &["--max-staleness"]),
        ("log_format = \"xml\"\n", &["--log-format", "xml"]),
        ("public_url = \"https://x\"\nlisten = \n", &["line 2, column"]),
        ("public_url = { nested = 1 }\n", &["\"public_url\" must be"]),
    ] {
        let file = config_file(text);
        let out = db.cli(&["serve", "--config", &file.path]).await;
        assert_config_error(&out, &file, words);
    }
    let out = db.cli(&["--config", "/nonexistent/latchkey.toml", "migrate"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .starts_with("error: config /nonexistent/latchkey.toml: cannot read it"),
        "{:?}",
        out.stderr
    );
    assert!(one_line(&out.stderr), "{:?}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_resource_exits_2_with_one_line() {
    let db = test_database_url().await;
    for (text, words) in [
        (
            "[[resources]]\nname = \"Tickets\"\ndescription = \"T\"\npaths = [\"/t\"]\n",
            &["resource name \"Tickets\" must match"][..],
        ),
        (
            "[[resources]]\nname = \"users\"\ndescription = \"Users again\"\npaths = [\"/u\"]\n",
            &["\"users\" is declared twice"],
        ),
        (
            "[[resources]]\nname = \"tickets\"\ndescription = \"T\"\npaths = [\"/t/../x\"]\n",
            &["\"tickets\"", ".."],
        ),
        (
            "[[resources]]\nname = \"tickets\"\ndescription = \"T\"\npath = [\"/t\"]\n",
            &["line ", "unknown field", "path"],
        ),
    ] {
        let file = config_file(text);
        for args in [
            &["serve", "--config", &file.path][..],
            &["--config", &file.path, "migrate"],
        ] {
            let out = db.cli(args).await;
            assert_config_error(&out, &file, words);
        }
    }
    // Good resources: the CLI runs, and serve starts.
    let file = config_file(RESOURCES);
    let out = db.cli(&["--config", &file.path, "migrate"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let server = ServeProcess::start(&db.url, &["--config", &file.path]).await;
    server.kill().await;
}
