package simulate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
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
		"thread_properties_deleted", "chat_properties_updated", "chat_properties_deleted",
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

// change is what a test makes of one delivery of a state webhook: the
// subjects it changes (at the granularity the pipeline documents: an
// agent's routing status; one tag on one thread; one property of a chat,
// thread or event; one user's membership of a chat; a chat's access; a
// thread's transfer; a user's postback) and the state it leaves each in.
// Webhooks with a server identity have one subject, their identity, and
// one state.
type change struct {
	subjects, states []string
}

func changeOf(t *testing.T, body []byte) change {
	t.Helper()
	w, err := livechat.Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	one := func(subject string, state ...string) change {
		return change{[]string{subject}, []string{strings.Join(state, "|")}}
	}
	props := func(entity string, p livechat.Properties) change {
		var c change
		for ns, names := range p {
			for name, v := range names {
				var x any
				if err := json.Unmarshal(v, &x); err != nil {
					t.Fatal(err)
				}
				canon, _ := json.Marshal(x)
				c.subjects = append(c.subjects, entity+"|"+ns+"."+name)
				c.states = append(c.states, "set "+string(canon))
			}
		}
		return c
	}
	deleted := func(entity string, p livechat.DeletedProperties) change {
		var c change
		for ns, names := range p {
			for _, name := range names {
				c.subjects = append(c.subjects, entity+"|"+ns+"."+name)
				c.states = append(c.states, "deleted")
			}
		}
		return c
	}
	switch p := w.Body.(type) {
	case *livechat.RoutingStatusSet:
		return one("status|"+p.AgentID, p.NormalizedStatus())
	case *livechat.ThreadTagged:
		return one("tag|"+p.ChatID+"|"+p.ThreadID+"|"+p.Tag, "+")
	case *livechat.ThreadUntagged:
		return one("tag|"+p.ChatID+"|"+p.ThreadID+"|"+p.Tag, "-")
	case *livechat.ThreadPropertiesUpdated:
		return props("thread|"+p.ChatID+"|"+p.ThreadID, p.Properties)
	case *livechat.ThreadPropertiesDeleted:
		return deleted("thread|"+p.ChatID+"|"+p.ThreadID, p.Properties)
	case *livechat.ChatPropertiesUpdated:
		return props("chat|"+p.ChatID, p.Properties)
	case *livechat.ChatPropertiesDeleted:
		return deleted("chat|"+p.ChatID, p.Properties)
	case *livechat.UserAddedToChat:
		return one("member|"+p.ChatID+"|"+p.User.ID, "added", p.ThreadID, p.Reason, p.RequesterID)
	case *livechat.UserRemovedFromChat:
		return one("member|"+p.ChatID+"|"+p.UserID, "removed", p.ThreadID, p.Reason, p.RequesterID)
	case *livechat.ChatAccessUpdated:
		return one("access|"+p.ID, fmt.Sprint(p.Access.GroupIDs))
	case *livechat.ChatTransferred:
		return one("transfer|"+p.ChatID+"|"+p.ThreadID, fmt.Sprint(p.TransferredTo.GroupIDs, p.TransferredTo.AgentIDs))
	case *livechat.IncomingRichMessagePostback:
		return one("postback|"+p.ChatID+"|"+p.EventID+"|"+p.UserID+"|"+p.Postback.ID, fmt.Sprint(p.Postback.Toggled))
	case *livechat.IncomingChat:
		return one("identity|thread|"+p.Chat.ID+"|"+p.Chat.Thread.ID, "")
	case *livechat.IncomingEvent:
		return one("identity|event|"+p.ChatID+"|"+p.Event.ID, "")
	case *livechat.ChatDeactivated:
		return one("identity|closed|"+p.ChatID+"|"+p.ThreadID, "")
	}
	t.Fatalf("no subject for %s", w.Action)
	return change{}
}

// repeats applies the documented retry rule to the deliveries in arrival
// order: a delivery is a repeat when, for each of its subjects, the last
// kept change was to the same state, received less than window before (an
// identity: ever before). It returns which deliveries are repeats.
func repeats(t *testing.T, ds []Delivery, window time.Duration) []bool {
	type kept struct {
		state string
		at    time.Time
	}
	last := map[string]kept{}
	out := make([]bool, len(ds))
	for i, d := range ds {
		c := changeOf(t, d.Body)
		repeat := len(c.subjects) > 0
		for j, s := range c.subjects {
			k, ok := last[s]
			identity := strings.HasPrefix(s, "identity|")
			if !ok || k.state != c.states[j] || (!identity && d.At.Sub(k.at) >= window) {
				repeat = false
			}
		}
		out[i] = repeat
		if !repeat {
			for j, s := range c.subjects {
				last[s] = kept{c.states[j], d.At}
			}
		}
	}
	return out
}

