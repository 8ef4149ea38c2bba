// Package kafka is the one place that builds Kafka clients and topics for the
// pipeline. Ingest, processor and the tools all get their *kgo.Client here so
// the options that matter for "never lose a webhook" (acks=all, idempotence,
// per-key ordering) are decided once, with a comment beside each.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Config is the Kafka part of every component's configuration.
type Config struct {
	// Brokers to bootstrap from. Default 127.0.0.1:9092.
	Brokers []string
	// RawTopic receives the raw webhook bodies. Default livechat.webhooks.raw.
	RawTopic string
	// DLQTopic receives records the processor cannot decode. Default livechat.webhooks.dlq.
	DLQTopic string
	// Partitions and ReplicationFactor are used when a topic is created. Defaults 6 and 1.
	Partitions        int32
	ReplicationFactor int16
	// ClientID names this process in broker logs and metrics. Default lcpipe.
	ClientID string
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{
		Brokers:           []string{"127.0.0.1:9092"},
		RawTopic:          "livechat.webhooks.raw",
		DLQTopic:          "livechat.webhooks.dlq",
		Partitions:        6,
		ReplicationFactor: 1,
		ClientID:          "lcpipe",
	}
}

// Validate reports every problem of the configuration at once.
func (c Config) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("kafka: no brokers (KAFKA_BROKERS)"))
	}
	for _, b := range c.Brokers {
		if !strings.Contains(b, ":") {
			errs = append(errs, fmt.Errorf("kafka: broker %q has no port", b))
		}
	}
	if c.RawTopic == "" {
		errs = append(errs, errors.New("kafka: raw topic is empty (KAFKA_RAW_TOPIC)"))
	}
	if c.DLQTopic == "" {
		errs = append(errs, errors.New("kafka: dead-letter topic is empty (KAFKA_DLQ_TOPIC)"))
	}
	if c.RawTopic != "" && c.RawTopic == c.DLQTopic {
		errs = append(errs, errors.New("kafka: raw and dead-letter topics must differ"))
	}
	if c.Partitions < 1 {
		errs = append(errs, fmt.Errorf("kafka: partitions must be >= 1, got %d", c.Partitions))
	}
	if c.ReplicationFactor < 1 {
		errs = append(errs, fmt.Errorf("kafka: replication factor must be >= 1, got %d", c.ReplicationFactor))
	}
	return errors.Join(errs...)
}

// NewClient builds a client with the pipeline's base options; callers add
// producer or consumer options (extra wins over base).
//
// Base options, and why:
//   - RequiredAcks(AllISRAcks) with the idempotent producer (franz-go's
//     default): an acknowledged record is on every in-sync replica and a
//     retried produce cannot create a duplicate or reorder a partition.
//   - StickyKeyPartitioner with murmur2 (Kafka's default hashing), so records
//     of one key always land in one partition in order, and replicas of ingest
//     written in another language would agree.
//   - ProducerBatchMaxBytes raised to fit the largest webhook body we accept.
func NewClient(cfg Config, extra ...kgo.Opt) (*kgo.Client, error) {
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID(cfg.ClientID),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.ProducerBatchMaxBytes(8 << 20),
		kgo.MaxBufferedBytes(256 << 20),
		kgo.DialTimeout(3 * time.Second),
	}
	opts = append(opts, extra...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka: new client for %v: %w", cfg.Brokers, err)
	}
	return cl, nil
}

// EnsureTopics creates the topics that do not exist yet with the configured
// partitions and replication factor. Existing topics are left as they are.
func EnsureTopics(ctx context.Context, cl *kgo.Client, cfg Config, log *slog.Logger, topics ...string) error {
	adm := kadm.NewClient(cl)
	resp, err := adm.CreateTopics(ctx, cfg.Partitions, cfg.ReplicationFactor, nil, topics...)
	if err != nil {
		return fmt.Errorf("kafka: create topics %v: %w", topics, err)
	}
	for _, r := range resp.Sorted() {
		switch {
		case r.Err == nil:
			if log != nil {
				log.Info("created topic", "topic", r.Topic, "partitions", cfg.Partitions, "replication", cfg.ReplicationFactor)
			}
		case errors.Is(r.Err, kerr.TopicAlreadyExists):
		default:
			return fmt.Errorf("kafka: create topic %s: %w", r.Topic, r.Err)
		}
	}
	return nil
}

// Ping asks the cluster for metadata; it answers whether a broker is reachable.
func Ping(ctx context.Context, cl *kgo.Client) error {
	if err := cl.Ping(ctx); err != nil {
		return fmt.Errorf("kafka: ping: %w", err)
	}
	return nil
}
