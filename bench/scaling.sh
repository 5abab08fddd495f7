#!/usr/bin/env bash
# How one latchkey node grows with the tokens it holds. For each size:
# start-up (spawn to /readyz, which answers only after the first full load)
# on SQLite and on PostgreSQL, resident memory once loaded and at its peak,
# and /verify throughput with a valid token against the same server's
# /healthz (the HTTP floor), rows in turn, median of the rounds.
#
# Tokens are unrestricted, TOKENS_PER_ACCOUNT to an account with one user,
# written with direct SQL (bench/seed-tokens.py). Memory per token is the
# difference from a server holding one token, divided by the size.
#
# Everything runs on loopback; every load run is bounded. Server and load
# generator share the machine: read throughput as the ratio to /healthz.
#
# Usage: bench/scaling.sh            (from the repository root)
# Knobs: SIZES="100000 1000000 4000000" TOKENS_PER_ACCOUNT=100 ROUNDS=3
#        DURATION=3 CONNECTIONS=32 SKIP_POSTGRES=1
#        POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres
set -euo pipefail

cd "$(dirname "$0")/.."
export PGOPTIONS="-c client_min_messages=warning"
ROOT=$PWD
SIZES=${SIZES:-100000 1000000 4000000}
TOKENS_PER_ACCOUNT=${TOKENS_PER_ACCOUNT:-100}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-3}
CONNECTIONS=${CONNECTIONS:-32}
POSTGRES_URL=${POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
PORT=${PORT:-18590}
WORK=$ROOT/target/bench-scaling
BIN=$ROOT/target/release/latchkey
SERVER_PID=

cleanup() {
    [ -n "$SERVER_PID" ] && { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }
    if [ -z "${SKIP_POSTGRES:-}" ]; then psql -q "$POSTGRES_URL" -c "DROP DATABASE IF EXISTS latchkey_scaling" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
echo "== building latchkey (release)" >&2
cargo build --release -q -p latchkey
rm -rf "$WORK"
mkdir -p "$WORK"
RESULTS=$WORK/results.tsv
: >"$RESULTS"

now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$(now)"; }
rss_mb() { awk -v f="${2:-VmRSS}:" '$1 == f { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

# serve URL: starts a server on the database and waits for /readyz; sets
# SERVER_PID and STARTED (the seconds it took).
serve() {
    local start
    start=$(now)
    LATCHKEY_LOG=warn LATCHKEY_FAILED_AUTH_PER_MINUTE=4000000000 "$BIN" serve \
        --listen "127.0.0.1:$PORT" --shutdown-grace 0 --database-url "$1" >"$WORK/serve.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 6000); do
        if curl -fs -o /dev/null "http://127.0.0.1:$PORT/readyz"; then STARTED=$(since "$start"); return; fi
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/serve.log" >&2; exit 1; }
        sleep 0.01
    done
    echo "latchkey never became ready" >&2
    exit 1
}

stop() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

# prepare URL KIND TARGET N: migrates, seeds N tokens, adds the bench
# account and its token; prints the Authorization header value.
prepare() {
    local url=$1 kind=$2 target=$3 n=$4 token
    LATCHKEY_DATABASE_URL=$url "$BIN" migrate >/dev/null
    if [ "$n" -gt 0 ]; then
        python3 bench/seed-tokens.py "$kind" "$target" "$n" $(((n + TOKENS_PER_ACCOUNT - 1) / TOKENS_PER_ACCOUNT))
    fi
    LATCHKEY_DATABASE_URL=$url "$BIN" account create --subdomain bench --name Bench --plan enterprise \
        --api-token-access --admin-email admin@bench.test >/dev/null
    token=$(LATCHKEY_DATABASE_URL=$url "$BIN" token create --account bench --description bench)
    printf 'Basic %s' "$(printf 'admin@bench.test/token:%s' "$token" | base64 -w0)"
}

rps() { # URL [AUTHORIZATION]
    local args=(-t1 -c"$CONNECTIONS" -d"${DURATION}s")
    [ -n "${2:-}" ] && args+=(-H "Authorization: $2")
    wrk "${args[@]}" "$1" | awk '/Requests\/sec/ { printf "%.0f", $2 }'
}

for n in 0 $SIZES; do
    echo "== $n tokens, SQLite" >&2
    db=$WORK/tokens.db
    rm -f "$db"*
    seed_start=$(now)
    auth=$(prepare "sqlite://$db" sqlite "$db" "$n")
    seeded=$(since "$seed_start")
    serve "sqlite://$db"
    started=$STARTED
    loaded=$(rss_mb "$SERVER_PID")
    base=http://127.0.0.1:$PORT
    test "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: $auth" "$base/verify")" = 200
    floors=() verifies=()
    if [ "$n" -gt 0 ]; then
        for round in $(seq 1 "$ROUNDS"); do
            echo "   round $round/$ROUNDS" >&2
            floors+=("$(rps "$base/healthz")")
            verifies+=("$(rps "$base/verify" "$auth")")
        done
    fi
    peak=$(rss_mb "$SERVER_PID" VmHWM)
    stop
    rm -f "$db"*
    pg_started=
    if [ -z "${SKIP_POSTGRES:-}" ] && [ "$n" -gt 0 ]; then
        echo "== $n tokens, PostgreSQL" >&2
        psql -q "$POSTGRES_URL" -c "DROP DATABASE IF EXISTS latchkey_scaling" -c "CREATE DATABASE latchkey_scaling" >/dev/null
        pg=${POSTGRES_URL%/*}/latchkey_scaling
        prepare "$pg" postgres "$pg" "$n" >/dev/null
        serve "$pg"
        pg_started=$STARTED
        stop
        psql -q "$POSTGRES_URL" -c "DROP DATABASE latchkey_scaling" >/dev/null
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$seeded" "$started" "$pg_started" "$loaded" "$peak" \
        "${floors[*]:-}" "${verifies[*]:-}" >>"$RESULTS"
done

python3 - "$RESULTS" <<PY
import statistics, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
base = float(rows[0][4])
print()
print("machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), shared by the server and wrk")
print("wrk -t1 -c$CONNECTIONS, $ROUNDS rounds of ${DURATION}s per row, /healthz and /verify in turn; medians")
print(f"baseline: a server holding one token: {base:.0f} MB resident")
print()
print("| tokens | accounts | start-up SQLite (s) | start-up PostgreSQL (s) | RSS loaded (MB) | peak RSS (MB) | bytes/token | /healthz req/s | /verify req/s | /verify vs /healthz |")
print("|---|---|---|---|---|---|---|---|---|---|")
for n, seeded, started, pg, loaded, peak, floors, verifies in rows[1:]:
    n = int(n)
    floor = statistics.median(float(x) for x in floors.split())
    verify = statistics.median(float(x) for x in verifies.split())
    per = (float(loaded) - base) * 1024 * 1024 / n
    accounts = (n + $TOKENS_PER_ACCOUNT - 1) // $TOKENS_PER_ACCOUNT
    print(f"| {n:,} | {accounts:,} | {started} | {pg or '-'} | {float(loaded):.0f} | {float(peak):.0f} | {per:.0f} | {floor:,.0f} | {verify:,.0f} | {verify / floor:.0%} |")
PY
