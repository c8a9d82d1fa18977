-- Flowbot store schema, version 3: membership (docs/cluster.md). Nodes that share a database
-- record a heartbeat; a node counts as live while its heartbeat is younger than the shard lease,
-- and each live node aims at an equal share of the shards.
ALTER TABLE flowbot_nodes ADD COLUMN heartbeat_at timestamptz;
