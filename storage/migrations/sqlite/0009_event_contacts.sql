-- disparo SQLite schema, version 9: every event of a run names the run's contact.
-- Releases before this one wrote a fired timer's event (a timeout, the end of a wait)
-- without its contact, and `disparo why`, the decisions API and the export select a
-- contact's events by contact: the timers that moved runs of before the upgrade were
-- missing from them. Each such event takes its run's contact.
UPDATE events SET contact_id = (SELECT runs.contact_id FROM runs WHERE runs.id = events.run_id)
WHERE contact_id IS NULL AND run_id IS NOT NULL
  AND EXISTS (SELECT 1 FROM runs WHERE runs.id = events.run_id);
