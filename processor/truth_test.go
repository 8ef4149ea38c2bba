package processor

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lcpipe/lcpipe/internal/testenv"
	"github.com/lcpipe/lcpipe/internal/wire"
	"github.com/lcpipe/lcpipe/schema"
)

// TestFlipsAndRetriesThroughKafka posts, through the real topic and
// ClickHouse, each state that flips back (status, tag, rating, agent
// membership, postback, event edit), 1 s apart, each first delivery
// retried right after it: 3 events each. And each change retried (10 s and
// 40 s later, nothing between): 1 event each.
func TestFlipsAndRetriesThroughKafka(t *testing.T) {
	e := newEnv(t)
	base := time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)
	// Each scenario gets its own subject: replace the shared ids.
	own := func(body string, n int) string {
		r := strings.NewReplacer(`"C"`, fmt.Sprintf(`"C%d"`, n), `"T"`, fmt.Sprintf(`"T%d"`, n), `"a@example.com"`, fmt.Sprintf(`"a%d@example.com"`, n), `"E"`, fmt.Sprintf(`"E%d"`, n))
		return r.Replace(body)
	}
	type scenario struct {
		name   string
		bodies []string
		at     []time.Duration
		want   uint64
	}
	flips := []scenario{
		{"status", []string{status("accepting chats"), status("not accepting chats"), status("accepting chats")}, nil, 3},
		{"tag", []string{tag("thread_tagged", "x"), tag("thread_untagged", "x"), tag("thread_tagged", "x")}, nil, 3},
		{"rating", []string{rating(1, ""), rating(0, ""), rating(1, "")}, nil, 3},
		{"member", []string{member("user_added_to_chat"), member("user_removed_from_chat"), member("user_added_to_chat")}, nil, 3},
		{"postback", []string{postback(true), postback(false), postback(true)}, nil, 3},
		{"edit", []string{edited("X"), edited("Y"), edited("X")}, nil, 3},
	}
	var all []scenario
	for _, f := range flips {
		f.at = []time.Duration{0, time.Second, 2 * time.Second}
		all = append(all, f)
		retried := scenario{name: f.name + " retried", bodies: []string{f.bodies[0], f.bodies[0], f.bodies[0]},
			at: []time.Duration{0, 10 * time.Second, 40 * time.Second}, want: 1}
		all = append(all, retried)
	}
	var ds []delivery
	for n, s := range all {
		key := wire.Key("o1", fmt.Sprintf("C%d", n))
		for i, b := range s.bodies {
			body := []byte(own(b, n))
			at := base.Add(s.at[i])
			ds = append(ds, delivery{key: key, body: body, receivedAt: at, requestID: fmt.Sprintf("%d-%d", n, i)})
			if s.want == 3 {
				// LiveChat's retry of this delivery, before the next change.
				ds = append(ds, delivery{key: key, body: body, receivedAt: at.Add(300 * time.Millisecond), requestID: fmt.Sprintf("%d-%d-retry", n, i)})
			}
		}
	}
	produceAll(t, e.kafka, ds)
	var want uint64
	for _, s := range all {
		want += s.want
	}
	p, stop := e.start(t, Config{BatchLinger: 100 * time.Millisecond})
	waitRows(t, e.conn, e.ch.Database, want, time.Minute)
	testenv.Eventually(t, 30*time.Second, func() error {
		if got := p.Stats().Records.Load(); got != int64(len(ds)) {
			return fmt.Errorf("consumed %d of %d records", got, len(ds))
		}
		return nil
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for n, s := range all {
		var got uint64
		q := "SELECT count() FROM " + e.ch.Database + ".events WHERE chat_id = ? OR agent_id = ?"
		if err := e.conn.QueryRow(context.Background(), q, fmt.Sprintf("C%d", n), fmt.Sprintf("a%d@example.com", n)).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != s.want {
			t.Errorf("%s: %d events stored, want %d", s.name, got, s.want)
		}
	}
}

// TestViewFailureRepaired: a derived table's view fails mid-run (the
// INSERT is written to events and to some views, then fails), and is
// restored later. The processor stalls rather than go on without it, then
// repairs the derived tables from events: afterwards every derived table
// agrees with events event by event, and events holds the exact set.
func TestViewFailureRepaired(t *testing.T) {
	e := newEnv(t)
	g := newGenerator(t, time.Date(2025, 3, 14, 8, 0, 0, 0, time.UTC))
	stories := 100
	want := g.expectedIDs(t, stories)
	var all []delivery
	counter := 0
	for n := 0; n < stories; n++ {
		all = append(all, g.deliveries(n, &counter)...)
	}
	produceAll(t, e.kafka, all)

	restore := testenv.BreakTable(t, e.conn, e.ch.Database, "messages")
	cfg := Config{BatchRows: 500, BatchLinger: 100 * time.Millisecond, InsertRows: 1500, RetryMin: 10 * time.Millisecond, RetryMax: 200 * time.Millisecond}
	p, stop := e.start(t, cfg)
	// The first INSERT fails after events took its rows; the records are
	// read again, found stored, and their repair fails while the table is
	// broken.
	testenv.Eventually(t, time.Minute, func() error {
		if n, r := p.Stats().InsertRetries.Load(), p.Stats().RepairFailures.Load(); n < 1 || r < 2 {
			return fmt.Errorf("%d failed inserts, %d failed repairs so far", n, r)
		}
		return nil
	})
	var stored uint64
	if err := e.conn.QueryRow(context.Background(), "SELECT count() FROM "+e.ch.Database+".events").Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored == 0 {
		t.Fatal("events holds nothing of the failed inserts: the test does not exercise the repair")
	}
	restore()
	waitRows(t, e.conn, e.ch.Database, uint64(len(want)), 3*time.Minute)
	testenv.Eventually(t, time.Minute, func() error {
		bad, err := schema.CheckDerived(context.Background(), e.conn, e.ch.Database)
		if err != nil {
			return err
		}
		if len(bad) > 0 {
			return fmt.Errorf("derived tables disagree with events: %v", bad)
		}
		return nil
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkExactSet(t, e.conn, e.ch.Database, want)
	if p.Stats().Repaired.Load() == 0 {
		t.Fatal("nothing was repaired")
	}
	t.Logf("%d failed inserts, %d derived rows repaired", p.Stats().InsertRetries.Load(), p.Stats().Repaired.Load())
}
