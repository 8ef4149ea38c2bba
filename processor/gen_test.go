package processor

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lcpipe/lcpipe/internal/kafka"
	"github.com/lcpipe/lcpipe/internal/livechat"
	"github.com/lcpipe/lcpipe/internal/wire"
)

// delivery is one webhook POST as ingest would have written it.
type delivery struct {
	key        []byte
	body       []byte
	receivedAt time.Time
	requestID  string
}

// record builds the raw-topic record with the wire headers.
func (d delivery) record(topic string) *kgo.Record {
	w, _ := livechat.Decode(d.body)
	action, org := "", ""
	if w != nil {
		action, org = w.Action, w.Tenant()
	}
	r := &kgo.Record{
		Topic: topic,
		Key:   d.key,
		Value: d.body,
		Headers: []kgo.RecordHeader{
			{Key: wire.HeaderReceivedAt, Value: []byte(wire.FormatTime(d.receivedAt))},
			{Key: wire.HeaderRequestID, Value: []byte(d.requestID)},
			{Key: wire.HeaderAction, Value: []byte(action)},
			{Key: wire.HeaderOrganization, Value: []byte(org)},
			{Key: wire.HeaderIngestVersion, Value: []byte("test")},
		},
	}
	if benchTraceparent {
		// As ingest writes it with tracing on and every trace sampled.
		var id [24]byte
		_, _ = rand.Read(id[:])
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: wire.HeaderTraceparent,
			Value: []byte("00-" + hex.EncodeToString(id[:16]) + "-" + hex.EncodeToString(id[16:]) + "-01")})
	}
	return r
}

// benchTraceparent (LCPIPE_BENCH_TRACEPARENT=1) gives every generated record
// a sampled W3C trace context, as ingest does with tracing on.
var benchTraceparent = os.Getenv("LCPIPE_BENCH_TRACEPARENT") == "1"

// storyOrder is the fixture story in time order (fixtures/README.md).
var storyOrder = []string{
	"incoming_chat", "incoming_event", "incoming_event.agent_message", "event_updated",
	"incoming_rich_message_postback", "thread_tagged", "thread_untagged", "chat_transferred",
	"chat_access_updated", "user_added_to_chat", "user_removed_from_chat", "event_deleted",
	"events_marked_as_seen", "chat_deactivated", "thread_summary_set", "chat_properties_updated",
	"thread_properties_updated", "chat_transferred.queued", "routing_status_set", "agent_created",
	"group_created", "incoming_customer",
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtureDir, name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	// Ingest stores the body with the secret blanked.
	return bytes.Replace(b, []byte(`"secret_key": "test-secret"`), []byte(`"secret_key": ""`), 1)
}

// generator makes realistic webhook traffic: the fixture story with fresh
// ids per story (so every story is new), extra messages, and a share of
// repeated deliveries (LiveChat retries) a few seconds later.
type generator struct {
	templates [][]byte
	names     []string
	extra     []byte // incoming_event template for extra messages
	base      time.Time
	dupEvery  int // every dupEvery-th delivery is delivered again (5 → 20 %)
	// stories per organization
	orgs int
}

// storyTemplates are the fixtures used per generated story: the whole
// story except group_created, whose group id cannot be made fresh (its
// repeats inside the window would be dropped as retries, correctly).
func newGenerator(t testing.TB, base time.Time) *generator {
	g := &generator{base: base, dupEvery: 5, orgs: 50}
	for _, n := range storyOrder {
		if n == "group_created" {
			continue
		}
		g.templates = append(g.templates, readFixture(t, n))
		g.names = append(g.names, n)
	}
	g.extra = readFixture(t, "incoming_event")
	return g
}

const extraMessages = 8

