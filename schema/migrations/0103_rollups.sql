-- Rollups of whole days: what keeps dashboards over weeks and months as
-- fast as over the last day.
--
-- Per-thread figures are merged from partial states at query time
-- (thread_state, migration 0100): that is what makes them right whatever
-- the webhook order, but the merge costs in proportion to the threads in the
-- range (~0.3 s per 700k threads on a 2-core box with 18.16). Most of a long
-- range is days that are over. The settler (dashboards.Settler, run by the
-- processor) writes, for every finished day, the finished rows once:
--
--   threads_settled  one plain row per thread started that day, exactly the
--                    columns of the `threads` view, derived from the
--                    thread_state rows of the hour before the day to the end
--                    of the day after it (the same window the panels use).
--   webhook_hours    webhook_minutes rolled up per hour, for the days of
--                    receipt that are over.
--
-- A day is written whole into a staging table and swapped in with
-- ALTER TABLE ... REPLACE PARTITION (atomic per partition; both tables are
-- partitioned by day), so readers see the old or the new day, never half.
-- `rollup_days` records, per rollup and day, a fingerprint of the source
-- rows the day was built from (event counts per source hour). The settler
-- compares it every SETTLE_INTERVAL and rebuilds a day whose sources
-- changed: late webhooks, replays, backfills and threads that go on past
-- midnight land in the rollups within one interval.
--
-- Readers combine the two (dashboards' {threads} and {webhook_minutes}): the
-- rollup for what lies before the rollup's watermark, max(upto_ms) of its
-- days, and the live merge for what comes after. Days are settled in order,
-- so everything before the watermark is settled.

CREATE TABLE IF NOT EXISTS {{.DB}}.threads_settled {{.OnCluster}}
(
    organization_id           String,
    thread_id                 String,
    chat_id                   String,
    started_at                DateTime('UTC'),
    started_ms                UInt64,
    ended_at                  DateTime('UTC'),
    ended_ms                  UInt64,
    active                    UInt8,
    duration_s                Float64,
    customer_id               String,
    country_code              String,
    start_url                 String,
    greeting_id               String,
    continuous                UInt8,
    welcome_message           UInt8,
    group_ids                 Array(UInt32),
    agent_ids                 Array(String),
    messages                  UInt64,
    agent_messages            UInt64,
    customer_messages         Int64,
    engagement                String,
    first_customer_message_ms UInt64,
    first_response_ms         UInt64,
    responded                 UInt8,
    first_response_time_s     Float64,
    response_msgs             Array(UInt64),
    response_times_s          Array(Float64),
    missed                    UInt8,
    queued                    UInt8,
    queue_left                UInt8,
    queue_entered             UInt8,
    queue_wait_s              Float64,
    tags                      Array(String),
    rating                    Int16,
    rated_good                UInt8,
    rated_bad                 UInt8,
    rating_comment            String,
    transfers                 UInt64,
    postbacks                 UInt64,
    events                    UInt64,
    last_event_at             DateTime('UTC')
)
ENGINE = {{engine "threads_settled" "MergeTree"}}
PARTITION BY toYYYYMMDD(started_at)
ORDER BY (organization_id, started_ms, thread_id)
SETTINGS index_granularity = 8192;

CREATE TABLE IF NOT EXISTS {{.DB}}.webhook_hours {{.OnCluster}}
(
    hour             DateTime('UTC'),
    organization_id  String,
    action           String,
    webhooks         AggregateFunction(sum, UInt64),
    events           AggregateFunction(count),
    latency_ms_sum   AggregateFunction(sum, Int64),
    latency_ms_max   AggregateFunction(max, Int64),
    last_received_ms AggregateFunction(max, UInt64)
)
ENGINE = {{engine "webhook_hours" "AggregatingMergeTree"}}
PARTITION BY toYYYYMMDD(hour)
ORDER BY (hour, organization_id, action)
SETTINGS index_granularity = 8192;

-- One row per (rollup, day) settled; the newest settled_at wins.
CREATE TABLE IF NOT EXISTS {{.DB}}.rollup_days {{.OnCluster}}
(
    name         String,
    day          Date,
    upto_ms      UInt64,
    fingerprint  UInt64,
    source_rows  UInt64,
    rows         UInt64,
    settled_at   DateTime('UTC')
)
ENGINE = {{engine "rollup_days" "ReplacingMergeTree" "settled_at"}}
ORDER BY (name, day)
SETTINGS index_granularity = 8192;
