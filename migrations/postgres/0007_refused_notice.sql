-- When the owner was last told that this dead (revoked, expired or blocked) token was presented
-- (the `token.refused_use` notice): the flush of refused uses queues a notice only when this is
-- unset or an hour old, so gateways sharing the database tell the owner at most once an hour.
-- Kept in step with migrations/sqlite/0007_refused_notice.sql.
ALTER TABLE tokens ADD COLUMN refused_notified_at BIGINT;
