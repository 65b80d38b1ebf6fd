-- disparo PostgreSQL schema, version 2: cron, fan-out and sweep triggers
-- (the same model as migrations/sqlite/0002_triggers.sql).
--
-- * due_work gains the kinds 'cron' (one row per cron trigger, due at its next fire
--   time), 'fanout' (one row per firing, walking the contacts in chunks with a cursor in
--   its payload) and 'sweep' (one row per `after` trigger, due at its next sweep), and a
--   `key`: trigger rows are unique by key, so engines starting at the same time schedule
--   each trigger once.
-- * trigger_firings: one row per (flow, trigger, fire time) that fired, ever; the commit
--   that starts a firing's fan-out inserts it (Commit.firing), so a fire time fires once
--   across processes and restarts.
-- * Indexes for the contact pages: ids in byte order (COLLATE "C", as SQLite orders
--   them), and (timestamp, id) for the sweeps on last_interaction_at and last_outbound_at.
-- * disparo_commit records the firing; disparo_apply learns the schedule_triggers unit.

ALTER TABLE due_work DROP CONSTRAINT due_work_kind_check;
ALTER TABLE due_work ADD CONSTRAINT due_work_kind_check
    CHECK (kind IN ('start', 'dispatch', 'timer', 'status', 'inbound', 'callback',
                    'cron', 'fanout', 'sweep'));
ALTER TABLE due_work ADD COLUMN key text;
CREATE UNIQUE INDEX due_work_key ON due_work (key) WHERE key IS NOT NULL;

CREATE TABLE trigger_firings (
    flow          text NOT NULL,
    trigger_index integer NOT NULL,
    fire_time     timestamptz NOT NULL,
    fired_at      timestamptz NOT NULL,
    PRIMARY KEY (flow, trigger_index, fire_time)
);

CREATE INDEX contacts_id_bytes ON contacts (id COLLATE "C");
CREATE INDEX contacts_last_interaction ON contacts (last_interaction_at, id COLLATE "C")
    WHERE last_interaction_at IS NOT NULL;
CREATE INDEX contacts_last_outbound ON contacts (last_outbound_at, id COLLATE "C")
    WHERE last_outbound_at IS NOT NULL;

-- Record one fire time of one cron trigger; DSCON (Conflict) when it fired before.
CREATE FUNCTION disparo_record_firing(f jsonb, now_ timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO trigger_firings (flow, trigger_index, fire_time, fired_at)
    VALUES (f->>'flow', (f->>'trigger')::integer, (f->>'fire_time')::timestamptz, now_)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'DSCON', MESSAGE = format(
            'trigger %s of flow %L already fired for %s',
            (f->>'trigger')::integer + 1, f->>'flow', f->>'fire_time');
    END IF;
END
$$;

-- Make the keyed due-work rows exactly the wanted ones (an array of rows with a `key`,
-- in order); return the keys inserted. A stored key keeps its row untouched; keyed rows
-- not wanted are deleted, leased or not; rows without a key are never touched.
CREATE FUNCTION disparo_schedule_triggers(u jsonb) RETURNS json LANGUAGE plpgsql AS $$
DECLARE
    now_ timestamptz := (u->>'now')::timestamptz;
    w jsonb;
    added text[] := '{}';
BEGIN
    DELETE FROM due_work
    WHERE key IS NOT NULL
      AND key <> ALL (ARRAY(SELECT x->>'key' FROM jsonb_array_elements(u->'wanted') AS x));
    FOR w IN SELECT value FROM jsonb_array_elements(u->'wanted') LOOP
        INSERT INTO due_work (kind, due_at, run_id, message_id, payload, created_at, key)
        VALUES (w->>'kind', (w->>'due_at')::timestamptz, w->>'run_id', w->>'message_id',
                (w->>'payload')::json, now_, w->>'key')
        ON CONFLICT (key) WHERE key IS NOT NULL DO NOTHING;
        IF FOUND THEN
            added := added || (w->>'key');
        END IF;
    END LOOP;
    RETURN array_to_json(added);
END
$$;

CREATE OR REPLACE FUNCTION disparo_commit(u jsonb) RETURNS json LANGUAGE plpgsql AS $$
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
    IF u ? 'firing' THEN
        PERFORM disparo_record_firing(u->'firing', now_);
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

CREATE OR REPLACE FUNCTION disparo_apply(units jsonb) RETURNS json LANGUAGE plpgsql AS $$
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
                WHEN 'schedule_triggers' THEN result := disparo_schedule_triggers(unit);
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
