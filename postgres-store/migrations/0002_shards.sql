-- Flowbot store schema, version 2: shards (docs/cluster.md). Instances are grouped into 64
-- shards by a hash of their id's root (the part before the first `.`, so a call activity's
-- children share their caller's shard). A node owns shards; taking one increments its `epoch`,
-- and every write transaction of a node checks, under a share lock on the shard rows, that the
-- epochs of the shards it writes to are still the ones it took, so a node whose shards were taken
-- over cannot write to them any more.
CREATE TABLE flowbot_shards (
    shard integer PRIMARY KEY,
    owner text,
    epoch bigint NOT NULL DEFAULT 0,
    lease_until timestamptz
);
INSERT INTO flowbot_shards (shard) SELECT generate_series(0, 63);
