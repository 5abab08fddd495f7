//! Many latchkey nodes following one PostgreSQL database: how long a token
//! change takes to reach every node's verifier, and what following the
//! change log costs the database, as the number of nodes and the rate of
//! changes grow.
//!
//! Every node keeps its verifier current by listening for
//! `NOTIFY latchkey_changes` and then reading the change log, each token
//! entry joined to the token as it stands, so each commit costs the
//! database work on every node. This measures that cost, and the latency a revocation has before
//! every node refuses the token, on one database of 1,000 tokens in one
//! account.
//!
//! Each node is a [`Follower`] in this process with its own [`Store`] (its
//! own pools and its own listening connection) and its own verifier,
//! started as a server starts one: a full load, then [`Follower::run`] with
//! the server's default poll interval and staleness; the nodes share this
//! process's runtime (as many threads as CPUs). One writer, on a runtime
//! and thread of its own as if on another node, deactivates and
//! reactivates tokens in turn through [`Store::update_token`], one change
//! at a time, paced evenly at the asked rate; a writer that cannot keep up
//! shows as a lower achieved rate. A watcher thread asks each node's
//! verifier about every change in flight every 50 µs, so a latency (from
//! the writer's commit returning to the node's verifier answering the new
//! way) is exact to about a tenth of a millisecond; p50, p99 and max are
//! over every change and every node. The first second of each run is not
//! measured, so that the nodes are listening and warm.
//!
//! The database's cost over the measured window: the CPU time of the
//! benchmark database's backends and of the server's background processes
//! (WAL writer, checkpointer, ...), read from `/proc`, in cores (so the
//! server must run on this machine; the second table also gives every
//! `postgres` process's, which counts whatever else the server serves
//! meanwhile); and, from `pg_stat_database` for the benchmark's database,
//! transactions and rows read (`tup_returned + tup_fetched`) per second.
//! The second table divides them by the changes made: the transactions
//! one change costs each node (every read of the log or of a token is
//! one), and the rows read in all; and, to tell a saturated machine, it
//! gives the CPU of this process and the share of the time some task
//! waited for a CPU (`/proc/pressure/cpu`).
//!
//! PostgreSQL publishes a busy backend's counts at most once a second, so
//! both ends of the window are taken while the writer is still running;
//! an idle backend's (the seeding, the nodes' start) only after 10 s, so
//! the first run of each number of nodes waits for them. A listening
//! backend reads each notification in a transaction of its own but
//! publishes that count only when it ends: those transactions are not in
//! the tables, and a note gives them for each number of nodes, counted as
//! the nodes disconnect.
//!
//! Nothing leaves this machine: the server must be on a loopback address
//! or a local socket. Without a PostgreSQL server configured the benchmark
//! says so and does nothing. The database it creates is dropped at the end.
//!
//! Run: `LATCHKEY_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres
//! cargo bench -p latchkey-store --bench followers`. `FOLLOWERS=1,5,20`,
//! `RATES=50,200,500` (changes per second) and `SECONDS=5` (the measured
//! window of each run) are the defaults; the nodes of each count start
//! once and follow every rate in turn. The run fails if some change never
//! reached some node. The test suite runs it small, as a test
//! (`FOLLOWERS=2 RATES=20 SECONDS=1 cargo test -p latchkey-store --bench
//! followers`), so that it keeps compiling and running.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use latchkey_core::account::{NewAccount, Plan, Subdomain};
use latchkey_core::audit::Actor;
use latchkey_core::id::{AccountId, TokenId};
use latchkey_core::time::{Clock, SystemClock};
use latchkey_core::token::{NewToken, PlainToken, TokenHash, TokenPatch, TokenPrefix};
use latchkey_core::user::{Email, NewUser, Role};
use latchkey_core::verifier::Verifier;
use latchkey_store::testing::{postgres_database, postgres_server_url, TestDatabase};
use latchkey_store::{Follower, Store};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::Connection as _;
use tokio::sync::watch;

