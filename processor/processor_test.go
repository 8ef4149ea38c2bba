package processor

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lcpipe/lcpipe/internal/chconn"
	"github.com/lcpipe/lcpipe/internal/kafka"
	"github.com/lcpipe/lcpipe/internal/testenv"
	"github.com/lcpipe/lcpipe/internal/wire"
	"github.com/lcpipe/lcpipe/schema"
)

// env is one integration test's Kafka topics and migrated ClickHouse database.
type env struct {
	kafka kafka.Config
	ch    chconn.Config
	conn  driver.Conn
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{kafka: testenv.KafkaConfig(t), ch: testenv.ClickHouseConfig(t)}
	e.conn = testenv.ClickHouse(t, e.ch)
	migrate(t, e.conn, e.ch.Database)
	return e
}

func migrate(t testing.TB, conn driver.Conn, db string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := schema.Migrate(ctx, conn, schema.Options{Database: db}, nil); err != nil {
		t.Fatalf("migrate: %v", err)
	}
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("PROCESSOR_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// start runs a processor until the test ends (or stop is called); stop
// returns Run's error.
func (e *env) start(t *testing.T, cfg Config) (p *Processor, stop func() error) {
	t.Helper()
	if cfg.Group == "" {
		cfg.Group = testenv.Name(t, "grp")
	}
	p, err := New(Options{Config: cfg, Kafka: e.kafka, ClickHouse: e.conn, Database: e.ch.Database, Directory: fakeDirectory{}, Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(time.Minute):
				runErr = fmt.Errorf("processor did not stop")
			}
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return p, stop
}

func queryIDs(t testing.TB, conn driver.Conn, db string) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT event_id FROM "+db+".events")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func countRows(conn driver.Conn, db string) (uint64, error) {
	var n uint64
	err := conn.QueryRow(context.Background(), "SELECT count() FROM "+db+".events").Scan(&n)
	return n, err
}

// waitRows waits until events holds want rows and the processor has been
// idle (nothing new) for a moment.
func waitRows(t testing.TB, conn driver.Conn, db string, want uint64, timeout time.Duration) {
	t.Helper()
	testenv.Eventually(t, timeout, func() error {
		n, err := countRows(conn, db)
		if err != nil {
			return err
		}
		if n != want {
			return fmt.Errorf("events has %d rows, want %d", n, want)
		}
		return nil
	})
}

// checkExactSet compares the stored event ids with the expected set: no
// gap, no duplicate, nothing extra.
func checkExactSet(t testing.TB, conn driver.Conn, db string, want map[string]struct{}) {
	t.Helper()
	got := queryIDs(t, conn, db)
	seen := map[string]int{}
	var dups, extra []string
	for _, id := range got {
		seen[id]++
		if seen[id] == 2 {
			dups = append(dups, id)
		}
		if _, ok := want[id]; !ok {
			extra = append(extra, id)
		}
	}
	var missing []string
	for id := range want {
		if seen[id] == 0 {
			missing = append(missing, id)
		}
	}
	if len(dups)+len(extra)+len(missing) > 0 {
		t.Fatalf("stored %d rows for %d expected: %d duplicated, %d unexpected, %d missing (e.g. dup %v extra %v missing %v)",
			len(got), len(want), len(dups), len(extra), len(missing), head(dups), head(extra), head(missing))
	}
}

func head(s []string) []string { return s[:min(len(s), 3)] }

// storyDeliveries posts the fixture story twice, the second time 3 minutes
// later (past DEDUP_WINDOW: its state changes are genuine repeats, its
// events with a server identity are duplicates), and every webhook 3 times,
// the retries right after it (before the next change of the same subject,
// as LiveChat re-sends only what got no 200).
func storyDeliveries(t testing.TB, base time.Time) (all []delivery, first []delivery) {
	for pass := 0; pass < 2; pass++ {
		passStart := base.Add(time.Duration(pass) * 3 * time.Minute)
		for i, name := range storyOrder {
			body := readFixture(t, name)
			org, err := decodeOnly(body)
			if err != nil {
				t.Fatal(err)
			}
			entity := ""
			for _, k := range []string{`"chat_id": "`, `"id": "R`} {
				if j := strings.Index(string(body), k); j >= 0 {
					entity = string(body[j+len(k) : j+len(k)+10])
					break
				}
			}
			at := passStart.Add(time.Duration(i) * time.Second)
			for try, delay := range []time.Duration{0, 200 * time.Millisecond, 400 * time.Millisecond} {
				d := delivery{key: wire.Key(org, entity), body: body, receivedAt: at.Add(delay), requestID: fmt.Sprintf("story-%d-%s-%d", pass, name, try)}
				all = append(all, d)
				if try == 0 {
					first = append(first, d)
				}
			}
		}
	}
	return all, first
}

func decodeOnly(body []byte) (string, error) {
	w, err := livechatDecode(body)
	if err != nil {
		return "", err
	}
	return w.Tenant(), nil
}

func expectedOf(t testing.TB, ds []delivery) map[string]struct{} {
	out := map[string]struct{}{}
	for _, d := range ds {
		w, err := livechatDecode(d.body)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range Transform(Source{ReceivedAt: d.receivedAt}, w, nil, nil) {
			out[r.EventID] = struct{}{}
		}
	}
	return out
}

// TestStoryTwiceEveryWebhookThrice: posting the fixture story twice, with
// every webhook delivered 3 times → each unique event stored once. Then a
// replay (same group reset to the earliest offset, and a new group) stores
// nothing new and leaves every value as it was; and a replay into an empty
// database reproduces the same rows.
func TestStoryTwiceEveryWebhookThrice(t *testing.T) {
	e := newEnv(t)
	base := time.Date(2025, 3, 14, 9, 30, 0, 0, time.UTC)
	all, first := storyDeliveries(t, base)
	want := expectedOf(t, first)
	produceAll(t, e.kafka, all)

	cfg := Config{Group: testenv.Name(t, "grp"), BatchLinger: 200 * time.Millisecond}
	p, stop := e.start(t, cfg)
	waitRows(t, e.conn, e.ch.Database, uint64(len(want)), time.Minute)
	testenv.Eventually(t, 30*time.Second, func() error {
		if got := p.Stats().Records.Load(); got != int64(len(all)) {
			return fmt.Errorf("consumed %d of %d records", got, len(all))
		}
		return nil
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkExactSet(t, e.conn, e.ch.Database, want)
	st := p.Stats()
	t.Logf("records %d, rows %d, inserted %d, identity dups %d, window dups %d", st.Records.Load(), st.Rows.Load(), st.Inserted.Load(), st.DupIdentity.Load(), st.DupWindow.Load())
	if st.DupWindow.Load() == 0 || st.DupIdentity.Load() == 0 {
		t.Fatal("both kinds of duplicates should occur in the story")
	}
	checkStoryValues(t, e)
	before := snapshot(t, e.conn, e.ch.Database)

	// Replay 1: reset the same group to the earliest offset.
	adm := kadm.NewClient(testenv.KafkaClient(t, e.kafka))
	ctx := context.Background()
	offs, err := adm.ListStartOffsets(ctx, e.kafka.RawTopic)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CommitOffsets(ctx, cfg.Group, offs.Offsets()); err != nil {
		t.Fatal(err)
	}
	p2, stop2 := e.start(t, cfg)
	testenv.Eventually(t, time.Minute, func() error {
		if got := p2.Stats().Records.Load(); got != int64(len(all)) {
			return fmt.Errorf("replay consumed %d of %d", got, len(all))
		}
		return nil
	})
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
	if n := p2.Stats().Inserted.Load(); n != 0 {
		t.Fatalf("replay inserted %d rows", n)
	}
	if after := snapshot(t, e.conn, e.ch.Database); after != before {
		t.Fatalf("replay changed the stored rows:\nbefore %s\nafter  %s", before, after)
	}

	// Replay 2: a new group into an empty database gives the same rows.
	fresh := e.ch
	fresh.Database = testenv.Name(t, "replay")
	freshConn := testenv.ClickHouse(t, fresh)
	t.Cleanup(func() { _ = freshConn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+fresh.Database) })
	migrate(t, freshConn, fresh.Database)
	e2 := &env{kafka: e.kafka, ch: fresh, conn: freshConn}
	_, stop3 := e2.start(t, Config{BatchLinger: 200 * time.Millisecond})
	waitRows(t, freshConn, fresh.Database, uint64(len(want)), time.Minute)
	if err := stop3(); err != nil {
		t.Fatal(err)
	}
	if got := snapshot(t, freshConn, fresh.Database); got != before {
		t.Fatalf("replay into an empty database differs:\nfirst  %s\nreplay %s", before, got)
	}
}

// snapshot summarises every stored value except inserted_at and insert_id
// (which INSERT wrote a row is not part of its value).
func snapshot(t testing.TB, conn driver.Conn, db string) string {
	t.Helper()
	cols := strings.TrimSuffix(insertColumns, ", insert_id")
	q := "SELECT count(), uniqExact(event_id), sum(cityHash64(" + strings.ReplaceAll(cols, "occurred_at, ", "toUInt32(occurred_at), ") + ")) FROM " + db + ".events"
	q = strings.ReplaceAll(q, "received_at, ", "toUInt32(received_at), ")
	var n, u, h uint64
	if err := conn.QueryRow(context.Background(), q).Scan(&n, &u, &h); err != nil {
		t.Fatalf("snapshot: %v\n%s", err, q)
	}
	return fmt.Sprintf("rows=%d unique=%d hash=%d", n, u, h)
}

// checkStoryValues spot-checks enrichment on the stored story.
func checkStoryValues(t *testing.T, e *env) {
	t.Helper()
	type row struct {
		kind, authorType, agent, agentName, customer, country string
		welcome                                               uint8
	}
	q := "SELECT kind, author_type, agent_id, agent_name, customer_id, customer_country_code, is_welcome FROM " + e.ch.Database + ".events WHERE event_ref = ? OR (kind = ? AND event_ref = '')"
	get := func(ref, kind string) row {
		var r row
		if err := e.conn.QueryRow(context.Background(), q, ref, kind).Scan(&r.kind, &r.authorType, &r.agent, &r.agentName, &r.customer, &r.country, &r.welcome); err != nil {
			t.Fatalf("%s/%s: %v", ref, kind, err)
		}
		return r
	}
	if r := get("RW4T8ZQK3D_2", ""); r.authorType != "agent" || r.welcome != 1 || r.agent != "anna.kowalski@example.com" {
		t.Fatalf("welcome message: %+v", r)
	}
	if r := get("RW4T8ZQK3D_4", KindEvent); r.authorType != "customer" || r.customer == "" {
		t.Fatalf("customer message: %+v", r)
	}
	if r := get("-", KindThreadClosed); r.authorType != "agent" || r.agentName != "Tom Baker" {
		t.Fatalf("thread closed: %+v", r)
	}
	if r := get("-", KindThreadStarted); r.country != "ES" || r.customer != "b2f6d8a4-3c1e-4f5a-9b7d-6e8c0a2f4d1b" {
		t.Fatalf("thread started: %+v", r)
	}
	var batches, inserted uint64
	if err := e.conn.QueryRow(context.Background(), "SELECT count(), sum(events_inserted) FROM "+e.ch.Database+".pipeline_batches").Scan(&batches, &inserted); err != nil {
		t.Fatal(err)
	}
	if batches == 0 || inserted == 0 {
		t.Fatalf("pipeline_batches: %d batches, %d inserted", batches, inserted)
	}
}

// TestPoisonGoesToDeadLetters: a poison record between good ones → the good
// ones are stored, the poison is in the DLQ with its reason and origin.
func TestPoisonGoesToDeadLetters(t *testing.T) {
	e := newEnv(t)
	at := time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)
	good1 := delivery{key: []byte("o/c"), body: readFixture(t, "thread_tagged"), receivedAt: at, requestID: "g1"}
	poison1 := delivery{key: []byte("o/c"), body: []byte(`{"action": "incoming_event", "organization_id": "o", "payload": {`), receivedAt: at, requestID: "p1"}
	poison2 := delivery{key: []byte("o/c"), body: []byte(`{"action":"incoming_event","organization_id":"o","payload":{"chat_id":"C","thread_id":"T","event":{"type":"message"}}}`), receivedAt: at, requestID: "p2"}
	good2 := delivery{key: []byte("o/c"), body: readFixture(t, "incoming_event"), receivedAt: at, requestID: "g2"}
	produceAll(t, e.kafka, []delivery{good1, poison1, poison2, good2})
	p, stop := e.start(t, Config{BatchLinger: 100 * time.Millisecond})
	want := expectedOf(t, []delivery{good1, good2})
	waitRows(t, e.conn, e.ch.Database, uint64(len(want)), time.Minute)
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := p.Stats().DeadLetters.Load(); n != 2 {
			return fmt.Errorf("%d dead letters", n)
		}
		return nil
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkExactSet(t, e.conn, e.ch.Database, want)

	cl := testenv.KafkaClient(t, e.kafka, kgo.ConsumeTopics(e.kafka.DLQTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var dead []*kgo.Record
	for len(dead) < 2 && ctx.Err() == nil {
		dead = append(dead, cl.PollFetches(ctx).Records()...)
	}
	if len(dead) != 2 {
		t.Fatalf("%d records in the DLQ", len(dead))
	}
	sort.Slice(dead, func(i, j int) bool {
		return wire.Header(dead[i], wire.HeaderRequestID) < wire.Header(dead[j], wire.HeaderRequestID)
	})
	for i, tc := range []struct{ reqID, stage, errPart string }{{"p1", "decode-envelope", "decode envelope"}, {"p2", "validate", "without chat_id and event.id"}} {
		r := dead[i]
		if got := wire.Header(r, wire.HeaderRequestID); got != tc.reqID {
			t.Fatalf("dead letter %d: request id %q (original headers must be kept)", i, got)
		}
		if wire.Header(r, wire.HeaderDLQStage) != tc.stage || !strings.Contains(wire.Header(r, wire.HeaderDLQError), tc.errPart) {
			t.Fatalf("dead letter %s: stage %q error %q", tc.reqID, wire.Header(r, wire.HeaderDLQStage), wire.Header(r, wire.HeaderDLQError))
		}
		if wire.Header(r, wire.HeaderDLQTopic) != e.kafka.RawTopic || wire.Header(r, wire.HeaderDLQOffset) == "" || wire.Header(r, wire.HeaderDLQPartition) == "" {
			t.Fatalf("dead letter %s lacks its origin: %v", tc.reqID, r.Headers)
		}
		if wire.Header(r, wire.HeaderDLQAt) == "" || string(r.Value) != string([]delivery{poison1, poison2}[i].body) {
			t.Fatalf("dead letter %s: value or time changed", tc.reqID)
		}
	}
}

func TestRunningInserts(t *testing.T) {
	e := newEnv(t)
	st := &store{conn: e.conn, db: e.ch.Database}
	id := insertQueryID(st.db, "raw", []int32{0, 2}, "ab")
	if id != "lcpipe:"+st.db+":raw:0,2:ab" {
		t.Fatalf("query id %q", id)
	}
	running, err := st.runningInserts(context.Background(), "raw")
	if err != nil || len(running) != 0 {
		t.Fatalf("idle server: %v %v", running, err)
	}
	// An insert with that id runs on the server and is stored.
	rows := Transform(goldenSource, decodeFixture(t, "thread_tagged"), nil, nil)
	if err := st.insert(context.Background(), rows, id, 1); err != nil {
		t.Fatal(err)
	}
	var n uint64
	if err := e.conn.QueryRow(context.Background(), "SELECT count() FROM "+st.db+".events").Scan(&n); err != nil || n != 1 {
		t.Fatalf("rows %d, %v", n, err)
	}
}
