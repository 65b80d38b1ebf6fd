-- disparo SQLite schema, version 6: the ambiguous messages an operator settles
-- (Store.list_ambiguous_messages, GET /v1/messages?status=ambiguous).
--
-- * messages_ambiguous: only messages that may or may not have reached a provider
--   without idempotency keys; they are rare, so the index stays tiny and a
--   message enters it only when its send went wrong.

CREATE INDEX messages_ambiguous ON messages (created_at, id) WHERE status = 'ambiguous';
