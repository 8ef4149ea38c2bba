-- `messages`: one row per customer/agent/system event of a thread (message,
-- file, rich_message, filled_form, system_message ...), for analyses by
-- author type, time and length. Derived from `events` rows of incoming_chat
-- (the events already inside the new thread) and incoming_event. Ordered by
-- time so time-range scans read little; ReplacingMergeTree on the event id
-- collapses a duplicate that slipped through (use FINAL when it matters).
CREATE TABLE IF NOT EXISTS {{.DB}}.messages {{.OnCluster}}
(
    organization_id  String,
    chat_id          String,
    thread_id        String,
    event_id         String,
    created_at       DateTime('UTC'),
    created_at_ms    UInt64,
    event_type       String,
    author_id        String,
    author_type      String,
    is_welcome       UInt8,
    visibility       String,
    text_length      UInt32,
    system_message_type String
)
ENGINE = {{engine "messages" "ReplacingMergeTree"}}
PARTITION BY toYYYYMM(created_at)
ORDER BY (organization_id, created_at, event_id)
SETTINGS index_granularity = 8192;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{.DB}}.messages_mv {{.OnCluster}}
TO {{.DB}}.messages
AS SELECT
    organization_id,
    chat_id,
    thread_id,
    event_ref AS event_id,
    occurred_at AS created_at,
    occurred_at_ms AS created_at_ms,
    event_type,
    author_id,
    multiIf(event_type IN ('system_message', 'system'), 'system',
            author_type != '', author_type,
            position(author_id, '@') > 0, 'agent',
            author_id != '', 'customer', '') AS author_type,
    is_welcome,
    visibility,
    text_length,
    system_message_type
FROM {{.DB}}.events
WHERE action IN ('incoming_chat', 'incoming_event') AND event_ref != '' AND event_type != '';

-- `agent_status`: every routing_status_set, normalised: accepting = 1 for
-- "accepting chats" / "accepting_chats", 0 otherwise (not accepting, offline).
-- The webhook carries no time, so changed_at is when the pipeline received
-- it. An agent's availability is the time between a change to accepting and
-- the next change (see the Agents dashboard); LiveChat sends no webhook on
-- log-out, so an agent who logs out while accepting stays "accepting" here.
CREATE TABLE IF NOT EXISTS {{.DB}}.agent_status {{.OnCluster}}
(
    organization_id  String,
    agent_id         String,
    changed_at       DateTime('UTC'),
    changed_at_ms    UInt64,
    status           String,
    accepting        UInt8
)
ENGINE = {{engine "agent_status" "ReplacingMergeTree"}}
PARTITION BY toYYYYMM(changed_at)
ORDER BY (organization_id, agent_id, changed_at_ms, status)
SETTINGS index_granularity = 8192;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{.DB}}.agent_status_mv {{.OnCluster}}
TO {{.DB}}.agent_status
AS SELECT
    organization_id,
    agent_id,
    occurred_at AS changed_at,
    occurred_at_ms AS changed_at_ms,
    routing_status AS status,
    toUInt8(replaceAll(routing_status, '_', ' ') = 'accepting chats') AS accepting
FROM {{.DB}}.events
WHERE action = 'routing_status_set' AND agent_id != '';
