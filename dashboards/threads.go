package dashboards

import "strings"

// threadsInner merges the per-thread states of thread_state (migration
// 0100) and of the chat ratings attributed to threads (chatRatingStates).
// WHERE (possibly empty) restricts the rows of both read before merging:
// panels restrict to the hours of their range; the `threads` view reads all.
const threadsInner = `SELECT
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
        SELECT ` + stateColumns + `
        FROM {db}.thread_state{where}
        UNION ALL
        ` + chatRatingStates + `
    )
    GROUP BY organization_id, thread_id`

// stateColumns are the columns of thread_state that threadsInner merges.
const stateColumns = `organization_id, thread_id, chat_id, started_ms, ended_ms, last_event_ms, customer_id,
            country_code, start_url, greeting_id, continuous, welcome, group_ids, agent_ids, messages, queued_ms,
            agent_joined_ms, tag_ops, rating, rating_comment, transfers, postbacks, events`

// chatRatingStates turns each rating given on a chat (chat_ratings,
// migration 0107) into partial states of the thread it counts for: the
// chat's thread with the latest start at or before the rating, or, for a
// rating before every thread of the chat, the first one (chat_threads: all
// threads of the chats with ratings to attribute, whatever their hour; by
// chat_id alone, which 18.16 checks several times faster than the
// (organization_id, chat_id) tuple, the join then matching organizations).
// The ordering key is the start when it is at or before the rating, and
// minus the start otherwise, so its maximum is exactly that thread. Only
// rating, rating_comment and last_event_ms get values; the other states
// are empty, so merging them changes nothing. Grouped by the rating's
// event, a duplicate rating row or thread row changes nothing either.
const chatRatingStates = `SELECT
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
            FROM {db}.chat_ratings{where}
        ) AS r
        ALL INNER JOIN
        (
            SELECT organization_id, chat_id, thread_id AS c_thread, started_ms AS c_thread_start
            FROM {db}.chat_threads
            WHERE chat_id IN (SELECT chat_id FROM {db}.chat_ratings{where})
        ) AS t USING (organization_id, chat_id)
        GROUP BY organization_id, event_id`

// threadsOuter derives every per-thread metric from the merged states.
// No lambda captures a column (ClickHouse 18.16 drops columns that are only
// referenced inside a lambda from a subquery): every array a lambda needs
// is passed as an argument. Tag operations are newest first, so the first
// operation of each tag (arrayEnumerateUniq = 1) is its current state.
// Message times are encoded ms*2 + is_agent, sorted; s_prev is the author
// flag of the previous message (1 before the first), so "an agent message
// right after a customer message" is a response and "a customer message
// right after an agent message (or first)" starts a run.
const threadsOuter = `SELECT
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
    ` + threadsInner + `
)`

// ThreadsSQL returns the `threads` derivation reading db.thread_state with
// an optional WHERE condition on the state rows (hour, organization_id).
// With no condition it is exactly the body of the `threads` view (migration 0100;
// TestThreadsViewMatches keeps the two identical).
func ThreadsSQL(db, where string) string {
	w := ""
	if where != "" {
		w = "\n            WHERE " + where
	}
	return strings.NewReplacer("{db}", db, "{where}", w).Replace(threadsOuter)
}

// threadsWindow is how the live part of the panels' {threads} source
// restricts the state rows it merges: the hours from an hour before the
// range (or before the settled watermark, whichever is later; clock skew)
// to a day after it. A thread's rows that occur more than a day after the
// end of the range (a rating two days later, a week-long continuous chat)
// are not seen by that panel; the `threads` view sees everything.
const threadsWindow = `hour >= toDateTime(intDiv(greatest(toUInt64({from_ms}), {settled_ms}), 1000) - 3600, 'UTC')
    AND hour < toDateTime(intDiv({to_ms}, 1000) + 86400, 'UTC')
    AND ({org} = '' OR organization_id = {org})`

