-- disparo SQLite schema, version 3: state providers share across processes and restarts.
--
-- * rate_budgets: one row per per-window request budget (Interflow's per-minute limit
--   of one account). `starts` is the sliding-window log, a JSON array of the start
--   times (integer microseconds UTC, ascending) of the requests of the last window;
--   `vendor_limit` a smaller limit the vendor reported; `paused_until` the end of a
--   pause the vendor asked for (a 429, or X-RateLimit-Remaining: 0).
-- * provider_credentials: one row per credential a provider obtains at run time (the
--   Robbu login token of one API user). `value` is the token as the vendor issued it:
--   the database is trusted like the config file that holds the password the token
--   comes from. `version` counts the values stored (0: none yet); `renewing_by` and
--   `renewing_until` are the claim of the one process logging in after a 401.

CREATE TABLE rate_budgets (
    name         TEXT PRIMARY KEY,
    starts       TEXT NOT NULL DEFAULT '[]',
    vendor_limit INTEGER CHECK (vendor_limit IS NULL OR vendor_limit >= 1),
    paused_until INTEGER,
    updated_at   INTEGER NOT NULL
);

CREATE TABLE provider_credentials (
    name           TEXT PRIMARY KEY,
    value          TEXT,
    version        INTEGER NOT NULL DEFAULT 0 CHECK (version >= 0),
    renewing_by    TEXT,
    renewing_until INTEGER,
    updated_at     INTEGER NOT NULL,
    CHECK ((value IS NULL) = (version = 0))
);
