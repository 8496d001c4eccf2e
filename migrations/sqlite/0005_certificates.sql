-- TLS certificates served by SNI. `spec` is the gateway.v1.Certificate JSON, private key
-- included: the data planes need it. The admin API never returns the key.
CREATE TABLE certificates (
    name            TEXT   PRIMARY KEY,
    spec            TEXT   NOT NULL,
    updated_version BIGINT NOT NULL
);