const TOKENS: usize = 1_000;
const EMAIL: &str = "admin@followers.test";
/// A server's defaults (`--poll-interval-ms`, `--max-staleness`).
const POLL: Duration = Duration::from_millis(25);
const MAX_STALENESS: Duration = Duration::from_secs(5);
/// Changes made before the measured window, and after it.
const WARM_UP: Duration = Duration::from_secs(1);
const TAIL: Duration = Duration::from_millis(500);
/// How often the watcher asks the verifiers.
const WATCH_EVERY: Duration = Duration::from_micros(50);
/// The longest the nodes may take to catch up once the writer stops.
const SETTLE: Duration = Duration::from_secs(10);
/// How late PostgreSQL publishes what an idle backend counted (its
/// `PGSTAT_IDLE_INTERVAL`, 10 s), with a margin.
const IDLE_STATS: Duration = Duration::from_millis(10_500);
/// Time enough for each node's reading backend to publish its counts: a
/// heartbeat (a read of the log every second) at least a second after its
/// last publication.
const HEARTBEAT_PUBLISHED: Duration = Duration::from_millis(2_500);
/// Connections a node holds, about: its request pool's idle one, the
/// listening one and one or two for reading the log.
const CONNECTIONS_PER_NODE: i64 = 4;
/// `/proc` counts CPU time in ticks of 1/100 s (USER_HZ on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

fn list(name: &str, default: &[u64]) -> Vec<u64> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}={v:?}: a list of whole numbers"))
            })
            .collect(),
        _ => default.to_vec(),
    }
}

