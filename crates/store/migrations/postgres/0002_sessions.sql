-- Admin Center sign-in sessions, kept in the database so that every node of
-- a deployment accepts the same cookie. Only SHA-256 of the session id is
-- stored: a copy of this table signs nobody in.

CREATE TABLE sessions (
    id_hash      BYTEA  NOT NULL PRIMARY KEY,
    account_id   BIGINT NOT NULL REFERENCES accounts (id),
    user_id      BIGINT NOT NULL REFERENCES users (id),
    csrf_token   TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);
CREATE INDEX sessions_last_seen_idx ON sessions (last_seen_at);
