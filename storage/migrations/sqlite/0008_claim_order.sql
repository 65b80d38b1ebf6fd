-- disparo SQLite schema, version 8: work of runs under way is claimed before the
-- work that starts runs (storage/sqlite_due.py; the same indexes as
-- migrations/postgres/0008_claim_order.sql).
--
-- * due_work_claimable_under_way / due_work_claimable_starting: the claimable rows,
--   oldest first, of the work of runs under way (sends, timers, reports, inbound
--   events, callbacks, cron firings), and of the work that starts new runs (START
--   rows and the fan-out and sweep chunks that write them). A bulk start (a CSV, a
--   campaign's fan-out) leaves thousands of START rows due at once; a claim takes
--   the work of runs under way first, so the first messages of a campaign go out
--   while it is still starting and an API run's message does not wait behind it.

CREATE INDEX due_work_claimable_under_way ON due_work (due_at, id, lease_until)
    WHERE kind NOT IN ('start', 'fanout', 'sweep');
CREATE INDEX due_work_claimable_starting ON due_work (due_at, id, lease_until)
    WHERE kind IN ('start', 'fanout', 'sweep');
