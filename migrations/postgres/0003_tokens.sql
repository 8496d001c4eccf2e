-- API tokens. Only the SHA-256 of a token is stored: the token itself is shown once, when it is
-- created, and cannot be recovered from the store.

CREATE TABLE tokens (
    name          TEXT   PRIMARY KEY,
    -- admin (read and write), viewer (read only) or dataplane (the discovery stream only).
    role          TEXT   NOT NULL,
    -- Hex SHA-256 of the whole token.
    token_sha256  TEXT   NOT NULL UNIQUE,
    created_at_ms BIGINT NOT NULL,
    -- The principal that created it.
    created_by    TEXT   NOT NULL
);
CREATE INDEX tokens_role ON tokens (role);
