#!/usr/bin/env bash
# Runs latchkey's whole test suite against real parts:
#  1. unit and integration tests on SQLite (real files, the real server on
#     loopback, the real CLI binary);
#  2. the integration tests again on PostgreSQL, when LATCHKEY_TEST_POSTGRES_URL
#     is set (CI sets it; without it those runs are reported as not run);
#  3. the Admin Center in headless Chromium (needs /usr/bin/chromium and node);
#  4. the criterion benchmarks in a quick mode, so they keep compiling and running.
set -euo pipefail
cd "$(dirname "$0")/.."

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
