-- latchkey's schema. Timestamps are whole seconds since the Unix epoch, so
-- that the same statements work on SQLite and PostgreSQL.

CREATE TABLE accounts (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    subdomain        TEXT    NOT NULL,
    name             TEXT    NOT NULL,
    plan             TEXT    NOT NULL,
    token_limit      BIGINT  NOT NULL,
    api_token_access BOOLEAN NOT NULL,
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL
);
CREATE UNIQUE INDEX accounts_subdomain_key ON accounts (subdomain);

CREATE TABLE users (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id       BIGINT  NOT NULL REFERENCES accounts (id),
    name             TEXT    NOT NULL,
    email            TEXT    NOT NULL,
    email_normalized TEXT    NOT NULL,
    role             TEXT    NOT NULL,
    verified         BOOLEAN NOT NULL,
    suspended        BOOLEAN NOT NULL,
    deleted_at       BIGINT,
    password_hash    TEXT,
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL
);
-- An email is unique among an account's users that are not deleted.
CREATE UNIQUE INDEX users_email_key ON users (account_id, email_normalized) WHERE deleted_at IS NULL;

CREATE TABLE api_tokens (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id       BIGINT  NOT NULL REFERENCES accounts (id),
    token_hash       BLOB    NOT NULL,
    visible_token    TEXT    NOT NULL,
    description      TEXT,
    active           BOOLEAN NOT NULL,
    user_id          BIGINT,
    assigned_user_id BIGINT,
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL,
    last_used        BIGINT
);
CREATE UNIQUE INDEX api_tokens_token_hash_key ON api_tokens (token_hash);
CREATE INDEX api_tokens_account_idx ON api_tokens (account_id, id);

-- Append-only; each account's rows form a hash chain (see core::audit).
CREATE TABLE audit_events (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id         BIGINT NOT NULL REFERENCES accounts (id),
    action             TEXT   NOT NULL,
    actor_type         TEXT   NOT NULL,
    actor_id           BIGINT,
    actor_name         TEXT   NOT NULL,
    source_type        TEXT   NOT NULL,
    source_id          BIGINT NOT NULL,
    source_label       TEXT   NOT NULL,
    change_description TEXT   NOT NULL,
    ip_address         TEXT,
    created_at         BIGINT NOT NULL,
    hash               BLOB   NOT NULL
);
CREATE INDEX audit_events_account_idx ON audit_events (account_id, id);

-- The change log: every mutation appends the entities it touched, in the
-- same transaction, and every process follows it by sequence number.
CREATE TABLE changes (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    entity     TEXT   NOT NULL,
    entity_id  BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX changes_created_idx ON changes (created_at);
