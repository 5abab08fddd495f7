#!/usr/bin/env bash
# Runs latchkey's whole test suite: unit and integration tests (real SQLite
# files, a real server on loopback, the real CLI binary).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace
