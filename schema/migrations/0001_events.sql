-- One wide row per unique LiveChat event. The processor writes this table
-- only, with one INSERT per batch (a single block), after dropping the event
-- IDs it has already stored; every per-purpose table is derived from it by
-- materialized views. ReplacingMergeTree on (organization_id, event_id) is the
-- last safety net should a duplicate ever slip through: FINAL or
-- "LIMIT 1 BY event_id" collapses it.
--
-- Times: DateTime('UTC') columns for querying, *_ms columns (epoch
-- milliseconds, UInt64) keep the milliseconds that 18.16's DateTime cannot.
-- Unknown values are '' / 0 / [] (never NULL: cheaper and simpler to query).
CREATE TABLE IF NOT EXISTS {{.DB}}.events {{.OnCluster}}
(
    event_id              String,
    organization_id       String,
    action                String,
    kind                  String,
    dedup_key             String,
    occurred_at           DateTime('UTC'),
    occurred_at_ms        UInt64,
    received_at           DateTime('UTC'),
    received_at_ms        UInt64,
    inserted_at           DateTime('UTC') DEFAULT now(),

    chat_id               String,
    thread_id             String,
    event_ref             String,
    event_type            String,
    author_id             String,
    author_type           String,
    visibility            String,
    is_welcome            UInt8,
    text_length           UInt32,
    system_message_type   String,
    form_type             String,

    agent_id              String,
    agent_name            String,
    customer_id           String,
    group_ids             Array(UInt32),
    group_names           Array(String),
    user_type             String,
    reason                String,
    requester_id          String,

    tag                   String,
    tags                  Array(String),   -- the thread's tags when the payload lists them (incoming_chat thread.tags)
    transfer_group_ids    Array(UInt32),
    transfer_agent_ids    Array(String),
    queue_position        Int32,
    queue_wait_time       Int32,
    queued_at_ms          UInt64,
    routing_status        String,
    rating_score          Int8,
    rating_has_score      UInt8,           -- 1 when the row carries a score (rating_score 0 is thumbs down)
    rating_comment        String,
    thread_created_at_ms  UInt64,
    thread_active         UInt8,
    continuous            UInt8,
    greeting_id           String,

    customer_country      String,
    customer_country_code String,
    customer_city         String,
    start_url             String,
    referrer              String,

    postback_id           String,
    postback_toggled      UInt8,
    button_type           String,
    button_value          String,

    properties            String,
    payload               String,

    src_topic             String,
    src_partition         Int32,
    src_offset            Int64,
    src_index             UInt16,
    request_id            String,
    body_sha256           String,
    ingest_version        String
)
ENGINE = {{engine "events" "ReplacingMergeTree"}}
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (organization_id, event_id)
SETTINGS index_granularity = 8192;
