-- Ratings given on the chat count for a thread.
--
-- A customer's rating can arrive as a chat property (chat_properties_updated
-- / chat_properties_deleted with the `rating` namespace and no thread id)
-- instead of a thread property. `events` keeps such rows (kind rating /
-- rating_deleted, thread_id ''), and thread_state, keyed by thread, leaves
-- them out. They count for the thread that was current in the chat when
-- the rating came: the chat's thread with the latest start at or before
-- the rating's time (a rating before any known thread of the chat: the
-- chat's first thread). A thread's rating is then the last by time among
-- its own ratings and the chat ratings attributed to it; a deletion clears
-- it.
--
-- Why attribute at query time: which thread is current depends on every
-- thread of the chat, and webhooks arrive in any order (a rating before the
-- incoming_chat of its thread, a late incoming_chat of an earlier thread).
-- No insert sees them all, so the two tables below only collect the facts,
-- and the `threads` derivation (dashboards.ThreadsSQL) attributes each
-- chat rating when it merges a thread's states: the same answer whatever
-- the arrival order, once everything arrived.
--
--   chat_ratings  one row per chat-level rating change, with the `hour` of
--                 its time, so the derivation restricts it exactly as it
--                 restricts thread_state.
--   chat_threads  one row per thread: its chat and start. Only the chats
--                 with ratings to attribute are read, by primary key.
--
-- Both are ReplacingMergeTree keyed by the event, so the same event pushed
-- twice (a replay, a repair) is one row once merged; until then every
-- query over them is insensitive to the duplicate (argMax over equal
-- rows). The views start with the migration; the INSERTs after them copy
-- what `events` already held (a row inserted in between reaches both ways
-- and collapses).

CREATE TABLE IF NOT EXISTS {{.DB}}.chat_ratings {{.OnCluster}}
(
    organization_id  String,
    hour             DateTime('UTC'),
    chat_id          String,
    rated_ms         UInt64,
    event_id         String,
    deleted          UInt8,
    score            Int8,
    has_score        UInt8,
    comment          String
)
ENGINE = {{engine "chat_ratings" "ReplacingMergeTree"}}
PARTITION BY toYYYYMM(hour)
ORDER BY (organization_id, hour, chat_id, rated_ms, event_id)
SETTINGS index_granularity = 8192;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{.DB}}.chat_ratings_mv {{.OnCluster}}
TO {{.DB}}.chat_ratings
AS SELECT
    organization_id,
    toStartOfHour(occurred_at) AS hour,
    chat_id,
    occurred_at_ms AS rated_ms,
    event_id,
    toUInt8(kind = 'rating_deleted') AS deleted,
    rating_score AS score,
    rating_has_score AS has_score,
    rating_comment AS comment
FROM {{.DB}}.events
WHERE thread_id = '' AND chat_id != ''
    AND (kind = 'rating_deleted' OR (kind = 'rating' AND (rating_has_score = 1 OR rating_comment != '')))
;

CREATE TABLE IF NOT EXISTS {{.DB}}.chat_threads {{.OnCluster}}
(
    organization_id  String,
    chat_id          String,
    thread_id        String,
    started_ms       UInt64
)
ENGINE = {{engine "chat_threads" "ReplacingMergeTree"}}
ORDER BY (organization_id, chat_id, thread_id)
SETTINGS index_granularity = 8192;

CREATE MATERIALIZED VIEW IF NOT EXISTS {{.DB}}.chat_threads_mv {{.OnCluster}}
TO {{.DB}}.chat_threads
AS SELECT
    organization_id,
    chat_id,
    thread_id,
    thread_created_at_ms AS started_ms
FROM {{.DB}}.events
WHERE kind = 'thread_started' AND chat_id != '' AND thread_id != '' AND thread_created_at_ms > 0
;

