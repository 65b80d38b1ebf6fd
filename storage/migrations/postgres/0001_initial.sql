-- disparo PostgreSQL schema, version 1 (the same model as migrations/sqlite/0001_initial.sql).
--
-- Conventions (storage/postgres_codec.py implements the Python side):
-- * Timestamps are timestamptz (microsecond precision: an aware datetime round-trips
--   exactly). Sessions run with TimeZone = UTC.
-- * JSON columns are `json`, not `jsonb`: json keeps the text as written, so key order
--   survives (template parameters, contexts and payloads come back in the order given).
-- * Every write of the Store goes through disparo_apply(): one call carries a batch of
--   write units (group commit), each unit in its own subtransaction, so a unit that fails
--   is undone alone and reports its error; the others commit together.
-- * Unit errors the Python side maps to domain errors use SQLSTATEs of their own:
--   DSFEN StaleFence, DSRUN StaleRun, DSCON Conflict, DSNOT NotFound.
-- * schema_migrations is created by the migration runner itself.

CREATE TABLE contacts (
    id                    text PRIMARY KEY,
    phone                 text,
    email                 text,
    name                  text,
    tags                  json NOT NULL DEFAULT '[]',
    context               json NOT NULL DEFAULT '{}',
    timezone              text,
    -- the facts the rules read
    last_inbound_at       timestamptz,
    last_interaction_at   timestamptz,
    last_outbound_at      timestamptz,
    attendant             text,
    attendance_since      timestamptz,
    attendance_until      timestamptz,
    opted_out_at          timestamptz,
    -- when the attendance / opt-out facts last changed: an older event arriving late
    -- must not undo a newer one
    attendance_changed_at timestamptz,
    opt_changed_at        timestamptz,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL
);
CREATE INDEX contacts_phone ON contacts (phone) WHERE phone IS NOT NULL;
-- Covering the re-engagement sweep ("wrote 23-24 h ago"); ids in byte order (COLLATE "C"),
-- whatever the database's collation, like SQLite's.
CREATE INDEX contacts_last_inbound ON contacts (last_inbound_at, id COLLATE "C")
    WHERE last_inbound_at IS NOT NULL;

CREATE TABLE flow_versions (
    flow    text NOT NULL,
    version text NOT NULL,
    source  text NOT NULL,
    PRIMARY KEY (flow, version)
);

