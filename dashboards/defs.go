package dashboards

import (
	"strconv"
	"strings"
)

// All returns every prebuilt dashboard, in menu order.
func All() []Dashboard {
	return []Dashboard{overview(), agents(), groupsTags(), pipeline()}
}

// frtBucket is the SQL twin of simulate.FRTBucket.
const frtBucket = `multiIf(x < 15, '0-15s', x < 30, '15-30s', x < 60, '30-60s', x < 120, '1-2m', x < 300, '2-5m', '5m+')`

const timeBucket = `toDateTime(intDiv(intDiv(started_ms, 1000), {bucket_s}) * {bucket_s}, 'UTC')`

func overview() Dashboard {
	return Dashboard{
		UID: "lc-overview", Title: "Chats overview",
		Description: "LiveChat Reports parity: chats, engagement, satisfaction, response times, duration, missed and queued chats. A chat is a thread, bucketed by its start.",
		Panels: []Panel{
			{ID: "total_chats", Title: "Total chats", Viz: Stat, Unit: UnitNone, Width: 6, Height: 5,
				Description: "Threads started in the range (LiveChat chats/total_chats); continuous = messaging-mode chats.",
				SQL: `SELECT count() AS chats, sum(continuous) AS continuous
FROM {threads}
WHERE {thread_filter}`},
			{ID: "missed_chats", Title: "Missed chats", Viz: Stat, Unit: UnitNone, Width: 6, Height: 5,
				Description: "Closed chats without any agent message (the automatic welcome message does not count).",
				SQL: `SELECT sum(missed) AS missed_chats, if(count() > 0, 100 * missed_chats / count(), 0) AS missed_pct
FROM {threads}
WHERE {thread_filter}`},
			{ID: "satisfaction", Title: "Chat satisfaction", Viz: Stat, Unit: UnitPercent, Width: 6, Height: 5,
				Description: "good / (good + bad) of the last rating of every chat (chats/ratings).",
				SQL: `SELECT if(good + bad > 0, 100 * good / (good + bad), 0) AS satisfaction, good, bad,
    if(chats > 0, 100 * (good + bad) / chats, 0) AS rated_pct
FROM
(
    SELECT sum(rated_good) AS good, sum(rated_bad) AS bad, count() AS chats
    FROM {threads}
    WHERE {thread_filter}
)`},
			{ID: "first_response_time", Title: "First response time", Viz: Stat, Unit: UnitSeconds, Width: 6, Height: 5,
				Description: "Time from the customer's first message to the first agent reply after it (welcome message excluded); median, mean and how many chats had one.",
				SQL: `SELECT quantileExactIf(0.5)(first_response_time_s, responded = 1) AS median_s,
    avgIf(first_response_time_s, responded = 1) AS avg_s,
    sum(responded) AS chats
FROM {threads}
WHERE {thread_filter}`},
			{ID: "chats_over_time", Title: "Chats over time", Viz: TimeSeries, Unit: UnitNone, Width: 16, Height: 8,
				Description: "Chats started per bucket, and how many of them were missed.",
				SQL: `SELECT ` + timeBucket + ` AS t, count() AS chats, sum(missed) AS missed
FROM {threads}
WHERE {thread_filter}
GROUP BY t
ORDER BY t`},
			{ID: "engagement", Title: "Chat engagement", Viz: Bar, Unit: UnitNone, Width: 8, Height: 8,
				Description: "How chats started (chats/engagement): from a greeting, by the customer without one, or by an agent.",
				SQL: `SELECT engagement, count() AS chats
FROM {threads}
WHERE {thread_filter}
GROUP BY engagement
ORDER BY engagement`},
			{ID: "frt_distribution", Title: "First response time distribution", Viz: Bar, Unit: UnitNone, Width: 8, Height: 8,
				Description: "Chats by first response time.",
				SQL: `SELECT ` + frtBucket + ` AS bucket, count() AS chats
FROM (SELECT first_response_time_s AS x FROM {threads} WHERE {thread_filter} AND responded = 1)
GROUP BY bucket
ORDER BY min(x)`},
			{ID: "response_time", Title: "Response time", Viz: Stat, Unit: UnitSeconds, Width: 8, Height: 8,
				Description: "Every agent reply to a run of customer messages, timed from the run's first message (chats/response_time): mean, median and number of responses.",
				SQL: `SELECT avg(rt) AS avg_s, quantileExact(0.5)(rt) AS median_s, count() AS responses
FROM {threads}
ARRAY JOIN response_times_s AS rt
WHERE {thread_filter}`},
			{ID: "response_time_distribution", Title: "Response time distribution", Viz: Bar, Unit: UnitNone, Width: 8, Height: 8,
				Description: "Agent responses by response time.",
				SQL: `SELECT ` + frtBucket + ` AS bucket, count() AS responses
FROM (SELECT rt AS x FROM {threads} ARRAY JOIN response_times_s AS rt WHERE {thread_filter})
GROUP BY bucket
ORDER BY min(x)`},
			{ID: "chat_duration", Title: "Chat duration", Viz: TimeSeries, Unit: UnitSeconds, Width: 16, Height: 8, Hidden: []string{"closed_chats"},
				Description: "Mean duration (start to close) of closed chats per bucket.",
				SQL: `SELECT ` + timeBucket + ` AS t, avg(duration_s) AS avg_duration_s, count() AS closed_chats
FROM {threads}
WHERE {thread_filter} AND ended_ms > 0
GROUP BY t
ORDER BY t`},
			{ID: "duration_avg", Title: "Average chat duration", Viz: Stat, Unit: UnitSeconds, Width: 8, Height: 8,
				Description: "Mean duration of closed chats in the range (chats/duration).",
				SQL: `SELECT avgIf(duration_s, ended_ms > 0) AS avg_s, countIf(ended_ms > 0) AS closed_chats
FROM {threads}
WHERE {thread_filter}`},
			{ID: "queue", Title: "Queued customers and abandonment", Viz: Table, Unit: UnitNone, Width: 24, Height: 6,
				Description: "Customers who waited in the queue: entered a chat (wait until an agent joined) or left the queue (abandoned). Abandonment = left / (left + entered).",
				SQL: `SELECT entered, entered_avg_wait_s, left_queue, left_avg_wait_s,
    if(entered + left_queue > 0, 100 * left_queue / (entered + left_queue), 0) AS abandonment_pct
FROM
(
    SELECT sum(queue_entered) AS entered, if(entered > 0, sumIf(queue_wait_s, queue_entered = 1) / entered, 0) AS entered_avg_wait_s,
        sum(queue_left) AS left_queue, if(left_queue > 0, sumIf(queue_wait_s, queue_left = 1) / left_queue, 0) AS left_avg_wait_s
    FROM {threads}
    WHERE {thread_filter}
)`},
		},
	}
}

