-- The running gateways, so that a change can wait until every one of them has applied it.
-- Each `serve` process keeps its row: it heartbeats every second and records the last
-- change-log sequence it applied as soon as it applies it. A row whose heartbeat is older than
-- `sync.stale_after` is a gateway that is not running; such rows are pruned later, and a
-- gateway that stops cleanly removes its own. Times are milliseconds since the epoch (the
-- gateway's wall clock): a confirmation is measured in milliseconds.
-- Kept in step with migrations/sqlite/0004_gateways.sql.

CREATE TABLE gateways (
    id           TEXT   PRIMARY KEY,
    host         TEXT   NOT NULL,
    pid          BIGINT NOT NULL,
    proxy_addr   TEXT   NOT NULL,
    admin_addr   TEXT   NOT NULL,
    version      TEXT   NOT NULL,
    started_ms   BIGINT NOT NULL,
    heartbeat_ms BIGINT NOT NULL,
    applied_seq  BIGINT NOT NULL,
    applied_ms   BIGINT NOT NULL
);

-- When each change was committed, in milliseconds, for a gateway's lag in time.
ALTER TABLE changes ADD COLUMN at_ms BIGINT;
