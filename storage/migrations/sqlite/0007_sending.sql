-- disparo SQLite schema, version 7: the sends on their way, counted by the rules
-- (storage/sqlite_outbound.py; the same index as migrations/postgres/0007_sending.sql).
--
-- * messages_sending: messages between their `sending` commit and their outcome,
--   by contact. max_per_day and recent_contact count them as sent, so two sends of
--   one contact decided together (by this engine or another) see each other. A
--   message is in it only while it is on its way, so it stays small.

CREATE INDEX messages_sending ON messages (contact_id) WHERE status = 'sending';
