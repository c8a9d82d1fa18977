-- Flowbot store schema, version 3: what several nodes on one database need (docs/cluster.md).
-- Nodes that share a database record a heartbeat; a node counts as live while its heartbeat is
-- younger than the shard lease, and each live node aims at an equal share of the shards.
-- A node's `url` is where the others forward requests about the instances of its shards.
ALTER TABLE flowbot_nodes ADD COLUMN heartbeat_at timestamptz, ADD COLUMN url text;
-- Counters given out inside write transactions. `notifications`: the last number of the
-- notification log; a transaction that appends entries moves it by their count, and the row lock
-- it takes until commit makes numbers follow commit order across nodes.
CREATE TABLE flowbot_counters (
    name text PRIMARY KEY,
    value bigint NOT NULL
);
INSERT INTO flowbot_counters (name, value)
    SELECT 'notifications', coalesce(max(seq), 0) FROM flowbot_notifications;
-- Messages and signals for waits in shards another node owns, kept until the owner delivers
-- them (keyed by the shard, the instance and the wait).
CREATE TABLE flowbot_inbox (key bytea PRIMARY KEY, value bytea NOT NULL);
