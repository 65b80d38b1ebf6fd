-- disparo PostgreSQL schema, version 9: only a message the contact wrote on WhatsApp
-- opens the 24 h window (storage/sqlite_ingest.py facts_of). Each event of an
-- ingest unit names the facts it moves in `facts`: a reply, button or choice that
-- came in on sms or email moves `last_interaction_at` only, as an `interaction`
-- does. The event is still logged and delivered to the runs as what it is. A unit
-- without `facts` (written before this version) moves the facts of its `type`.

CREATE OR REPLACE FUNCTION disparo_ingest_events(u jsonb) RETURNS json LANGUAGE plpgsql AS $$
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
        CASE coalesce(e->>'facts', e->>'type')
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
