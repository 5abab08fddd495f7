#!/usr/bin/env bash
# Load benchmark of latchkey's HTTP verification, side by side with the HTTP
# floor (a route that does no authentication, in the same server) and with a
# widely used peer: djangorestframework-api-key on gunicorn with SQLite.
# Then through nginx, with and without deploy/nginx/latchkey.conf.
# Then the large case: 1,000,000 tokens across 10,000 accounts (start-up
# load time, resident memory, throughput against the 1,000-token case).
#
# Everything runs on loopback and every load run is bounded. All servers run
# at once and the rows take turns: ROUNDS rounds of DURATION seconds per
# row, and each row reports its median round, so that a burst of load from
# elsewhere on the machine hits every row alike. The server and the load
# generator share the machine: read the figures as ratios from one run.
#
# Usage: bench/http.sh            (from the repository root)
# Knobs: ROUNDS=5 DURATION=4 CONNECTIONS=32 WRK_THREADS=1 PEER_WORKERS=5
#        SKIP_PEER=1 SKIP_LARGE=1 SKIP_NGINX=1 LARGE_TOKENS=1000000 LARGE_ACCOUNTS=10000
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-4}
CONNECTIONS=${CONNECTIONS:-32}
WRK_THREADS=${WRK_THREADS:-1}
PEER_WORKERS=${PEER_WORKERS:-5}
LARGE_TOKENS=${LARGE_TOKENS:-1000000}
LARGE_ACCOUNTS=${LARGE_ACCOUNTS:-10000}
PORT=${PORT:-18490}
WORK=$ROOT/target/bench-http
BIN=$ROOT/target/release/latchkey
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT

need() {
    command -v "$1" >/dev/null 2>&1 && return
    echo "installing $2 from Debian's packages" >&2
    apt-get install -y -qq "$2" >/dev/null
}
need wrk wrk
need python3 python3
need curl curl

echo "== building latchkey (release)" >&2
cargo build --release -q -p latchkey
rm -rf "$WORK"
mkdir -p "$WORK"

# ---------------------------------------------------------------- helpers

# wait_ready URL: polls until 200, prints the seconds it took.
wait_ready() {
    local url=$1 start
    start=$(date +%s.%N)
    for _ in $(seq 1 3000); do
        if curl -fs -o /dev/null "$url"; then
            python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$start" "$(date +%s.%N)"
            return
        fi
        sleep 0.02
    done
    echo "server at $url never became ready" >&2
    exit 1
}

start_latchkey() { # DB PORT [extra env...]: starts serve, sets SERVER_PID
    local db=$1 port=$2
    shift 2
    env "$@" LATCHKEY_LOG=warn "$BIN" serve --listen "127.0.0.1:$port" --shutdown-grace 0 \
        --database-url "sqlite://$db" >"$WORK/serve-$port.log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
}

