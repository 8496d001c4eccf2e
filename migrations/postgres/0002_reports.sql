-- What data planes report on their streams, kept in the store so every replica shows the fleet.

-- The latest health of every checked target, per data plane (replaced whole by each report).
CREATE TABLE target_health (
    node_id  TEXT    NOT NULL,
    upstream TEXT    NOT NULL,
    address  TEXT    NOT NULL,
    healthy  BIGINT  NOT NULL,
    ejected  BIGINT  NOT NULL,
    reason   TEXT    NOT NULL,
    since    TEXT    NOT NULL,
    PRIMARY KEY (node_id, upstream, address)
);
CREATE INDEX target_health_upstream ON target_health (upstream);

-- The latest traffic report per data plane (gateway.v1.TrafficReport, JSON).
CREATE TABLE dataplane_traffic (
    node_id        TEXT   PRIMARY KEY,
    reported_at_ms BIGINT NOT NULL,
    report         TEXT   NOT NULL
);
