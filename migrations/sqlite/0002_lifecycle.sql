-- The token lifecycle: rotation hand-over, inactivity warnings, the notification outbox.
-- Kept in step with migrations/postgres/0002_lifecycle.sql.

-- On a rotation successor: the predecessor that stays valid until this token is first used.
ALTER TABLE tokens ADD COLUMN handover_from BIGINT;
-- When the owner was warned that this token will be revoked for inactivity.
ALTER TABLE tokens ADD COLUMN inactivity_warned_at BIGINT;

-- Notifications to deliver: written in the transaction of the action they report, sent by
-- the gateway's sender with retries. `dedupe_key` makes reminders idempotent.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    created_at      BIGINT NOT NULL,
    kind            TEXT   NOT NULL,
    account_id      BIGINT,
    recipient       TEXT   NOT NULL,
    token_id        BIGINT,
    payload         TEXT   NOT NULL,
    dedupe_key      TEXT UNIQUE,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    claimed_until   BIGINT,
    sent_at         BIGINT,
    last_error      TEXT
);
CREATE INDEX outbox_due ON outbox (sent_at, next_attempt_at);
CREATE INDEX events_kind_at ON events (kind, at);
