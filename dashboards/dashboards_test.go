package dashboards

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/lcpipe/lcpipe/internal/simulate"
	"github.com/lcpipe/lcpipe/processor"
)

// seeded is the deterministic dataset of the panel tests: 2 days, 2500
// threads, with more retries and late deliveries than the defaults.
func seeded(t testing.TB) *simulate.Dataset {
	t.Helper()
	cfg := simulate.DefaultConfig()
	cfg.Seed = 20260314
	cfg.RetryRate, cfg.LateRate = 0.08, 0.08
	ds, err := simulate.Generate(cfg, time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC), 48*time.Hour, 2500)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func near(a, b float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return false
	}
	return math.Abs(a-b) <= 1e-6*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}

// cell returns a named column of a row.
func cell(t *testing.T, r *Result, row int, name string) float64 {
	t.Helper()
	for i, c := range r.Columns {
		if c.Name == name {
			if row >= len(r.Rows) {
				t.Fatalf("no row %d (have %d)", row, len(r.Rows))
			}
			return Float(r.Rows[row][i])
		}
	}
	t.Fatalf("no column %q in %v", name, r.Columns)
	return 0
}

// byLabel maps the first (string) column to the named numeric column.
func byLabel(t *testing.T, r *Result, name string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for i := range r.Rows {
		out[fmt.Sprint(r.Rows[i][0])] = cell(t, r, i, name)
	}
	return out
}

func wantInt(t *testing.T, what string, got float64, want int) {
	t.Helper()
	if got != float64(want) {
		t.Errorf("%s = %v, want %d", what, got, want)
	}
}

