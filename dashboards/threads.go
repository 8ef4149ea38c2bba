package dashboards

import "strings"

// threadsInner merges the per-thread states of thread_state (migration 0100). WHERE
// (possibly empty) restricts the state rows read before merging: panels
// restrict to the hours of their range; the `threads` view reads all.
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
    FROM {db}.thread_state{where}
    GROUP BY organization_id, thread_id`

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
		w = "\n    WHERE " + where
	}
	return strings.NewReplacer("{db}", db, "{where}", w).Replace(threadsOuter)
}

// threadsWindow is how the panels' {threads} source restricts the state
// rows it merges: the hours from an hour before the range (clock skew)
// to a day after it. A thread's rows that occur more than a day after the
// end of the range (a rating two days later, a week-long continuous chat)
// are not seen by that panel; the `threads` view sees everything.
const threadsWindow = `hour >= toDateTime(intDiv({from_ms}, 1000) - 3600, 'UTC')
    AND hour < toDateTime(intDiv({to_ms}, 1000) + 86400, 'UTC')
    AND ({org} = '' OR organization_id = {org})`
