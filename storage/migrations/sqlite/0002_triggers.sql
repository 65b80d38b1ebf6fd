-- disparo SQLite schema, version 2: cron, fan-out and sweep triggers.
--
-- * due_work gains the kinds 'cron' (one row per cron trigger, due at its next fire
--   time), 'fanout' (one row per firing, walking the contacts in chunks with a cursor
--   in its payload) and 'sweep' (one row per `after` trigger, due at its next sweep),
--   and a `key`: trigger rows are unique by key, so engines starting at the same time
--   schedule each trigger once. SQLite cannot change a CHECK constraint in place, so
--   the table is rebuilt; ids, fences and the AUTOINCREMENT sequence are kept (a stale
--   worker's (id, fence) must never match a new row).
-- * trigger_firings: one row per (flow, trigger, fire time) that fired, ever; the
--   commit that starts a firing's fan-out inserts it, so a fire time fires once
--   across processes and restarts.
-- * Covering indexes for the re-engagement sweeps on last_interaction_at and
--   last_outbound_at (last_inbound_at has one since version 1). Sweeps counting from
--   a `context.<key>` timestamp page through the contacts by id: no index can
--   follow a JSON value whose format the flow decides.

CREATE TABLE due_work_v2 (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL
        CHECK (kind IN ('start', 'dispatch', 'timer', 'status', 'inbound', 'callback',
                        'cron', 'fanout', 'sweep')),
    due_at      INTEGER NOT NULL,
    run_id      TEXT REFERENCES runs (id),
    message_id  TEXT REFERENCES messages (id),
    payload     TEXT NOT NULL DEFAULT '{}',
    lease_owner TEXT,
    lease_until INTEGER,
    fence       INTEGER NOT NULL DEFAULT 0,
    attempts    INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    key         TEXT
);

INSERT INTO due_work_v2 (id, kind, due_at, run_id, message_id, payload, lease_owner,
                         lease_until, fence, attempts, created_at)
    SELECT id, kind, due_at, run_id, message_id, payload, lease_owner, lease_until, fence,
           attempts, created_at
    FROM due_work;

-- Keep the id sequence of the old table (ids of deleted rows are never reused).
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'due_work_v2', 0
    WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'due_work_v2');

UPDATE sqlite_sequence
    SET seq = max(seq, coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'due_work'), 0))
    WHERE name = 'due_work_v2';

DROP TABLE due_work;

ALTER TABLE due_work_v2 RENAME TO due_work;

CREATE INDEX due_work_claimable ON due_work (due_at, id, lease_until);
CREATE INDEX due_work_leased ON due_work (lease_until, due_at) WHERE lease_until IS NOT NULL;
CREATE INDEX due_work_run ON due_work (run_id, kind) WHERE run_id IS NOT NULL;
CREATE UNIQUE INDEX due_work_key ON due_work (key) WHERE key IS NOT NULL;

CREATE TABLE trigger_firings (
    flow          TEXT NOT NULL,
    trigger_index INTEGER NOT NULL,
    fire_time     INTEGER NOT NULL,
    fired_at      INTEGER NOT NULL,
    PRIMARY KEY (flow, trigger_index, fire_time)
) WITHOUT ROWID;

CREATE INDEX contacts_last_interaction ON contacts (last_interaction_at, id)
    WHERE last_interaction_at IS NOT NULL;
CREATE INDEX contacts_last_outbound ON contacts (last_outbound_at, id)
    WHERE last_outbound_at IS NOT NULL;