// settledWatermark is {settled_ms}: threads that started before it are read
// from threads_settled (one finished row each, written per day by the
// Settler), later ones are merged live from thread_state. 0 when nothing is
// settled yet.
const settledWatermark = `(SELECT max(upto_ms) FROM {db}.rollup_days WHERE name = 'threads_settled')`

// threadColumns are the columns of the `threads` view, in its order; the
// table threads_settled (migration 0103) has exactly these
// (TestSettledTableMatchesView).
var threadColumns = []string{
	"organization_id", "thread_id", "chat_id", "started_at", "started_ms", "ended_at", "ended_ms", "active",
	"duration_s", "customer_id", "country_code", "start_url", "greeting_id", "continuous", "welcome_message",
	"group_ids", "agent_ids", "messages", "agent_messages", "customer_messages", "engagement",
	"first_customer_message_ms", "first_response_ms", "responded", "first_response_time_s", "response_msgs",
	"response_times_s", "missed", "queued", "queue_left", "queue_entered", "queue_wait_s", "tags", "rating",
	"rated_good", "rated_bad", "rating_comment", "transfers", "postbacks", "events", "last_event_at",
}

// threadsSource is what {threads} expands to: the settled rows of the
// threads that started in the range before the watermark, and the live
// merge of the others. Both parts already restrict to the range and the
// organization, so each reads only its days; {thread_filter} still applies
// on top.
func threadsSource() string {
	cols := strings.Join(threadColumns, ", ")
	return `(
    SELECT ` + cols + `
    FROM {db}.threads_settled
    WHERE started_ms >= {from_ms} AND started_ms < least(toUInt64({to_ms}), {settled_ms})
        AND ({org} = '' OR organization_id = {org})
    UNION ALL
    SELECT ` + cols + `
    FROM
    (
` + ThreadsSQL("{db}", threadsWindow) + `
    )
    WHERE started_ms >= {settled_ms} AND started_ms >= {from_ms} AND started_ms < {to_ms}
)`
}

// webhookWatermark is the end of the days rolled up into webhook_hours.
const webhookWatermark = `(SELECT max(upto_ms) FROM {db}.rollup_days WHERE name = 'webhook_hours')`

// webhookSource is what {webhook_minutes} expands to: webhook_minutes rows
// of the range, organization-filtered, where the whole hours inside the
// range that are rolled up come from webhook_hours instead (one row per
// hour instead of sixty). Hours are used only when the chart bucket is a
// whole number of hours, so an hour row never straddles two buckets; the
// minutes before the first whole hour and after the last one still come
// from webhook_minutes, so totals are exact for any range.
const webhookSource = `(
    SELECT minute, organization_id, action, webhooks, events, latency_ms_sum, latency_ms_max, last_received_ms
    FROM {db}.webhook_minutes
    WHERE minute >= toDateTime(intDiv({from_ms}, 1000), 'UTC') AND minute < toDateTime(intDiv({to_ms}, 1000), 'UTC')
        AND NOT (minute >= toDateTime({hours_from_s}, 'UTC') AND minute < toDateTime({hours_to_s}, 'UTC'))
        AND ({org} = '' OR organization_id = {org})
    UNION ALL
    SELECT hour AS minute, organization_id, action, webhooks, events, latency_ms_sum, latency_ms_max, last_received_ms
    FROM {db}.webhook_hours
    WHERE hour >= toDateTime({hours_from_s}, 'UTC') AND hour < toDateTime({hours_to_s}, 'UTC')
        AND ({org} = '' OR organization_id = {org})
)`

// The whole hours of the range served by webhook_hours, epoch seconds; an
// empty interval (to <= from) when the bucket is not whole hours. No if():
// 18.16 then no longer uses the condition to select parts, and reads every
// minute of the range.
const (
	webhookHoursFrom = `intDiv(toUInt64({from_ms}) + 3599999, 3600000) * 3600`
	webhookHoursTo   = `intDiv(least(toUInt64({to_ms}), {webhook_ms}), 3600000) * 3600 * ({bucket_s} % 3600 = 0)`
)
