-- hookgate PostgreSQL store, migration 6: the queue for a destination's places.
--
-- A node whose lease found every place of the destination's cluster-wide
-- max_in_flight taken queues here (for a few of its looks, renewed while it
-- keeps looking); the other nodes' leases leave one free place for each node
-- queued, the longest-queued first. Without it, the node whose attempts end
-- leases the freed places again before any other node looks.
CREATE TABLE lease_waiters (
    destination text NOT NULL,
    node        text NOT NULL,
    since       bigint NOT NULL,  -- database ms when it queued
    until       bigint NOT NULL,  -- database ms when it leaves the queue unless renewed
    PRIMARY KEY (destination, node)
);
