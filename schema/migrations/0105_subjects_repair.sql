-- Subjects of state changes, and derived tables that can be repaired.
--
-- dedup_subjects / dedup_states (parallel arrays) name, for a state change
-- without a server identity, each subject it changes (an agent's routing
-- status, one tag on one thread, one property of a chat, ...) and the state
-- it leaves that subject in, as hashes. The processor drops a record as a
-- retry only when, for every subject, the last kept state before it is the
-- same and was received less than DEDUP_WINDOW before (processor/README.md,
-- "Event identity"); a state that flips back is a new event.
--
-- insert_id is the processor's id of the INSERT that wrote the row (random,
-- also in the query id). ClickHouse writes `events` before it pushes the
-- block to the materialized views, and a view that fails does not undo
-- `events`; the processor then reads the records again and finds them
-- stored. To re-push exactly what a derived table missed, each derived table
-- can tell whether it holds a given insert's rows: the aggregated ones keep
-- the set of insert ids per row (`inserts`, a few ids per thread hour or
-- minute), the others are keyed by the event (schema.Repair, schema/repair.go).
--
-- The two views below replace those of migrations 0100 and 0102 with the
-- `inserts` column added; everything else in them is unchanged.

ALTER TABLE {{.DB}}.events {{.OnCluster}}
    ADD COLUMN dedup_subjects Array(String) AFTER dedup_key,
    ADD COLUMN dedup_states Array(String) AFTER dedup_subjects,
    ADD COLUMN insert_id UInt64;

ALTER TABLE {{.DB}}.pipeline_batches {{.OnCluster}}
    ADD COLUMN insert_id UInt64;

ALTER TABLE {{.DB}}.thread_state {{.OnCluster}}
    ADD COLUMN inserts AggregateFunction(groupUniqArray, UInt64);

DROP TABLE IF EXISTS {{.DB}}.thread_state_mv {{.OnCluster}};

CREATE MATERIALIZED VIEW IF NOT EXISTS {{.DB}}.thread_state_mv {{.OnCluster}}
TO {{.DB}}.thread_state
AS SELECT
    organization_id,
    toStartOfHour(occurred_at) AS hour,
    thread_id,
    anyState(chat_id) AS chat_id,
    maxState(if(action = 'incoming_chat', thread_created_at_ms, toUInt64(0))) AS started_ms,
    minStateIf(occurred_at_ms, action = 'chat_deactivated') AS ended_ms,
    maxState(occurred_at_ms) AS last_event_ms,
    anyStateIf(customer_id, action = 'incoming_chat' AND customer_id != '') AS customer_id,
    anyStateIf(customer_country_code, action = 'incoming_chat' AND customer_country_code != '') AS country_code,
    anyStateIf(start_url, action = 'incoming_chat' AND start_url != '') AS start_url,
    anyStateIf(greeting_id, action = 'incoming_chat' AND greeting_id != '') AS greeting_id,
    maxState(if(action = 'incoming_chat', continuous, toUInt8(0))) AS continuous,
    maxState(if(action IN ('incoming_chat', 'incoming_event'), is_welcome, toUInt8(0))) AS welcome,
    groupArrayArrayState(if(action = 'incoming_chat', group_ids, if(action = 'chat_transferred', transfer_group_ids, emptyArrayUInt32()))) AS group_ids,
    groupArrayArrayState(arrayFilter(x -> x != '', arrayConcat(
        [if(action IN ('incoming_chat', 'incoming_event') AND event_type IN ('message', 'file', 'rich_message')
            AND (author_type IN ('agent', 'bot') OR (author_type = '' AND position(author_id, '@') > 0)), author_id, '')],
        [if(action = 'user_added_to_chat' AND user_type IN ('agent', 'bot'), agent_id, '')],
        [if(action = 'incoming_chat', agent_id, '')],
        if(action = 'chat_transferred', transfer_agent_ids, emptyArrayString())))) AS agent_ids,
    groupArrayStateIf(occurred_at_ms * 2 + toUInt64(author_type IN ('agent', 'bot') OR (author_type = '' AND position(author_id, '@') > 0)),
        action IN ('incoming_chat', 'incoming_event') AND event_type IN ('message', 'file', 'rich_message') AND is_welcome = 0 AND author_id != '') AS messages,
    minStateIf(queued_at_ms, queued_at_ms > 0 AND action IN ('incoming_chat', 'chat_transferred')) AS queued_ms,
    minStateIf(occurred_at_ms, action = 'user_added_to_chat' AND user_type IN ('agent', 'bot')) AS agent_joined_ms,
    groupArrayStateIf(concat(toString(occurred_at_ms), if(action = 'thread_tagged', '|+|', '|-|'), tag),
        action IN ('thread_tagged', 'thread_untagged') AND tag != '') AS tag_ops,
    argMaxStateIf(toUInt8(if(kind = 'rating_deleted', 0, rating_score + 1)), occurred_at_ms,
        kind = 'rating_deleted' OR (rating_has_score = 1 AND kind IN ('rating', 'thread_started'))) AS rating,
    argMaxStateIf(rating_comment, occurred_at_ms,
        kind = 'rating_deleted' OR (kind IN ('rating', 'thread_started') AND (rating_has_score = 1 OR rating_comment != ''))) AS rating_comment,
    groupArrayStateIf(event_id, action = 'chat_transferred') AS transfers,
    groupArrayStateIf(event_id, action = 'incoming_rich_message_postback') AS postbacks,
    countState() AS events,
    groupUniqArrayState(insert_id) AS inserts
FROM {{.DB}}.events
WHERE thread_id != ''
GROUP BY organization_id, hour, thread_id
;

ALTER TABLE {{.DB}}.webhook_minutes {{.OnCluster}}
    ADD COLUMN inserts AggregateFunction(groupUniqArray, UInt64);

DROP TABLE IF EXISTS {{.DB}}.webhook_minutes_mv {{.OnCluster}};

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
    maxState(received_at_ms) AS last_received_ms,
    groupUniqArrayState(insert_id) AS inserts
FROM {{.DB}}.events
GROUP BY minute, organization_id, action;
