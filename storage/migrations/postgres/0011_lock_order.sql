-- disparo PostgreSQL schema, version 11: concurrent writers take their locks in one
-- order, so two processes' batches never wait for each other in a cycle.
--
-- A batch of disparo_apply holds every row its units wrote until it commits, and its
-- units came in whatever order their callers did: process A's batch could update
-- contact X then Y while process B's updated Y then X (or a run, then its contact,
-- while B's erasure or bulk start held the contact and wanted the run), and
-- PostgreSQL aborted one of them after deadlock_timeout, a second of every write
-- of both batches lost.
--
-- The protocol: whatever a writer locks of a contact (its row, its runs, their
-- messages and due work, the run-creation and outbound advisory locks of the
-- contact) it locks while holding the contact's advisory key, 'disparo.contact/<id>'.
-- A writer takes all its keys up front, in ascending key order, before writing
-- anything. A writer then waits only for keys (a row it wants is held by a writer
-- holding the same key: impossible), in one order: no cycle.
-- * disparo_unit_keys: the keys of one unit: the contacts it writes (read from the
--   runs and messages it names: their contact never changes), the due-work row it
--   completes, and the status keys of the reports it ingests or the provider ids it
--   records (disparo_lock_status_keys takes them again inside: already held).
-- * disparo_apply: takes the keys of the whole batch in ascending order, each in a
--   subtransaction of its own: a key that cannot be had (lock_timeout) fails the
--   units that need it, alone, as a unit's own lock timeout did (a subtransaction
--   that only takes a lock gets no transaction id: these do not fill PostgreSQL's
--   per-backend subtransaction cache); the others go on,
--   applied by disparo_apply_units (disparo_apply of migration 0007, renamed: a
--   later migration changing how units apply replaces disparo_apply_units).
-- Store.erase_contact and Store.start_runs take the contact keys too
-- (storage/postgres_contact_data.py, storage/postgres_starts.py).

CREATE FUNCTION disparo_contact_key(contact text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT hashtextextended('disparo.contact/' || contact, 0)
$$;

CREATE FUNCTION disparo_unit_keys(u jsonb) RETURNS SETOF bigint LANGUAGE sql STABLE AS $$
    WITH changed AS (
        SELECT x->>'message_id' AS id, x->>'provider_message_id' AS given
        FROM jsonb_array_elements(CASE WHEN u->>'op' = 'commit'
                                       THEN coalesce(u->'messages', '[]') ELSE '[]' END) AS x
    ), reports AS (
        SELECT r->>'provider' AS provider, r->>'provider_message_id' AS pmid,
               r->>'idempotency_key' AS idem
        FROM jsonb_array_elements(CASE WHEN u->>'op' = 'ingest_statuses'
                                       THEN coalesce(u->'reports', '[]') ELSE '[]' END) AS r
    ), contacts (id) AS (
        SELECT u->'contact'->>'contact_id' WHERE u->>'op' = 'commit'
        UNION ALL SELECT u->'contact'->>'id' WHERE u->>'op' = 'upsert_contact'
        UNION ALL SELECT u->'guard'->>'contact_id'
        UNION ALL SELECT u->'new_run'->>'contact_id'
        UNION ALL SELECT r.contact_id FROM runs AS r
            WHERE r.id IN (u->'run'->>'run_id', u->>'cancel_all_due_of_run',
                           u->>'cancel_timers_of_run')
        UNION ALL SELECT x->>'contact_id'
            FROM jsonb_array_elements(coalesce(u->'new_messages', '[]')) AS x
        UNION ALL SELECT m.contact_id FROM messages AS m WHERE m.id IN (SELECT id FROM changed)
        UNION ALL SELECT e->>'contact_id'
            FROM jsonb_array_elements(CASE WHEN u->>'op' = 'ingest_events'
                                           THEN coalesce(u->'events', '[]') ELSE '[]' END) AS e
        UNION ALL SELECT m.contact_id FROM reports AS r JOIN messages AS m
            ON m.provider = r.provider AND m.provider_message_id = r.pmid
        UNION ALL SELECT m.contact_id FROM reports AS r JOIN messages AS m
            ON m.idempotency_key = r.idem
    )
    SELECT disparo_contact_key(id) FROM contacts WHERE id IS NOT NULL
    UNION
    SELECT hashtextextended('disparo.due/' || (u->'done'->>'id'), 0)
    WHERE u->'done'->>'id' IS NOT NULL
    -- The keys of disparo_lock_status_keys, same text.
    UNION
    SELECT hashtextextended('disparo.status/' || provider || '/' || pmid, 0) FROM reports
    WHERE provider IS NOT NULL AND pmid IS NOT NULL
    UNION
    SELECT hashtextextended('disparo.status-key/' || idem, 0) FROM reports
    WHERE idem IS NOT NULL
    UNION
    SELECT hashtextextended('disparo.status/' || m.provider || '/' || c.given, 0)
    FROM changed AS c JOIN messages AS m ON m.id = c.id
    WHERE c.given IS NOT NULL
    UNION
    SELECT hashtextextended('disparo.status-key/' || m.idempotency_key, 0)
    FROM changed AS c JOIN messages AS m ON m.id = c.id
    WHERE c.given IS NOT NULL
$$;

-- The units' own work is what disparo_apply did until now (migration 0007), kept
-- under another name.
ALTER FUNCTION disparo_apply(jsonb) RENAME TO disparo_apply_units;

CREATE FUNCTION disparo_apply(units jsonb) RETURNS json LANGUAGE plpgsql AS $$
DECLARE
    k bigint;
    needing bigint[];
    pos bigint;
    state text;
    problem text;
    failed jsonb := '{}';  -- unit position -> the error of a key it could not have
    applied json;  -- json, not jsonb: the runs and contacts in it keep their key order
    results json[] := '{}';
    next_ int := 0;
BEGIN
    -- Every key of the batch, ascending, before any unit writes.
    FOR k, needing IN
        SELECT key, array_agg(x.pos)
        FROM jsonb_array_elements(units) WITH ORDINALITY AS x (value, pos),
             disparo_unit_keys(x.value) AS key
        GROUP BY key ORDER BY key
    LOOP
        BEGIN
            PERFORM pg_advisory_xact_lock(k);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, problem = MESSAGE_TEXT;
            FOREACH pos IN ARRAY needing LOOP
                failed := failed || jsonb_build_object(pos::text, jsonb_build_object(
                    'error', state, 'message', problem, 'constraint', NULL));
            END LOOP;
        END;
    END LOOP;
    IF failed = '{}' THEN
        RETURN disparo_apply_units(units);
    END IF;
    -- The units that have their keys run; the others answer the error of theirs.
    applied := disparo_apply_units(coalesce(
        (SELECT jsonb_agg(value ORDER BY ordinality)
         FROM jsonb_array_elements(units) WITH ORDINALITY
         WHERE NOT failed ? ordinality::text), '[]'));
    FOR pos IN SELECT generate_series(1, jsonb_array_length(units)) LOOP
        IF failed ? pos::text THEN
            results := results || (failed->(pos::text))::json;
        ELSE
            results := results || (applied->next_);
            next_ := next_ + 1;
        END IF;
    END LOOP;
    RETURN array_to_json(results);
END
$$;