// story returns the deliveries of story n (without repeats), in order.
func (g *generator) story(n int) []delivery {
	org := fmt.Sprintf("%08x-0000-4000-8000-%012x", n%g.orgs, n%g.orgs)
	chat, thread := fmt.Sprintf("C%09d", n), fmt.Sprintf("T%09d", n)
	chat2, thread2 := fmt.Sprintf("Q%09d", n), fmt.Sprintf("R%09d", n)
	cust := fmt.Sprintf("%08x-1111-4000-8000-%012x", n, n)
	cust2 := fmt.Sprintf("%08x-2222-4000-8000-%012x", n, n)
	repl := [][2]string{
		{"3f2b8c1e-9d4a-4e6b-8f1a-2c5d7e9b0a14", org},
		{"RW4T8ZQK2C", chat}, {"RW4T8ZQK3D", thread}, {"RX9M3H6V1P", chat2}, {"RX9M3H6V2Q", thread2},
		{"b2f6d8a4-3c1e-4f5a-9b7d-6e8c0a2f4d1b", cust}, {"c7d9e1f3-2a4b-4c6d-8e0f-1a3b5c7d9e2f", cust2},
		{"anna.kowalski@example.com", fmt.Sprintf("anna%d@example.com", n)},
		{"tom.baker@example.com", fmt.Sprintf("tom%d@example.com", n)},
		{"li.wei@example.com", fmt.Sprintf("li%d@example.com", n)},
	}
	// Stories are 30 s apart, so a long run spans days like real traffic
	// (server timestamps move with it; only the time of day repeats).
	day := g.base.Add(time.Duration(n) * 30 * time.Second)
	repl = append(repl, [2]string{"2025-03-14T", day.Format("2006-01-02T")})
	subst := func(b []byte) []byte {
		for _, p := range repl {
			b = bytes.ReplaceAll(b, []byte(p[0]), []byte(p[1]))
		}
		return b
	}
	start := day
	var out []delivery
	add := func(body []byte, key string) {
		out = append(out, delivery{
			key: wire.Key(org, key), body: body,
			receivedAt: start.Add(time.Duration(len(out)) * time.Millisecond),
			requestID:  fmt.Sprintf("req-%d-%d", n, len(out)),
		})
	}
	for i, tpl := range g.templates {
		key := chat
		switch g.names[i] {
		case "chat_transferred.queued":
			key = chat2
		case "routing_status_set", "agent_created", "incoming_customer":
			key = ""
		}
		add(subst(tpl), key)
	}
	// States that flip back, as people do: the untagged tag is put back,
	// the agent takes a status break and returns to the first status.
	for i, tpl := range g.templates {
		switch g.names[i] {
		case "thread_untagged":
			add(subst(bytes.Replace(tpl, []byte(`"thread_untagged"`), []byte(`"thread_tagged"`), 1)), chat)
		case "routing_status_set":
			add(subst(bytes.Replace(tpl, []byte(`"not accepting chats"`), []byte(`"accepting chats"`), 1)), "")
			add(subst(tpl), "")
		}
	}
	for m := 0; m < extraMessages; m++ {
		body := subst(g.extra)
		body = bytes.Replace(body, []byte(thread+"_4"), []byte(fmt.Sprintf("%s_%d", thread, 10+m)), 1)
		if m%2 == 1 {
			body = bytes.Replace(body, []byte(`"author_id": "`+cust+`"`), []byte(`"author_id": "`+fmt.Sprintf("anna%d@example.com", n)+`"`), 1)
		}
		add(body, chat)
	}
	return out
}

// deliveries returns story n's deliveries with repeats: every dupEvery-th
// delivery is posted again 3 s later, right after the original.
func (g *generator) deliveries(n int, counter *int) []delivery {
	var out []delivery
	for _, d := range g.story(n) {
		out = append(out, d)
		*counter++
		if g.dupEvery > 0 && *counter%g.dupEvery == 0 {
			again := d
			again.receivedAt = d.receivedAt.Add(3 * time.Second)
			again.requestID += "-retry"
			out = append(out, again)
		}
	}
	return out
}

// expectedIDs is the unique set: the rows of every story's first deliveries.
func (g *generator) expectedIDs(t testing.TB, stories int) map[string]struct{} {
	t.Helper()
	out := map[string]struct{}{}
	for n := 0; n < stories; n++ {
		for _, d := range g.story(n) {
			w, err := livechat.Decode(d.body)
			if err != nil {
				t.Fatalf("story %d: %v", n, err)
			}
			for _, r := range Transform(Source{ReceivedAt: d.receivedAt}, w, nil, nil) {
				out[r.EventID] = struct{}{}
			}
		}
	}
	return out
}

// produceAll writes the deliveries to the raw topic and waits for the acks.
func produceAll(t testing.TB, cfg kafka.Config, ds []delivery) {
	t.Helper()
	cl, err := kafka.NewClient(cfg, kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	produceWith(t, cl, cfg.RawTopic, ds)
}

func produceWith(t testing.TB, cl *kgo.Client, topic string, ds []delivery) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	errs := make(chan error, 1)
	for _, d := range ds {
		cl.Produce(ctx, d.record(topic), func(_ *kgo.Record, err error) {
			if err != nil {
				select {
				case errs <- err:
				default:
				}
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatalf("produce flush: %v", err)
	}
	select {
	case err := <-errs:
		t.Fatalf("produce: %v", err)
	default:
	}
}
