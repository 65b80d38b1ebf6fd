-- disparo PostgreSQL schema, version 3: state providers share across processes
-- (the same model as migrations/sqlite/0003_provider_state.sql).
--
-- * rate_budgets: one row per per-window request budget (Interflow's per-minute limit
--   of one account), shared by every process on the database. `starts` is the
--   sliding-window log: the start times (microseconds since the Unix epoch, UTC,
--   ascending) of the requests of the last window. Each slot is taken under the row's
--   lock (SELECT ... FOR UPDATE), so processes never take the same last slot twice.
-- * provider_credentials: one row per credential a provider obtains at run time (the
--   Robbu login token of one API user). `value` is the token as the vendor issued it:
--   the database is trusted like the config file that holds the password the token
--   comes from. `version` counts the values stored (0: none yet); `renewing_by` and
--   `renewing_until` are the claim of the one process logging in after a 401.

CREATE TABLE rate_budgets (
    name         text PRIMARY KEY,
    starts       bigint[] NOT NULL DEFAULT '{}',
    vendor_limit integer CHECK (vendor_limit IS NULL OR vendor_limit >= 1),
    paused_until timestamptz,
    updated_at   timestamptz NOT NULL
);

CREATE TABLE provider_credentials (
    name           text PRIMARY KEY,
    value          text,
    version        bigint NOT NULL DEFAULT 0 CHECK (version >= 0),
    renewing_by    text,
    renewing_until timestamptz,
    updated_at     timestamptz NOT NULL,
    CHECK ((value IS NULL) = (version = 0))
);
