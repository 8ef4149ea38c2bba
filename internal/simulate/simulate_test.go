package simulate

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/lcpipe/lcpipe/internal/livechat"
)

func dataset(t *testing.T, seed uint64, n int) *Dataset {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Seed = seed
	ds, err := Generate(cfg, time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC), 6*time.Hour, n)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// TestDeterministic: the same seed gives byte-identical traffic; another
// seed does not.
func TestDeterministic(t *testing.T) {
	a, b, c := dataset(t, 5, 200), dataset(t, 5, 200), dataset(t, 6, 200)
	if len(a.Deliveries) != len(b.Deliveries) {
		t.Fatalf("same seed: %d vs %d deliveries", len(a.Deliveries), len(b.Deliveries))
	}
	for i := range a.Deliveries {
		if !bytes.Equal(a.Deliveries[i].Body, b.Deliveries[i].Body) || !a.Deliveries[i].At.Equal(b.Deliveries[i].At) {
			t.Fatalf("same seed: delivery %d differs", i)
		}
	}
	if len(a.Deliveries) == len(c.Deliveries) && bytes.Equal(a.Deliveries[0].Body, c.Deliveries[0].Body) {
		t.Errorf("different seeds gave the same traffic")
	}
}

// TestTrafficIsRealistic: every body is a valid LiveChat v3.6 webhook (the
// pipeline's decoder accepts it), every action and behaviour the issue
// lists occurs, and deliveries are ordered by time with some out of order.
func TestTrafficIsRealistic(t *testing.T) {
	ds := dataset(t, 3, 600)
	actions := map[string]int{}
	late, retries := 0, 0
	for i, d := range ds.Deliveries {
		w, err := livechat.Decode(d.Body)
		if err != nil {
			t.Fatalf("delivery %d (%s) does not decode: %v", i, d.Action, err)
		}
		if w.Action != d.Action || w.Tenant() != d.OrgID || !bytes.Contains(d.Body, []byte(`"secret_key":"sim-secret"`)) {
			t.Errorf("delivery %d: envelope %s/%s", i, w.Action, w.Tenant())
		}
		if i > 0 && d.At.Before(ds.Deliveries[i-1].At) {
			t.Fatalf("deliveries not sorted by time at %d", i)
		}
		actions[d.Action]++
		if d.Late {
			late++
		}
		if d.Retry {
			retries++
		}
	}
	for _, a := range []string{"incoming_chat", "incoming_event", "chat_deactivated", "chat_transferred", "chat_access_updated",
		"user_added_to_chat", "user_removed_from_chat", "thread_tagged", "thread_untagged", "thread_properties_updated",
		"incoming_rich_message_postback", "routing_status_set"} {
		if actions[a] == 0 {
			t.Errorf("no %s in the traffic", a)
		}
	}
	if late == 0 || retries == 0 {
		t.Errorf("late %d, retries %d: want both", late, retries)
	}
	m := ds.Expect(Filter{From: ds.From, To: ds.To, Group: -1})
	if m.Chats != 600 || m.Missed == 0 || m.Good == 0 || m.Bad == 0 || m.QueueLeft.Count == 0 || m.QueueEntered.Count == 0 ||
		m.Engagement["agent"] == 0 || m.Engagement["customer_from_greeting"] == 0 || m.Transfers == 0 || len(m.Tags) == 0 {
		t.Errorf("metrics miss a behaviour: %+v", m)
	}
	if m.FirstResponseMedian < 3 || m.FirstResponseMedian > 600 {
		t.Errorf("median first response %v s is not realistic", m.FirstResponseMedian)
	}
	// An incoming_event can arrive before its thread's incoming_chat.
	firstChat := map[string]time.Time{}
	early := 0
	for _, d := range ds.Deliveries {
		w, _ := livechat.Decode(d.Body)
		switch p := w.Body.(type) {
		case *livechat.IncomingChat:
			if _, ok := firstChat[p.Chat.Thread.ID]; !ok {
				firstChat[p.Chat.Thread.ID] = d.At
			}
		case *livechat.IncomingEvent:
			if _, ok := firstChat[p.ThreadID]; !ok {
				early++
			}
		}
	}
	if early == 0 {
		t.Errorf("no incoming_event arrived before its incoming_chat")
	}
}

