-- Analytics: one state row per thread (LiveChat's "chat" in reports), built
-- by a materialized view from every `events` row that belongs to a thread.
--
-- Why AggregatingMergeTree and not a view that joins at insert time: webhooks
-- arrive in any order (an incoming_event before its incoming_chat, a rating
-- before the chat_deactivated), so no insert can see the whole thread. Each
-- events block only adds partial states (max/min/argMax/groupUniqArray) keyed
-- by (organization_id, thread_id); ClickHouse merges them in the background
-- and queries finish the merge with the -Merge combinators (the `threads`
-- view in 0101 does that). Every state is idempotent (max, min, set, last
-- value by time), so a duplicate row that slipped into `events` changes
-- nothing here.
--
-- ended_ms is the FIRST chat_deactivated received (a thread closes once; a
-- retried delivery that was not dropped would only come later).
--
-- Encodings that keep the states idempotent and small:
--   messages  groupUniqArray(occurred_at_ms * 2 + is_agent) of the non-welcome
--             customer and agent messages (message, file, rich_message);
--             sorted, they are the conversation in time order.
--   tag_ops   groupUniqArray('<13-digit ms>|<+ or ->|<tag>') of thread_tagged /
--             thread_untagged; the last operation per tag decides.
--   rating    argMax(score + 1, occurred_at_ms): 0 none or deleted, 1 bad, 2 good,
--             from rows of kind rating / thread_started that carry a score
--             (rating_has_score) and rating_deleted rows. Ratings sent on the
--             chat (chat_properties_updated, no thread_id) are not attributed
--             to a thread here: they stay in `events`.
--
-- How a row is classified (author types come from the processor; an empty
-- author_type falls back to the ID shape LiveChat uses: agents log in with
-- e-mail addresses, customers have UUIDs).
CREATE TABLE IF NOT EXISTS {{.DB}}.thread_state {{.OnCluster}}
(
    organization_id  String,
    thread_id        String,
    chat_id          AggregateFunction(max, String),
    started_ms       AggregateFunction(max, UInt64),
    ended_ms         AggregateFunction(min, UInt64),
    last_event_ms    AggregateFunction(max, UInt64),
    customer_id      AggregateFunction(max, String),
    country_code     AggregateFunction(max, String),
    start_url        AggregateFunction(max, String),
    greeting_id      AggregateFunction(max, String),
    continuous       AggregateFunction(max, UInt8),
    welcome          AggregateFunction(max, UInt8),
    group_ids        AggregateFunction(groupUniqArrayArray, Array(UInt32)),
    agent_ids        AggregateFunction(groupUniqArrayArray, Array(String)),
    messages         AggregateFunction(groupUniqArray, UInt64),
    queued_ms        AggregateFunction(min, UInt64),
    agent_joined_ms  AggregateFunction(min, UInt64),
    tag_ops          AggregateFunction(groupUniqArray, String),
    rating           AggregateFunction(argMax, UInt8, UInt64),
    rating_comment   AggregateFunction(argMax, String, UInt64),
    transfers        AggregateFunction(groupUniqArray, String),
    postbacks        AggregateFunction(groupUniqArray, String),
    events           AggregateFunction(uniqExact, String)
)
ENGINE = {{engine "thread_state" "AggregatingMergeTree"}}
ORDER BY (organization_id, thread_id)
SETTINGS index_granularity = 8192;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{.DB}}.thread_state_mv {{.OnCluster}}
TO {{.DB}}.thread_state
AS SELECT
    organization_id,
    thread_id,
    maxState(chat_id) AS chat_id,
    maxState(if(action = 'incoming_chat', thread_created_at_ms, toUInt64(0))) AS started_ms,
    minStateIf(occurred_at_ms, action = 'chat_deactivated') AS ended_ms,
    maxState(occurred_at_ms) AS last_event_ms,
    maxState(if(action = 'incoming_chat', customer_id, '')) AS customer_id,
    maxState(if(action = 'incoming_chat', customer_country_code, '')) AS country_code,
    maxState(if(action = 'incoming_chat', start_url, '')) AS start_url,
    maxState(if(action = 'incoming_chat', greeting_id, '')) AS greeting_id,
    maxState(if(action = 'incoming_chat', continuous, toUInt8(0))) AS continuous,
    maxState(if(action IN ('incoming_chat', 'incoming_event'), is_welcome, toUInt8(0))) AS welcome,
    groupUniqArrayArrayState(if(action = 'incoming_chat', group_ids, if(action = 'chat_transferred', transfer_group_ids, emptyArrayUInt32()))) AS group_ids,
    groupUniqArrayArrayState(arrayFilter(x -> x != '', arrayConcat(
        [if(action IN ('incoming_chat', 'incoming_event') AND event_type IN ('message', 'file', 'rich_message')
            AND (author_type IN ('agent', 'bot') OR (author_type = '' AND position(author_id, '@') > 0)), author_id, '')],
        [if(action = 'user_added_to_chat' AND user_type IN ('agent', 'bot'), agent_id, '')],
        [if(action = 'incoming_chat', agent_id, '')],
        if(action = 'chat_transferred', transfer_agent_ids, emptyArrayString())))) AS agent_ids,
    groupUniqArrayStateIf(occurred_at_ms * 2 + toUInt64(author_type IN ('agent', 'bot') OR (author_type = '' AND position(author_id, '@') > 0)),
        action IN ('incoming_chat', 'incoming_event') AND event_type IN ('message', 'file', 'rich_message') AND is_welcome = 0 AND author_id != '') AS messages,
    minStateIf(queued_at_ms, queued_at_ms > 0 AND action IN ('incoming_chat', 'chat_transferred')) AS queued_ms,
    minStateIf(occurred_at_ms, action = 'user_added_to_chat' AND user_type IN ('agent', 'bot')) AS agent_joined_ms,
    groupUniqArrayStateIf(concat(toString(occurred_at_ms), if(action = 'thread_tagged', '|+|', '|-|'), tag),
        action IN ('thread_tagged', 'thread_untagged') AND tag != '') AS tag_ops,
    argMaxStateIf(toUInt8(if(kind = 'rating_deleted', 0, rating_score + 1)), occurred_at_ms,
        kind = 'rating_deleted' OR (rating_has_score = 1 AND kind IN ('rating', 'thread_started'))) AS rating,
    argMaxStateIf(rating_comment, occurred_at_ms,
        kind = 'rating_deleted' OR (kind IN ('rating', 'thread_started') AND (rating_has_score = 1 OR rating_comment != ''))) AS rating_comment,
    groupUniqArrayStateIf(event_id, action = 'chat_transferred') AS transfers,
    groupUniqArrayStateIf(event_id, action = 'incoming_rich_message_postback') AS postbacks,
    uniqExactState(event_id) AS events
FROM {{.DB}}.events
WHERE thread_id != ''
GROUP BY organization_id, thread_id;
