-- Flowbot store schema, version 1: one table per kind of record the engine's Store keeps.
-- Instance ids sort bytewise (COLLATE "C"), like the other stores; keys of the keyed tables are
-- bytea, which PostgreSQL compares bytewise.

-- Instances: the latest snapshot; `finished` once the instance has ended. `version` counts the
-- commits that changed the row (the compare-and-set column of docs/cluster.md).
CREATE TABLE flowbot_instances (
    id text COLLATE "C" PRIMARY KEY,
    snapshot bytea NOT NULL,
    finished boolean NOT NULL,
    version bigint NOT NULL DEFAULT 1,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX flowbot_instances_unfinished ON flowbot_instances (id) WHERE NOT finished;

-- History (audit log): entries of an instance under consecutive numbers.
CREATE TABLE flowbot_history (
    instance text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    entry bytea NOT NULL,
    PRIMARY KEY (instance, seq)
);

-- Thrown events to deliver once their commit is durable; removed once delivered.
CREATE TABLE flowbot_outbox (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    payload bytea NOT NULL
);

-- The notification log, numbered in commit order.
CREATE TABLE flowbot_notifications (
    seq bigint PRIMARY KEY,
    entry bytea NOT NULL
);

-- The engine-wide keyed tables.
CREATE TABLE flowbot_subscriptions (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE flowbot_buffered_messages (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE flowbot_completions (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE flowbot_definitions (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE flowbot_schedules (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE flowbot_cursors (key bytea PRIMARY KEY, value bytea NOT NULL);

-- Instance ids: each value is the first of a block of 1024 ids a node hands out.
CREATE SEQUENCE flowbot_id_blocks INCREMENT BY 1024 START WITH 1;

-- The nodes that wrote to this database: `last_batch` is the number of the node's last committed
-- write transaction (to tell, after a connection broke during COMMIT, whether it committed).
CREATE TABLE flowbot_nodes (
    node_id text PRIMARY KEY,
    started_at timestamptz NOT NULL DEFAULT now(),
    last_batch bigint NOT NULL DEFAULT 0,
    last_write_at timestamptz
);