func agents() Dashboard {
	return Dashboard{
		UID: "lc-agents", Title: "Agents",
		Description: "Per-agent chats, LiveChat's satisfaction ranking, chatting time and availability from routing status.",
		Panels: []Panel{
			{ID: "chats_per_agent", Title: "Chats per agent", Viz: Bar, Unit: UnitNone, Width: 12, Height: 14,
				Description: "Chats an agent took part in (assigned, joined or transferred to); a chat with two agents counts for both.",
				SQL: `SELECT agent, count() AS chats
FROM {threads}
ARRAY JOIN agent_ids AS agent
WHERE {thread_filter} AND ({agent} = '' OR agent = {agent})
GROUP BY agent
ORDER BY chats DESC, agent
LIMIT 50`},
			{ID: "agent_ranking", Title: "Agent ranking (satisfaction)", Viz: Table, Unit: UnitNone, Width: 12, Height: 14,
				Description: "LiveChat's chats/ranking: Wilson score lower bound (z = 2.69) of good vs bad ratings.",
				SQL: `SELECT agent, chats, good, bad,
    if(good + bad = 0, 0,
       (p + 2 * k - 2.69 * sqrt((k / n + p * (1 - p)) / n)) / (1 + 4 * k)) AS score
FROM
(
    SELECT agent, count() AS chats, sum(rated_good) AS good, sum(rated_bad) AS bad,
        greatest(good + bad, 1) AS n, good / n AS p, 2.69 * 2.69 / (4 * n) AS k
    FROM {threads}
    ARRAY JOIN agent_ids AS agent
    WHERE {thread_filter} AND ({agent} = '' OR agent = {agent})
    GROUP BY agent
)
ORDER BY score DESC, agent
LIMIT 100`},
			{ID: "chatting_time", Title: "Chatting time", Viz: Bar, Unit: UnitSeconds, Width: 12, Height: 14,
				Description: "Sum of the durations of the closed chats each agent took part in.",
				SQL: `SELECT agent, sum(duration_s) AS chatting_s
FROM {threads}
ARRAY JOIN agent_ids AS agent
WHERE {thread_filter} AND ended_ms > 0 AND ({agent} = '' OR agent = {agent})
GROUP BY agent
ORDER BY chatting_s DESC, agent
LIMIT 50`},
			{ID: "availability", Title: "Availability (accepting chats)", Viz: Bar, Unit: UnitSeconds, Width: 12, Height: 14,
				Description: "Time each agent spent accepting chats in the range, from routing_status_set (agents/availability). The group filter does not apply (webhooks do not say an agent's groups).",
				SQL: `SELECT agent, arraySum(arrayMap((t0, a, t1) -> if(a = 1,
        greatest(toInt64(0), toInt64(least(t1, end_ms)) - toInt64(greatest(t0, toUInt64({from_ms})))), toInt64(0)),
        ts, acc, arrayPushBack(arrayPopFront(ts), end_ms))) / 1000 AS accepting_s
FROM
(
    SELECT agent_id AS agent,
        arrayMap(x -> tupleElement(x, 1), s) AS ts,
        arrayMap(x -> tupleElement(x, 2), s) AS acc,
        least(toUInt64({to_ms}), toUInt64(toUnixTimestamp(now())) * 1000) AS end_ms
    FROM
    (
        SELECT agent_id, arraySort(groupArray((changed_at_ms, accepting))) AS s
        FROM {db}.agent_status
        WHERE changed_at_ms < {to_ms} AND ({org} = '' OR organization_id = {org}) AND ({agent} = '' OR agent_id = {agent})
        GROUP BY agent_id
    )
)
ORDER BY accepting_s DESC, agent
LIMIT 50`},
		},
	}
}

