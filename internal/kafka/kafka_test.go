package kafka_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/lcpipe/lcpipe/internal/kafka"
	"github.com/lcpipe/lcpipe/internal/testenv"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*kafka.Config)
		want   string
	}{
		{"defaults", func(*kafka.Config) {}, ""},
		{"no brokers", func(c *kafka.Config) { c.Brokers = nil }, "no brokers"},
		{"broker without port", func(c *kafka.Config) { c.Brokers = []string{"localhost"} }, "has no port"},
		{"same topics", func(c *kafka.Config) { c.DLQTopic = c.RawTopic }, "must differ"},
		{"zero partitions", func(c *kafka.Config) { c.Partitions = 0 }, "partitions"},
		{"min isr above replication", func(c *kafka.Config) { c.ReplicationFactor, c.MinInsyncReplicas = 2, 3 }, "min.insync.replicas"},
		{"negative min isr", func(c *kafka.Config) { c.MinInsyncReplicas = -1 }, "min.insync.replicas"},
		{"min isr equal to replication", func(c *kafka.Config) { c.ReplicationFactor, c.MinInsyncReplicas = 3, 3 }, ""},
		{"max message bytes too small", func(c *kafka.Config) { c.MaxMessageBytes = 1000 }, "max message bytes"},
		{"max message bytes too large", func(c *kafka.Config) { c.MaxMessageBytes = 1<<30 + 1 }, "max message bytes"},
		{"max message bytes unset", func(c *kafka.Config) { c.MaxMessageBytes = 0 }, ""},
		{"raw retention below a minute", func(c *kafka.Config) { c.RawRetention = time.Second }, "KAFKA_RAW_RETENTION"},
		{"dead-letter retention below a minute", func(c *kafka.Config) { c.DLQRetention = time.Second }, "KAFKA_DLQ_RETENTION"},
		{"retention forever", func(c *kafka.Config) { c.RawRetention, c.DLQRetention = -1, -1 }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := kafka.DefaultConfig()
			tt.mutate(&c)
			err := c.Validate()
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestMinISR(t *testing.T) {
	tests := []struct {
		replication, set, want int16
	}{
		{1, 0, 1}, // one broker: a second replica cannot exist
		{2, 0, 2},
		{3, 0, 2}, // the usual production choice: one broker may be down
		{5, 0, 2},
		{3, 3, 3},
		{3, 1, 1},
	}
	for _, tt := range tests {
		c := kafka.DefaultConfig()
		c.ReplicationFactor, c.MinInsyncReplicas = tt.replication, tt.set
		if got := c.MinISR(); got != tt.want {
			t.Errorf("replication %d, set %d: MinISR() = %d, want %d", tt.replication, tt.set, got, tt.want)
		}
	}
}

// TestProduceConsumeOnLocalBroker shows the broker the project starts takes
// records with acks=all and gives them back, and that topic creation is
// idempotent with the configured partition count.
func TestProduceConsumeOnLocalBroker(t *testing.T) {
	cfg := testenv.KafkaConfig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	prod := testenv.KafkaClient(t, cfg)
	if err := kafka.EnsureTopics(ctx, prod, cfg, nil, cfg.RawTopic); err != nil {
		t.Fatalf("EnsureTopics on an existing topic: %v", err)
	}
	details, err := kadm.NewClient(prod).ListTopics(ctx, cfg.RawTopic)
	if err != nil {
		t.Fatal(err)
	}
	if d := details[cfg.RawTopic]; d.Err != nil || len(d.Partitions) != int(cfg.Partitions) {
		t.Fatalf("topic has %d partitions (error %v), want %d", len(d.Partitions), d.Err, cfg.Partitions)
	}
	var sent []string
	for i := 0; i < 20; i++ {
		v := "value-" + time.Now().Format(time.RFC3339Nano)
		sent = append(sent, v)
		r := &kgo.Record{Topic: cfg.RawTopic, Key: []byte("org/chat"), Value: []byte(v)}
		if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	cons := testenv.KafkaClient(t, cfg, kgo.ConsumeTopics(cfg.RawTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var got []string
	for len(got) < len(sent) {
		fs := cons.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d: %v", len(got), len(sent), err)
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	// One key, one partition: order is kept.
	if strings.Join(got, ",") != strings.Join(sent, ",") {
		t.Fatalf("consumed out of order or different:\n got %v\nwant %v", got, sent)
	}
}

// deleteTopics removes the test's topics at its end: the large records
// some tests write should not stay on the shared broker.
func deleteTopics(t *testing.T, cl *kgo.Client, topics ...string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = kadm.NewClient(cl).DeleteTopics(ctx, topics...)
	})
}

// topicSettings returns the named settings of topic as the broker reports them.
func topicSettings(t *testing.T, ctx context.Context, cl *kgo.Client, topic string, keys ...string) map[string]string {
	t.Helper()
	rcs, err := kadm.NewClient(cl).DescribeTopicConfigs(ctx, topic)
	if err != nil || len(rcs) != 1 || rcs[0].Err != nil {
		t.Fatalf("describe %s: %v %v", topic, err, rcs)
	}
	got := map[string]string{}
	for _, c := range rcs[0].Configs {
		for _, k := range keys {
			if c.Key == k && c.Value != nil {
				got[k] = *c.Value
			}
		}
	}
	return got
}

// TestEnsureTopicsReturnsWhenLeadersAreKnown creates topics and, the moment
// EnsureTopics returns, asks a client that has never seen them (empty
// metadata cache) for their partitions: every partition must be there with
// a leader. Before EnsureTopics waited, a request right after creation
// could reach the broker before it had applied the new topic and see
// UNKNOWN_TOPIC_OR_PARTITION (no partitions), which is how
// TestProduceConsumeOnLocalBroker failed on a fresh machine.
func TestEnsureTopicsReturnsWhenLeadersAreKnown(t *testing.T) {
	base := testenv.KafkaConfig(t)
	cfg := base
	cfg.Partitions = 6
	cl := testenv.KafkaClient(t, cfg)
	for round := 0; round < 5; round++ {
		topics := []string{testenv.Name(t, "a"), testenv.Name(t, "b")}
		deleteTopics(t, cl, topics...)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := kafka.EnsureTopics(ctx, cl, cfg, nil, topics...); err != nil {
			cancel()
			t.Fatalf("round %d: %v", round, err)
		}
		fresh := testenv.KafkaClient(t, cfg)
		details, err := kadm.NewClient(fresh).ListTopics(ctx, topics...)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		for _, topic := range topics {
			d := details[topic]
			if d.Err != nil || len(d.Partitions) != int(cfg.Partitions) {
				t.Fatalf("round %d: %s has %d partitions (error %v) right after EnsureTopics, want %d", round, topic, len(d.Partitions), d.Err, cfg.Partitions)
			}
			for _, p := range d.Partitions {
				if p.Leader < 0 || p.Err != nil {
					t.Fatalf("round %d: %s partition %d: leader %d, error %v", round, topic, p.Partition, p.Leader, p.Err)
				}
			}
		}
		fresh.Close()
	}
}

// TestWaitForLeadersNamesTopicAtDeadline: a topic that never gets leaders
// (here: one that does not exist; metadata requests do not auto-create
// it) makes the wait end at the context's deadline with an error naming it.
func TestWaitForLeadersNamesTopicAtDeadline(t *testing.T) {
	cfg := testenv.KafkaConfig(t)
	cl := testenv.KafkaClient(t, cfg)
	missing := testenv.Name(t, "missing")
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err := kafka.WaitForLeaders(ctx, cl, nil, []string{cfg.RawTopic, missing})
	if err == nil || !strings.Contains(err.Error(), missing) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a deadline error naming %s", err, missing)
	}
	if strings.Contains(err.Error(), cfg.RawTopic) {
		t.Fatalf("err = %v names the topic that is ready", err)
	}
	details, err := kadm.NewClient(cl).ListTopics(context.Background(), missing)
	if err != nil || details[missing].Err == nil {
		t.Fatalf("waiting created %s: %v %+v", missing, err, details[missing])
	}
}

// TestCreatedTopicsCarryLargeRecords: topics EnsureTopics creates carry
// their own max.message.bytes and min.insync.replicas (a production
// broker's default message size is about 1 MB; the test broker's may be
// larger, hence the check of the topic's settings) and take a record as
// large as INGEST_MAX_BODY's default with its headers from a NewClient
// producer (franz-go's own batch cap is about 1 MB). A consumer whose fetch
// sizes are far below the record (1 MiB per fetch, 256 KiB per partition),
// with other partitions holding data too, still gets it back whole: the
// fetch sizes are soft bounds, which is why NewClient leaves them alone.
func TestCreatedTopicsCarryLargeRecords(t *testing.T) {
	base := testenv.KafkaConfig(t)
	cfg := base
	cfg.RawTopic, cfg.DLQTopic = testenv.Name(t, "raw_big"), testenv.Name(t, "dlq_big")
	cl := testenv.KafkaClient(t, cfg, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	deleteTopics(t, cl, cfg.RawTopic, cfg.DLQTopic)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, cl, cfg, nil, cfg.RawTopic, cfg.DLQTopic); err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{cfg.RawTopic, cfg.DLQTopic} {
		got := topicSettings(t, ctx, cl, topic, "max.message.bytes", "min.insync.replicas")
		want := map[string]string{"max.message.bytes": strconv.Itoa(kafka.DefaultMaxMessageBytes), "min.insync.replicas": "1"}
		if got["max.message.bytes"] != want["max.message.bytes"] || got["min.insync.replicas"] != want["min.insync.replicas"] {
			t.Fatalf("%s settings %v, want %v", topic, got, want)
		}
	}

	// Small records first in partitions 1 and 2 (3 partitions), so the
	// large one in partition 0 is not alone in the fetches.
	var recs []*kgo.Record
	small := bytes.Repeat([]byte("s"), 16<<10)
	for i := 0; i < 64; i++ {
		recs = append(recs, &kgo.Record{Topic: cfg.RawTopic, Partition: int32(1 + i%2), Value: small})
	}
	value := bytes.Repeat([]byte("0123456789abcdef"), (kafka.DefaultMaxMessageBytes-kafka.RecordOverheadBytes)/16)
	headers := []kgo.RecordHeader{{Key: "lc-request-id", Value: []byte("big-1")}, {Key: "traceparent", Value: []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")}}
	for _, topic := range []string{cfg.RawTopic, cfg.DLQTopic} {
		recs = append(recs, &kgo.Record{Topic: topic, Partition: 0, Key: []byte("org/chat"), Value: value, Headers: headers})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce (%d-byte record among them): %v", len(value), err)
	}
	cons := testenv.KafkaClient(t, cfg, kgo.ConsumeTopics(cfg.RawTopic, cfg.DLQTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxBytes(1<<20), kgo.FetchMaxPartitionBytes(256<<10))
	var got []*kgo.Record
	for len(got) < len(recs) {
		fs := cons.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d: %v", len(got), len(recs), err)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Errorf("fetch %s/%d: %v", topic, p, err) })
		got = append(got, fs.Records()...)
	}
	large := 0
	for _, r := range got {
		if r.Partition != 0 {
			continue
		}
		large++
		if !bytes.Equal(r.Value, value) || len(r.Headers) != len(headers) {
			t.Fatalf("%s: got %d bytes and %d headers, want %d and %d", r.Topic, len(r.Value), len(r.Headers), len(value), len(headers))
		}
	}
	if large != 2 || len(got) != len(recs) {
		t.Fatalf("consumed %d records (%d large), want %d (2 large)", len(got), large, len(recs))
	}
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestEnsureTopicsWarnsAboutSmallExistingTopic: a topic an operator made
// with a stock max.message.bytes and min.insync.replicas 1 is used as it is
// (EnsureTopics still waits for its leaders), with a warning that names the
// setting, and is not altered.
func TestEnsureTopicsWarnsAboutSmallExistingTopic(t *testing.T) {
	base := testenv.KafkaConfig(t)
	cfg := base
	cfg.RawTopic = testenv.Name(t, "operator")
	cfg.MinInsyncReplicas = 1
	cl := testenv.KafkaClient(t, cfg)
	deleteTopics(t, cl, cfg.RawTopic)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	small := "1048588"
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, 2, 1, map[string]*string{"max.message.bytes": &small}, cfg.RawTopic)
	if err != nil || resp.Err != nil {
		t.Fatalf("create operator topic: %v %v", err, resp.Err)
	}
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	if err := kafka.EnsureTopics(ctx, cl, cfg, log, cfg.RawTopic, cfg.DLQTopic); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "setting=max.message.bytes") ||
		!strings.Contains(out, "topic="+cfg.RawTopic) || !strings.Contains(out, "value=1048588") {
		t.Fatalf("no warning naming max.message.bytes of %s:\n%s", cfg.RawTopic, out)
	}
	if strings.Contains(out, "topic="+cfg.DLQTopic) || strings.Contains(out, "min.insync.replicas is below") {
		t.Fatalf("warned about a topic that fits:\n%s", out)
	}
	if got := topicSettings(t, ctx, cl, cfg.RawTopic, "max.message.bytes"); got["max.message.bytes"] != small {
		t.Fatalf("operator topic altered: %v", got)
	}
}

func TestRetentionMS(t *testing.T) {
	cfg := kafka.DefaultConfig()
	tests := []struct {
		name   string
		mutate func(*kafka.Config)
		topic  string
		want   string
	}{
		{"raw default 14 days", func(*kafka.Config) {}, cfg.RawTopic, "1209600000"},
		{"dead letters default 30 days", func(*kafka.Config) {}, cfg.DLQTopic, "2592000000"},
		{"other topic: broker default", func(*kafka.Config) {}, "other", ""},
		{"configured", func(c *kafka.Config) { c.RawRetention = 36 * time.Hour }, cfg.RawTopic, "129600000"},
		{"unset means default", func(c *kafka.Config) { c.DLQRetention = 0 }, cfg.DLQTopic, "2592000000"},
		{"negative: forever", func(c *kafka.Config) { c.RawRetention = -time.Hour }, cfg.RawTopic, "-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cfg
			tt.mutate(&c)
			if got := c.RetentionMS(tt.topic); got != tt.want {
				t.Fatalf("RetentionMS(%s) = %q, want %q", tt.topic, got, tt.want)
			}
		})
	}
}

// TestCreatedTopicsGetRetention: the raw and dead-letter topics EnsureTopics
// creates carry their own retention.ms as a topic setting, which the broker
// applies instead of its log.retention.* default (the local broker of
// scripts/services.sh sets log.retention.hours=-1: keep forever). The
// broker reports the topic's value with source DYNAMIC_TOPIC_CONFIG, the
// one that wins over DEFAULT_CONFIG and STATIC_BROKER_CONFIG; segments roll
// at least daily, so records do not outlive the retention by a week.
func TestCreatedTopicsGetRetention(t *testing.T) {
	cfg := testenv.KafkaConfig(t)
	cfg.RawTopic = testenv.Name(t, "raw")
	cfg.DLQTopic = testenv.Name(t, "dlq")
	cfg.RawRetention = 3 * time.Hour
	other := testenv.Name(t, "other")
	cl := testenv.KafkaClient(t, cfg)
	deleteTopics(t, cl, cfg.RawTopic, cfg.DLQTopic, other)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, cl, cfg, nil, cfg.RawTopic, cfg.DLQTopic, other); err != nil {
		t.Fatal(err)
	}
	rcs, err := kadm.NewClient(cl).DescribeTopicConfigs(ctx, cfg.RawTopic, cfg.DLQTopic, other)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{cfg.RawTopic: "10800000", cfg.DLQTopic: "2592000000"}
	// Segments roll at most daily (the 3-hour raw topic: every 3 hours).
	wantSegment := map[string]string{cfg.RawTopic: "10800000", cfg.DLQTopic: "86400000"}
	seen := 0
	for _, rc := range rcs {
		if rc.Err != nil {
			t.Fatalf("describe %s: %v", rc.Name, rc.Err)
		}
		for _, c := range rc.Configs {
			if c.Key == "segment.ms" && c.Value != nil && rc.Name != other && *c.Value != wantSegment[rc.Name] {
				t.Errorf("%s: segment.ms %s, want %s", rc.Name, *c.Value, wantSegment[rc.Name])
			}
			if c.Key != "retention.ms" || c.Value == nil {
				continue
			}
			seen++
			if rc.Name == other {
				// Not ours: the broker's default (the local broker keeps forever).
				if c.Source == kmsg.ConfigSourceDynamicTopicConfig {
					t.Errorf("%s got a retention.ms of its own: %s", other, *c.Value)
				}
				continue
			}
			if *c.Value != want[rc.Name] || c.Source != kmsg.ConfigSourceDynamicTopicConfig {
				t.Errorf("%s: retention.ms %s (source %v), want %s as a topic setting", rc.Name, *c.Value, c.Source, want[rc.Name])
			}
		}
	}
	if seen != 3 {
		t.Fatalf("retention.ms reported for %d of 3 topics", seen)
	}
}

// TestEnsureTopicsWarnsAboutRetention: an existing raw topic that keeps
// records forever (created by an older lcpipe, or by hand on a broker with
// log.retention.hours=-1) is left as it is, with a warning naming
// retention.ms, the value and the command that sets it.
func TestEnsureTopicsWarnsAboutRetention(t *testing.T) {
	cfg := testenv.KafkaConfig(t) // creates both topics with the configured retention
	cl := testenv.KafkaClient(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	forever := "-1"
	resp, err := kadm.NewClient(cl).AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "retention.ms", Value: &forever}}, cfg.RawTopic)
	if err != nil || resp[0].Err != nil {
		t.Fatalf("set retention.ms=-1 on %s: %v %v", cfg.RawTopic, err, resp)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if got := topicSettings(t, ctx, cl, cfg.RawTopic, "retention.ms")["retention.ms"]; got != "-1" {
			return fmt.Errorf("retention.ms %s", got)
		}
		return nil
	})
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	if err := kafka.EnsureTopics(ctx, cl, cfg, log, cfg.RawTopic, cfg.DLQTopic); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "setting=retention.ms") ||
		!strings.Contains(out, "topic="+cfg.RawTopic) || !strings.Contains(out, "value=-1") || !strings.Contains(out, "want=1209600000") {
		t.Fatalf("no warning naming retention.ms of %s:\n%s", cfg.RawTopic, out)
	}
	if strings.Contains(out, "topic="+cfg.DLQTopic) {
		t.Fatalf("warned about the dead-letter topic, whose retention is the configured one:\n%s", out)
	}
	if got := topicSettings(t, ctx, cl, cfg.RawTopic, "retention.ms")["retention.ms"]; got != "-1" {
		t.Fatalf("existing topic altered: retention.ms %s", got)
	}
}
