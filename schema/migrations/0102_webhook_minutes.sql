-- `webhook_minutes`: per minute of receipt, organization and action: how
-- many webhooks and stored events, and the received -> inserted latency in
-- milliseconds (inserted_at has second resolution). Small and fixed-size:
-- dashboards read it instead of `events`. A webhook is counted by its first
-- row (src_index = 0: every webhook yields rows 0..n-1 and a duplicate
-- webhook yields none); latency is kept as sum and max (mean and worst case;

CREATE TABLE IF NOT EXISTS {{.DB}}.webhook_minutes {{.OnCluster}}
(
    minute           DateTime('UTC'),
    organization_id  String,
    action           String,
    webhooks         AggregateFunction(sum, UInt64),
    events           AggregateFunction(count),
    latency_ms_sum   AggregateFunction(sum, Int64),
    latency_ms_max   AggregateFunction(max, Int64),
    last_received_ms AggregateFunction(max, UInt64)
)
ENGINE = {{engine "webhook_minutes" "AggregatingMergeTree"}}
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, organization_id, action)
SETTINGS index_granularity = 8192;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{.DB}}.webhook_minutes_mv {{.OnCluster}}
TO {{.DB}}.webhook_minutes
AS SELECT
    toStartOfMinute(received_at) AS minute,
    organization_id,
    action,
    sumState(toUInt64(src_index = 0)) AS webhooks,
    countState() AS events,
    sumState(toInt64(toUInt64(inserted_at) * 1000) - toInt64(received_at_ms)) AS latency_ms_sum,
    maxState(toInt64(toUInt64(inserted_at) * 1000) - toInt64(received_at_ms)) AS latency_ms_max,
    maxState(received_at_ms) AS last_received_ms
FROM {{.DB}}.events
GROUP BY minute, organization_id, action;
