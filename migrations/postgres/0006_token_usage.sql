-- Requests per token, UTC day, route and outcome (issue 15): counted in memory by each gateway
-- and added here once per flush interval (`requests = requests + n`), so gateways sharing the
-- database add up. `day` counts days since 1970-01-01 UTC; `route` is the route's prefix as
-- configured; `outcome` is 2xx, 3xx, 4xx, 5xx, forbidden, limited or refused. Rows older than
-- `usage.keep_days` are pruned by the sweep. Kept in step with
-- migrations/sqlite/0006_token_usage.sql. Room on each page (fillfactor) for the flushes' updates
-- of today's rows: they then stay on their page without touching the indexes (HOT); in a psql
-- experiment on this table's shape, 110 000 upserts took 800-870 ms with full pages and 390-540 ms
-- with this.
CREATE TABLE token_usage (
    token_id BIGINT NOT NULL REFERENCES tokens (id),
    day      BIGINT NOT NULL,
    route    TEXT   NOT NULL,
    outcome  TEXT   NOT NULL,
    requests BIGINT NOT NULL,
    PRIMARY KEY (token_id, day, route, outcome)
) WITH (fillfactor = 70);
-- The retention sweep deletes by day.
CREATE INDEX token_usage_day ON token_usage (day);