// TestWilson reproduces LiveChat's documented ranking scores.
func TestWilson(t *testing.T) {
	for _, tc := range []struct {
		good, bad int
		want      float64
	}{{0, 2, 0.11473}, {13, 6, 0.42327}, {10, 2, 0.5194}, {2, 0, 0.3313}, {0, 0, 0}} {
		if got := Wilson(tc.good, tc.bad); got < tc.want-0.0001 || got > tc.want+0.0001 {
			t.Errorf("Wilson(%d, %d) = %.5f, want %.5f", tc.good, tc.bad, got, tc.want)
		}
	}
}

// TestFirstResponseAndResponseTimes checks the definitions on a
// hand-written conversation.
func TestFirstResponseAndResponseTimes(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	th := &Thread{Messages: []Msg{
		{at(1), true},                  // agent starts
		{at(5), false}, {at(8), false}, // customer run starting at 5
		{at(20), true}, {at(25), true},
		{at(30), false}, // run at 30
		{at(90), true},
		{at(100), false}, // unanswered
	}}
	if d, ok := FirstResponse(th); !ok || d != 15*time.Second {
		t.Errorf("first response = %v %v, want 15s", d, ok)
	}
	got := ResponseTimes(th)
	if len(got) != 2 || got[0] != 15*time.Second || got[1] != 60*time.Second {
		t.Errorf("response times = %v, want [15s 1m0s]", got)
	}
	if Engagement(th) != "agent" {
		t.Errorf("engagement = %s", Engagement(th))
	}
}

// TestLivePostsAndRetries runs the live sender against a test server that
// fails its first answers: everything generated is delivered, failed posts
// are retried, and the ground truth covers the threads.
func TestLivePostsAndRetries(t *testing.T) {
	var mu sync.Mutex
	got := 0
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls <= 3 {
			http.Error(w, `{"error":"busy"}`, http.StatusServiceUnavailable)
			return
		}
		var env struct {
			Action string `json:"action"`
		}
		if json.NewDecoder(r.Body).Decode(&env) != nil || env.Action == "" {
			http.Error(w, "bad", 400)
			return
		}
		got++
	}))
	defer srv.Close()
	g, err := New(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultLiveConfig()
	cfg.Rate, cfg.Duration, cfg.Drain = 50, 3*time.Second, 2*time.Second
	l, err := NewLive(cfg, g, &HTTPPoster{URL: srv.URL, Client: srv.Client()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := l.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if l.Stats.Chats.Load() < 50 || len(ds.Threads) != int(l.Stats.Chats.Load()) {
		t.Errorf("chats %d, threads %d", l.Stats.Chats.Load(), len(ds.Threads))
	}
	if l.Stats.Failed.Load() != 3 || l.Stats.Retried.Load() != 3 || l.Stats.Sent.Load() == 0 {
		t.Errorf("stats: sent %d failed %d retried %d", l.Stats.Sent.Load(), l.Stats.Failed.Load(), l.Stats.Retried.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	if int64(got) != l.Stats.Sent.Load() {
		t.Errorf("server got %d, sender counted %d", got, l.Stats.Sent.Load())
	}
}

func TestWriteFiles(t *testing.T) {
	ds := dataset(t, 9, 20)
	dir := t.TempDir()
	if err := WriteFiles(dir, ds.Deliveries); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "deliveries.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(b, []byte("\n")); n != len(ds.Deliveries) {
		t.Errorf("index has %d lines, want %d", n, len(ds.Deliveries))
	}
	first, _ := os.ReadFile(filepath.Join(dir, "00000000_"+ds.Deliveries[0].Action+".json"))
	if !bytes.Equal(first, ds.Deliveries[0].Body) {
		t.Errorf("first file differs from the first body")
	}
}