stop() { # PID
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

rss_mb() { # PID [field]
    awk -v f="${2:-VmRSS}:" '$1 == f { printf "%.0f", $2 / 1024 }' "/proc/$1/status"
}

RESULTS=$WORK/results.tsv
: >"$RESULTS"
ROWS=()

# row NAME URL [AUTHORIZATION]: adds a row to the rounds.
row() {
    ROWS+=("$1"$'\t'"$2"$'\t'"${3:-}")
}

# run NAME URL [AUTHORIZATION]: one bounded wrk run, one line of results.
run() {
    local name=$1 url=$2 auth=${3:-} out=$WORK/wrk.txt
    local args=(-t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency)
    [ -n "$auth" ] && args+=(-H "Authorization: $auth")
    wrk "${args[@]}" "$url" >"$out"
    python3 - "$name" "$out" >>"$RESULTS" <<'EOF'
import re, sys
name, path = sys.argv[1], sys.argv[2]
text = open(path).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
def ms(v, unit):
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
pct = {p: ms(v, u) for p, v, u in re.findall(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)}
non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
print("\t".join([name, f"{rps:.0f}", f"{pct.get('50', 0):.3f}", f"{pct.get('90', 0):.3f}",
                 f"{pct.get('99', 0):.3f}", non2xx.group(1) if non2xx else "0"]))
EOF
}

basic() { # USER PASSWORD
    printf 'Basic %s' "$(printf '%s:%s' "$1" "$2" | base64 -w0)"
}

# ------------------------------------------------------- latchkey, small
echo "== seeding latchkey: one account, 1,000 tokens" >&2
SMALL=$WORK/small.db
export LATCHKEY_DATABASE_URL="sqlite://$SMALL"
"$BIN" account create --subdomain bench --name Bench --plan enterprise \
    --api-token-access --admin-email admin@bench.test >/dev/null
TOKEN=$("$BIN" token create --account bench --description "bench")
# Every restriction at once: a scope, bound to the admin, expiring, an IP
# allowlist (loopback) and a rate limit the load never reaches (a million a
# second), so every check runs on every request.
RESTRICTED_TOKEN=$("$BIN" token create --account bench --description "restricted" \
    --scopes users:read --assigned-user admin@bench.test --expires-at 2099-01-01T00:00:00Z \
    --allowed-ips 127.0.0.0/8,::1 --rate-limit 1000000/1)
python3 - "$WORK/import.jsonl" 999 <<'EOF'
import json, os, sys
with open(sys.argv[1], "w") as f:
    for i in range(int(sys.argv[2])):
        f.write(json.dumps({"token_sha256": os.urandom(32).hex(), "visible_token": f"lk_bulk…{i:04d}"}) + "\n")
EOF
"$BIN" token import --account bench --file "$WORK/import.jsonl" >/dev/null
unset LATCHKEY_DATABASE_URL
VALID=$(basic "admin@bench.test/token" "$TOKEN")
# A well-formed token (valid checksum) that is not stored: the full lookup.
UNKNOWN_TOKEN=$(python3 - <<'EOF'
import secrets, string, zlib
alphabet = string.digits + string.ascii_uppercase + string.ascii_lowercase
body = "lk_" + "".join(secrets.choice(alphabet) for _ in range(32))
n, out = zlib.crc32(body.encode()), ""
for _ in range(6):
    out, n = alphabet[n % 62] + out, n // 62
print(body + out)
EOF
)
UNKNOWN=$(basic "admin@bench.test/token" "$UNKNOWN_TOKEN")
RESTRICTED=$(basic "admin@bench.test/token" "$RESTRICTED_TOKEN")

# The failure limit is lifted for these runs so that the unknown-token row
# measures the lookup and its 401; the flood row below uses the default.
start_latchkey "$SMALL" "$PORT" LATCHKEY_FAILED_AUTH_PER_MINUTE=4000000000
SMALL_PID=$SERVER_PID
SMALL_START=$(wait_ready "http://127.0.0.1:$PORT/readyz")
base=http://127.0.0.1:$PORT
test "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: $VALID" "$base/verify")" = 200
test "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: $UNKNOWN" "$base/verify")" = 401

row "latchkey GET /healthz (no auth: the HTTP floor)" "$base/healthz"
row "latchkey GET /verify, valid token" "$base/verify" "$VALID"
row "latchkey GET /verify, unknown token (401)" "$base/verify" "$UNKNOWN"
# The original request given Envoy's way (the path after /verify), so the
# scope check runs: an unrestricted token, then one with every restriction.
ORIGINAL=$base/verify/api/v2/users/1.json
test "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: $RESTRICTED" "$ORIGINAL")" = 200
test "$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: $RESTRICTED" "$ORIGINAL")" = 403
row "latchkey GET /verify/{path}, unrestricted token" "$ORIGINAL" "$VALID"
row "latchkey GET /verify/{path}, scoped, every check on" "$ORIGINAL" "$RESTRICTED"
row "latchkey GET /api/v2/users/me, valid token" "$base/api/v2/users/me" "$VALID"

FLOOD_PORT=$((PORT + 2))
start_latchkey "$SMALL" "$FLOOD_PORT"
wait_ready "http://127.0.0.1:$FLOOD_PORT/readyz" >/dev/null
row "latchkey GET /verify, bad-token flood (429 after 100/min)" "http://127.0.0.1:$FLOOD_PORT/verify" "$UNKNOWN"

# ---------------------------------------------------------- through nginx
# nginx in front, twice in one nginx: proxying to an upstream with no
# authentication, and with deploy/nginx/latchkey.conf included as shipped
# (an auth_request subrequest to latchkey per request, keep-alive to both).
# The upstream is the small server's /healthz, the same in both rows.
if [ -z "${SKIP_NGINX:-}" ]; then
    [ -x /usr/sbin/nginx ] || need nginx nginx
    NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)
    NGX=$WORK/nginx
    mkdir -p "$NGX"
    NGINX_PLAIN=$((PORT + 4))
    NGINX_AUTH=$((PORT + 5))
    cat >"$NGX/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $NGX/nginx.pid;
