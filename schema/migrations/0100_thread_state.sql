-- Analytics: partial per-thread states (a thread is LiveChat's "chat" in
-- reports), one row per (organization, HOUR of the events row, thread),
-- built by a materialized view from every `events` row of a thread, and the
-- `threads` view that finishes the merge into one readable row per thread.
--
-- Why AggregatingMergeTree and not a view that joins at insert time: webhooks
-- arrive in any order (an incoming_event before its incoming_chat, a rating
-- before the chat_deactivated), so no insert can see the whole thread. Each
-- events block only adds partial states; queries merge them with the -Merge
-- combinators, so the result is the same whatever the arrival order.
--
-- Why keyed by hour too: dashboards must answer in well under a second on
-- tens of millions of events, and merging every thread's states for every
-- panel does not. A panel for a time range reads only the state rows of the
-- hours around it (thread rows happen at or after the thread's start),
-- merges them per thread and filters on the merged start time.
--
-- Cheap states: arrays are groupArray (concatenation) rather than hash
-- sets; the query side sorts them and removes repeats (arrayDistinct), and
-- every derived metric is insensitive to a repeated element, so a row that
-- reached `events` twice changes nothing (except the raw `events` count).
--
-- Encodings:
--   messages  occurred_at_ms * 2 + is_agent of the non-welcome customer and
--             agent messages (message, file, rich_message); sorted, they are
--             the conversation in time order.
--   tag_ops   '<13-digit ms>|<+ or ->|<tag>' of thread_tagged /
--             thread_untagged; the last operation per tag decides.
--   rating    argMax(score + 1, occurred_at_ms): 0 none or deleted, 1 bad,
--             2 good, from rows of kind rating / thread_started that carry a
--             score (rating_has_score) and rating_deleted rows. Ratings sent
--             on the chat (chat_properties_updated, no thread_id) are not
--             attributed to a thread here: they stay in `events`.
--   ended_ms  the FIRST chat_deactivated received (a thread closes once).
--
-- How a row is classified (author types come from the processor; an empty
-- author_type falls back to the ID shape LiveChat uses: agents log in with
-- e-mail addresses, customers have UUIDs).

CREATE TABLE IF NOT EXISTS {{.DB}}.thread_state {{.OnCluster}}
(
    organization_id  String,
    hour             DateTime('UTC'),
    thread_id        String,
    chat_id          AggregateFunction(any, String),
    started_ms       AggregateFunction(max, UInt64),
    ended_ms         AggregateFunction(min, UInt64),
    last_event_ms    AggregateFunction(max, UInt64),
    customer_id      AggregateFunction(any, String),
    country_code     AggregateFunction(any, String),
    start_url        AggregateFunction(any, String),
    greeting_id      AggregateFunction(any, String),
    continuous       AggregateFunction(max, UInt8),
    welcome          AggregateFunction(max, UInt8),
    group_ids        AggregateFunction(groupArrayArray, Array(UInt32)),
    agent_ids        AggregateFunction(groupArrayArray, Array(String)),
    messages         AggregateFunction(groupArray, UInt64),
    queued_ms        AggregateFunction(min, UInt64),
    agent_joined_ms  AggregateFunction(min, UInt64),
    tag_ops          AggregateFunction(groupArray, String),
    rating           AggregateFunction(argMax, UInt8, UInt64),
    rating_comment   AggregateFunction(argMax, String, UInt64),
    transfers        AggregateFunction(groupArray, String),
    postbacks        AggregateFunction(groupArray, String),
    events           AggregateFunction(count)
)
ENGINE = {{engine "thread_state" "AggregatingMergeTree"}}
PARTITION BY toYYYYMM(hour)
ORDER BY (organization_id, hour, thread_id)
SETTINGS index_granularity = 8192;

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
    countState() AS events
FROM {{.DB}}.events
WHERE thread_id != ''
GROUP BY organization_id, hour, thread_id
;

-- `threads`: one readable row per thread with every per-thread metric of
-- LiveChat's reports derived (first response, response times, missed,
-- queue, engagement, final tags, last rating). It merges ALL state rows: for
-- large tables filter through the panels' form instead (see schema/README.md:
-- restrict thread_state to the hours of interest before merging).
-- Generated from dashboards.ThreadsSQL (TestThreadsViewMatches).
CREATE VIEW IF NOT EXISTS {{.DB}}.threads {{.OnCluster}} AS
SELECT
    organization_id,
    thread_id,
    s_chat AS chat_id,
    toDateTime(intDiv(s_start, 1000), 'UTC') AS started_at,
    s_start AS started_ms,
    toDateTime(intDiv(s_end, 1000), 'UTC') AS ended_at,
    s_end AS ended_ms,
    toUInt8(s_end = 0) AS active,
    if(s_end > s_start AND s_start > 0, (s_end - s_start) / 1000, 0) AS duration_s,
    s_customer AS customer_id,
    s_country AS country_code,
    s_start_url AS start_url,
    s_greeting AS greeting_id,
    s_continuous AS continuous,
    s_welcome AS welcome_message,
    s_groups AS group_ids,
    s_agents AS agent_ids,
    length(s_msgs) AS messages,
    arraySum(s_auth) AS agent_messages,
    length(s_msgs) - arraySum(s_auth) AS customer_messages,
    multiIf(s_greeting != '', 'customer_from_greeting',
            length(s_msgs) > 0 AND s_auth[1] = 1, 'agent',
            'customer_without_greeting') AS engagement,
    intDiv(arrayFirst(x -> x % 2 = 0, s_msgs), 2) AS first_customer_message_ms,
    intDiv(arrayFirst((x, a, p) -> a = 1 AND p = 0, s_msgs, s_auth, s_prev), 2) AS first_response_ms,
    toUInt8(first_response_ms > 0) AS responded,
    if(responded = 1, (first_response_ms - first_customer_message_ms) / 1000, 0) AS first_response_time_s,
    arrayFilter((x, a, p) -> a = 1 AND p = 0, s_msgs, s_auth, s_prev) AS response_msgs,
    arrayMap((r, s) -> (intDiv(r, 2) - intDiv(s, 2)) / 1000, response_msgs,
        arraySlice(arrayFilter((x, a, p) -> a = 0 AND p = 1, s_msgs, s_auth, s_prev), 1, length(response_msgs))) AS response_times_s,
    toUInt8(s_end > 0 AND arraySum(s_auth) = 0) AS missed,
    toUInt8(s_queued > 0) AS queued,
    toUInt8(s_queued > 0 AND s_end > 0 AND (s_joined = 0 OR s_joined > s_end)) AS queue_left,
    toUInt8(s_queued > 0 AND s_joined > 0 AND (s_end = 0 OR s_joined <= s_end)) AS queue_entered,
    multiIf(queue_entered = 1, (s_joined - s_queued) / 1000, queue_left = 1, (s_end - s_queued) / 1000, 0) AS queue_wait_s,
    arraySort(arrayMap(o -> substring(o, 17), arrayFilter((o, k) -> k = 1 AND like(o, '%|+|%'), s_tag_ops,
        arrayEnumerateUniq(arrayMap(o -> substring(o, 17), s_tag_ops))))) AS tags,
    toInt8(s_rating) - 1 AS rating,
    toUInt8(s_rating = 2) AS rated_good,
    toUInt8(s_rating = 1) AS rated_bad,
    if(s_rating > 0, s_comment, '') AS rating_comment,
    length(s_transfers) AS transfers,
    length(s_postbacks) AS postbacks,
    s_events AS events,
    toDateTime(intDiv(s_last, 1000), 'UTC') AS last_event_at
