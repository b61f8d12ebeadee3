-- hookgate PostgreSQL store, migration 2: replayed dead deliveries.
--
-- A dead delivery whose message is replayed to its destination becomes
-- status 4 (replayed) and names the delivery made in its place, so it leaves
-- the dead-letter queue (`status = 3`: listing, counts, bulk replay).
ALTER TABLE deliveries_done ADD COLUMN replayed_by bigint;

-- Before this migration a replay left the dead delivery dead. A dead delivery
-- with a later delivery of its message to the same destination was replayed.
UPDATE deliveries_done d SET status = 4, replayed_by = (
    SELECT min(n.id) FROM (
        SELECT id FROM deliveries WHERE message_seq = d.message_seq AND destination = d.destination
        UNION ALL
        SELECT id FROM deliveries_done WHERE message_seq = d.message_seq AND destination = d.destination
    ) n WHERE n.id > d.id)
WHERE d.status = 3 AND (
    EXISTS (SELECT 1 FROM deliveries n WHERE n.message_seq = d.message_seq
            AND n.destination = d.destination AND n.id > d.id)
    OR EXISTS (SELECT 1 FROM deliveries_done n WHERE n.message_seq = d.message_seq
               AND n.destination = d.destination AND n.id > d.id));