error_log $NGX/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $NGX/body;
    proxy_temp_path $NGX/proxy;
    fastcgi_temp_path $NGX/fastcgi;
    uwsgi_temp_path $NGX/uwsgi;
    scgi_temp_path $NGX/scgi;
    upstream latchkey { server 127.0.0.1:$PORT; keepalive 64; }
    upstream app { server 127.0.0.1:$PORT; keepalive 64; }
    server {
        listen 127.0.0.1:$NGINX_PLAIN;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
    server {
        listen 127.0.0.1:$NGINX_AUTH;
        include $ROOT/deploy/nginx/latchkey.conf;
    }
}
EOF
    "$NGINX_BIN" -p "$NGX" -c "$NGX/nginx.conf" &
    PIDS+=("$!")
    wait_ready "http://127.0.0.1:$NGINX_PLAIN/healthz" >/dev/null
    test "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: $VALID" "http://127.0.0.1:$NGINX_AUTH/healthz")" = 200
    test "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: $UNKNOWN" "http://127.0.0.1:$NGINX_AUTH/healthz")" = 401
    row "nginx -> app GET /healthz (no auth)" "http://127.0.0.1:$NGINX_PLAIN/healthz"
    row "nginx -> auth_request latchkey -> app GET /healthz, valid token" \
        "http://127.0.0.1:$NGINX_AUTH/healthz" "$VALID"
fi

# ------------------------------------------------------------------- peer
if [ -z "${SKIP_PEER:-}" ]; then
    echo "== peer: djangorestframework-api-key on gunicorn, SQLite" >&2
    VENV=$WORK/peer-venv
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check \
        django djangorestframework djangorestframework-api-key gunicorn
    PEER=$WORK/peer
    mkdir -p "$PEER/peer"
    touch "$PEER/peer/__init__.py"
    cat >"$PEER/peer/settings.py" <<EOF
SECRET_KEY = "benchmark-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "rest_framework",
    "rest_framework_api_key",
]
MIDDLEWARE = []
ROOT_URLCONF = "peer.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "$PEER/peer.db", "CONN_MAX_AGE": 600}}
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
EOF
    cat >"$PEER/peer/urls.py" <<'EOF'
from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_api_key.permissions import HasAPIKey


class Protected(APIView):
    permission_classes = [HasAPIKey]

    def get(self, request):
        return Response({"ok": True})


class Open(APIView):
    permission_classes = []

    def get(self, request):
        return Response({"ok": True})


urlpatterns = [path("protected", Protected.as_view()), path("open", Open.as_view())]
EOF
    cat >"$PEER/peer/wsgi.py" <<'EOF'
from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()
EOF
    export DJANGO_SETTINGS_MODULE=peer.settings PYTHONPATH=$PEER
    "$VENV/bin/python" -m django migrate -v 0
    PEER_KEY=$("$VENV/bin/python" - <<'EOF'
import django
django.setup()
from rest_framework_api_key.models import APIKey
_, key = APIKey.objects.create_key(name="bench")
for i in range(999):
    APIKey.objects.create_key(name=f"bulk {i}")
print(key)
EOF
)
    PEER_VERSION=$("$VENV/bin/pip" show djangorestframework-api-key | awk '/^Version/ {print $2}')
    PEER_PORT=$((PORT + 1))
    (cd "$PEER" && exec "$VENV/bin/gunicorn" --workers "$PEER_WORKERS" --log-level warning \
        --bind "127.0.0.1:$PEER_PORT" peer.wsgi) >"$WORK/gunicorn.log" 2>&1 &
    PIDS+=("$!")
    wait_ready "http://127.0.0.1:$PEER_PORT/open" >/dev/null
    test "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Api-Key $PEER_KEY" \
        "http://127.0.0.1:$PEER_PORT/protected")" = 200
    row "peer GET /open (no auth)" "http://127.0.0.1:$PEER_PORT/open"
    row "peer GET /protected, valid key (drf-api-key $PEER_VERSION)" \
        "http://127.0.0.1:$PEER_PORT/protected" "Api-Key $PEER_KEY"
    unset DJANGO_SETTINGS_MODULE PYTHONPATH
fi

# ----------------------------------------------------- latchkey, large
if [ -z "${SKIP_LARGE:-}" ]; then
    echo "== seeding $LARGE_TOKENS tokens across $LARGE_ACCOUNTS accounts (direct SQL)" >&2
    LARGE=$WORK/large.db
    LATCHKEY_DATABASE_URL="sqlite://$LARGE" "$BIN" migrate >/dev/null
    # Benchmark fixture only: rows go straight in, without audit events.
    python3 bench/seed-tokens.py sqlite "$LARGE" "$LARGE_TOKENS" "$LARGE_ACCOUNTS"
    export LATCHKEY_DATABASE_URL="sqlite://$LARGE"
    "$BIN" account create --subdomain bench --name Bench --plan enterprise \
        --api-token-access --admin-email admin@bench.test >/dev/null
    LARGE_TOKEN=$("$BIN" token create --account bench --description "bench")
    unset LATCHKEY_DATABASE_URL
    LARGE_VALID=$(basic "admin@bench.test/token" "$LARGE_TOKEN")
    LARGE_PORT=$((PORT + 3))
    start_latchkey "$LARGE" "$LARGE_PORT" LATCHKEY_FAILED_AUTH_PER_MINUTE=4000000000
    LARGE_PID=$SERVER_PID
    LARGE_START=$(wait_ready "http://127.0.0.1:$LARGE_PORT/readyz")
    LARGE_RSS_LOADED=$(rss_mb "$LARGE_PID")
    large=http://127.0.0.1:$LARGE_PORT
    test "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: $LARGE_VALID" "$large/verify")" = 200
    row "latchkey GET /verify, valid token, $LARGE_TOKENS tokens / $LARGE_ACCOUNTS accounts" \
        "$large/verify" "$LARGE_VALID"