FROM
(
    SELECT
        organization_id,
        thread_id,
        anyMerge(chat_id) AS s_chat,
        maxMerge(started_ms) AS s_start,
        minMerge(ended_ms) AS s_end,
        maxMerge(last_event_ms) AS s_last,
        anyMerge(customer_id) AS s_customer,
        anyMerge(country_code) AS s_country,
        anyMerge(start_url) AS s_start_url,
        anyMerge(greeting_id) AS s_greeting,
        maxMerge(continuous) AS s_continuous,
        maxMerge(welcome) AS s_welcome,
        arraySort(arrayDistinct(groupArrayArrayMerge(group_ids))) AS s_groups,
        arraySort(arrayDistinct(groupArrayArrayMerge(agent_ids))) AS s_agents,
        arraySort(groupArrayMerge(messages)) AS s_msgs,
        arrayMap(x -> x % 2, s_msgs) AS s_auth,
        arraySlice(arrayPushFront(s_auth, toUInt64(1)), 1, length(s_msgs)) AS s_prev,
        minMerge(queued_ms) AS s_queued,
        minMerge(agent_joined_ms) AS s_joined,
        arrayReverse(arraySort(groupArrayMerge(tag_ops))) AS s_tag_ops,
        argMaxMerge(rating) AS s_rating,
        argMaxMerge(rating_comment) AS s_comment,
        arrayDistinct(groupArrayMerge(transfers)) AS s_transfers,
        arrayDistinct(groupArrayMerge(postbacks)) AS s_postbacks,
        countMerge(events) AS s_events
    FROM {{.DB}}.thread_state
    GROUP BY organization_id, thread_id
);
