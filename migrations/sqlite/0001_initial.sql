-- tokengate schema, SQLite dialect. Times are integer seconds since the Unix epoch (UTC).
-- Kept in step with migrations/postgres: one logical schema, two dialects.

CREATE TABLE accounts (
    id                INTEGER PRIMARY KEY,
    email             TEXT    NOT NULL,
    -- The lower-cased email: accounts are unique case-insensitively and credentials match it.
    email_norm        TEXT    NOT NULL UNIQUE,
    name              TEXT,
    superuser         BOOLEAN NOT NULL DEFAULT FALSE,
    token_manager     BOOLEAN NOT NULL DEFAULT FALSE,
    enabled           BOOLEAN NOT NULL DEFAULT TRUE,
    can_create_tokens BOOLEAN NOT NULL DEFAULT TRUE,
    created_at        BIGINT  NOT NULL,
    updated_at        BIGINT  NOT NULL
);

CREATE TABLE tokens (
    id                  INTEGER PRIMARY KEY,
    account_id          BIGINT  NOT NULL REFERENCES accounts (id),
    name                TEXT    NOT NULL,
    -- The name while the token holds it: cleared on revocation and when a new token takes the
    -- name of an expired one, so the unique index below means "unique among live tokens".
    live_name           TEXT,
    description         TEXT,
    digest              BLOB    NOT NULL UNIQUE,
    prefix              TEXT    NOT NULL,
    scopes              TEXT    NOT NULL,
    rate_limit          TEXT,
    created_at          BIGINT  NOT NULL,
    created_by          TEXT    NOT NULL,
    expires_at          BIGINT,
    revoked_at          BIGINT,
    revoked_by          TEXT,
    revoke_reason       TEXT,
    rotated_from        BIGINT,
    rotated_to          BIGINT,
    last_used_at        BIGINT,
    last_used_method    TEXT,
    last_used_path      TEXT,
    last_used_ip        TEXT,
    refused_count       BIGINT  NOT NULL DEFAULT 0,
    refused_last_at     BIGINT,
    refused_last_ip     TEXT,
    refused_last_method TEXT,
    refused_last_path   TEXT
);
CREATE UNIQUE INDEX tokens_live_name ON tokens (account_id, live_name);
CREATE INDEX tokens_account ON tokens (account_id);

CREATE TABLE events (
    id         INTEGER PRIMARY KEY,
    at         BIGINT NOT NULL,
    kind       TEXT   NOT NULL,
    actor      TEXT   NOT NULL,
    account_id BIGINT,
    account    TEXT,
    token_id   BIGINT,
    ip         TEXT,
    user_agent TEXT,
    detail     TEXT   NOT NULL DEFAULT '{}'
);
CREATE INDEX events_account ON events (account_id);
CREATE INDEX events_token ON events (token_id);

-- Every mutation of accounts or tokens appends here in the same transaction; gateways read
-- rows after the last sequence they applied. AUTOINCREMENT: a sequence is never reused.
CREATE TABLE changes (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    at         BIGINT NOT NULL,
    account_id BIGINT,
    token_id   BIGINT
);
