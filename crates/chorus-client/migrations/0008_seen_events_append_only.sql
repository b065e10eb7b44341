-- Folded event ids: the set lives in memory (the core's fold refuses a replayed id
-- before it emits one), so the store only keeps the list to restore it from. As a
-- table keyed by the random ids, every fold inserted each id at a random place in a
-- B-tree that grows with the log (a third of a catch-up's SQLite time at 100,000
-- events); as a plain rowid table, the ids of a batch are appended together.
CREATE TABLE seen_events_list (
    event_id BLOB NOT NULL
);
INSERT INTO seen_events_list (event_id) SELECT event_id FROM seen_events;
DROP TABLE seen_events;
ALTER TABLE seen_events_list RENAME TO seen_events;