func wantFloat(t *testing.T, what string, got, want float64) {
	t.Helper()
	if !near(got, want) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func wantMap[V int | float64](t *testing.T, what string, got map[string]float64, want map[string]V) {
	t.Helper()
	keys := map[string]bool{}
	for k := range got {
		keys[k] = true
	}
	for k := range want {
		keys[k] = true
	}
	var bad []string
	for k := range keys {
		if !near(got[k], float64(want[k])) {
			bad = append(bad, fmt.Sprintf("%s: got %v want %v", k, got[k], want[k]))
		}
	}
	sort.Strings(bad)
	if len(bad) > 0 {
		t.Errorf("%s differs:\n  %s", what, strings.Join(bad, "\n  "))
	}
}

type checkCtx struct {
	m  simulate.Metrics
	ds *simulate.Dataset
	f  simulate.Filter
	st *processor.Stats
}

// checks holds, for every panel, how its rows must equal the values
// simulate computed from the ground truth. A panel without a check fails
// TestPanelsMatchSimulation.
var checks = map[string]func(t *testing.T, r *Result, c checkCtx){
	"total_chats": func(t *testing.T, r *Result, c checkCtx) {
		wantInt(t, "chats", cell(t, r, 0, "chats"), c.m.Chats)
		wantInt(t, "continuous", cell(t, r, 0, "continuous"), c.m.Continuous)
	},
	"missed_chats": func(t *testing.T, r *Result, c checkCtx) {
		wantInt(t, "missed", cell(t, r, 0, "missed_chats"), c.m.Missed)
	},
	"satisfaction": func(t *testing.T, r *Result, c checkCtx) {
		wantFloat(t, "satisfaction", cell(t, r, 0, "satisfaction"), c.m.Satisfaction)
		wantInt(t, "good", cell(t, r, 0, "good"), c.m.Good)
		wantInt(t, "bad", cell(t, r, 0, "bad"), c.m.Bad)
	},
	"first_response_time": func(t *testing.T, r *Result, c checkCtx) {
		wantFloat(t, "median", cell(t, r, 0, "median_s"), c.m.FirstResponseMedian)
		wantFloat(t, "avg", cell(t, r, 0, "avg_s"), c.m.FirstResponseAvg)
		wantInt(t, "chats", cell(t, r, 0, "chats"), c.m.FirstResponseCount)
	},
	"chats_over_time": func(t *testing.T, r *Result, c checkCtx) {
		var chats, missed float64
		for i := range r.Rows {
			chats += cell(t, r, i, "chats")
			missed += cell(t, r, i, "missed")
		}
		wantInt(t, "sum chats", chats, c.m.Chats)
		wantInt(t, "sum missed", missed, c.m.Missed)
	},
	"engagement": func(t *testing.T, r *Result, c checkCtx) {
		wantMap(t, "engagement", byLabel(t, r, "chats"), c.m.Engagement)
	},
	"frt_distribution": func(t *testing.T, r *Result, c checkCtx) {
		wantMap(t, "frt buckets", byLabel(t, r, "chats"), c.m.FirstResponseBuckets)
	},
	"response_time": func(t *testing.T, r *Result, c checkCtx) {
		wantFloat(t, "avg", cell(t, r, 0, "avg_s"), c.m.ResponseAvg)
		wantFloat(t, "median", cell(t, r, 0, "median_s"), c.m.ResponseMedian)
		wantInt(t, "responses", cell(t, r, 0, "responses"), c.m.ResponseCount)
	},
	"response_time_distribution": func(t *testing.T, r *Result, c checkCtx) {
		wantMap(t, "response buckets", byLabel(t, r, "responses"), c.m.ResponseBuckets)
	},
	"chat_duration": func(t *testing.T, r *Result, c checkCtx) {
		var sum, n float64
		for i := range r.Rows {
			k := cell(t, r, i, "closed_chats")
			sum += k * cell(t, r, i, "avg_duration_s")
			n += k
		}
		wantInt(t, "closed chats", n, c.m.Chats)
		wantFloat(t, "mean duration", sum/n, c.m.DurationAvg)
	},
	"duration_avg": func(t *testing.T, r *Result, c checkCtx) {
		wantFloat(t, "avg", cell(t, r, 0, "avg_s"), c.m.DurationAvg)
	},
	"queue": func(t *testing.T, r *Result, c checkCtx) {
		wantInt(t, "entered", cell(t, r, 0, "entered"), c.m.QueueEntered.Count)
		wantInt(t, "left", cell(t, r, 0, "left_queue"), c.m.QueueLeft.Count)
		wantFloat(t, "entered wait", cell(t, r, 0, "entered_avg_wait_s"), c.m.QueueEntered.AvgWait)
		wantFloat(t, "left wait", cell(t, r, 0, "left_avg_wait_s"), c.m.QueueLeft.AvgWait)
		wantFloat(t, "abandonment", cell(t, r, 0, "abandonment_pct"), c.m.Abandonment)
	},
	"chats_per_agent": func(t *testing.T, r *Result, c checkCtx) {
		want := map[string]int{}
		for a, am := range c.m.Agents {
			if c.f.Agent == "" || a == c.f.Agent {
				want[a] = am.Chats
			}
		}
		wantMap(t, "chats per agent", byLabel(t, r, "chats"), want)
	},
	"agent_ranking": func(t *testing.T, r *Result, c checkCtx) {
		chats, good, bad, score := map[string]int{}, map[string]int{}, map[string]int{}, map[string]float64{}
		for a, am := range c.m.Agents {
			if c.f.Agent == "" || a == c.f.Agent {
				chats[a], good[a], bad[a], score[a] = am.Chats, am.Good, am.Bad, am.Score
			}
		}
		wantMap(t, "ranking chats", byLabel(t, r, "chats"), chats)
		wantMap(t, "ranking good", byLabel(t, r, "good"), good)
		wantMap(t, "ranking bad", byLabel(t, r, "bad"), bad)
		wantMap(t, "ranking score", byLabel(t, r, "score"), score)
	},
	"chatting_time": func(t *testing.T, r *Result, c checkCtx) {
		want := map[string]float64{}
		for a, am := range c.m.Agents {
			if c.f.Agent == "" || a == c.f.Agent {
				want[a] = am.ChattingSeconds
			}
		}
		wantMap(t, "chatting time", byLabel(t, r, "chatting_s"), want)
	},
	"availability": func(t *testing.T, r *Result, c checkCtx) {
		wantMap(t, "availability", byLabel(t, r, "accepting_s"), c.m.Availability)
	},
	"chats_per_group": func(t *testing.T, r *Result, c checkCtx) {
		want := map[string]int{}
		for g, gm := range c.m.Groups {
			if c.f.Group < 0 || int64(g) == c.f.Group {
				want[fmt.Sprintf("group %d", g)] = gm.Chats
			}
		}
		wantMap(t, "chats per group", byLabel(t, r, "chats"), want)
	},
	"group_table": func(t *testing.T, r *Result, c checkCtx) {
		chats, missed, good, bad, sat := map[string]int{}, map[string]int{}, map[string]int{}, map[string]int{}, map[string]float64{}
		for g, gm := range c.m.Groups {
			if c.f.Group >= 0 && int64(g) != c.f.Group {
				continue
			}
			k := fmt.Sprintf("group %d", g)
			chats[k], missed[k], good[k], bad[k] = gm.Chats, gm.Missed, gm.Good, gm.Bad
			if gm.Good+gm.Bad > 0 {
				sat[k] = 100 * float64(gm.Good) / float64(gm.Good+gm.Bad)
			} else {
				sat[k] = 0
			}
		}
		wantMap(t, "group chats", byLabel(t, r, "chats"), chats)
		wantMap(t, "group missed", byLabel(t, r, "missed"), missed)
		wantMap(t, "group good", byLabel(t, r, "good"), good)
		wantMap(t, "group bad", byLabel(t, r, "bad"), bad)
		wantMap(t, "group satisfaction", byLabel(t, r, "satisfaction_pct"), sat)
	},
	"tag_usage": func(t *testing.T, r *Result, c checkCtx) {
		wantMap(t, "tags", byLabel(t, r, "chats"), c.m.Tags)
	},
	"tagging": func(t *testing.T, r *Result, c checkCtx) {
		wantInt(t, "tagged", cell(t, r, 0, "tagged"), c.m.Tagged)
		wantInt(t, "transferred", cell(t, r, 0, "transferred"), c.m.Transfers)
	},
	"webhooks_per_minute": func(t *testing.T, r *Result, c checkCtx) {
		want, _ := c.ds.WebhookCounts(c.f.From, c.f.To, c.f.Org)
		got := map[string]float64{}
		b := float64(Bucket(c.f.From.UnixMilli(), c.f.To.UnixMilli()))
		for i := range r.Rows {
			got[fmt.Sprint(r.Rows[i][1])] += cell(t, r, i, "per_minute") * b / 60
		}
		for k, v := range got {
			got[k] = math.Round(v)
		}
		wantMap(t, "webhooks per action (sum of per-minute)", got, want)
	},
	"webhooks_by_action": func(t *testing.T, r *Result, c checkCtx) {
		want, _ := c.ds.WebhookCounts(c.f.From, c.f.To, c.f.Org)
		wantMap(t, "webhooks per action", byLabel(t, r, "webhooks"), want)
	},
	"dedup_dlq": func(t *testing.T, r *Result, c checkCtx) {
		wantInt(t, "duplicates", cell(t, r, 0, "duplicates"), int(c.st.DupIdentity.Load()+c.st.DupWindow.Load()))
		wantInt(t, "dead letters", cell(t, r, 0, "dead_letters"), int(c.st.DeadLetters.Load()))
		wantInt(t, "inserted", cell(t, r, 0, "inserted"), int(c.st.Inserted.Load()))
		wantInt(t, "records", cell(t, r, 0, "records"), len(c.ds.Deliveries))
		if _, retries := c.ds.WebhookCounts(c.ds.From.Add(-time.Hour), c.ds.To.Add(24*time.Hour), ""); cell(t, r, 0, "duplicates") < float64(retries) {
			t.Errorf("duplicates %v < retried deliveries %d", cell(t, r, 0, "duplicates"), retries)
		}
	},
	"flushes_over_time": func(t *testing.T, r *Result, c checkCtx) {
		b := float64(Bucket(c.f.From.UnixMilli(), c.f.To.UnixMilli()))
		var recs float64
		for i := range r.Rows {
			recs += cell(t, r, i, "records") * b / 60
		}
		wantInt(t, "records", math.Round(recs), len(c.ds.Deliveries))
	},
	"consumer_lag": func(t *testing.T, r *Result, c checkCtx) {
		if cell(t, r, 0, "flushes") < 1 || cell(t, r, 0, "p95_oldest_s") < cell(t, r, 0, "median_oldest_s") {
			t.Errorf("consumer lag: want flushes and median <= p95, got %v", r.Rows)
		}
	},
	"kafka_lag": func(t *testing.T, r *Result, c checkCtx) {
		if len(r.Rows) != 1 || cell(t, r, 0, "lag_records") < 0 || cell(t, r, 0, "partitions_behind") < 0 {
			t.Errorf("kafka lag: %v", r.Rows)
		}
	},
	"kafka_lag_age": func(t *testing.T, r *Result, c checkCtx) {
		if len(r.Rows) != 1 || cell(t, r, 0, "oldest_s") < 0 || cell(t, r, 0, "sample_age_s") < 0 {
			t.Errorf("oldest unprocessed: %v", r.Rows)
		}
	},
	"kafka_lag_over_time": func(t *testing.T, r *Result, c checkCtx) {
		for i := range r.Rows {
			if cell(t, r, i, "lag_records") < 0 {
				t.Errorf("lag over time: %v", r.Rows)
			}
		}
	},
	// The simulated traffic holds no canary (canary_test.go posts real ones).
	"canary": func(t *testing.T, r *Result, c checkCtx) {
		if len(r.Rows) != 1 || cell(t, r, 0, "canaries") != 0 || cell(t, r, 0, "last_age_s") != 0 {
			t.Errorf("canary without canaries: %v", r.Rows)
		}
	},
	"canary_histogram": func(t *testing.T, r *Result, c checkCtx) {
		if len(r.Rows) != len(CanaryBuckets)+1 {
			t.Errorf("canary histogram: %d buckets, want %d", len(r.Rows), len(CanaryBuckets)+1)
		}
		for i := range r.Rows {
			if cell(t, r, i, "canaries") != 0 {
				t.Errorf("canary histogram without canaries: %v", r.Rows)
			}
		}
	},
	"freshness": func(t *testing.T, r *Result, c checkCtx) {
		if len(r.Rows) != 1 || r.Rows[0][0] == nil || cell(t, r, 0, "max_s") < cell(t, r, 0, "mean_s") {
			t.Errorf("freshness: want one row with mean <= max, got %v", r.Rows)
		}
	},
}

// panelScope says which test cases apply to a panel: thread panels filter
// on the simulated start time; webhook panels on the (simulated) receipt
// time; flush panels on the real time the processor flushed.
func panelScope(id string) string {
	switch id {
	case "webhooks_per_minute", "webhooks_by_action", "freshness":
		return "received"
	case "dedup_dlq", "flushes_over_time", "consumer_lag", "kafka_lag", "kafka_lag_age", "kafka_lag_over_time", "canary", "canary_histogram":
		return "flushed"
	}
	return "threads"
}

// TestPanelsMatchSimulation runs every panel of every dashboard against
// ClickHouse filled through Kafka and the real processor with the seeded
// simulated traffic, retries, out-of-order deliveries, state flips (status
// breaks, re-tags, ratings changed back, agents removed and re-added) and
// ratings given on the chat included, and compares the numbers with the
// simulator's ground truth, for several time ranges and filters.
func TestPanelsMatchSimulation(t *testing.T) {
	ds := seeded(t)
	late, retries := 0, 0
	for _, d := range ds.Deliveries {
		if d.Late {
			late++
		}
		if d.Retry {
			retries++
		}
	}
	if late < 100 || retries < 100 {
		t.Fatalf("dataset should hold many late (%d) and retried (%d) deliveries", late, retries)
	}
	// ... and state flips and ratings given on the chat, which the panels
	// must count (the processor keeps a change back as a new event).
	onChat, changed, retag := 0, 0, 0
	tagOps := map[string]int{}
	for _, d := range ds.Deliveries {
		if d.Action == "thread_tagged" && !d.Retry {
			tagOps[string(d.Body)]++
		}
	}
	for _, n := range tagOps {
		if n > 1 {
			retag++
		}
	}
	for _, th := range ds.Threads {
		for _, r := range th.Ratings {
			if r.OnChat {
				onChat++
			}
		}
		if len(th.Ratings) > 1 {
			changed++
		}
	}
	if onChat < 50 || changed < 30 || retag < 10 {
		t.Fatalf("dataset should hold chat ratings (%d), changed ratings (%d) and re-tags (%d)", onChat, changed, retag)
	}
	t.Logf("dataset: %d deliveries, %d retried, %d late; %d chat ratings, %d threads with a changed rating, %d re-tags",
		len(ds.Deliveries), retries, late, onChat, changed, retag)
	began := time.Now()
	conn, db, st := throughProcessor(t, ds)
	ctx := context.Background()
	flushed := simulate.Filter{From: began.Add(-time.Minute), To: time.Now().Add(time.Minute), Group: -1}

	org := ds.Orgs[1].ID
	agent := ds.Orgs[0].Agents[2].ID
	all := simulate.Filter{From: ds.From, To: ds.To, Group: -1}
	day2 := simulate.Filter{From: ds.From.Add(24 * time.Hour), To: ds.To, Group: -1}
	hours := simulate.Filter{From: ds.From.Add(5 * time.Hour), To: ds.From.Add(11*time.Hour + 30*time.Minute), Group: -1}
	orgF := all
	orgF.Org = org
	groupF := all
	groupF.Group = 2
	agentF := all
	agentF.Org, agentF.Agent = ds.Orgs[0].ID, agent
	wide := simulate.Filter{From: ds.From.Add(-time.Hour), To: ds.To.Add(2 * time.Hour), Group: -1}
	wideOrg := wide
	wideOrg.Org = org
	// Six days from mid-morning of the first: hourly chart buckets, so
	// webhook panels read whole hours from webhook_hours once settled and
	// the minutes before the first whole hour from webhook_minutes.
	long := simulate.Filter{From: ds.From.Add(7*time.Hour + 30*time.Minute), To: ds.From.Add(6*24*time.Hour + 7*time.Hour + 30*time.Minute), Group: -1}
	if Bucket(long.From.UnixMilli(), long.To.UnixMilli())%3600 != 0 {
		t.Fatal("the long range should have whole-hour buckets")
	}
	cases := []struct {
		name  string
		f     simulate.Filter
		scope string
	}{
		{"all", all, "threads"}, {"day2", day2, "threads"}, {"hours", hours, "threads"}, {"org", orgF, "threads"},
		{"group2", groupF, "threads"}, {"agent", agentF, "threads"},
		{"received", wide, "received"}, {"received_org", wideOrg, "received"}, {"flushed", flushed, "flushed"},
		{"long", long, "threads"}, {"received_long", long, "received"},
	}
	checked := map[string]bool{}
	checkAll := func(t *testing.T) {
		for _, tc := range cases {
			m := ds.Expect(tc.f)
			if tc.scope == "threads" && (m.Chats < 20 || m.Good == 0 || m.Missed == 0) {
				t.Fatalf("%s: filter selects too little to test (%d chats)", tc.name, m.Chats)
			}
			for _, d := range All() {
				for _, p := range d.Panels {
					if panelScope(p.ID) != tc.scope {
						continue
					}
					check, ok := checks[p.ID]
					if !ok {
						t.Errorf("panel %s/%s has no check", d.UID, p.ID)
						continue
					}
					t.Run(tc.name+"/"+p.ID, func(t *testing.T) {
						res, err := Run(ctx, conn, p, Params{DB: db, FromMS: tc.f.From.UnixMilli(), ToMS: tc.f.To.UnixMilli(),
							BucketS: Bucket(tc.f.From.UnixMilli(), tc.f.To.UnixMilli()), Org: tc.f.Org, Group: tc.f.Group, Agent: tc.f.Agent})
						if err != nil {
							t.Fatal(err)
						}
						if len(res.Rows) == 0 {
							t.Fatalf("no rows")
						}
						check(t, res, checkCtx{m: m, ds: ds, f: tc.f, st: st})
					})
					checked[p.ID] = true
				}
			}
		}
	}
	// The same numbers whatever is settled: all live; the first day and
	// the first five hours of the second settled, the rest live (the
	// Settler as of 06:01 on the second day); everything settled.
	t.Run("live", checkAll)
	settler := NewSettler(conn, SettlerConfig{Database: db, After: time.Hour,
		Now: func() time.Time { return ds.From.Add(30*time.Hour + time.Minute) }})
	t.Cleanup(func() { settler.Close(context.Background()) })
	st1, err := settler.Pass(ctx)
	if err != nil || st1.Days == 0 {
		t.Fatalf("settle the first day: %+v, %v", st1, err)
	}
	settledCount := func() (threads, hours uint64) {
		t.Helper()
		if err := conn.QueryRow(ctx, "SELECT (SELECT count() FROM "+db+".threads_settled), (SELECT count() FROM "+db+".webhook_hours)").Scan(&threads, &hours); err != nil {
			t.Fatal(err)
		}
		return threads, hours
	}
	allChats := ds.Expect(all).Chats
	if n, h := settledCount(); n == 0 || n >= uint64(allChats) || h == 0 {
		t.Fatalf("partly settled: %d settled threads (of %d), %d webhook hours", n, allChats, h)
	}
	t.Run("partly_settled", checkAll)
	// Raising SETTLE_AFTER moves the cutoff back: what was settled stays.
	settler.cfg.After = 10 * time.Hour
	if _, err := settler.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	t.Run("settle_after_raised", checkAll)
	settler.cfg.After = time.Hour
	settler.cfg.Now = time.Now
	if st2, err := settler.Pass(ctx); err != nil || st2.Days == 0 {
		t.Fatalf("settle everything: %+v, %v", st2, err)
	}
	if n, _ := settledCount(); n != uint64(allChats) {
		t.Fatalf("everything settled: %d threads in threads_settled, want %d", n, allChats)
	}
	t.Run("settled", checkAll)
	t.Run("late_webhook_resettles", func(t *testing.T) { lateTagResettles(t, ctx, conn, db, ds, settler) })
	for id := range checks {
		if !checked[id] {
			t.Errorf("check %s matches no panel", id)
		}
	}
}

// lateTagResettles replays a thread_tagged of the first day with a new tag
// (as a spool drain or replay would: received-at on that day) after the day
// was settled: the settled row is stale until the next pass, which rebuilds
// the day because its fingerprint changed, and the panel then counts it.
func lateTagResettles(t *testing.T, ctx context.Context, conn driver.Conn, db string, ds *simulate.Dataset, settler *Settler) {
	var late simulate.Delivery
	for _, d := range ds.Deliveries {
		if d.Action == "thread_tagged" && d.At.Before(ds.From.Add(20*time.Hour)) && !d.Retry && !d.Late {
			late = d
			break
		}
	}
	if late.Body == nil {
		t.Fatal("no thread_tagged on the first day")
	}
	var env map[string]any
	if err := json.Unmarshal(late.Body, &env); err != nil {
		t.Fatal(err)
	}
	env["payload"].(map[string]any)["tag"] = "late-settle-tag"
	body, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	late.Body, late.At = body, late.At.Add(2*time.Minute)
	var rows []processor.Row
	rowsOf(t, []simulate.Delivery{late}, func(r []processor.Row) { rows = append(rows, r...) })
	if err := insertRows(ctx, conn, db, rows); err != nil {
		t.Fatal(err)
	}
	d, _ := Find("lc-groups-tags")
	p, _ := d.Panel("tag_usage")
	params := Params{DB: db, FromMS: ds.From.UnixMilli(), ToMS: ds.To.UnixMilli(), BucketS: Bucket(ds.From.UnixMilli(), ds.To.UnixMilli()), Group: -1}
	lateCount := func() float64 {
		res, err := Run(ctx, conn, p, params)
		if err != nil {
			t.Fatal(err)
		}
		return byLabel(t, res, "chats")["late-settle-tag"]
	}
	if n := lateCount(); n != 0 {
		t.Fatalf("before the pass the settled day should not show the late tag yet, got %v", n)
	}
	st, err := settler.Pass(ctx)
	if err != nil || st.Days == 0 {
		t.Fatalf("pass after the late webhook: %+v, %v", st, err)
	}
	if n := lateCount(); n != 1 {
		t.Fatalf("after the pass: late tag on %v chats, want 1", n)
	}
	if st, err := settler.Pass(ctx); err != nil || st.Days != 0 {
		t.Fatalf("a pass with nothing new rebuilt %d days (%v)", st.Days, err)
	}
}
