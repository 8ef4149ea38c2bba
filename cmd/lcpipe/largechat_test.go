package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/lcpipe/lcpipe/ingest"
	"github.com/lcpipe/lcpipe/internal/kafka"
	"github.com/lcpipe/lcpipe/internal/testenv"
)

// largeChat builds an incoming_chat of at least size bytes from the
// fixture: the same chat and thread with many long messages appended,
// alternating customer and agent, with the mix of ASCII, accented letters,
// emoji, quotes and markup that real chats carry (so JSON escaping and
// UTF-8 lengths are exercised too).
func largeChat(t *testing.T, size int) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "ingest", "testdata", "livechat", "incoming_chat.json"))
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var w map[string]any
	if err := dec.Decode(&w); err != nil {
		t.Fatal(err)
	}
	thread := w["payload"].(map[string]any)["chat"].(map[string]any)["thread"].(map[string]any)
	events := thread["events"].([]any)
	sentences := []string{
		"I was charged twice for my March invoice and the second charge is still pending on my card.",
		"Could you check order #A-10442 — the tracking page says \"delivered\" but nothing arrived.",
		"Zażółć gęślą jaźń: the address has Polish letters and the courier's label mangled them.",
		"Here is the log the app printed: <error code=\"504\">upstream timed out</error> & retry=3",
		"Thanks! 🙏 That fixed it on the laptop; the phone still shows the old plan 📱.",
		"Our accountant in Málaga needs the VAT number on every invoice, including the refunds.",
		"I pasted the steps below:\n1. open settings\n2. click billing\n3. nothing happens\ttab\tseparated",
		"もう一度確認してください — the Japanese storefront shows a different price than the English one.",
	}
	customer, agent := "b2f6d8a4-3c1e-4f5a-9b7d-6e8c0a2f4d1b", "anna.kowalski@example.com"
	rng := rand.New(rand.NewPCG(1, 2))
	start := time.Date(2025, 3, 14, 9, 15, 11, 0, time.UTC)
	// LiveChat sends compact JSON; the body grows by each event's length
	// plus a comma.
	base, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	for i, total := len(events)+1, len(base); total < size; i++ {
		var text strings.Builder
		for n := 2_000 + rng.IntN(10_000); text.Len() < n; {
			text.WriteString(sentences[rng.IntN(len(sentences))])
			text.WriteString(" ")
		}
		author := customer
		if i%2 == 0 {
			author = agent
		}
		ev := map[string]any{
			"id":         "RW4T8ZQK3D_" + strconv.Itoa(i),
			"custom_id":  fmt.Sprintf("m%08d", i),
			"type":       "message",
			"author_id":  author,
			"created_at": start.Add(time.Duration(i) * time.Second).Format("2006-01-02T15:04:05.000000Z"),
			"visibility": "all",
			"text":       text.String(),
		}
		m, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, ev)
		total += len(m) + 1
	}
	thread["events"] = events
	body, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	if len(body) < size {
		t.Fatalf("built %d bytes, want at least %d", len(body), size)
	}
	return body
}

// eventWant is what ClickHouse must hold for one chat event.
type eventWant struct {
	payloadBytes uint64
	textRunes    uint32
}