INSERT INTO {{.DB}}.chat_ratings (organization_id, hour, chat_id, rated_ms, event_id, deleted, score, has_score, comment)
SELECT
    organization_id,
    toStartOfHour(occurred_at) AS hour,
    chat_id,
    occurred_at_ms AS rated_ms,
    event_id,
    toUInt8(kind = 'rating_deleted') AS deleted,
    rating_score AS score,
    rating_has_score AS has_score,
    rating_comment AS comment
FROM {{.DB}}.events
WHERE thread_id = '' AND chat_id != ''
    AND (kind = 'rating_deleted' OR (kind = 'rating' AND (rating_has_score = 1 OR rating_comment != '')));

INSERT INTO {{.DB}}.chat_threads (organization_id, chat_id, thread_id, started_ms)
SELECT
    organization_id,
    chat_id,
    thread_id,
    thread_created_at_ms AS started_ms
FROM {{.DB}}.events
WHERE kind = 'thread_started' AND chat_id != '' AND thread_id != '' AND thread_created_at_ms > 0;

-- `threads` as in 0100, with the chat ratings attributed (see above).
-- Generated from dashboards.ThreadsSQL (TestThreadsViewMatches: the newest
-- definition of the view is the one that must match).
DROP TABLE IF EXISTS {{.DB}}.threads {{.OnCluster}};

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
    FROM
    (
        SELECT organization_id, thread_id, chat_id, started_ms, ended_ms, last_event_ms, customer_id,
            country_code, start_url, greeting_id, continuous, welcome, group_ids, agent_ids, messages, queued_ms,
            agent_joined_ms, tag_ops, rating, rating_comment, transfers, postbacks, events
        FROM {{.DB}}.thread_state
        UNION ALL
        SELECT
            organization_id,
            argMax(c_thread, if(c_thread_start <= rated_ms, toInt64(c_thread_start), -toInt64(c_thread_start))) AS c_thread_id,
            anyStateIf(chat_id, 0) AS c_chat,
            maxStateIf(toUInt64(0), 0) AS c_started,
            minStateIf(toUInt64(0), 0) AS c_ended,
            maxState(rated_ms) AS c_last,
            anyStateIf('', 0) AS c_customer,
            anyStateIf('', 0) AS c_country,
            anyStateIf('', 0) AS c_start_url,
            anyStateIf('', 0) AS c_greeting,
            maxStateIf(toUInt8(0), 0) AS c_continuous,
            maxStateIf(toUInt8(0), 0) AS c_welcome,
            groupArrayArrayStateIf(emptyArrayUInt32(), 0) AS c_groups,
            groupArrayArrayStateIf(emptyArrayString(), 0) AS c_agents,
            groupArrayStateIf(toUInt64(0), 0) AS c_msgs,
            minStateIf(toUInt64(0), 0) AS c_queued,
            minStateIf(toUInt64(0), 0) AS c_joined,
            groupArrayStateIf('', 0) AS c_tag_ops,
            argMaxStateIf(toUInt8(if(deleted = 1, 0, score + 1)), rated_ms, deleted = 1 OR has_score = 1) AS c_rating,
            argMaxStateIf(comment, rated_ms, deleted = 1 OR has_score = 1 OR comment != '') AS c_comment,
            groupArrayStateIf('', 0) AS c_transfers,
            groupArrayStateIf('', 0) AS c_postbacks,
            countStateIf(0) AS c_events
        FROM
        (
            SELECT organization_id, chat_id, rated_ms, event_id, deleted, score, has_score, comment
            FROM {{.DB}}.chat_ratings
        ) AS r
        ALL INNER JOIN
        (
            SELECT organization_id, chat_id, thread_id AS c_thread, started_ms AS c_thread_start
            FROM {{.DB}}.chat_threads
            WHERE chat_id IN (SELECT chat_id FROM {{.DB}}.chat_ratings)
        ) AS t USING (organization_id, chat_id)
        GROUP BY organization_id, event_id
    )
    GROUP BY organization_id, thread_id
);