func groupsTags() Dashboard {
	return Dashboard{
		UID: "lc-groups-tags", Title: "Groups & tags",
		Description: "Chats per group (initial group and transfer targets), satisfaction per group, tag usage.",
		Panels: []Panel{
			{ID: "chats_per_group", Title: "Chats per group", Viz: Bar, Unit: UnitNone, Width: 12, Height: 8,
				Description: "Chats per group (chats/groups): a chat counts for its starting group and every group it was transferred to.",
				SQL: `SELECT concat('group ', toString(g)) AS group, count() AS chats
FROM {threads}
ARRAY JOIN group_ids AS g
WHERE {thread_filter} AND ({group} < 0 OR g = toUInt32({group}))
GROUP BY g
ORDER BY g`},
			{ID: "group_table", Title: "Groups: chats, missed, satisfaction", Viz: Table, Unit: UnitNone, Width: 12, Height: 8,
				Description: "Per group: chats, missed chats, ratings and satisfaction %.",
				SQL: `SELECT concat('group ', toString(g)) AS group, count() AS chats, sum(missed) AS missed,
    sum(rated_good) AS good, sum(rated_bad) AS bad,
    if(good + bad > 0, 100 * good / (good + bad), 0) AS satisfaction_pct
FROM {threads}
ARRAY JOIN group_ids AS g
WHERE {thread_filter} AND ({group} < 0 OR g = toUInt32({group}))
GROUP BY g
ORDER BY g`},
			{ID: "tag_usage", Title: "Tag usage", Viz: Bar, Unit: UnitNone, Width: 12, Height: 8,
				Description: "Chats per tag (tags/chat_usage), after untagging.",
				SQL: `SELECT tag, count() AS chats
FROM {threads}
ARRAY JOIN tags AS tag
WHERE {thread_filter}
GROUP BY tag
ORDER BY chats DESC, tag`},
			{ID: "tagging", Title: "Tagged chats and transfers", Viz: Stat, Unit: UnitNone, Width: 12, Height: 8,
				Description: "Chats with at least one tag, their share, and chats that were transferred.",
				SQL: `SELECT countIf(length(tags) > 0) AS tagged, if(count() > 0, 100 * countIf(length(tags) > 0) / count(), 0) AS tagged_pct,
    countIf(transfers > 0) AS transferred
FROM {threads}
WHERE {thread_filter}`},
		},
	}
}

// CanaryBuckets are the upper bounds (seconds) of the canary histogram:
// processor.CanaryBuckets, which lcpipe_canary_freshness_seconds uses (a
// test keeps them equal).
var CanaryBuckets = []float64{0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300, 600}

const (
	lagFilter    = `sampled_at_ms >= {from_ms} AND sampled_at_ms < {to_ms}`
	canaryFilter = `queryable_at_ms >= {from_ms} AND queryable_at_ms < {to_ms}`
)

// canaryHistogramSQL counts the range's canaries per latency bucket, every
// bucket present (zero counts too) in order.
func canaryHistogramSQL() string {
	var labels, counts []string
	prev := ""
	for _, b := range CanaryBuckets {
		v := strconv.FormatFloat(b, 'f', -1, 64)
		labels = append(labels, "'≤ "+v+" s'")
		if prev == "" {
			counts = append(counts, "countIf(l <= "+v+")")
		} else {
			counts = append(counts, "countIf(l > "+prev+" AND l <= "+v+")")
		}
		prev = v
	}
	labels = append(labels, "'> "+prev+" s'")
	counts = append(counts, "countIf(l > "+prev+")")
	// ARRAY JOIN of the one aggregated row keeps the buckets' order.
	return `SELECT bucket, canaries
FROM
(
    SELECT [` + strings.Join(labels, ", ") + `] AS bucket_labels,
        [` + strings.Join(counts, ", ") + `] AS bucket_counts
    FROM
    (
        SELECT (toInt64(queryable_at_ms) - toInt64(sent_at_ms)) / 1000 AS l
        FROM {db}.pipeline_canaries
        WHERE ` + canaryFilter + `
    )
)
ARRAY JOIN bucket_labels AS bucket, bucket_counts AS canaries`
}

