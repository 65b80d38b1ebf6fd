-- disparo PostgreSQL schema, version 4: a status report its run ignores is applied in
-- the webhook's own transaction (Store.ingest_status_reports' run_ignores).
--
-- The engine reads each report's message and run before the transaction, runs the
-- implied events through the run's state machine and, when the run ignores them all,
-- sends the report with an `apply` object: the message status and run version it
-- judged from, the error to record for a failure, and the run.event_ignored events.
-- Here the message row is locked and both are checked again; if either moved, the
-- report is queued as STATUS work, as every report was before.

CREATE FUNCTION disparo_apply_ignored_status(msg_id text, msg_run text, msg_contact text,
                                             r jsonb, dedupe text, now_ timestamptz)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    a jsonb := r->'apply';
    report json := (r->>'report')::json;
    stored text;
    change jsonb;
BEGIN
    SELECT status INTO stored FROM messages WHERE id = msg_id FOR NO KEY UPDATE;
    IF stored IS DISTINCT FROM a->>'expected_status'
       OR NOT EXISTS (SELECT 1 FROM runs
                      WHERE id = msg_run AND version = (a->>'run_version')::bigint) THEN
        RETURN NULL;  -- judged on a state that moved: the dispatcher decides
    END IF;
    INSERT INTO events (contact_id, run_id, message_id, kind, at, data, dedupe_key)
    VALUES (msg_contact, msg_run, msg_id, 'status.' || (report->>'status'),
            (report->>'at')::timestamptz, disparo_status_event_data(report), dedupe)
    ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING;
    IF NOT FOUND THEN
        RETURN 'duplicate';
    END IF;
    change := jsonb_build_object('message_id', msg_id, 'at', report->>'at',
                                 'status', report->>'status', 'expected_status', stored);
    IF a ? 'last_error' THEN
        change := change || jsonb_build_object('last_error', a->>'last_error');
    END IF;
    PERFORM disparo_change_message(change, now_);
    INSERT INTO events (contact_id, run_id, message_id, kind, at, data, dedupe_key)
    SELECT e->>'contact_id', e->>'run_id', e->>'message_id', e->>'kind',
           (e->>'at')::timestamptz, (e->>'data')::json, e->>'dedupe_key'
    FROM jsonb_array_elements(coalesce(a->'events', '[]')) WITH ORDINALITY AS x (e, pos)
    ORDER BY pos
    ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING;
    RETURN 'applied';
END
$$;

CREATE OR REPLACE FUNCTION disparo_ingest_statuses(u jsonb) RETURNS json LANGUAGE plpgsql AS $$
DECLARE
    now_ timestamptz := (u->>'now')::timestamptz;
    r jsonb;
    key text;
    found_id text;
    found_run text;
    found_contact text;
    applied text;
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
            IF r ? 'apply' THEN
                applied := disparo_apply_ignored_status(found_id, found_run, found_contact, r,
                                                        key, now_);
                IF applied IS NOT NULL THEN
                    outcomes := outcomes || applied;
                    CONTINUE;
                END IF;
            END IF;
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