/// Whether `server` names a PostgreSQL server on this machine.
fn is_local(server: &str) -> bool {
    let Ok(options) = PgConnectOptions::from_str(server) else {
        return false;
    };
    let host = options.get_host();
    host.starts_with('/') || host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// One account with its admin and [`TOKENS`] active tokens, imported in one
/// transaction; the tokens' ids and hashes in the same order.
async fn seed(store: &Store) -> (AccountId, Vec<TokenId>, Vec<TokenHash>) {
    let actor = Actor::operator();
    let now = SystemClock.now();
    let (account, _) = store
        .create_account(
            NewAccount {
                subdomain: Subdomain::parse("followers").unwrap(),
                name: "Followers".into(),
                plan: Plan::Team,
                api_token_access: true,
            },
            NewUser {
                name: "Admin".into(),
                email: Email::parse(EMAIL).unwrap(),
                role: Role::Admin,
                verified: true,
                password_hash: None,
            },
            &actor,
            now,
        )
        .await
        .expect("create the account");
    let prefix = TokenPrefix::default();
    let (tokens, hashes): (Vec<NewToken>, Vec<TokenHash>) = (0..TOKENS)
        .map(|i| {
            let plain = PlainToken::generate(&prefix);
            let new = NewToken {
                hash: plain.hash(),
                visible_token: plain.visible(),
                description: Some(format!("integration {i}")),
                active: true,
                user_id: None,
                restrictions: Default::default(),
                created_at: None,
                last_used: None,
                legacy: false,
            };
            (new, plain.hash())
        })
        .unzip();
    let created = store
        .import_tokens(account.id, tokens, &actor, now)
        .await
        .expect("import the tokens");
    (account.id, created.iter().map(|t| t.id).collect(), hashes)
}

/// One node: its follower (which holds its store and verifier) and the
/// task that runs it.
struct Node {
    follower: Arc<Follower>,
    task: tokio::task::JoinHandle<()>,
}

async fn start_nodes(db: &TestDatabase, n: usize, stop: &watch::Receiver<bool>) -> Vec<Node> {
    let mut nodes = Vec::with_capacity(n);
    for _ in 0..n {
        let store = db.open().await.expect("open a node's store");
        let follower = Arc::new(Follower::new(store, Arc::new(Verifier::new())));
        follower.resync().await.expect("a node's first load");
        let mut stop = stop.clone();
        let shutdown = async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        let task = tokio::spawn(follower.clone().run(POLL, MAX_STALENESS, shutdown));
        nodes.push(Node { follower, task });
    }
    nodes
}

/// A committed change that some node has not shown yet.
struct Pending {
    token: usize,
    active: bool,
    committed: Instant,
    /// Per node: not seen yet.
    waiting: Vec<bool>,
    left: usize,
}

#[derive(Default)]
struct Changes {
    pending: Vec<Pending>,
    /// Per node and change: when it was committed, and how long it took.
    landed: Vec<(Instant, Duration)>,
}

#[derive(Default)]
struct Board {
    changes: Mutex<Changes>,
    stop: AtomicBool,
}

/// Asks every node's verifier about every change in flight, every
/// [`WATCH_EVERY`], until told to stop.
fn watch_nodes(board: &Board, verifiers: &[Arc<Verifier>], hashes: &[TokenHash]) {
    let now = SystemClock.now();
    let client = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let active = |verifier: &Verifier, token: usize| {
        verifier
            .verify_with(EMAIL, &hashes[token], now, client, None, |_| ())
            .is_ok()
    };
    while !board.stop.load(Ordering::Relaxed) {
        {
            let mut changes = board.changes.lock().unwrap();
            // Every change listed was committed before this instant.
            let at = Instant::now();
            let Changes { pending, landed } = &mut *changes;
            pending.retain_mut(|p| {
                for (node, verifier) in verifiers.iter().enumerate() {
                    if p.waiting[node] && active(verifier, p.token) == p.active {
                        p.waiting[node] = false;
                        p.left -= 1;
                        landed.push((p.committed, at.saturating_duration_since(p.committed)));
                    }
                }
                p.left > 0
            });
        }
        std::thread::sleep(WATCH_EVERY);
    }
}

/// The writer: one node's store, flipping tokens on and off in turn.
struct Writer {
    store: Store,
    account: AccountId,
    ids: Vec<TokenId>,
    active: Vec<bool>,
    next: usize,
}

impl Writer {
    /// Makes `rate` changes a second, evenly paced, for `length`; returns
    /// when each committed. A change that starts late puts the following
    /// ones back rather than hurrying them, so a writer that cannot keep up
    /// shows as a lower rate, not as bursts.
    async fn run(mut self, board: Arc<Board>, nodes: usize, rate: u64, length: Duration) -> (Self, Vec<Instant>) {
        let actor = Actor::operator();
        let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
        pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let start = Instant::now();
        let mut commits = Vec::new();
        while start.elapsed() < length {
            pace.tick().await;
            let token = self.pick(&board);
            let active = !self.active[token];
            let patch = TokenPatch {
                active: Some(active),
                ..TokenPatch::default()
            };
            self.store
                .update_token(self.account, self.ids[token], &patch, &actor, SystemClock.now())
                .await
                .expect("change a token");
            let committed = Instant::now();
            self.active[token] = active;
            commits.push(committed);
            board.changes.lock().unwrap().pending.push(Pending {
                token,
                active,
                committed,
                waiting: vec![true; nodes],
                left: nodes,
            });
        }
        (self, commits)
    }

    /// The next token that no node is still catching up on, so that a
    /// change is the only one in flight on its token.
    fn pick(&mut self, board: &Board) -> usize {
        let changes = board.changes.lock().unwrap();
        for _ in 0..self.ids.len() {
            let token = self.next;
            self.next = (self.next + 1) % self.ids.len();
            if !changes.pending.iter().any(|p| p.token == token) {
                return token;
            }
        }
        panic!("every token has a change in flight");
    }
}

/// A process's name and the fields of its `/proc/<pid>/stat` from the
/// third (state) on.
fn process_stat(pid: &str) -> Option<(String, Vec<u64>)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let fields = stat[close + 1..]
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect::<Vec<u64>>();
    (fields.len() >= 15).then(|| (stat[open + 1..close].to_owned(), fields))
}

/// CPU time (utime + stime, the 14th and 15th fields), in ticks, of one
/// process, if it is named `postgres`.
fn postgres_ticks(pid: i32) -> Option<u64> {
    let (name, f) = process_stat(&pid.to_string())?;
    (name == "postgres").then(|| f[11..13].iter().sum())
}

/// CPU time, in ticks, of every process named `postgres` on this machine,
/// with that of their children that have exited (cutime and cstime, so a
/// backend that ends meanwhile still counts); `None` when there is none.
fn all_postgres_ticks() -> Option<u64> {
    let mut total = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else {
            continue;
        };
        if let Some((name, f)) = process_stat(pid) {
            if name == "postgres" {
                *total.get_or_insert(0) += f[11..15].iter().sum::<u64>();
            }
        }
    }
    total
}

/// Microseconds so far in which some runnable task of this machine waited
/// for a CPU (the kernel's pressure stall information).
fn cpu_stall_micros() -> Option<u64> {
    let pressure = std::fs::read_to_string("/proc/pressure/cpu").ok()?;
    let some = pressure.lines().find(|l| l.starts_with("some "))?;
    some.split_whitespace()
        .find_map(|f| f.strip_prefix("total=")?.parse().ok())
}