func pipeline() Dashboard {
	const flushFilter = `flushed_at_ms >= {from_ms} AND flushed_at_ms < {to_ms}`
	return Dashboard{
		UID: "lc-pipeline", Title: "Pipeline health",
		Description: "The pipeline's own facts: webhooks per minute by action, received-to-queryable latency, duplicates dropped, dead letters, the Kafka consumer lag and the freshness canary. Flush, lag and canary facts (pipeline_batches, pipeline_lag, pipeline_canaries) are not per organization: the organization filter does not apply to them. Canary webhooks (action lcpipe_canary, organization lcpipe-canary) are counted in the webhook panels: they are real webhooks through the pipeline.",
		Panels: []Panel{
			{ID: "webhooks_per_minute", Title: "Webhooks per minute by action", Viz: TimeSeries, Long: true, Unit: UnitPerMin, Width: 24, Height: 9,
				Description: "Distinct webhooks stored per minute (after de-duplication), by action, by time of receipt.",
				SQL: `SELECT toDateTime(intDiv(toUInt32(minute), {bucket_s}) * {bucket_s}, 'UTC') AS t, action,
    sumMerge(webhooks) * 60 / {bucket_s} AS per_minute
FROM {webhook_minutes}
GROUP BY t, action
ORDER BY t, action`},
			{ID: "webhooks_by_action", Title: "Webhooks by action", Viz: Table, Unit: UnitNone, Width: 12, Height: 9,
				Description: "Distinct webhooks and stored event rows in the range, by action.",
				SQL: `SELECT action, sumMerge(webhooks) AS webhooks, countMerge(events) AS events
FROM {webhook_minutes}
GROUP BY action
ORDER BY webhooks DESC, action`},
			{ID: "freshness", Title: "Received → queryable latency", Viz: Stat, Unit: UnitSeconds, Width: 12, Height: 9,
				Description: "Time from ingest receiving a webhook to its row being in ClickHouse (mean and worst; second resolution), and the age of the newest webhook stored.",
				SQL: `SELECT if(n > 0, lat_sum / n / 1000, 0) AS mean_s, lat_max / 1000 AS max_s,
    if(last_ms > 0, greatest(0, toInt64(toUnixTimestamp(now())) - toInt64(intDiv(last_ms, 1000))), 0) AS newest_age_s
FROM
(
    SELECT sumMerge(latency_ms_sum) AS lat_sum, countMerge(events) AS n, maxMerge(latency_ms_max) AS lat_max,
        maxMerge(last_received_ms) AS last_ms
    FROM {webhook_minutes}
)`},
			{ID: "dedup_dlq", Title: "Duplicates and dead letters", Viz: Stat, Unit: UnitNone, Width: 12, Height: 6,
				Description: "From the processor's flushes (pipeline_batches): rows dropped as duplicates (same event id, or the same state change within the dedup window), their share of decoded rows, records sent to the dead-letter topic, and rows inserted.",
				SQL: `SELECT sum(duplicates_identity) + sum(duplicates_window) AS duplicates,
    if(sum(rows_in) > 0, 100 * duplicates / sum(rows_in), 0) AS duplicate_pct,
    sum(dead_letters) AS dead_letters, sum(events_inserted) AS inserted, sum(records) AS records
FROM {db}.pipeline_batches
WHERE ` + flushFilter + ``},
			{ID: "flushes_over_time", Title: "Records, duplicates and dead letters per minute", Viz: TimeSeries, Unit: UnitPerMin, Width: 12, Height: 6,
				Description: "Processor throughput per minute: records consumed, duplicate rows dropped, dead letters.",
				SQL: `SELECT toDateTime(intDiv(toUInt32(flushed_at), {bucket_s}) * {bucket_s}, 'UTC') AS t,
    sum(records) * 60 / {bucket_s} AS records, (sum(duplicates_identity) + sum(duplicates_window)) * 60 / {bucket_s} AS duplicates,
    sum(dead_letters) * 60 / {bucket_s} AS dead_letters
FROM {db}.pipeline_batches
WHERE ` + flushFilter + `
GROUP BY t
ORDER BY t`},
			{ID: "consumer_lag", Title: "Received → stored wait per flush", Viz: Stat, Unit: UnitSeconds, Width: 12, Height: 6,
				Description: "Per flush, how long its oldest and newest records waited between ingest receiving them and the insert: median and p95 over flushes of the oldest record's wait, and the newest record's wait in the last flush. This is not the Kafka lag (records not processed yet): see Kafka consumer lag.",
				SQL: `SELECT quantileExact(0.5)(oldest_s) AS median_oldest_s, quantileExact(0.95)(oldest_s) AS p95_oldest_s,
    argMax(newest_s, flushed_at_ms) AS last_flush_newest_s, count() AS flushes
FROM
(
    SELECT flushed_at_ms, (toInt64(flushed_at_ms) - toInt64(min_received_at_ms)) / 1000 AS oldest_s,
        (toInt64(flushed_at_ms) - toInt64(max_received_at_ms)) / 1000 AS newest_s
    FROM {db}.pipeline_batches
    WHERE ` + flushFilter + ` AND min_received_at_ms > 0
)`},
			{ID: "kafka_lag", Title: "Kafka consumer lag", Viz: Stat, Unit: UnitNone, Width: 6, Height: 6,
				Description: "From Kafka, not from our tables: records in the raw topic the consumer group has not committed yet (log end minus committed offset, summed over partitions, newest sample of each partition in the range), and how many partitions are behind. The processors sample it every LAG_INTERVAL into pipeline_lag; Grafana reads the same gauge from Prometheus (lcpipe_processor_lag_records).",
				SQL: `SELECT sum(records) AS lag_records, countIf(records > 0) AS partitions_behind
FROM
(
    SELECT partition, argMax(lag_records, sampled_at_ms) AS records
    FROM {db}.pipeline_lag
    WHERE ` + lagFilter + `
    GROUP BY partition
)`,
				Prom: []PromQuery{{Expr: `sum(max by (partition) (lcpipe_processor_lag_records))`, Legend: "lag_records"},
					{Expr: `count(max by (partition) (lcpipe_processor_lag_records) > 0) or vector(0)`, Legend: "partitions_behind"}}},
			{ID: "kafka_lag_age", Title: "Oldest unprocessed record", Viz: Stat, Unit: UnitSeconds, Width: 6, Height: 6,
				Description: "Age of the oldest record not committed yet, any partition (0 without lag), and how old that sample is: a sample that keeps ageing means no processor is sampling (none running). Prometheus: lcpipe_processor_lag_seconds.",
				SQL: `SELECT max(seconds) AS oldest_s, if(count() > 0, greatest(0, toInt64(toUnixTimestamp(now())) - toInt64(intDiv(max(at_ms), 1000))), 0) AS sample_age_s
FROM
(
    SELECT partition, argMax(lag_seconds, sampled_at_ms) AS seconds, max(sampled_at_ms) AS at_ms
    FROM {db}.pipeline_lag
    WHERE ` + lagFilter + `
    GROUP BY partition
)`,
				Prom: []PromQuery{{Expr: `max(lcpipe_processor_lag_seconds)`, Legend: "oldest_s"}, {Expr: `min(lcpipe_processor_lag_sample_age_seconds)`, Legend: "sample_age_s"}}},
			{ID: "kafka_lag_over_time", Title: "Kafka consumer lag over time", Viz: TimeSeries, Unit: UnitNone, Width: 12, Height: 6,
				Description: "Records not committed yet (all partitions), the largest sample per bucket.",
				SQL: `SELECT toDateTime(intDiv(intDiv(at_ms, 1000), {bucket_s}) * {bucket_s}, 'UTC') AS t, max(total) AS lag_records
FROM
(
    SELECT instance, sampled_at_ms AS at_ms, sum(lag_records) AS total
    FROM {db}.pipeline_lag
    WHERE ` + lagFilter + `
    GROUP BY instance, at_ms
)
GROUP BY t
ORDER BY t`,
				Prom: []PromQuery{{Expr: `sum(max by (partition) (lcpipe_processor_lag_records))`, Legend: "lag_records"}}},
			{ID: "canary", Title: "Freshness canary", Viz: Stat, Unit: UnitSeconds, Width: 12, Height: 6, Hidden: []string{"canaries"},
				Description: "Ingest posts a synthetic webhook to itself every CANARY_INTERVAL; the processor records when its row became queryable (pipeline_canaries). Time since the last canary was queryable (grows when the pipeline stalls), its sent → queryable latency, and the median and p95 over the range. Canary rows never count in chat analytics.",
				SQL: `SELECT if(n > 0, greatest(0, toInt64(toUnixTimestamp(now())) - toInt64(intDiv(last_ms, 1000))), 0) AS last_age_s,
    if(n > 0, last_latency_s, 0) AS last_latency_s, if(n > 0, median_s, 0) AS median_s, if(n > 0, p95_s, 0) AS p95_s, n AS canaries
FROM
(
    SELECT count() AS n, max(queryable_at_ms) AS last_ms, argMax(latency_s, queryable_at_ms) AS last_latency_s,
        quantileExact(0.5)(latency_s) AS median_s, quantileExact(0.95)(latency_s) AS p95_s
    FROM
    (
        SELECT queryable_at_ms, (toInt64(queryable_at_ms) - toInt64(sent_at_ms)) / 1000 AS latency_s
        FROM {db}.pipeline_canaries
        WHERE ` + canaryFilter + `
    )
)`},
			{ID: "canary_histogram", Title: "Canary sent → queryable", Viz: Bar, Unit: UnitNone, Width: 12, Height: 9,
				Description: "Canaries of the range by latency bucket (the buckets of the lcpipe_canary_freshness_seconds histogram).",
				SQL:         canaryHistogramSQL()},
		},
	}
}
