-- Who changed what: every change writes one audit row in the transaction that makes it, and every config
-- version names its author.

ALTER TABLE config_versions ADD COLUMN author TEXT NOT NULL DEFAULT '';

CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms     BIGINT NOT NULL,
    -- The token's name, `bootstrap`, or `anonymous`.
    actor     TEXT   NOT NULL,
    -- The API operation, e.g. CreateRoute, Apply, Rollback, RevokeToken.
    operation TEXT   NOT NULL,
    -- JSON list of {"op","kind","name"}: the resources it changed.
    changes   TEXT   NOT NULL,
    -- The config version it produced; 0 when it changed no config (tokens).
    version   BIGINT NOT NULL
);
CREATE INDEX audit_log_actor ON audit_log (actor);
