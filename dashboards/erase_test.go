package dashboards

import (
	"context"
	"testing"
	"time"

	"github.com/lcpipe/lcpipe/erase"
	"github.com/lcpipe/lcpipe/erase/erasetest"
	"github.com/lcpipe/lcpipe/internal/simulate"
)

// TestEraseCustomerPanels sends simulated traffic through Kafka and the
// real processor, settles part of it, erases one customer with `lcpipe
// erase`'s code, and checks that
//
//   - no row of any table names the customer, their chat or its threads
//     (erasetest.Mentions: every table, every id column, plain or
//     aggregated, and the raw bodies), before and after settler passes
//     (the settler must not write erased threads back);
//   - every thread panel equals the simulator's expectation computed from
//     the ground truth without that customer's threads, live, partly and
//     fully settled;
//   - the webhook and pipeline panels still equal the expectation of the
//     whole traffic: they count webhooks per organization, action and
//     minute and flushes, hold no personal data, and a customer erase
//     keeps them (README, "Erasure").
func TestEraseCustomerPanels(t *testing.T) {
	cfg := simulate.DefaultConfig()
	cfg.Seed = 20260401
	cfg.RetryRate, cfg.LateRate = 0.08, 0.08
	ds, err := simulate.Generate(cfg, time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC), 48*time.Hour, 900)
	if err != nil {
		t.Fatal(err)
	}
	// The customer: one of the first organization's with the most threads,
	// a rating given on the chat among them (chat_ratings, chat_threads).
	threads := map[string]int{}
	onChat := map[string]bool{}
	for _, th := range ds.Threads {
		if th.OrgID != ds.Orgs[0].ID {
			continue
		}
		threads[th.CustomerID]++
		for _, r := range th.Ratings {
			onChat[th.CustomerID] = onChat[th.CustomerID] || r.OnChat
		}
	}
	var customer string
	for c, n := range threads {
		if onChat[c] && (customer == "" || n > threads[customer] || n == threads[customer] && c < customer) {
			customer = c
		}
	}
	if customer == "" || threads[customer] < 2 {
		t.Fatalf("no customer with several threads and a chat rating (%d)", threads[customer])
	}
	without := *ds
	without.Threads = nil
	ids := []string{customer}
	for _, th := range ds.Threads {
		if th.CustomerID == customer {
			ids = append(ids, th.ThreadID)
			if len(ids) == 2 {
				ids = append(ids, th.ChatID)
			}
			continue
		}
		without.Threads = append(without.Threads, th)
	}
	all := simulate.Filter{From: ds.From, To: ds.To, Group: -1}
	if ds.Expect(all).Chats == without.Expect(all).Chats {
		t.Fatal("the customer's threads should be in the panels' range")
	}
	t.Logf("erasing customer %s: %d threads of %d", customer, threads[customer], len(ds.Threads))

	began := time.Now()
	conn, db, st := throughProcessor(t, ds)
	ctx := context.Background()
	org := ds.Orgs[0].ID
	named := func() map[string]uint64 {
		t.Helper()
		m, err := erasetest.Mentions(ctx, conn, db, org, ids)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	if m := named(); m["events"] == 0 || m["thread_state"] == 0 || m["chat_ratings"] == 0 || m["messages"] == 0 {
		t.Fatalf("before the erase the customer should be in every table: %v", m)
	}

	orgF := all
	orgF.Org = org
	day2 := simulate.Filter{From: ds.From.Add(24 * time.Hour), To: ds.To, Group: -1}
	wide := simulate.Filter{From: ds.From.Add(-time.Hour), To: ds.To.Add(2 * time.Hour), Group: -1}
	wideOrg := wide
	wideOrg.Org = org
	flushed := simulate.Filter{From: began.Add(-time.Minute), To: time.Now().Add(time.Minute), Group: -1}
	cases := []struct {
		name  string
		f     simulate.Filter
		scope string
		ds    *simulate.Dataset
	}{
		{"all", all, "threads", &without}, {"org", orgF, "threads", &without}, {"day2", day2, "threads", &without},
		{"received", wide, "received", ds}, {"received_org", wideOrg, "received", ds}, {"flushed", flushed, "flushed", ds},
	}
	checkAll := func(t *testing.T) {
		for _, tc := range cases {
			m := tc.ds.Expect(tc.f)
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
						check(t, res, checkCtx{m: m, ds: tc.ds, f: tc.f, st: st})
					})
				}
			}
		}
	}

	// The first day and the first five hours of the second settled (as of
	// 06:01 on the second day), then the erase.
	settler := NewSettler(conn, SettlerConfig{Database: db, After: time.Hour,
		Now: func() time.Time { return ds.From.Add(30*time.Hour + time.Minute) }})
	t.Cleanup(func() { settler.Close(context.Background()) })
	if s, err := settler.Pass(ctx); err != nil || s.Days == 0 {
		t.Fatalf("settle: %+v %v", s, err)
	}
	if n := named()["threads_settled"]; n == 0 {
		t.Fatal("the customer's settled threads should be in threads_settled before the erase")
	}
	rep, err := erase.Run(ctx, conn, erase.Options{Database: db}, erase.Target{Organization: org, Customer: customer})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Chats != 1 || rep.Threads != threads[customer] {
		t.Fatalf("erase resolved %d chats and %d threads, want 1 and %d", rep.Chats, rep.Threads, threads[customer])
	}
	if m := named(); len(m) > 0 {
		t.Fatalf("after the erase, rows still name the customer, their chat or threads: %v", m)
	}
	t.Run("partly_settled", checkAll)

	// The settler sees the days whose sources changed and rebuilds them:
	// nothing comes back, the numbers stay.
	if s, err := settler.Pass(ctx); err != nil || s.Days == 0 {
		t.Fatalf("settler pass after the erase should rebuild the changed days: %+v %v", s, err)
	}
	if m := named(); len(m) > 0 {
		t.Fatalf("after a settler pass, rows name the customer again: %v", m)
	}
	t.Run("resettled", checkAll)
	settler.cfg.Now = time.Now
	if _, err := settler.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if m := named(); len(m) > 0 {
		t.Fatalf("after settling everything, rows name the customer again: %v", m)
	}
	t.Run("settled", checkAll)
}
