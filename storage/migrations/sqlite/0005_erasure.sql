-- disparo SQLite schema, version 5: what contact erasure (Store.erase_contact) reads.
--
-- * runs_contact: every run of a contact, open or finished. runs_open holds the open
--   ones only; without this index erasing one contact scans every run kept.
--   The contact's messages, events and due work are then found through the
--   indexes on their run (messages_run, events_run, due_work_run, due_work_message)
--   and events_contact.

CREATE INDEX runs_contact ON runs (contact_id);
