package dashboards

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/lcpipe/lcpipe/internal/simulate"
	"github.com/lcpipe/lcpipe/internal/testenv"
	"github.com/lcpipe/lcpipe/processor"
	"github.com/lcpipe/lcpipe/schema"
)

// TestChatRatingsAnyArrivalOrder: ratings given on the chat (no thread id)
// count for the chat's thread current at the time, and a thread's rating
// is the last by time of its own and its chat's, whatever order the rows
// arrive in. The simulated rows go in newest first, in small blocks (each
// its own part), so chat ratings arrive before the incoming_chat of their
// thread and of the threads before it; every chat rating row then arrives
// a second time (a replay not merged away yet). One more chat rating, sent
// before any thread of its chat started, counts for the chat's first
// thread. Every thread's rating must equal the simulator's ground truth in
// the `threads` view, in the panels' windowed derivation and in the
// settler's rows.
func TestChatRatingsAnyArrivalOrder(t *testing.T) {
	cfg := simulate.DefaultConfig()
	cfg.Seed, cfg.CustomersPerOrg = 21, 60 // few customers: chats with several threads
	from := time.Date(2026, 4, 2, 0, 0, 0, 0, time.UTC)
	ds, err := simulate.Generate(cfg, from, 20*time.Hour, 600)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{}
	onChat := 0
	for _, th := range ds.Threads {
		want[th.ThreadID] = th.Rating
		for _, r := range th.Ratings {
			if r.OnChat {
				onChat++
			}
		}
	}
	var rows []processor.Row
	rowsOf(t, ds.Deliveries, func(r []processor.Row) { rows = append(rows, r...) })

	// The first thread of a chat that has later threads and no rating gets
	// one on the chat, five minutes before it started. (A chat whose first
	// thread's id is not its smallest: not the thread a tie would pick.)
	first := map[string]*simulate.Thread{}
	smallest := map[string]string{}
	for i := range ds.Threads {
		th := &ds.Threads[i]
		if f, ok := first[th.ChatID]; !ok || th.Start.Before(f.Start) {
			first[th.ChatID] = th
		}
		if s, ok := smallest[th.ChatID]; !ok || th.ThreadID < s {
			smallest[th.ChatID] = th.ThreadID
		}
	}
	var early *simulate.Thread
	ids := make([]string, 0, len(first))
	for c := range first {
		ids = append(ids, c)
	}
	sort.Strings(ids)
	for _, c := range ids {
		if th := first[c]; smallest[c] != th.ThreadID && th.Rating == -1 {
			early = th
			break
		}
	}
	if early == nil || onChat < 20 {
		t.Fatalf("dataset lacks a chat with several threads (%v) or chat ratings (%d)", early != nil, onChat)
	}
	at := uint64(early.Start.Add(-5 * time.Minute).UnixMilli())
	rows = append(rows, processor.Row{EventID: "early-chat-rating", OrganizationID: early.OrgID, Action: "chat_properties_updated",
		Kind: "rating", OccurredAtMs: at, ReceivedAtMs: at, ChatID: early.ChatID, RatingScore: 0, RatingHasScore: 1})
	want[early.ThreadID] = 0

	var dups []processor.Row
	for _, r := range rows {
		if r.ThreadID == "" && (r.Kind == "rating" || r.Kind == "rating_deleted") {
			dups = append(dups, r)
		}
	}
	ctx := context.Background()
	chCfg := testenv.ClickHouseConfig(t)
	conn := testenv.ClickHouse(t, chCfg)
	db := chCfg.Database
	if _, err := schema.Migrate(ctx, conn, schema.Options{Database: db}, nil); err != nil {
		t.Fatal(err)
	}
	for end := len(rows); end > 0; end -= 400 {
		if err := insertRows(ctx, conn, db, rows[max(0, end-400):end]); err != nil {
			t.Fatal(err)
		}
	}
	if err := insertRows(ctx, conn, db, dups); err != nil {
		t.Fatal(err)
	}

	check := func(name, sql string) {
		t.Helper()
		got := map[string]int{}
		res, err := RunSQL(ctx, conn, name, sql)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, r := range res.Rows {
			got[fmt.Sprint(r[0])] = int(Float(r[1]))
		}
		bad := 0
		for id, w := range want {
			if g, ok := got[id]; !ok || g != w {
				if bad++; bad <= 10 {
					t.Errorf("%s: thread %s rating %d (present %t), want %d", name, id, g, ok, w)
				}
			}
		}
		if len(got) != len(want) {
			t.Errorf("%s: %d threads, want %d", name, len(got), len(want))
		}
	}
	check("threads view", "SELECT thread_id, rating FROM "+db+".threads")
	window := fmt.Sprintf("hour >= toDateTime(%d, 'UTC') AND hour < toDateTime(%d, 'UTC')",
		from.Add(-time.Hour).Unix(), ds.To.Add(24*time.Hour).Unix())
	check("windowed", "SELECT thread_id, rating FROM ("+ThreadsSQL(db, window)+")")

	settler := NewSettler(conn, SettlerConfig{Database: db, After: time.Hour, Now: func() time.Time { return ds.To.Add(48 * time.Hour) }})
	t.Cleanup(func() { settler.Close(context.Background()) })
	if st, err := settler.Pass(ctx); err != nil || st.Days == 0 {
		t.Fatalf("settle: %+v, %v", st, err)
	}
	check("settled", "SELECT thread_id, rating FROM "+db+".threads_settled")

	// A rating changed on the chat after the day was settled reaches the
	// settled row at the next pass (its hour changes the day's fingerprint).
	var last *simulate.Thread
	for i := range ds.Threads {
		if th := &ds.Threads[i]; th.ChatID == early.ChatID && (last == nil || th.Start.After(last.Start)) {
			last = th
		}
	}
	at = uint64(ds.To.Add(2 * time.Hour).UnixMilli())
	if err := insertRows(ctx, conn, db, []processor.Row{{EventID: "late-chat-rating", OrganizationID: last.OrgID, Action: "chat_properties_updated",
		Kind: "rating", OccurredAtMs: at, ReceivedAtMs: at, ChatID: last.ChatID, RatingScore: 1, RatingHasScore: 1}}); err != nil {
		t.Fatal(err)
	}
	want[last.ThreadID] = 1
	if st, err := settler.Pass(ctx); err != nil || st.Days == 0 {
		t.Fatalf("settle after the late rating: %+v, %v", st, err)
	}
	check("settled after a late chat rating", "SELECT thread_id, rating FROM "+db+".threads_settled")
	check("threads view after a late chat rating", "SELECT thread_id, rating FROM "+db+".threads")
}
