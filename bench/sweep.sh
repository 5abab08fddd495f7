#!/usr/bin/env bash
# The token policy's sweeper at scale (README.md, "Token policy"): 100,000
# stale tokens in 1,000 accounts, each account with a policy that
# deactivates tokens unused for 30 days. Measures how long one sweep takes
# (`latchkey policy sweep`, on the same SQLite file as a running server) and
# the server's /verify throughput during it, beside the idle figure from the
# same run. Loopback only; every load run is bounded.
#
# Usage: bench/sweep.sh            (from the repository root)
# Knobs: ACCOUNTS=1000 PER_ACCOUNT=100 DURATION=10 CONNECTIONS=32 PORT=18520
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
ACCOUNTS=${ACCOUNTS:-1000}
PER_ACCOUNT=${PER_ACCOUNT:-100}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
PORT=${PORT:-18520}
WORK=$ROOT/target/bench-sweep
BIN=$ROOT/target/release/latchkey

command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
echo "== building latchkey (release)" >&2
cargo build --release -q -p latchkey
rm -rf "$WORK"
mkdir -p "$WORK"
export LATCHKEY_DATABASE_URL="sqlite://$WORK/sweep.db"
export LATCHKEY_LOG=warn

echo "== seeding $ACCOUNTS accounts x $PER_ACCOUNT stale tokens" >&2
python3 - "$WORK" "$PER_ACCOUNT" <<'EOF'
import json, os, sys
work, n = sys.argv[1], int(sys.argv[2])
with open(f"{work}/stale.jsonl", "w") as f:
    for i in range(n):
        f.write(json.dumps({"token_sha256": os.urandom(32).hex(), "visible_token": f"lk_old…{i:04d}",
                            "created_at": "2025-01-01T00:00:00Z", "last_used": "2025-02-01T00:00:00Z"}) + "\n")
EOF
for i in $(seq 1 "$ACCOUNTS"); do
    "$BIN" account create --subdomain "acct$i" --name "Account $i" --plan enterprise \
        --api-token-access --admin-email "admin@acct$i.test" >/dev/null
    # Each account's lines are fresh hashes: hashes are unique deployment-wide.
    python3 - "$WORK/stale.jsonl" "$WORK/acct.jsonl" <<'EOF'
import json, os, sys
with open(sys.argv[1]) as src, open(sys.argv[2], "w") as out:
    for line in src:
        rec = json.loads(line)
        rec["token_sha256"] = os.urandom(32).hex()
        out.write(json.dumps(rec) + "\n")
EOF
    "$BIN" token import --account "acct$i" --file "$WORK/acct.jsonl" >/dev/null
done
ADMIN_TOKEN=$("$BIN" token create --account acct1 --description "bench")
AUTH="Authorization: Basic $(printf '%s' "admin@acct1.test/token:$ADMIN_TOKEN" | base64 -w0)"

"$BIN" serve --listen "127.0.0.1:$PORT" --failed-auth-per-minute 4000000000 >"$WORK/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 500); do curl -fs -o /dev/null "http://127.0.0.1:$PORT/readyz" && break; sleep 0.05; done
base=http://127.0.0.1:$PORT

echo "== setting each account's policy (deactivate_unused_after_days = 30)" >&2
for i in $(seq 1 "$ACCOUNTS"); do
    t=$("$BIN" token create --account "acct$i" --description "policy")
    curl -fs -o /dev/null -u "admin@acct$i.test/token:$t" -X PUT -H 'content-type: application/json' \
        -d '{"settings":{"token_policy":{"deactivate_unused_after_days":30}}}' "$base/api/v2/account/settings"
done

rps() { sed -n 's/^Requests\/sec:[[:space:]]*//p' "$1"; }

echo "== /verify idle, ${DURATION}s" >&2
wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -H "$AUTH" "$base/verify" >"$WORK/idle.txt"

echo "== /verify during one sweep" >&2
wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -H "$AUTH" "$base/verify" >"$WORK/during.txt" &
WRK=$!
sleep 1
START=$(date +%s.%N)
"$BIN" policy sweep >"$WORK/sweep.txt"
END=$(date +%s.%N)
wait $WRK

swept=$(tail -1 "$WORK/sweep.txt")
idle=$(rps "$WORK/idle.txt")
during=$(rps "$WORK/during.txt")
python3 - "$START" "$END" "$idle" "$during" "$swept" "$ACCOUNTS" "$PER_ACCOUNT" "$DURATION" <<'EOF'
import sys
start, end, idle, during = map(float, sys.argv[1:5])
swept, accounts, per, duration = sys.argv[5], sys.argv[6], sys.argv[7], float(sys.argv[8])
took = end - start
print(f"{swept} ({accounts} accounts x {per} stale tokens) in {took:.1f} s")
print(f"/verify idle: {idle:.0f} req/s; during a {duration:.0f} s window holding the sweep: {during:.0f} req/s "
      f"({during / idle:.1%} of idle; target >= 90%)")
if took > duration - 1:
    print("note: the sweep outlasted the measured window; raise DURATION for a full overlap")
EOF
