"""Raw SQL for the usage ledger: a month-partitioned, append-only table.

Postgres cannot hold a unique index on a partitioned table without the partition
key, so (customer_id, event_id) uniqueness lives in metering_usage_event_key.
"""

CREATE = """
CREATE SEQUENCE metering_usage_event_id_seq AS bigint;
CREATE TABLE metering_usage_event (
    id bigint NOT NULL DEFAULT nextval('metering_usage_event_id_seq'),
    source_topic varchar(249) NOT NULL,
    source_partition integer NOT NULL,
    source_offset bigint NOT NULL,
    source_index integer NOT NULL,
    customer_id varchar(64) NOT NULL,
    event_id varchar(128) NOT NULL,
    model varchar(128) NOT NULL,
    occurred_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    ingested_at timestamptz NOT NULL DEFAULT now(),
    input_tokens bigint NOT NULL CHECK (input_tokens >= 0),
    cached_input_tokens bigint NOT NULL CHECK (cached_input_tokens BETWEEN 0 AND input_tokens),
    output_tokens bigint NOT NULL CHECK (output_tokens >= 0),
    service_tier varchar(16) NOT NULL CHECK (service_tier IN ('standard', 'batch', 'priority')),
    region varchar(64) NOT NULL DEFAULT '',
    cluster varchar(64) NOT NULL DEFAULT '',
    metadata jsonb NULL,
    PRIMARY KEY (id, occurred_at)
) PARTITION BY RANGE (occurred_at);
ALTER SEQUENCE metering_usage_event_id_seq OWNED BY metering_usage_event.id;

CREATE FUNCTION metering_ledger_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the usage ledger is append-only: % on % is not allowed', TG_OP, TG_TABLE_NAME
        USING HINT = 'Corrections are new entries; projections are rebuilt from the ledger.';
END
$$;
-- A row trigger on the partitioned parent is cloned onto every partition, present and future.
CREATE TRIGGER metering_usage_event_append_only
    BEFORE UPDATE OR DELETE ON metering_usage_event
    FOR EACH ROW EXECUTE FUNCTION metering_ledger_reject_change();
"""

DROP = """
DROP TABLE metering_usage_event;
DROP FUNCTION metering_ledger_reject_change();
"""
