-- disparo PostgreSQL schema, version 7: the sends on their way, counted by the rules
-- across every engine sharing the database (the same index as
-- migrations/sqlite/0007_sending.sql; storage/postgres_outbound.py).
--
-- * messages_sending: messages between their `sending` commit and their outcome,
--   by contact. max_per_day and recent_contact count them as sent, so two sends of
--   one contact decided together, by any engines, see each other. A message is in
--   it only while it is on its way, so it stays small.
-- * disparo_check_outbound: the OutboundGuard of a `sending` commit. It takes a
--   transaction lock of the contact, held until the batch commits, then counts
--   again; two engines' sending commits of one contact are serialised by it, so the
--   second one sees the first one's send. It raises DSOUT (nothing of the unit is
--   written) when the counts no longer allow the send.
-- * disparo_apply: checks a commit unit's guard before applying it.

CREATE INDEX messages_sending ON messages (contact_id) WHERE status = 'sending';

CREATE FUNCTION disparo_check_outbound(g jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    contact text := g->>'contact_id';
    counted bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('disparo.outbound/' || contact, 0));
    IF g ? 'max_per_day' THEN
        SELECT (SELECT count(*) FROM messages WHERE contact_id = contact
                  AND left_at >= (g->>'day_start')::timestamptz
                  AND status IN ('sent', 'delivered', 'read'))
             + (SELECT count(*) FROM messages WHERE contact_id = contact
                  AND status = 'sending' AND id <> g->>'message_id')
        INTO counted;
        IF counted >= (g->>'max_per_day')::bigint THEN
            RAISE EXCEPTION USING ERRCODE = 'DSOUT', MESSAGE = format(
                '%s message(s) to contact %s left or are leaving today: max_per_day %s is reached',
                counted, contact, g->>'max_per_day');
        END IF;
    END IF;
    IF g ? 'recent_since' THEN
        PERFORM 1 FROM messages WHERE contact_id = contact AND run_id <> g->>'run_id'
            AND ((status IN ('sent', 'delivered', 'read')
                  AND left_at > (g->>'recent_since')::timestamptz)
                 OR (status = 'sending' AND updated_at > (g->>'recent_since')::timestamptz))
        LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'DSOUT', MESSAGE = format(
                'another run''s message to contact %s left or is leaving since %s: recent_contact',
                contact, g->>'recent_since');
        END IF;
    END IF;
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
                WHEN 'commit' THEN
                    IF unit ? 'guard' THEN
                        PERFORM disparo_check_outbound(unit->'guard');
                    END IF;
                    result := disparo_commit(unit);
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