// TestRetriesAreTheOnlyRepeats checks the traffic against the rule the
// pipeline de-duplicates by (processor/README.md): the deliveries the rule
// drops are exactly the simulator's retries, for any window from a minute
// (longer than a retry's delay) to ten minutes. So every genuine change,
// flips back included, is an event, a retry is never overtaken by a later
// change of its subject, and the ground truth counts what the pipeline
// must store.
func TestRetriesAreTheOnlyRepeats(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Seed, cfg.RetryRate = 4, 0.3
	ds, err := Generate(cfg, time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC), 8*time.Hour, 800)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []time.Duration{time.Minute, 2 * time.Minute, 10 * time.Minute} {
		rep := repeats(t, ds.Deliveries, w)
		bad := 0
		for i, d := range ds.Deliveries {
			if rep[i] != d.Retry && bad < 10 {
				bad++
				t.Errorf("window %s: delivery %d (%s at %s) retry=%t but the rule says repeat=%t:\n%s",
					w, i, d.Action, d.At.Format(time.TimeOnly), d.Retry, rep[i], d.Body)
			}
		}
	}
}

// TestFlipsAndChatRatings: the traffic holds every flip the pipeline must
// count (status breaks, some within seconds; re-tags; ratings changed and
// changed back, deleted and given again; agents removed and re-added),
// retries of those deliveries, and ratings sent on the chat only, or given
// and then changed on the chat; the ground truth ends in the last state.
func TestFlipsAndChatRatings(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Seed, cfg.RetryRate = 3, 0.3
	ds, err := Generate(cfg, time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC), 8*time.Hour, 800)
	if err != nil {
		t.Fatal(err)
	}
	// Per subject, the states its genuine changes set, in order, and
	// whether one of those deliveries was retried.
	type hist struct {
		states  []string
		at      []time.Time
		retried bool
	}
	subjects := map[string]*hist{}
	for _, d := range ds.Deliveries {
		c := changeOf(t, d.Body)
		for j, s := range c.subjects {
			h := subjects[s]
			if h == nil {
				h = &hist{}
				subjects[s] = h
			}
			if d.Retry {
				h.retried = true
				continue
			}
			h.states = append(h.states, c.states[j])
			h.at = append(h.at, d.At)
		}
	}
	// A flip: some state set, changed, and set again.
	flips := map[string]int{}
	retriedFlips := map[string]int{}
	quickBreak := false
	for s, h := range subjects {
		kind := s[:strings.Index(s, "|")]
		if kind == "thread" || kind == "chat" {
			kind += "." + s[strings.LastIndex(s, "|")+1:]
		}
		for i := 2; i < len(h.states); i++ {
			if h.states[i] == h.states[i-2] && h.states[i] != h.states[i-1] {
				flips[kind]++
				if h.retried {
					retriedFlips[kind]++
				}
				if kind == "status" && h.at[i].Sub(h.at[i-1]) < 10*time.Second {
					quickBreak = true
				}
			}
		}
	}
	t.Logf("flips by subject kind: %v; with a retried delivery: %v", flips, retriedFlips)
	for _, k := range []string{"status", "tag", "thread.rating.score", "member"} {
		if flips[k] == 0 || retriedFlips[k] == 0 {
			t.Errorf("%s: %d flips, %d of them with a retry; want both", k, flips[k], retriedFlips[k])
		}
	}
	if !quickBreak {
		t.Errorf("no status break shorter than 10 s")
	}
	var chatOnly, chatChanged, deletedRated, changedBack, deleted int
	for i := range ds.Threads {
		th := &ds.Threads[i]
		if len(th.Ratings) == 0 {
			if th.Rating != -1 {
				t.Fatalf("thread %s: rating %d without a rating change", th.ThreadID, th.Rating)
			}
			continue
		}
		if th.Rating != th.Ratings[len(th.Ratings)-1].Score {
			t.Fatalf("thread %s: rating %d, last change %+v", th.ThreadID, th.Rating, th.Ratings[len(th.Ratings)-1])
		}
		onChat := 0
		for _, r := range th.Ratings {
			if r.OnChat {
				onChat++
			}
		}
		switch {
		case onChat == len(th.Ratings):
			chatOnly++
		case onChat > 0 && !th.Ratings[0].OnChat:
			chatChanged++
		}
		sc := []int{}
		for _, r := range th.Ratings {
			sc = append(sc, r.Score)
		}
		for k := 2; k < len(sc); k++ {
			if sc[k] >= 0 && sc[k] == sc[k-2] && sc[k-1] != sc[k] && sc[k-1] >= 0 {
				changedBack++
			}
			if sc[k-1] == -1 && sc[k] >= 0 {
				deletedRated++
			}
		}
		if th.Rating == -1 {
			deleted++
		}
	}
	t.Logf("ratings: %d chat-only, %d given on the thread and changed on the chat, %d changed back, %d deleted and rated again, %d deleted",
		chatOnly, chatChanged, changedBack, deletedRated, deleted)
	if chatOnly == 0 || chatChanged == 0 || changedBack == 0 || deletedRated == 0 || deleted == 0 {
		t.Errorf("missing a rating behaviour")
	}
	m := ds.Expect(Filter{From: ds.From, To: ds.To, Group: -1})
	if m.Good == 0 || m.Bad == 0 {
		t.Errorf("good %d bad %d", m.Good, m.Bad)
	}
}