/// CPU ticks counted so far, as each measure sees them.
struct Ticks {
    /// Each backend of the benchmark's database and each background
    /// process of the server (WAL writer, checkpointer, ...).
    ours: HashMap<i32, u64>,
    all_postgres: Option<u64>,
    /// In microseconds, see [`cpu_stall_micros`].
    stalled: Option<u64>,
    /// This process: the nodes, the writer and the watcher.
    bench: Option<u64>,
}

/// CPU used over a window, in cores.
struct Cores {
    ours: Option<f64>,
    all_postgres: Option<f64>,
    bench: Option<f64>,
    /// The share of the time some task waited for a CPU.
    stalled: Option<f64>,
}

/// What PostgreSQL and the machine have counted so far.
struct Snapshot {
    at: Instant,
    ticks: Ticks,
    xacts: i64,
    rows: i64,
}

impl Snapshot {
    async fn take(stats: &mut PgConnection) -> Snapshot {
        let (xacts, rows, pids): (i64, i64, Vec<i32>) = sqlx::query_as(
            "SELECT xact_commit + xact_rollback, tup_returned + tup_fetched, \
               ARRAY(SELECT pid FROM pg_stat_activity WHERE datname = current_database() OR datname IS NULL) \
             FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(&mut *stats)
        .await
        .expect("read pg_stat_database");
        let at = Instant::now();
        let ticks = Ticks {
            ours: pids
                .into_iter()
                .filter_map(|pid| Some((pid, postgres_ticks(pid)?)))
                .collect(),
            all_postgres: all_postgres_ticks(),
            stalled: cpu_stall_micros(),
            bench: process_stat("self").map(|(_, f)| f[11..13].iter().sum()),
        };
        Snapshot { at, ticks, xacts, rows }
    }

    /// The CPU used since `earlier`; a measure is `None` without `/proc`
    /// (or, for PostgreSQL's, without a server on this machine).
    fn cores_since(&self, earlier: &Snapshot) -> Cores {
        let seconds = self.at.duration_since(earlier.at).as_secs_f64();
        let wall = seconds * TICKS_PER_SECOND;
        let (now, then) = (&self.ticks, &earlier.ticks);
        // A backend that started meanwhile counts from 0; one that ended
        // meanwhile is lost, but none does while a run lasts.
        let ours = now
            .ours
            .iter()
            .map(|(pid, t)| t.saturating_sub(then.ours.get(pid).copied().unwrap_or(0)))
            .sum::<u64>();
        let delta = |b: Option<u64>, a: Option<u64>| b.zip(a).map(|(b, a)| b.saturating_sub(a) as f64 / wall);
        Cores {
            ours: (!now.ours.is_empty()).then_some(ours as f64 / wall),
            all_postgres: delta(now.all_postgres, then.all_postgres),
            bench: delta(now.bench, then.bench),
            stalled: now
                .stalled
                .zip(then.stalled)
                .map(|(b, a)| b.saturating_sub(a) as f64 / 1e6 / seconds),
        }
    }
}

fn cores(c: Option<f64>) -> String {
    c.map_or_else(|| "n/a".to_owned(), |c| format!("{c:.2}"))
}

async fn scalar(stats: &mut PgConnection, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&mut *stats).await.expect(sql)
}

