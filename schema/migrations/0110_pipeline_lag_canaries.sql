-- Observability facts the processor writes for the built-in dashboards,
-- which read only ClickHouse (Grafana reads the same figures from
-- Prometheus too). Statistics, written with plain inserts: nothing
-- exactly-once depends on them.
--
-- `pipeline_lag`: every LAG_INTERVAL each processor samples the consumer
-- group's lag from Kafka, one row per raw-topic partition: the log end, the
-- group's committed offset (-1: none yet), the records between them and the
-- age of the first of those (0 without lag). Every processor samples every
-- partition: take the newest sample per partition.
CREATE TABLE IF NOT EXISTS {{.DB}}.pipeline_lag {{.OnCluster}}
(
    sampled_at      DateTime('UTC'),
    sampled_at_ms   UInt64,
    instance        String,
    consumer_group  String,
    src_topic       String,
    partition       Int32,
    log_end         Int64,
    committed       Int64,
    lag_records     Int64,
    lag_seconds     Float64
)
ENGINE = {{engine "pipeline_lag" "MergeTree"}}
PARTITION BY toYYYYMMDD(sampled_at)
ORDER BY (sampled_at, partition)
SETTINGS index_granularity = 8192;

-- `pipeline_canaries`: one row per freshness canary (CANARY_INTERVAL) when
-- its row became queryable in events: ingest's send time (the event time
-- of the canary row), when ingest received it, and when the INSERT holding
-- it completed. The canary rows themselves are in events (kind 'canary',
-- organization 'lcpipe-canary'), excluded from every chat analytic.
CREATE TABLE IF NOT EXISTS {{.DB}}.pipeline_canaries {{.OnCluster}}
(
    queryable_at     DateTime('UTC'),
    queryable_at_ms  UInt64,
    sent_at_ms       UInt64,
    received_at_ms   UInt64,
    instance         String,
    event_id         String,
    request_id       String,
    src_partition    Int32,
    src_offset       Int64
)
ENGINE = {{engine "pipeline_canaries" "MergeTree"}}
PARTITION BY toYYYYMM(queryable_at)
ORDER BY (queryable_at, event_id)
SETTINGS index_granularity = 8192;
