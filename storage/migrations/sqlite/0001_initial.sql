-- disparo SQLite schema, version 1.
--
-- Conventions (storage/sqlite_codec.py implements them):
-- * Every timestamp column holds INTEGER microseconds since 1970-01-01T00:00:00Z (UTC).
--   Integers compare and index cheaply, and an aware UTC datetime round-trips exactly.
-- * JSON columns hold compact UTF-8 JSON text; datetimes inside JSON are ISO-8601 with
--   an explicit +00:00 offset.
-- * schema_migrations is created by the migration runner itself (it must exist before
--   this file is recorded as applied).

CREATE TABLE contacts (
    id                    TEXT PRIMARY KEY,
    phone                 TEXT,
    email                 TEXT,
    name                  TEXT,
    tags                  TEXT NOT NULL DEFAULT '[]',
    context               TEXT NOT NULL DEFAULT '{}',
    timezone              TEXT,
    -- the facts the rules read
    last_inbound_at       INTEGER,
    last_interaction_at   INTEGER,
    last_outbound_at      INTEGER,
    attendant             TEXT,
    attendance_since      INTEGER,
    attendance_until      INTEGER,
    opted_out_at          INTEGER,
    -- when the attendance / opt-out facts last changed: an older event arriving late
    -- must not undo a newer one (timestamps never move back)
    attendance_changed_at INTEGER,
    opt_changed_at        INTEGER,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL
);
CREATE INDEX contacts_phone ON contacts (phone) WHERE phone IS NOT NULL;
-- Covering index for the re-engagement sweep ("wrote 23-24 h ago"): an index-only
-- range scan instead of a full scan (performance-limits.md section 5).
CREATE INDEX contacts_last_inbound ON contacts (last_inbound_at, id)
    WHERE last_inbound_at IS NOT NULL;

CREATE TABLE flow_versions (
    flow    TEXT NOT NULL,
    version TEXT NOT NULL,
    source  TEXT NOT NULL,
    PRIMARY KEY (flow, version)
) WITHOUT ROWID;

CREATE TABLE runs (
    id              TEXT PRIMARY KEY,
    flow            TEXT NOT NULL,
    flow_version    TEXT NOT NULL,
    contact_id      TEXT NOT NULL REFERENCES contacts (id),
    step            TEXT,
    status          TEXT NOT NULL
        CHECK (status IN ('active', 'waiting', 'completed', 'failed', 'cancelled')),
    vars            TEXT NOT NULL DEFAULT '{}',
    idempotency_key TEXT NOT NULL UNIQUE,
    version         INTEGER NOT NULL DEFAULT 1,
    step_seq        INTEGER NOT NULL DEFAULT 0,
    exclusive       INTEGER NOT NULL DEFAULT 1 CHECK (exclusive IN (0, 1)),
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
-- Open runs of a contact (list_open_runs, inbound fan-out, the exclusivity check).
CREATE INDEX runs_open ON runs (contact_id, flow)
    WHERE status IN ('active', 'waiting');
-- Backstop for "one open run per (contact, flow)" of exclusive runs; the store also
-- checks it (against non-exclusive runs too) in the transaction that creates a run.
CREATE UNIQUE INDEX runs_one_open_exclusive ON runs (contact_id, flow)
    WHERE exclusive = 1 AND status IN ('active', 'waiting');

CREATE TABLE messages (
    id                  TEXT PRIMARY KEY,
    run_id              TEXT NOT NULL REFERENCES runs (id),
    contact_id          TEXT NOT NULL,
    flow                TEXT NOT NULL,
    step                TEXT NOT NULL,
    step_seq            INTEGER NOT NULL,
    provider            TEXT NOT NULL,
    channel             TEXT NOT NULL,
    idempotency_key     TEXT NOT NULL UNIQUE,
    status              TEXT NOT NULL,
    payload             TEXT NOT NULL DEFAULT '{}',
    provider_message_id TEXT,
    attempts            INTEGER NOT NULL DEFAULT 0,
    next_attempt_at     INTEGER,
    last_error          TEXT,
    status_at           TEXT NOT NULL DEFAULT '{}',
    -- when the message first reached sent/delivered/read (the frequency cap counts it)
    left_at             INTEGER,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);
CREATE UNIQUE INDEX messages_provider_id ON messages (provider, provider_message_id)
    WHERE provider_message_id IS NOT NULL;
CREATE INDEX messages_run ON messages (run_id, created_at);
CREATE INDEX messages_outbound ON messages (contact_id, left_at)
    WHERE left_at IS NOT NULL;

CREATE TABLE events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    contact_id TEXT,
    run_id     TEXT,
    message_id TEXT,
    kind       TEXT NOT NULL,
    at         INTEGER NOT NULL,
    data       TEXT NOT NULL DEFAULT '{}',
    dedupe_key TEXT
);
CREATE UNIQUE INDEX events_dedupe ON events (dedupe_key) WHERE dedupe_key IS NOT NULL;
CREATE INDEX events_contact ON events (contact_id, id) WHERE contact_id IS NOT NULL;
CREATE INDEX events_run ON events (run_id, id) WHERE run_id IS NOT NULL;

-- AUTOINCREMENT: ids are never reused, so a stale worker's (id, fence) can never
-- match a later row that happened to get the same id after a deletion.
CREATE TABLE due_work (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL
        CHECK (kind IN ('start', 'dispatch', 'timer', 'status', 'inbound', 'callback')),
    due_at      INTEGER NOT NULL,
    run_id      TEXT REFERENCES runs (id),
    message_id  TEXT REFERENCES messages (id),
    payload     TEXT NOT NULL DEFAULT '{}',
    lease_owner TEXT,
    lease_until INTEGER,
    fence       INTEGER NOT NULL DEFAULT 0,
    attempts    INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
);
-- Claim order (due_at, id) straight from the index, no sort even when thousands of
-- rows share one due_at; lease_until lets the scan skip leased rows inside it.
CREATE INDEX due_work_claimable ON due_work (due_at, id, lease_until);
-- Leased rows only (at most the in-flight work of every node): lease expiry for
-- next_due_at without scanning the queue.
CREATE INDEX due_work_leased ON due_work (lease_until, due_at) WHERE lease_until IS NOT NULL;
CREATE INDEX due_work_run ON due_work (run_id, kind) WHERE run_id IS NOT NULL;

-- Status reports for a message whose provider id is not recorded yet (the webhook
-- won the race against the send's commit). Applied in the transaction that records
-- the id; never dropped.
CREATE TABLE pending_statuses (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    provider            TEXT NOT NULL,
    provider_message_id TEXT,
    idempotency_key     TEXT,
    report              TEXT NOT NULL,
    dedupe_key          TEXT,
    received_at         INTEGER NOT NULL,
    CHECK (provider_message_id IS NOT NULL OR idempotency_key IS NOT NULL)
);
CREATE INDEX pending_statuses_provider_id ON pending_statuses (provider, provider_message_id)
    WHERE provider_message_id IS NOT NULL;
CREATE INDEX pending_statuses_key ON pending_statuses (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE UNIQUE INDEX pending_statuses_dedupe ON pending_statuses (dedupe_key)
    WHERE dedupe_key IS NOT NULL;
