"""Benchmark fixture: N unrestricted tokens spread evenly over M accounts
(one verified user each), written straight into a migrated latchkey
database with direct SQL and no audit events. Far faster than the API for
millions of rows, and only for benchmarks.

Usage: python3 bench/seed-tokens.py sqlite PATH TOKENS ACCOUNTS
       python3 bench/seed-tokens.py postgres URL TOKENS ACCOUNTS   (runs psql)
"""
import sqlite3
import subprocess
import sys

kind, target, tokens, accounts = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
per = max(tokens // accounts, 1)

if kind == "sqlite":
    c = sqlite3.connect(target)
    c.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;")
    c.execute(f"""WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {accounts})
    INSERT INTO accounts (id, subdomain, name, plan, token_limit, api_token_access, created_at, updated_at)
    SELECT i, 'acct' || i, 'Account ' || i, 'enterprise', 256, 1, 0, 0 FROM n""")
    c.execute(f"""WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {accounts})
    INSERT INTO users (id, account_id, name, email, email_normalized, role, verified, suspended, created_at, updated_at)
    SELECT i, i, 'User ' || i, 'user' || i || '@bench.test', 'user' || i || '@bench.test', 'agent', 1, 0, 0, 0 FROM n""")
    c.execute(f"""WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {tokens - 1})
    INSERT INTO api_tokens (account_id, token_hash, visible_token, active, created_at, updated_at)
    SELECT 1 + i / {per}, randomblob(32), 'lk_bulk…' || i, 1, 0, 0 FROM n""")
    c.commit()
elif kind == "postgres":
    sql = f"""
    INSERT INTO accounts (id, subdomain, name, plan, token_limit, api_token_access, created_at, updated_at)
    SELECT i, 'acct' || i, 'Account ' || i, 'enterprise', 256, TRUE, 0, 0 FROM generate_series(1, {accounts}) i;
    INSERT INTO users (id, account_id, name, email, email_normalized, role, verified, suspended, created_at, updated_at)
    SELECT i, i, 'User ' || i, 'user' || i || '@bench.test', 'user' || i || '@bench.test', 'agent', TRUE, FALSE, 0, 0
    FROM generate_series(1, {accounts}) i;
    INSERT INTO api_tokens (account_id, token_hash, visible_token, active, created_at, updated_at)
    SELECT 1 + i / {per}, decode(md5(i::text) || md5('x' || i), 'hex'), 'lk_bulk…' || i, TRUE, 0, 0
    FROM generate_series(0, {tokens - 1}) i;
    SELECT setval(pg_get_serial_sequence('accounts', 'id'), {accounts});
    SELECT setval(pg_get_serial_sequence('users', 'id'), {accounts});
    ANALYZE;
    """
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", target], input=sql, text=True, check=True,
                   stdout=subprocess.DEVNULL)
else:
    sys.exit(f"unknown database kind {kind!r}")
