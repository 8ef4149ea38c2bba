package kafka_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

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
	if n := len(details[cfg.RawTopic].Partitions); n != int(cfg.Partitions) {
		t.Fatalf("topic has %d partitions, want %d", n, cfg.Partitions)
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
