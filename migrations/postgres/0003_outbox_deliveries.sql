-- Delivery of each notification per channel: every configured channel (smtp, webhook) gets its
-- own claim, attempts, backoff and outcome, so one channel's failure never resends or holds up
-- another's. A row appears when a gateway that has the channel first claims the notification;
-- a gateway with no channel never writes one (nor touches the outbox).
-- Kept in step with migrations/sqlite/0003_outbox_deliveries.sql.

CREATE TABLE outbox_deliveries (
    outbox_id       BIGINT NOT NULL REFERENCES outbox (id),
    channel         TEXT   NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    claimed_until   BIGINT,
    sent_at         BIGINT,
    last_error      TEXT,
    PRIMARY KEY (outbox_id, channel)
);
CREATE INDEX outbox_deliveries_due ON outbox_deliveries (channel, sent_at, next_attempt_at);
