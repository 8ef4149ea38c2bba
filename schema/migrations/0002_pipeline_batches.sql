-- One row per processor flush: the facts the Pipeline-health dashboard
-- shows (throughput, duplicates dropped, dead letters, lag by received-at).
-- These are statistics, written after the events insert and the offset
-- commit with a plain insert: a crash between the two can lose or repeat
-- one flush's row. Nothing exactly-once depends on this table.
CREATE TABLE IF NOT EXISTS {{.DB}}.pipeline_batches {{.OnCluster}}
(
    flushed_at          DateTime('UTC'),
    flushed_at_ms       UInt64,
    instance            String,
    consumer_group      String,
    src_topic           String,
    partitions          Array(Int32),
    records             UInt32,
    rows_in             UInt32,
    events_inserted     UInt32,
    duplicates_identity UInt32,
    duplicates_window   UInt32,
    dead_letters        UInt32,
    min_received_at_ms  UInt64,
    max_received_at_ms  UInt64,
    insert_attempts     UInt32,
    lookup_ms           UInt32,
    insert_ms           UInt32,
    flush_ms            UInt32,
    actions             Array(String),
    action_counts       Array(UInt32)
)
ENGINE = {{engine "pipeline_batches" "MergeTree"}}
PARTITION BY toYYYYMM(flushed_at)
ORDER BY (flushed_at, instance)
SETTINGS index_granularity = 8192;
