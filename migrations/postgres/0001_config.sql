-- The config: one table per resource kind with real keys, a single head row that serializes
-- writers and numbers versions, and one row per version (the history, and the snapshot source).

CREATE TABLE config_head (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT  NOT NULL
);
INSERT INTO config_head (id, version) VALUES (1, 0);

CREATE TABLE config_versions (
    version       BIGINT PRIMARY KEY,
    created_at_ms BIGINT NOT NULL,
    hash          TEXT   NOT NULL,
    -- JSON list of {"op","kind","name"}: what this version changed.
    changes       TEXT   NOT NULL,
    -- The whole config at this version (gateway.v1.Config, proto3 JSON mapping).
    config        TEXT   NOT NULL
);

CREATE TABLE health_checks (
    name            TEXT   PRIMARY KEY,
    spec            TEXT   NOT NULL,
    updated_version BIGINT NOT NULL
);

CREATE TABLE upstreams (
    name            TEXT   PRIMARY KEY,
    health_check    TEXT   REFERENCES health_checks (name) DEFERRABLE INITIALLY DEFERRED,
    spec            TEXT   NOT NULL,
    updated_version BIGINT NOT NULL
);
CREATE INDEX upstreams_health_check ON upstreams (health_check);

CREATE TABLE routes (
    name            TEXT   PRIMARY KEY,
    upstream        TEXT   NOT NULL REFERENCES upstreams (name) DEFERRABLE INITIALLY DEFERRED,
    spec            TEXT   NOT NULL,
    updated_version BIGINT NOT NULL
);
CREATE INDEX routes_upstream ON routes (upstream);

-- What each data plane reported, shared by every control-plane replica.
CREATE TABLE dataplanes (
    node_id            TEXT   PRIMARY KEY,
    labels             TEXT   NOT NULL,
    build_version      TEXT   NOT NULL,
    address            TEXT   NOT NULL,
    connected          BIGINT NOT NULL,
    connected_since_ms BIGINT NOT NULL,
    last_seen_ms       BIGINT NOT NULL,
    applied_version    BIGINT NOT NULL,
    applied_hash       TEXT   NOT NULL,
    rejected_version   BIGINT NOT NULL,
    rejection_errors   TEXT   NOT NULL,
    stale              BIGINT NOT NULL
);
