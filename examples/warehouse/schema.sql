-- The table examples/warehouse/sluice.toml writes to; what the
-- postgres-sink plugin creates with `create_table = true`. Create it yourself
-- (psql -h 127.0.0.1 -U postgres test -f examples/warehouse/schema.sql) and
-- set `create_table = false` to keep DDL out of the pipeline.
CREATE TABLE IF NOT EXISTS telemetry_events (
    event_id        TEXT        NOT NULL PRIMARY KEY,
    type            TEXT        NOT NULL,
    source          TEXT        NOT NULL,
    entity_id       TEXT        NOT NULL,
    occurred_at     TIMESTAMPTZ NOT NULL,
    severity        TEXT        NOT NULL,
    attributes      JSONB,
    trace_id        TEXT,
    kafka_topic     TEXT,
    kafka_partition BIGINT,
    kafka_offset    BIGINT
);