fi

# ----------------------------------------------------------------- rounds
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq 1 "$ROUNDS"); do
    for r in "${ROWS[@]}"; do
        IFS=$'\t' read -r name url auth <<<"$r"
        echo "== round $round/$ROUNDS: $name" >&2
        run "$name" "$url" "$auth"
    done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
SMALL_RSS=$(rss_mb "$SMALL_PID" VmHWM)
LARGE_RSS=
if [ -n "${LARGE_PID:-}" ]; then LARGE_RSS=$(rss_mb "$LARGE_PID" VmHWM); fi

# ----------------------------------------------------------------- report
python3 - "$RESULTS" <<EOF
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    if line.strip():
        name, *vals = line.rstrip("\n").split("\t")
        rows.setdefault(name, []).append([float(v) for v in vals])
def med(name, i):
    return statistics.median(r[i] for r in rows[name])
def rps(prefix):
    return next((med(n, 0) for n in rows if n.startswith(prefix)), None)
floor = rps("latchkey GET /healthz")
print()
print("machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), shared by the servers and the load generator")
print("load average (1/5/15 min) before: $LOAD_BEFORE, after: $LOAD_AFTER")
print("wrk -t$WRK_THREADS -c$CONNECTIONS, $ROUNDS rounds of ${DURATION}s per row, rows in turn; medians of the rounds")
print()
print(f"| {'target':<72} | {'req/s':>8} | {'p50 ms':>7} | {'p90 ms':>7} | {'p99 ms':>7} | {'vs floor':>8} | non-2xx |")
print(f"|{'-' * 74}|{'-' * 10}|{'-' * 9}|{'-' * 9}|{'-' * 9}|{'-' * 10}|---------|")
for name in rows:
    r = med(name, 0)
    ratio = f"{r / floor:.0%}" if name.startswith("latchkey") else ""
    non2xx = "yes" if any(x[4] > 0 for x in rows[name]) else "no"
    print(f"| {name:<72} | {r:>8.0f} | {med(name, 1):>7.2f} | {med(name, 2):>7.2f} | {med(name, 3):>7.2f} | {ratio:>8} | {non2xx:>7} |")
print()
verify = rps("latchkey GET /verify, valid token")
print(f"/verify (valid) throughput vs the no-auth route: {verify / floor:.1%}")
peer = rps("peer GET /protected")
if peer:
    print(f"/verify (valid) vs the peer's protected view: {verify / peer:.1f}x  (target >= 50x)")
original = rps("latchkey GET /verify/{path}, unrestricted")
restricted = rps("latchkey GET /verify/{path}, scoped")
print(f"/verify/{{path}} unrestricted vs the no-auth route: {original / floor:.1%}; every check on (scopes, user, expiry, allowlist, rate limit): {restricted / floor:.1%}  (target >= 90%)")
me = rps("latchkey GET /api/v2/users/me")
print(f"/api/v2/users/me vs the no-auth route: {me / floor:.1%}  (target >= 80%)")
behind = rps("nginx -> auth_request")
if behind:
    print(f"through nginx, with latchkey's auth_request vs without authentication: {behind / rps('nginx -> app'):.1%}")
large = rps("latchkey GET /verify, valid token, ")
print("start-up (spawn to /readyz) with 1,000 tokens: ${SMALL_START} s; peak RSS ${SMALL_RSS} MB")
if large:
    print("start-up (spawn to /readyz) with $LARGE_TOKENS tokens: ${LARGE_START:-} s  (target <= 2 s)")
    print("RSS with $LARGE_TOKENS tokens: ${LARGE_RSS_LOADED:-} MB loaded, ${LARGE_RSS:-} MB peak  (bench/scaling.sh gives bytes per token)")
    print(f"/verify throughput with $LARGE_TOKENS tokens vs 1,000: {large / verify:.1%}  (target >= 90%)")
EOF
