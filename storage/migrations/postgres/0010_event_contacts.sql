-- disparo PostgreSQL schema, version 10: every event of a run names the run's contact.
-- Releases before this one wrote a fired timer's event (a timeout, the end of a wait)
-- without its contact, and `disparo why`, the decisions API and the export select a
-- contact's events by contact: the timers that moved runs of before the upgrade were
-- missing from them. Each such event takes its run's contact.
UPDATE events SET contact_id = runs.contact_id
FROM runs
WHERE events.run_id = runs.id AND events.contact_id IS NULL;