CREATE TABLE runs (
    id              text PRIMARY KEY,
    flow            text NOT NULL,
    flow_version    text NOT NULL,
    contact_id      text NOT NULL REFERENCES contacts (id),
    step            text,
    status          text NOT NULL
        CHECK (status IN ('active', 'waiting', 'completed', 'failed', 'cancelled')),
    vars            json NOT NULL DEFAULT '{}',
    idempotency_key text NOT NULL CONSTRAINT runs_idempotency_key UNIQUE,
    version         integer NOT NULL DEFAULT 1,
    step_seq        integer NOT NULL DEFAULT 0,
    exclusive       boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX runs_open ON runs (contact_id, flow) WHERE status IN ('active', 'waiting');
-- Backstop for "one open run per (contact, flow)" of exclusive runs; disparo_insert_run
-- also checks it (against non-exclusive runs too) under an advisory lock.
CREATE UNIQUE INDEX runs_one_open_exclusive ON runs (contact_id, flow)
    WHERE exclusive AND status IN ('active', 'waiting');

CREATE TABLE messages (
    id                  text PRIMARY KEY,
    -- insertion order (SQLite's rowid): list_run_messages breaks created_at ties with it
    seq                 bigint GENERATED ALWAYS AS IDENTITY,
    run_id              text NOT NULL REFERENCES runs (id),
    contact_id          text NOT NULL,
    flow                text NOT NULL,
    step                text NOT NULL,
    step_seq            integer NOT NULL,
    provider            text NOT NULL,
    channel             text NOT NULL,
    idempotency_key     text NOT NULL CONSTRAINT messages_idempotency_key UNIQUE,
    status              text NOT NULL,
    payload             json NOT NULL DEFAULT '{}',
    provider_message_id text,
    attempts            integer NOT NULL DEFAULT 0,
    next_attempt_at     timestamptz,
    last_error          text,
    status_at           json NOT NULL DEFAULT '{}',
    -- when the message first reached sent/delivered/read (the frequency cap counts it)
    left_at             timestamptz,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL
);
CREATE UNIQUE INDEX messages_provider_id ON messages (provider, provider_message_id)
    WHERE provider_message_id IS NOT NULL;
CREATE INDEX messages_run ON messages (run_id, created_at, seq);
CREATE INDEX messages_outbound ON messages (contact_id, left_at) WHERE left_at IS NOT NULL;

CREATE TABLE events (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    contact_id text,
    run_id     text,
    message_id text,
    kind       text NOT NULL,
    at         timestamptz NOT NULL,
    data       json NOT NULL DEFAULT '{}',
    dedupe_key text
);
CREATE UNIQUE INDEX events_dedupe ON events (dedupe_key) WHERE dedupe_key IS NOT NULL;
CREATE INDEX events_contact ON events (contact_id, id) WHERE contact_id IS NOT NULL;
CREATE INDEX events_run ON events (run_id, id) WHERE run_id IS NOT NULL;

-- Identity ids are never reused, so a stale worker's (id, fence) can never match a
-- later row that happened to get the same id after a deletion.
CREATE TABLE due_work (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        text NOT NULL
        CHECK (kind IN ('start', 'dispatch', 'timer', 'status', 'inbound', 'callback')),
    due_at      timestamptz NOT NULL,
    run_id      text REFERENCES runs (id),
    message_id  text REFERENCES messages (id),
    payload     json NOT NULL DEFAULT '{}',
    lease_owner text,
    lease_until timestamptz,
    fence       bigint NOT NULL DEFAULT 0,
    attempts    integer NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL
);
-- Claim order (due_at, id) straight from the index; SKIP LOCKED passes over rows
-- another node is claiming or completing right now.
CREATE INDEX due_work_claimable ON due_work (due_at, id);
-- Leased rows only (the in-flight work of every node): lease expiry for next_due_at.
CREATE INDEX due_work_leased ON due_work (lease_until) WHERE lease_until IS NOT NULL;
CREATE INDEX due_work_run ON due_work (run_id, kind) WHERE run_id IS NOT NULL;

-- Status reports for a message whose provider id is not recorded yet (the webhook won
-- the race against the send's commit). Applied in the transaction that records the id.
CREATE TABLE pending_statuses (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider            text NOT NULL,
    provider_message_id text,
    idempotency_key     text,
    report              json NOT NULL,
    dedupe_key          text,
    received_at         timestamptz NOT NULL,
    CHECK (provider_message_id IS NOT NULL OR idempotency_key IS NOT NULL)
);
CREATE INDEX pending_statuses_provider_id ON pending_statuses (provider, provider_message_id)
    WHERE provider_message_id IS NOT NULL;
CREATE INDEX pending_statuses_key ON pending_statuses (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE UNIQUE INDEX pending_statuses_dedupe ON pending_statuses (dedupe_key)
    WHERE dedupe_key IS NOT NULL;

-- ---------------------------------------------------------------- pure helpers

-- engine.models.status_can_advance, in SQL (a test compares the two on every pair).
CREATE FUNCTION disparo_status_can_advance(stored text, new text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN stored IN ('failed', 'skipped') OR new = stored THEN false
        WHEN new = 'failed' THEN stored <> 'read'
        WHEN new = 'skipped' THEN stored IN ('queued', 'sending')
        ELSE coalesce(array_position(ARRAY['queued', 'sending', 'sent', 'delivered', 'read'],
                                     CASE new WHEN 'ambiguous' THEN 'sending' ELSE new END)
                      > array_position(ARRAY['queued', 'sending', 'sent', 'delivered', 'read'],
                                       CASE stored WHEN 'ambiguous' THEN 'sending' ELSE stored END),
                      false)
    END
$$;

-- Key-by-key merge that keeps key order: stored keys stay where they are, new keys
-- follow in the patch's order, a JSON null in the patch deletes the key.
CREATE FUNCTION disparo_merge_json(stored json, patch json) RETURNS json
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(json_object_agg(m.key, m.value ORDER BY m.pos), '{}'::json)
    FROM (
        SELECT s.key, coalesce(p.value, s.value) AS value, s.pos
        FROM json_each(stored) WITH ORDINALITY AS s (key, value, pos)
        LEFT JOIN json_each(patch) AS p ON p.key = s.key
        WHERE p.value IS NULL OR json_typeof(p.value) <> 'null'
        UNION ALL
        SELECT p.key, p.value, 1000000000 + p.pos
        FROM json_each(patch) WITH ORDINALITY AS p (key, value, pos)
        WHERE json_typeof(p.value) <> 'null'
          AND NOT EXISTS (SELECT 1 FROM json_each(stored) AS s WHERE s.key = p.key)
    ) AS m
$$;

-- The event a status report logs: the report without `at` and without null fields.
CREATE FUNCTION disparo_status_event_data(report json) RETURNS json
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(json_object_agg(r.key, r.value ORDER BY r.pos), '{}'::json)
    FROM json_each(report) WITH ORDINALITY AS r (key, value, pos)
    WHERE r.key <> 'at' AND json_typeof(r.value) <> 'null'
$$;

-- Serialises the two sides of the webhook-vs-send race on one message: a report that
-- finds no message yet, and the commit that records the provider id. Whichever comes
-- second waits for the first to commit, then sees its row.
CREATE FUNCTION disparo_lock_status_keys(provider text, provider_message_id text,
                                         idempotency_key text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    k bigint;
BEGIN
    -- Taken in one order everywhere, so two holders of both keys never deadlock.
    FOR k IN
        SELECT key FROM (
            SELECT hashtextextended('disparo.status/' || provider || '/' || provider_message_id, 0)
            UNION
            SELECT hashtextextended('disparo.status-key/' || idempotency_key, 0)
        ) AS keys (key)
        WHERE key IS NOT NULL ORDER BY key
    LOOP
        PERFORM pg_advisory_xact_lock(k);
    END LOOP;
END
$$;

-- ---------------------------------------------------------------- status reports

-- Log `status.<status>` and queue STATUS work for the message; false when the dedupe
-- key was already seen (nothing written). No run id on the row on purpose: cancelling
-- a run must not drop what a provider says about a message that already left.
CREATE FUNCTION disparo_queue_status(msg_id text, msg_run text, msg_contact text,
                                     report json, dedupe text, now_ timestamptz)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (contact_id, run_id, message_id, kind, at, data, dedupe_key)
    VALUES (msg_contact, msg_run, msg_id, 'status.' || (report->>'status'),
            (report->>'at')::timestamptz, disparo_status_event_data(report), dedupe)
    ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO due_work (kind, due_at, message_id, payload, created_at)
    VALUES ('status', now_, msg_id, report, now_);
    RETURN true;
END
$$;

-- Turn the reports kept for this message into STATUS work (its provider id just arrived).
CREATE FUNCTION disparo_release_pending(m messages, now_ timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    p record;
BEGIN
    PERFORM disparo_lock_status_keys(m.provider, m.provider_message_id, m.idempotency_key);
    FOR p IN
        SELECT id, report, dedupe_key FROM pending_statuses
        WHERE (provider = m.provider AND provider_message_id = m.provider_message_id)
           OR idempotency_key = m.idempotency_key
        ORDER BY id FOR UPDATE
    LOOP
        PERFORM disparo_queue_status(m.id, m.run_id, m.contact_id, p.report, p.dedupe_key, now_);
        DELETE FROM pending_statuses WHERE id = p.id;
    END LOOP;
END
$$;

CREATE FUNCTION disparo_ingest_statuses(u jsonb) RETURNS json LANGUAGE plpgsql AS $$
DECLARE
    now_ timestamptz := (u->>'now')::timestamptz;
    r jsonb;
    key text;
    found_id text;
    found_run text;
    found_contact text;
    outcomes text[] := '{}';
BEGIN
    FOR r IN SELECT value FROM jsonb_array_elements(u->'reports') LOOP
        key := r->>'dedupe_key';
        IF key IS NOT NULL AND (EXISTS (SELECT 1 FROM events WHERE dedupe_key = key)
                                OR EXISTS (SELECT 1 FROM pending_statuses WHERE dedupe_key = key))
        THEN
            outcomes := outcomes || 'duplicate'::text;
            CONTINUE;
        END IF;
        PERFORM disparo_lock_status_keys(r->>'provider', r->>'provider_message_id',
                                         r->>'idempotency_key');
        found_id := NULL;
        IF r->>'provider_message_id' IS NOT NULL THEN
            SELECT id, run_id, contact_id INTO found_id, found_run, found_contact FROM messages
            WHERE provider = r->>'provider' AND provider_message_id = r->>'provider_message_id';
        END IF;
        -- The idempotency key is globally unique: it matches whatever the provider.
        IF found_id IS NULL AND r->>'idempotency_key' IS NOT NULL THEN
            SELECT id, run_id, contact_id INTO found_id, found_run, found_contact FROM messages
            WHERE idempotency_key = r->>'idempotency_key';
        END IF;
        IF found_id IS NOT NULL THEN
            outcomes := outcomes || CASE
                WHEN disparo_queue_status(found_id, found_run, found_contact,
                                          (r->>'report')::json, key, now_)
                THEN 'queued' ELSE 'duplicate' END;
            CONTINUE;
        END IF;
        INSERT INTO pending_statuses (provider, provider_message_id, idempotency_key, report,
                                      dedupe_key, received_at)
        VALUES (r->>'provider', r->>'provider_message_id', r->>'idempotency_key',
                (r->>'report')::json, key, now_)
        ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING;
        outcomes := outcomes || CASE WHEN FOUND THEN 'pending' ELSE 'duplicate' END;
    END LOOP;
    RETURN array_to_json(outcomes);
END
$$;

-- ---------------------------------------------------------------- contacts

CREATE FUNCTION disparo_upsert_contact(u jsonb) RETURNS json LANGUAGE plpgsql AS $$
DECLARE
    now_ timestamptz := (u->>'now')::timestamptz;
    c jsonb := u->'contact';
    replacing boolean := coalesce((c->>'replace_context')::boolean, false);
    given json := (c->>'context')::json;
    row_ contacts;
BEGIN
    LOOP
        UPDATE contacts SET
            phone = coalesce(c->>'phone', phone),
            email = coalesce(c->>'email', email),
            name = coalesce(c->>'name', name),
            tags = coalesce((c->>'tags')::json, tags),
            context = CASE
                WHEN replacing THEN coalesce(given, '{}'::json)
                WHEN given IS NULL THEN context
                ELSE disparo_merge_json(context, given) END,
            timezone = coalesce(c->>'timezone', timezone),
            updated_at = now_
        WHERE id = c->>'id'
        RETURNING * INTO row_;
        IF FOUND THEN
            RETURN row_to_json(row_);
        END IF;
        INSERT INTO contacts (id, phone, email, name, tags, context, timezone, created_at,
                              updated_at)
        VALUES (c->>'id', c->>'phone', c->>'email', c->>'name',
                coalesce((c->>'tags')::json, '[]'::json),
                CASE WHEN replacing THEN coalesce(given, '{}'::json)
                     ELSE disparo_merge_json('{}'::json, coalesce(given, '{}'::json)) END,
                c->>'timezone', now_, now_)
        ON CONFLICT (id) DO NOTHING
        RETURNING * INTO row_;
        IF FOUND THEN
            RETURN row_to_json(row_);
        END IF;
        -- Another transaction created it between the two statements: update it.
    END LOOP;
END
$$;

CREATE FUNCTION disparo_ingest_events(u jsonb) RETURNS json LANGUAGE plpgsql AS $$
DECLARE
    now_ timestamptz := (u->>'now')::timestamptz;
    e jsonb;
    cid text;
    at_ timestamptz;
    outcomes text[] := '{}';
BEGIN
    FOR e IN SELECT value FROM jsonb_array_elements(u->'events') LOOP
        cid := e->>'contact_id';
        at_ := (e->>'at')::timestamptz;
        PERFORM 1 FROM contacts WHERE id = cid;
        IF NOT FOUND THEN
            outcomes := outcomes || 'unknown_contact'::text;
            CONTINUE;
        END IF;
        INSERT INTO events (contact_id, kind, at, data, dedupe_key)
        VALUES (cid, 'inbound.' || (e->>'type'), at_, (e->>'data')::json, e->>'dedupe_key')
        ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING;
        IF NOT FOUND THEN
            outcomes := outcomes || 'duplicate'::text;
            CONTINUE;
        END IF;
        -- Timestamps never move back: an older event arriving late undoes nothing newer.
        CASE e->>'type'
            WHEN 'reply', 'button', 'choice' THEN
                UPDATE contacts SET last_inbound_at = greatest(last_inbound_at, at_),
                    last_interaction_at = greatest(last_interaction_at, at_), updated_at = now_
                WHERE id = cid;
            WHEN 'interaction' THEN
                UPDATE contacts SET last_interaction_at = greatest(last_interaction_at, at_),
                    updated_at = now_
                WHERE id = cid;
            WHEN 'attendance_started' THEN
                UPDATE contacts SET attendant = e->>'attendant', attendance_since = at_,
                    attendance_until = (e->>'until')::timestamptz, attendance_changed_at = at_,
                    updated_at = now_
                WHERE id = cid AND (attendance_changed_at IS NULL OR attendance_changed_at <= at_);
            WHEN 'attendance_ended' THEN
                UPDATE contacts SET attendant = NULL, attendance_since = NULL,
                    attendance_until = NULL, attendance_changed_at = at_, updated_at = now_
                WHERE id = cid AND (attendance_changed_at IS NULL OR attendance_changed_at <= at_);
            WHEN 'opt_out' THEN
                UPDATE contacts SET opted_out_at = coalesce(opted_out_at, at_),
                    opt_changed_at = at_, updated_at = now_
                WHERE id = cid AND (opt_changed_at IS NULL OR opt_changed_at <= at_);
            WHEN 'opt_in' THEN
                UPDATE contacts SET opted_out_at = NULL, opt_changed_at = at_, updated_at = now_
                WHERE id = cid AND (opt_changed_at IS NULL OR opt_changed_at <= at_);
        END CASE;
        INSERT INTO due_work (kind, due_at, run_id, payload, created_at)
        SELECT 'inbound', now_, id, (e->>'payload')::json, now_ FROM runs
        WHERE contact_id = cid AND status IN ('active', 'waiting')
        ORDER BY created_at, id;
        outcomes := outcomes || 'queued'::text;
    END LOOP;
    RETURN array_to_json(outcomes);
END
$$;

-- ---------------------------------------------------------------- the Commit

CREATE FUNCTION disparo_insert_run(nr jsonb, now_ timestamptz) RETURNS runs
LANGUAGE plpgsql AS $$
DECLARE
    other text;
    row_ runs;
BEGIN
    -- disparo_commit holds the (contact, flow) lock: the check sees every committed run.
    IF (nr->>'exclusive')::boolean THEN
        SELECT id INTO other FROM runs
        WHERE contact_id = nr->>'contact_id' AND flow = nr->>'flow'
          AND status IN ('active', 'waiting')
        LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'DSCON', MESSAGE = format(
                'contact %s already has an open run (%s) of flow %L',
                nr->>'contact_id', other, nr->>'flow');
        END IF;
    END IF;
    INSERT INTO runs (id, flow, flow_version, contact_id, step, status, vars, idempotency_key,
                      version, step_seq, exclusive, created_at, updated_at)
    VALUES (nr->>'id', nr->>'flow', nr->>'flow_version', nr->>'contact_id', nr->>'step',
            nr->>'status', (nr->>'vars')::json, nr->>'idempotency_key', 1,
            (nr->>'step_seq')::integer, (nr->>'exclusive')::boolean, now_, now_)
    RETURNING * INTO row_;
    RETURN row_;
END
$$;

-- Apply one change to a message; return the status it moved to (NULL when it stayed).
CREATE FUNCTION disparo_change_message(c jsonb, now_ timestamptz) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    m messages;
    new_status text := c->>'status';
    moved text;
    given_id text := c->>'provider_message_id';
BEGIN
    SELECT * INTO m FROM messages WHERE id = c->>'message_id' FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'DSNOT',
            MESSAGE = format('message %s does not exist', c->>'message_id');
    END IF;
    IF c->>'expected_status' IS NOT NULL AND m.status <> c->>'expected_status' THEN
        RAISE EXCEPTION USING ERRCODE = 'DSRUN', MESSAGE = format(
            'message %s is %s, not %s; re-read it and retry',
            m.id, m.status, c->>'expected_status');
    END IF;
    IF new_status IS NOT NULL THEN
        IF (c->>'force')::boolean THEN
            moved := CASE WHEN new_status <> m.status THEN new_status END;
        ELSIF disparo_status_can_advance(m.status, new_status) THEN
            moved := new_status;
        END IF;
    END IF;
    UPDATE messages SET
        updated_at = now_,
        status = coalesce(moved, status),
        status_at = CASE WHEN moved IS NULL THEN status_at
                         ELSE disparo_merge_json(status_at, json_build_object(moved, c->>'at')) END,
        left_at = CASE WHEN moved IN ('sent', 'delivered', 'read') AND left_at IS NULL
                       THEN (c->>'at')::timestamptz ELSE left_at END,
        payload = CASE WHEN c ? 'payload' THEN (c->>'payload')::json ELSE payload END,
        provider_message_id = coalesce(given_id, provider_message_id),
        attempts = coalesce((c->>'attempts')::integer, attempts),
        next_attempt_at = CASE WHEN c ? 'next_attempt_at'
                               THEN (c->>'next_attempt_at')::timestamptz ELSE next_attempt_at END,
        last_error = CASE WHEN c ? 'last_error' THEN c->>'last_error' ELSE last_error END
    WHERE id = m.id;
    IF given_id IS NOT NULL AND given_id IS DISTINCT FROM m.provider_message_id THEN
        m.provider_message_id := given_id;
        PERFORM disparo_release_pending(m, now_);
    END IF;
    RETURN moved;
END
$$;

CREATE FUNCTION disparo_commit(u jsonb) RETURNS json LANGUAGE plpgsql AS $$
DECLARE
    now_ timestamptz := (u->>'now')::timestamptz;
    nr jsonb := u->'new_run';
    rc jsonb := u->'run';
    cc jsonb := u->'contact';
    done jsonb := u->'done';
    own bigint := (u->'done'->>'id')::bigint;
    run_row runs;
    has_run boolean := false;
    created boolean := false;
    applied jsonb := '{}';
    item jsonb;
    moved text;
    stored_fence bigint;
BEGIN
    IF nr IS NOT NULL THEN
        -- Serialises run creations for one (contact, flow) across nodes: the key check
        -- below then sees a run a concurrent creation just committed (same key: it is
        -- returned), and so does the exclusivity check of disparo_insert_run.
        PERFORM pg_advisory_xact_lock(
            hashtextextended('disparo.run/' || (nr->>'contact_id') || '/' || (nr->>'flow'), 0));
        SELECT * INTO run_row FROM runs WHERE idempotency_key = nr->>'idempotency_key';
        IF FOUND THEN
            RETURN json_build_object('run', row_to_json(run_row), 'created', false);
        END IF;
    END IF;
    IF done IS NOT NULL THEN
        -- Locked: no claim can take the row between this check and its completion.
        SELECT fence INTO stored_fence FROM due_work WHERE id = own FOR UPDATE;
        IF NOT FOUND OR stored_fence <> (done->>'fence')::bigint THEN
            RAISE EXCEPTION USING ERRCODE = 'DSFEN', MESSAGE = format(
                'due work %s %s since it was claimed with fence %s; this result is dropped',
                own, CASE WHEN stored_fence IS NULL THEN 'is gone'
                          ELSE format('was claimed again (fence %s)', stored_fence) END,
                done->>'fence');
        END IF;
    END IF;
    IF nr IS NOT NULL THEN
        run_row := disparo_insert_run(nr, now_);
        has_run := true;
        created := true;
    END IF;
    IF rc IS NOT NULL THEN
        UPDATE runs SET step = rc->>'step', status = rc->>'status',
            step_seq = (rc->>'step_seq')::integer, vars = (rc->>'vars')::json,
            version = version + 1, updated_at = now_
        WHERE id = rc->>'run_id' AND version = (rc->>'expected_version')::integer
        RETURNING * INTO run_row;
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'DSRUN', MESSAGE = format(
                'run %s is no longer at version %s; re-read it and retry',
                rc->>'run_id', rc->>'expected_version');
        END IF;
        has_run := true;
    END IF;
    IF cc IS NOT NULL THEN
        UPDATE contacts SET
            updated_at = now_,
            context = CASE WHEN cc ? 'context_patch'
                           THEN disparo_merge_json(context, (cc->>'context_patch')::json)
                           ELSE context END,
            last_outbound_at = greatest(last_outbound_at, (cc->>'last_outbound_at')::timestamptz),
            attendant = CASE WHEN cc ? 'attendance' THEN cc->'attendance'->>'attendant'
                             ELSE attendant END,
            attendance_since = CASE WHEN cc ? 'attendance'
                                    THEN (cc->'attendance'->>'since')::timestamptz
                                    ELSE attendance_since END,
            attendance_until = CASE WHEN cc ? 'attendance'
                                    THEN (cc->'attendance'->>'until')::timestamptz
                                    ELSE attendance_until END,
            attendance_changed_at = CASE WHEN cc ? 'attendance'
                                         THEN (cc->'attendance'->>'since')::timestamptz
                                         ELSE attendance_changed_at END
        WHERE id = cc->>'contact_id';
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'DSNOT',
                MESSAGE = format('contact %s does not exist', cc->>'contact_id');
        END IF;
    END IF;
    INSERT INTO messages (id, run_id, contact_id, flow, step, step_seq, provider, channel,
                          idempotency_key, status, payload, status_at, created_at, updated_at)
    SELECT m->>'id', m->>'run_id', m->>'contact_id', m->>'flow', m->>'step',
           (m->>'step_seq')::integer, m->>'provider', m->>'channel', m->>'idempotency_key',
           'queued', (m->>'payload')::json, json_build_object('queued', u->>'now'), now_, now_
    FROM jsonb_array_elements(coalesce(u->'new_messages', '[]')) WITH ORDINALITY AS x (m, pos)
    ORDER BY pos;
    FOR item IN SELECT value FROM jsonb_array_elements(coalesce(u->'messages', '[]')) LOOP
        moved := disparo_change_message(item, now_);
        IF moved IS NOT NULL THEN
            applied := applied || jsonb_build_object(item->>'message_id', moved);
        END IF;
    END LOOP;
    -- "Unclaimed": no lease, or one that expired before now; `done` decides its own row.
    IF u ? 'cancel_all_due_of_run' THEN
        DELETE FROM due_work WHERE run_id = u->>'cancel_all_due_of_run' AND id IS DISTINCT FROM own
          AND (lease_until IS NULL OR lease_until < now_);
    END IF;
    IF u ? 'cancel_timers_of_run' THEN
        DELETE FROM due_work WHERE run_id = u->>'cancel_timers_of_run' AND id IS DISTINCT FROM own
          AND (lease_until IS NULL OR lease_until < now_) AND kind = 'timer';
    END IF;
    IF done IS NOT NULL THEN
        IF done->>'retry_at' IS NULL THEN
            DELETE FROM due_work WHERE id = own AND fence = (done->>'fence')::bigint;
        ELSE
            UPDATE due_work SET due_at = (done->>'retry_at')::timestamptz, lease_owner = NULL,
                lease_until = NULL, attempts = attempts + 1,
                payload = coalesce((done->>'payload')::json, payload)
            WHERE id = own AND fence = (done->>'fence')::bigint;
        END IF;
    END IF;
    INSERT INTO due_work (kind, due_at, run_id, message_id, payload, created_at)
    SELECT d->>'kind', (d->>'due_at')::timestamptz, d->>'run_id', d->>'message_id',
           (d->>'payload')::json, now_
    FROM jsonb_array_elements(coalesce(u->'new_due', '[]')) WITH ORDINALITY AS x (d, pos)
    ORDER BY pos;
    INSERT INTO events (contact_id, run_id, message_id, kind, at, data, dedupe_key)
    SELECT e->>'contact_id', e->>'run_id', e->>'message_id', e->>'kind',
           (e->>'at')::timestamptz, (e->>'data')::json, e->>'dedupe_key'
    FROM jsonb_array_elements(coalesce(u->'events', '[]')) WITH ORDINALITY AS x (e, pos)
    ORDER BY pos
    ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING;
    RETURN json_build_object('run', CASE WHEN has_run THEN row_to_json(run_row) END,
                             'created', created, 'applied', applied);
END
$$;

-- ---------------------------------------------------------------- the batch

-- Apply a batch of write units in order, each in its own subtransaction: a unit that
-- fails is undone alone and answers {"error": SQLSTATE, "message", "constraint"}.
CREATE FUNCTION disparo_apply(units jsonb) RETURNS json LANGUAGE plpgsql AS $$
DECLARE
    unit jsonb;
    result json;
    results json[] := '{}';
    state text;
    problem text;
    violated text;
BEGIN
    FOR unit IN SELECT value FROM jsonb_array_elements(units) LOOP
        BEGIN
            CASE unit->>'op'
                WHEN 'commit' THEN result := disparo_commit(unit);
                WHEN 'upsert_contact' THEN result := disparo_upsert_contact(unit);
                WHEN 'ingest_statuses' THEN result := disparo_ingest_statuses(unit);
                WHEN 'ingest_events' THEN result := disparo_ingest_events(unit);
            END CASE;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, problem = MESSAGE_TEXT,
                violated = CONSTRAINT_NAME;
            result := NULL;
            IF state = '23505' AND violated = 'runs_idempotency_key' THEN
                -- A concurrent creation with the same key won: answer with its run.
                SELECT json_build_object('run', row_to_json(r), 'created', false) INTO result
                FROM runs AS r WHERE r.idempotency_key = unit->'new_run'->>'idempotency_key';
            END IF;
            IF result IS NULL THEN
                result := json_build_object('error', state, 'message', problem,
                                            'constraint', nullif(violated, ''));
            END IF;
        END;
        results := results || result;
    END LOOP;
    RETURN array_to_json(results);
END
$$;