// TestLargeChatThroughCreatedTopic posts a 4 MiB incoming_chat to a running
// ingest that creates its own topics, and runs the processor: the webhook
// goes through Kafka, not the quarantine, and every event of it reaches
// ClickHouse with its payload whole. The topics must carry their own
// max.message.bytes: a production broker's default is about 1 MB (the test
// broker's may be larger, so the test checks the topic's setting itself),
// and franz-go's default producer batch cap of about 1 MB would refuse the
// record before any broker sees it.
func TestLargeChatThroughCreatedTopic(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	chcfg := testenv.ClickHouseConfig(t)
	conn := testenv.ClickHouse(t, chcfg)
	raw, dlq := testenv.Name(t, "raw"), testenv.Name(t, "dlq")
	kcfg := kafka.DefaultConfig()
	kcfg.Brokers, kcfg.RawTopic, kcfg.DLQTopic = brokers, raw, dlq
	admin := testenv.KafkaClient(t, kcfg)
	t.Cleanup(func() {
		// A 4 MiB record should not stay on the shared broker.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = kadm.NewClient(admin).DeleteTopics(ctx, raw, dlq)
	})

	body := largeChat(t, 4<<20)
	if len(body) >= ingest.DefaultConfig().MaxBodyBytes {
		t.Fatalf("built a %d-byte chat, above INGEST_MAX_BODY", len(body))
	}
	var parsed struct {
		Payload json.RawMessage `json:"payload"`
	}
	var events struct {
		Chat struct {
			Thread struct {
				Events []json.RawMessage `json:"events"`
			} `json:"thread"`
		} `json:"chat"`
	}
	if err := json.Unmarshal(body, &parsed); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(parsed.Payload, &events); err != nil {
		t.Fatal(err)
	}
	want := map[string]eventWant{}
	for _, ev := range events.Chat.Thread.Events {
		var e struct{ ID, Text string }
		if err := json.Unmarshal(ev, &e); err != nil {
			t.Fatal(err)
		}
		want[e.ID] = eventWant{uint64(len(ev)), uint32(utf8.RuneCountInString(e.Text))}
	}
	t.Logf("incoming_chat of %d bytes with %d events", len(body), len(want))

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	spoolDir := t.TempDir()
	env := map[string]string{
		"INGEST_ADDR":              addr,
		"KAFKA_BROKERS":            strings.Join(brokers, ","),
		"KAFKA_RAW_TOPIC":          raw,
		"KAFKA_DLQ_TOPIC":          dlq,
		"KAFKA_GROUP":              testenv.Name(t, "group"),
		"LIVECHAT_WEBHOOK_SECRETS": "test-secret",
		"SPOOL_DIR":                spoolDir,
		"CLICKHOUSE_ADDR":          strings.Join(chcfg.Addr, ","),
		"CLICKHOUSE_DATABASE":      chcfg.Database,
		"BATCH_LINGER":             "100ms",
		"INSERT_LINGER":            "200ms",
		"SETTLE_INTERVAL":          "0",
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ingestDone := make(chan error, 1)
	go func() { ingestDone <- runIngest(ctx, ingestInvocation(env)) }()

	// Ingest creates the topics at start: wait for them, with the size the
	// project gives them as a topic setting (not the broker's default).
	adm := kadm.NewClient(admin)
	testenv.Eventually(t, 30*time.Second, func() error {
		for _, topic := range []string{raw, dlq} {
			rcs, err := adm.DescribeTopicConfigs(context.Background(), topic)
			if err != nil || len(rcs) != 1 || rcs[0].Err != nil {
				return fmt.Errorf("describe %s: %v %v", topic, err, rcs)
			}
			for _, c := range rcs[0].Configs {
				if c.Key == "max.message.bytes" && (c.Value == nil || *c.Value != strconv.Itoa(kafka.DefaultMaxMessageBytes)) {
					t.Fatalf("%s created with max.message.bytes %v, want %d", topic, c.Value, kafka.DefaultMaxMessageBytes)
				}
			}
		}
		return nil
	})

	testenv.Eventually(t, 20*time.Second, func() error {
		resp, err := http.Post("http://"+addr+ingest.WebhookPath, "application/json", bytes.NewReader(body))
		if err != nil {
			return err // not listening yet
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, msg)
		}
		return nil
	})

	procDone := make(chan error, 1)
	go func() {
		inv := newInvocation("processor", "test", nil, io.Discard, slog.New(slog.DiscardHandler))
		procEnv := maps.Clone(env)
		procEnv["ADMIN_ADDR"] = "" // off: the admin listener has tests of its own
		inv.lookup = func(k string) (string, bool) { v, ok := procEnv[k]; return v, ok }
		procDone <- runProcessor(ctx, inv)
	}()

	db := chcfg.Database
	testenv.Eventually(t, 90*time.Second, func() error {
		select {
		case err := <-procDone:
			t.Fatalf("processor stopped early: %v", err)
		case err := <-ingestDone:
			t.Fatalf("ingest stopped early: %v", err)
		default:
		}
		if dead, _ := filepath.Glob(filepath.Join(spoolDir, "dead", "*")); len(dead) != 0 {
			t.Fatalf("ingest quarantined the webhook instead of storing it in Kafka: %v", dead)
		}
		rows, err := conn.Query(context.Background(), fmt.Sprintf(
			"SELECT event_ref, length(payload), text_length FROM %s.events WHERE chat_id = 'RW4T8ZQK2C' AND kind = 'event'", db))
		if err != nil {
			return err
		}
		defer rows.Close()
		got := map[string]eventWant{}
		for rows.Next() {
			var ref string
			var e eventWant
			if err := rows.Scan(&ref, &e.payloadBytes, &e.textRunes); err != nil {
				return err
			}
			if _, dup := got[ref]; dup {
				t.Fatalf("event %s stored twice", ref)
			}
			got[ref] = e
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if len(got) < len(want) {
			return fmt.Errorf("%d of %d events in ClickHouse", len(got), len(want))
		}
		for id, w := range want {
			if got[id] != w {
				t.Fatalf("event %s: stored payload %d bytes, text %d runes; want %d and %d", id, got[id].payloadBytes, got[id].textRunes, w.payloadBytes, w.textRunes)
			}
		}
		if len(got) != len(want) {
			t.Fatalf("%d events stored, want %d", len(got), len(want))
		}
		return nil
	})
	var threadPayload uint64
	if err := conn.QueryRow(context.Background(), fmt.Sprintf(
		"SELECT length(payload) FROM %s.events WHERE chat_id = 'RW4T8ZQK2C' AND kind = 'thread_started'", db)).Scan(&threadPayload); err != nil {
		t.Fatal(err)
	}
	if threadPayload != uint64(len(parsed.Payload)) {
		t.Fatalf("thread_started payload %d bytes, want %d", threadPayload, len(parsed.Payload))
	}
	// It went through Kafka: nothing was set aside as too large.
	if dead, _ := filepath.Glob(filepath.Join(spoolDir, "dead", "*")); len(dead) != 0 {
		t.Fatalf("ingest quarantined %v", dead)
	}

	cancel()
	for name, done := range map[string]chan error{"ingest": ingestDone, "processor": procDone} {
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("%s: %v", name, err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("%s did not stop after cancel", name)
		}
	}
}