// TestChatRatingsBelongToTheCurrentThread: a chat has one thread at a time
// (the next starts chatCooldown after the last delivery of the previous
// one), so a rating sent on the chat is for the chat's latest thread
// started at or before it — the rule the pipeline attributes chat ratings
// by.
func TestChatRatingsBelongToTheCurrentThread(t *testing.T) {
	ds := dataset(t, 8, 1500)
	byChat := map[string][]*Thread{}
	for i := range ds.Threads {
		th := &ds.Threads[i]
		byChat[th.OrgID+"|"+th.ChatID] = append(byChat[th.OrgID+"|"+th.ChatID], th)
	}
	lastDelivery := map[string]time.Time{}
	for _, d := range ds.Deliveries {
		w, _ := livechat.Decode(d.Body)
		var thread string
		switch p := w.Body.(type) {
		case *livechat.IncomingChat:
			thread = p.Chat.Thread.ID
		case *livechat.IncomingEvent:
			thread = p.ThreadID
		case *livechat.ChatDeactivated:
			thread = p.ThreadID
		}
		if thread != "" && d.At.After(lastDelivery[thread]) {
			lastDelivery[thread] = d.At
		}
	}
	reused, rated := 0, 0
	for _, ths := range byChat {
		if len(ths) > 1 {
			reused++
		}
		for i, th := range ths {
			if i > 0 && th.Start.Before(lastDelivery[ths[i-1].ThreadID]) {
				t.Errorf("chat %s: thread %s starts before the previous one's last delivery", th.ChatID, th.ThreadID)
			}
			for _, r := range th.Ratings {
				if !r.OnChat {
					continue
				}
				rated++
				if r.At.Before(th.Start) || (i+1 < len(ths) && !r.At.Before(ths[i+1].Start)) {
					t.Errorf("chat %s: rating at %s is not in thread %s's turn", th.ChatID, r.At, th.ThreadID)
				}
			}
		}
	}
	if reused == 0 || rated == 0 {
		t.Errorf("want chats with several threads (%d) and chat ratings (%d)", reused, rated)
	}
}

// TestStatusesContinue: consecutive Statuses calls (the live sender asks a
// day at a time) continue each agent's sequence: statuses alternate across
// the boundary and a retry comes before the agent's next change.
func TestStatusesContinue(t *testing.T) {
	cfg := DefaultConfig()
	cfg.RetryRate = 0.5
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC)
	c1, d1 := g.Statuses(t0, t0.Add(12*time.Hour))
	c2, d2 := g.Statuses(t0.Add(12*time.Hour), t0.Add(24*time.Hour))
	all := append(append([]Delivery(nil), d1...), d2...)
	sort.SliceStable(all, func(i, j int) bool { return all[i].At.Before(all[j].At) })
	rep := repeats(t, all, 2*time.Minute)
	for i, d := range all {
		if rep[i] != d.Retry {
			t.Fatalf("delivery %d (%s, retry %t): rule says repeat %t", i, d.Body, d.Retry, rep[i])
		}
	}
	last := map[string]StatusChange{}
	for _, c := range append(c1, c2...) {
		if p, ok := last[c.AgentID]; ok && (p.Accepting == c.Accepting || !c.At.After(p.At)) {
			t.Fatalf("agent %s: %+v after %+v", c.AgentID, c, p)
		}
		last[c.AgentID] = c
	}
}
