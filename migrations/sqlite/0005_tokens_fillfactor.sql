-- PostgreSQL leaves room on each page of `tokens` for last-use updates (see
-- migrations/postgres/0005_tokens_fillfactor.sql); SQLite has no such setting. This migration
-- keeps the two sequences of migrations in step.
SELECT 1;