/// Waits until `done` answers true, for at most `limit`; whether it did.
async fn wait_until(limit: Duration, mut done: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done().await {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The `q` quantile of sorted `v`.
fn quantile(v: &[Duration], q: f64) -> Duration {
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// One run's results.
struct Row {
    nodes: usize,
    asked: u64,
    achieved: f64,
    xacts: f64,
    rows: f64,
    cpu: Cores,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let Some(server) = postgres_server_url() else {
        println!(
            "No PostgreSQL server configured: set LATCHKEY_TEST_POSTGRES_URL \
             (e.g. postgres://postgres@127.0.0.1:5432/postgres) to run this benchmark."
        );
        return;
    };
    if !is_local(&server) {
        println!("This benchmark runs only against a PostgreSQL server on this machine (loopback or a local socket).");
        return;
    }
    let counts = list("FOLLOWERS", &[1, 5, 20]);
    let rates = list("RATES", &[50, 200, 500]);
    let seconds = list("SECONDS", &[5])[0];
    assert!(counts.iter().all(|&n| (1..=50).contains(&n)), "FOLLOWERS: from 1 to 50");
    assert!(rates.iter().all(|&r| (1..=5_000).contains(&r)), "RATES: from 1 to 5000");
    assert!((1..=60).contains(&seconds), "SECONDS: from 1 to 60");
    let window = Duration::from_secs(seconds);

    let db = postgres_database().await;
    // The writer stands for another node: it runs on a runtime of its own,
    // so that the nodes' work in this process does not hold its commits up.
    let writer_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("writer")
        .enable_all()
        .build()
        .expect("the writer's runtime");
    let started = Instant::now();
    let url = db.url.clone();
    let (store, account, ids, hashes) = writer_runtime
        .spawn(async move {
            let store = latchkey_store::open(&url).await.expect("open the writer's store");
            let (account, ids, hashes) = seed(&store).await;
            (store, account, ids, hashes)
        })
        .await
        .expect("seeding");
    eprintln!("seeded {TOKENS} tokens in {:.1?}", started.elapsed());
    let hashes = Arc::new(hashes);
    let mut writer = Writer {
        store,
        account,
        active: vec![true; ids.len()],
        ids,
        next: 0,
    };
    let mut stats = PgConnection::connect(&db.url).await.expect("connect for statistics");
    let idle_connections = scalar(
        &mut stats,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()",
    )
    .await;

    println!(
        "\n| followers | asked/s | achieved/s | p50 ms | p99 ms | max ms | PG CPU (cores) | PG xact/s | rows read/s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut results = Vec::new();
    let mut notes = Vec::new();
    // Changes some node never applied: a follower bug, not a slow machine.
    let mut lost = 0;
    for &count in &counts {
        let n = count as usize;
        let free = scalar(
            &mut stats,
            "SELECT current_setting('max_connections')::bigint \
               - current_setting('superuser_reserved_connections')::bigint \
               - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')",
        )
        .await;
        if free < count as i64 * CONNECTIONS_PER_NODE {
            notes.push(format!(
                "{n} followers skipped: they need about {} connections and the server has {free} free",
                count as i64 * CONNECTIONS_PER_NODE
            ));
            continue;
        }
        let (stop, stopped) = watch::channel(false);
        let nodes = start_nodes(&db, n, &stopped).await;
        let listening = wait_until(SETTLE, async || {
            scalar(
                &mut stats,
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND query LIKE 'LISTEN %'",
            )
            .await
                >= count as i64
        })
        .await;
        if !listening {
            notes.push(format!("{n} followers: not all were listening after {SETTLE:?}"));
        }
        let connections = scalar(
            &mut stats,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()",
        )
        .await;
        eprintln!(
            "{n} follower(s) started: {} connections to the database besides the writer's and this one",
            connections - idle_connections
        );
        let board = Arc::new(Board::default());
        let watcher = {
            let board = board.clone();
            let verifiers: Vec<_> = nodes.iter().map(|node| node.follower.verifier().clone()).collect();
            let hashes = hashes.clone();
            std::thread::spawn(move || watch_nodes(&board, &verifiers, &hashes))
        };
        // What the seeding and the nodes' start counted is published by now.
        let published = Instant::now() + IDLE_STATS;
        let mut changes = 0;
        for &rate in &rates {
            tokio::time::sleep_until(published.checked_sub(WARM_UP).unwrap_or(published).into()).await;
            let before: Vec<(u64, u64)> = nodes
                .iter()
                .map(|node| (node.follower.resyncs(), node.follower.failures()))
                .collect();
            let run = writer_runtime.spawn(writer.run(board.clone(), n, rate, WARM_UP + window + TAIL));
            tokio::time::sleep(WARM_UP).await;
            let a = Snapshot::take(&mut stats).await;
            tokio::time::sleep(window).await;
            let b = Snapshot::take(&mut stats).await;
            let (back, commits) = run.await.expect("the writer");
            writer = back;
            let settled = wait_until(SETTLE, async || board.changes.lock().unwrap().pending.is_empty()).await;
            let landed = {
                let mut changes = board.changes.lock().unwrap();
                if !settled {
                    lost += changes.pending.len();
                    notes.push(format!(
                        "{n} followers at {rate}/s: {} changes not seen by every node after {SETTLE:?}",
                        changes.pending.len()
                    ));
                    changes.pending.clear();
                }
                std::mem::take(&mut changes.landed)
            };
            let within = |at: &Instant| *at >= a.at && *at <= b.at;
            let mut latencies: Vec<Duration> = landed.iter().filter(|(at, _)| within(at)).map(|(_, d)| *d).collect();
            latencies.sort_unstable();
            let wall = b.at.duration_since(a.at).as_secs_f64();
            let achieved = commits.iter().filter(|at| within(at)).count() as f64 / wall;
            let cpu = b.cores_since(&a);
            let xacts = (b.xacts - a.xacts) as f64 / wall;
            let rows = (b.rows - a.rows) as f64 / wall;
            let (p50, p99, max) = if latencies.is_empty() {
                ("n/a".to_owned(), "n/a".to_owned(), "n/a".to_owned())
            } else {
                (
                    format!("{:.2}", ms(quantile(&latencies, 0.50))),
                    format!("{:.2}", ms(quantile(&latencies, 0.99))),
                    format!("{:.2}", ms(*latencies.last().unwrap())),
                )
            };
            println!(
                "| {n} | {rate} | {achieved:.0} | {p50} | {p99} | {max} | {} | {xacts:.0} | {rows:.0} |",
                cores(cpu.ours)
            );
            for (node, (resyncs, failures)) in nodes.iter().zip(before) {
                if node.follower.resyncs() > resyncs || node.follower.failures() > failures {
                    notes.push(format!(
                        "{n} followers at {rate}/s: a node resynchronised {} times and failed {} reads",
                        node.follower.resyncs() - resyncs,
                        node.follower.failures() - failures
                    ));
                }
            }
            results.push(Row {
                nodes: n,
                asked: rate,
                achieved,
                xacts,
                rows,
                cpu,
            });
            changes += commits.len();
        }
        board.stop.store(true, Ordering::Relaxed);
        watcher.join().expect("the watcher");
        // A listening backend reads each notification in a transaction of
        // its own and publishes the count only when it next runs a
        // statement, which it never does, or when it ends: what the nodes'
        // backends publish as they end is that, once their reading
        // backends have published the rest at their next heartbeat.
        tokio::time::sleep(HEARTBEAT_PUBLISHED).await;
        let running = Snapshot::take(&mut stats).await;
        let _ = stop.send(true);
        for node in nodes {
            node.task.await.expect("a node's follower");
        }
        // The nodes' connections close as their stores drop.
        wait_until(SETTLE, async || {
            scalar(
                &mut stats,
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()",
            )
            .await
                <= idle_connections
        })
        .await;
        let ended = Snapshot::take(&mut stats).await;
        notes.push(format!(
            "{n} followers: {} more transactions were published as the nodes disconnected, \
             about {:.2} per change and follower over the {changes} changes they followed: \
             the listening connections' reads of the notifications, not in the tables' xact/s",
            ended.xacts - running.xacts,
            (ended.xacts - running.xacts) as f64 / (changes * n).max(1) as f64
        ));
    }

    println!(
        "\nPer change: each follower's transactions (the writer's one a change taken out) and the rows read \
         in all. CPU in cores: every postgres process on this machine (whatever it serves) and this process \
         (nodes, writer, watcher); and the share of the time some task waited for one of the {} CPUs:\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "| followers | asked/s | xacts per change per follower | rows read per change | all PG CPU | bench CPU | CPU waited |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in &results {
        if r.achieved > 0.0 {
            println!(
                "| {} | {} | {:.2} | {:.1} | {} | {} | {} |",
                r.nodes,
                r.asked,
                (r.xacts - r.achieved) / (r.achieved * r.nodes as f64),
                r.rows / r.achieved,
                cores(r.cpu.all_postgres),
                cores(r.cpu.bench),
                r.cpu
                    .stalled
                    .map_or_else(|| "n/a".to_owned(), |w| format!("{:.0} %", w * 100.0))
            );
        }
    }
    for note in &notes {
        println!("\nNote: {note}");
    }
    drop(stats);
    drop(writer);
    writer_runtime.shutdown_background();
    drop(db);
    assert_eq!(lost, 0, "every change must reach every node");
}
