-- disparo PostgreSQL schema, version 4: what the retention purge (Store.purge) reads
-- (the same indexes as migrations/sqlite/0004_retention.sql).
--
-- * runs_finished: finished runs in the order they finished, so each purge batch
--   reads its oldest runs from an index however many runs are open or kept.
-- * events_contact_only: events of no run (inbound replies, opt-outs, attendance)
--   by time; events of a run go with their run (events_run).
-- * pending_statuses_received: reports kept for a provider id never recorded, by age.
-- * due_work_message: the rows that name a message (DISPATCH and STATUS). Deleting a
--   message checks the foreign key of due_work.message_id; without an index that
--   check is a scan of the whole queue per message.

CREATE INDEX runs_finished ON runs (updated_at, id)
    WHERE status IN ('completed', 'failed', 'cancelled');
CREATE INDEX events_contact_only ON events (at, id) WHERE run_id IS NULL;
CREATE INDEX pending_statuses_received ON pending_statuses (received_at, id);
CREATE INDEX due_work_message ON due_work (message_id) WHERE message_id IS NOT NULL;
