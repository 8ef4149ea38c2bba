// Package kafka is the one place that builds Kafka clients and topics for the
// pipeline. Ingest, processor and the tools all get their *kgo.Client here so
// the options that matter for "never lose a webhook" (acks=all, idempotence,
// per-key ordering) are decided once, with a comment beside each.
package kafka

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/lcpipe/lcpipe/internal/tlsconf"
)

// RecordOverheadBytes is the room beside a record's value that a topic's
// max.message.bytes must leave: key (organization + chat), the headers
// ingest and the dead-letter path add (received-at, request id, trace
// context, content hash, dead-letter reason...) and the record batch's own
// framing. A few hundred bytes in practice; 64 KiB leaves room for long
// dead-letter reasons and costs nothing (the limit is a cap, not a size).
const RecordOverheadBytes = 64 << 10

// DefaultMaxMessageBytes fits ingest's default INGEST_MAX_BODY (5 MiB) plus
// RecordOverheadBytes. A stock broker allows about 1 MB per record batch.
const DefaultMaxMessageBytes = 5<<20 + RecordOverheadBytes

// Default retention of the topics EnsureTopics creates. The raw topic
// holds every webhook body (chat messages: customers' personal data) and
// is the replay window; dead letters wait longer for a decoder fix.
const (
	DefaultRawRetention = 14 * 24 * time.Hour
	DefaultDLQRetention = 30 * 24 * time.Hour
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
	// MinInsyncReplicas is the min.insync.replicas of created topics: with
	// acks=all a write is acknowledged only once this many replicas have it,
	// and refused (ingest spools meanwhile) while fewer are in sync.
	// Default 0, meaning min(2, ReplicationFactor): a single-broker setup
	// stays writable, a replicated one never acknowledges a webhook held by
	// one broker only.
	MinInsyncReplicas int16
	// MaxMessageBytes is the largest record batch the pipeline must carry:
	// the max.message.bytes of created topics and the producers' batch cap
	// (NewClient).
	// Default DefaultMaxMessageBytes; commands set it to INGEST_MAX_BODY +
	// RecordOverheadBytes.
	MaxMessageBytes int32
	// RawRetention and DLQRetention are the retention.ms of the raw and
	// dead-letter topics when EnsureTopics creates them: Kafka deletes
	// records older than that (whole segments), whatever the broker's
	// log.retention.* default. 0 means the default (DefaultRawRetention,
	// DefaultDLQRetention); a negative value keeps records forever
	// (retention.ms -1).
	RawRetention, DLQRetention time.Duration
	// ClientID names this process in broker logs and metrics. Default lcpipe.
	ClientID string
	// TLS to the brokers (off by default) and SASL authentication (none
	// by default): see security.go.
	TLS  tlsconf.Config
	SASL SASLConfig
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{
		Brokers:           []string{"127.0.0.1:9092"},
		RawTopic:          "livechat.webhooks.raw",
		DLQTopic:          "livechat.webhooks.dlq",
		Partitions:        6,
		ReplicationFactor: 1,
		MaxMessageBytes:   DefaultMaxMessageBytes,
		RawRetention:      DefaultRawRetention,
		DLQRetention:      DefaultDLQRetention,
		ClientID:          "lcpipe",
	}
}

// MinISR is the min.insync.replicas created topics get: MinInsyncReplicas,
// or min(2, ReplicationFactor) when it is 0.
func (c Config) MinISR() int16 {
	if c.MinInsyncReplicas > 0 {
		return c.MinInsyncReplicas
	}
	return max(1, min(2, c.ReplicationFactor))
}

// withDefaults fills the fields whose zero value means the default
// (MaxMessageBytes, RawRetention, DLQRetention), so a Config built by hand
// rather than from DefaultConfig creates the same topics. Brokers, topics,
// partitions and the replication factor say where to write and how, so
// they have no default here: Validate refuses them empty.
func (c Config) withDefaults() Config {
	c.MaxMessageBytes = cmp.Or(c.MaxMessageBytes, DefaultMaxMessageBytes)
	c.RawRetention = cmp.Or(c.RawRetention, DefaultRawRetention)
	c.DLQRetention = cmp.Or(c.DLQRetention, DefaultDLQRetention)
	return c
}

// RetentionMS is the retention.ms EnsureTopics gives topic: the raw or
// dead-letter retention (-1 when negative: forever), or "" for any other
// topic (the broker's default applies).
func (c Config) RetentionMS(topic string) string {
	c = c.withDefaults()
	var d time.Duration
	switch topic {
	case c.RawTopic:
		d = c.RawRetention
	case c.DLQTopic:
		d = c.DLQRetention
	default:
		return ""
	}
	if d < 0 {
		return "-1"
	}
	return strconv.FormatInt(d.Milliseconds(), 10)
}

// Validate reports every problem of the configuration at once (after
// defaults are applied).
func (c Config) Validate() error {
	c = c.withDefaults()
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
	// More than the replicas would refuse every acks=all write.
	if c.MinInsyncReplicas < 0 || c.ReplicationFactor >= 1 && c.MinInsyncReplicas > c.ReplicationFactor {
		errs = append(errs, fmt.Errorf("kafka: min.insync.replicas must be between 1 and the replication factor %d, got %d (KAFKA_TOPIC_MIN_INSYNC_REPLICAS)",
			c.ReplicationFactor, c.MinInsyncReplicas))
	}
	// franz-go accepts batch caps up to 1 GiB; below 64 KiB even small
	// webhooks would not fit.
	if c.MaxMessageBytes < RecordOverheadBytes || c.MaxMessageBytes > 1<<30 {
		errs = append(errs, fmt.Errorf("kafka: max message bytes must be between 64KiB and 1GiB, got %d (INGEST_MAX_BODY)", c.MaxMessageBytes))
	}
	if err := c.validateSecurity(); err != nil {
		errs = append(errs, err)
	}
	// Kafka rolls segments at most weekly by default and deletes whole
	// segments: a retention below a minute is a misconfiguration, not a wish.
	for _, r := range []struct {
		d    time.Duration
		name string
	}{{c.RawRetention, "KAFKA_RAW_RETENTION"}, {c.DLQRetention, "KAFKA_DLQ_RETENTION"}} {
		if r.d > 0 && r.d < time.Minute {
			errs = append(errs, fmt.Errorf("kafka: retention must be at least 1m (or negative: forever), got %s (%s)", r.d, r.name))
		}
	}
	return errors.Join(errs...)
}

// NewClient builds a client with the pipeline's base options; callers add
// producer or consumer options (extra wins over base).
//
// Base options, and why:
//   - RequiredAcks(AllISRAcks) with the idempotent producer (franz-go's
//     default): an acknowledged record is on every in-sync replica (at
//     least MinISR of them) and a retried produce cannot create a duplicate
//     or reorder a partition.
//   - StickyKeyPartitioner with murmur2 (Kafka's default hashing), so records
//     of one key always land in one partition in order, and replicas of ingest
//     written in another language would agree.
//   - ProducerBatchMaxBytes = MaxMessageBytes: the largest webhook body
//     (plus headers) fits one batch (franz-go's default, ~1 MB, would refuse
//     it client-side), and no batch is larger than the topics we create
//     accept (a larger batch of small records would be refused whole).
//     The same cap applies to dead-letter records, which carry the original
//     value.
//   - Fetch sizes are left to each consumer (processor.Config.FetchMaxBytes,
//     franz-go's defaults elsewhere) and need not reach MaxMessageBytes:
//     Kafka returns the first record batch of a response whole even when it
//     is larger than FetchMaxBytes and FetchMaxPartitionBytes, and franz-go
//     rotates which partition it asks for first after every fetch, so a
//     large record is never stuck (TestCreatedTopicsCarryLargeRecords).
//     Raising them to MaxMessageBytes would only make every backlog fetch
//     larger: compressed batches decompress several-fold, which raises the
//     processor's memory bound under a ClickHouse outage
//     (TestClickHouseOutage) by a fifth or more.
//   - TLS and SASL when configured (Config.TLS, Config.SASL): a failed TLS
//     handshake is reported by the setting to fix, whichever request first
//     connects (Explain does the same for SASL errors).
func NewClient(cfg Config, extra ...kgo.Opt) (*kgo.Client, error) {
	cfg = cfg.withDefaults()
	maxMsg := cfg.MaxMessageBytes
	const dialTimeout = 3 * time.Second
	security, err := cfg.securityOpts(dialTimeout)
	if err != nil {
		return nil, err
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID(cfg.ClientID),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.ProducerBatchMaxBytes(maxMsg),
		// Bounds what one producer may hold unacknowledged; a produce
		// beyond it blocks (ingest then spools on its timeout).
		kgo.MaxBufferedBytes(max(256<<20, 4*int(maxMsg))),
		// One request or response must hold a whole batch: franz-go's
		// 100 MiB defaults refuse larger ones (INGEST_MAX_BODY above ~99 MiB).
		kgo.BrokerMaxWriteBytes(min(1<<30, max(100<<20, maxMsg+1<<20))),
		kgo.BrokerMaxReadBytes(min(1<<30, max(100<<20, maxMsg+1<<20))),
		kgo.DialTimeout(dialTimeout),
	}
	opts = append(opts, security...)
	opts = append(opts, extra...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka: new client for %v: %w", cfg.Brokers, err)
	}
	return cl, nil
}

// Topic settings EnsureTopics gives the topics it creates.
const (
	settingMaxMessageBytes = "max.message.bytes"
	settingMinISR          = "min.insync.replicas"
	settingRetentionMS     = "retention.ms"
	settingSegmentMS       = "segment.ms"
)

// maxSegment bounds segment.ms of topics with a retention: Kafka deletes
// whole segments, the newest record of which is past the retention, and
// rolls a segment only after segment.ms (7 days by default). Without it a
// quiet topic's records would outlive their retention by up to a week;
// with it, by at most a day.
const maxSegment = 24 * time.Hour

// readyTimeout bounds EnsureTopics' wait for partition leaders when ctx has
// no deadline of its own.
const readyTimeout = 30 * time.Second

// EnsureTopics creates the topics that do not exist yet with the configured
// partitions, replication factor, max.message.bytes (MaxMessageBytes),
// min.insync.replicas (MinISR) and, for the raw and dead-letter topics,
// retention.ms (RetentionMS: a topic setting overrides the broker's
// log.retention.* default, -1 included; segment.ms at most a day, so
// records go within a day of their retention), and returns once every partition of every
// topic has a leader, so a produce or consume right after it finds the
// topic. It fails, naming the topic, when that does not happen before ctx's
// deadline (30s when ctx has none).
//
// Existing topics are left as they are: a max.message.bytes or
// min.insync.replicas below what the configuration asks for, or a
// retention.ms other than it, is logged as a warning (a nil log discards
// it), never altered. Why not alter: Kafka keeps
// no record of who created a topic (no owner or label; unknown settings are
// refused), so a topic an older lcpipe created cannot be told from one an
// operator created with kafka-topics on purpose, and changing a topic's
// limits affects every other producer, consumer and mirror of it. The
// warning names the setting and the value to set.
func EnsureTopics(ctx context.Context, cl *kgo.Client, cfg Config, log *slog.Logger, topics ...string) (err error) {
	defer func() { err = Explain(err) }() // a wrong password fails the first request
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, readyTimeout)
		defer cancel()
	}
	cfg = cfg.withDefaults()
	log = cmp.Or(log, slog.New(slog.DiscardHandler))
	adm := kadm.NewClient(cl)
	maxMsg := strconv.Itoa(int(cfg.MaxMessageBytes))
	minISR := strconv.Itoa(int(cfg.MinISR()))
	// One request per distinct retention: a CreateTopics request carries
	// one set of settings for all its topics.
	byRetention := map[string][]string{}
	var order []string
	for _, t := range topics {
		r := cfg.RetentionMS(t)
		if _, ok := byRetention[r]; !ok {
			order = append(order, r)
		}
		byRetention[r] = append(byRetention[r], t)
	}
	var created []kadm.CreateTopicResponse
	for _, r := range order {
		settings := map[string]*string{settingMaxMessageBytes: &maxMsg, settingMinISR: &minISR}
		if r != "" {
			settings[settingRetentionMS] = &r
			if ms, _ := strconv.ParseInt(r, 10, 64); ms > 0 {
				seg := strconv.FormatInt(min(ms, maxSegment.Milliseconds()), 10)
				settings[settingSegmentMS] = &seg
			}
		}
		resp, err := adm.CreateTopics(ctx, cfg.Partitions, cfg.ReplicationFactor, settings, byRetention[r]...)
		if err != nil {
			return fmt.Errorf("kafka: create topics %v: %w", byRetention[r], err)
		}
		created = append(created, resp.Sorted()...)
	}
	partitions := map[string]int32{} // of the topics created now
	var existing []string
	for _, r := range created {
		switch {
		case r.Err == nil:
			partitions[r.Topic] = cfg.Partitions
			log.Info("created topic", "topic", r.Topic, "partitions", cfg.Partitions, "replication", cfg.ReplicationFactor,
				settingMaxMessageBytes, maxMsg, settingMinISR, minISR, settingRetentionMS, cmp.Or(cfg.RetentionMS(r.Topic), "broker default"))
		case errors.Is(r.Err, kerr.TopicAlreadyExists):
			existing = append(existing, r.Topic)
		default:
			return fmt.Errorf("kafka: create topic %s: %w", r.Topic, r.Err)
		}
	}
	if err := waitForLeaders(ctx, cl, partitions, topics); err != nil {
		return err
	}
	if len(existing) > 0 {
		checkSettings(ctx, adm, cfg, log, existing)
	}
	return nil
}

// waitForLeaders polls metadata until every partition of every topic has a
// leader, backing off (jittered, doubling up to 1s) between polls.
//
// Why it is needed: CreateTopics answers once the controller has committed
// the new topic, but each broker learns it by replaying the metadata log
// afterwards. A metadata request in between, from the next step or another
// client, gets UNKNOWN_TOPIC_OR_PARTITION (a topic with no partitions) or
// partitions whose leader is still -1, and a produce in that window is
// retried or fails.
//
// The request goes straight to a broker: kadm's Metadata answers from the
// client's cache (up to 5s old), which would keep returning the stale view.
func waitForLeaders(ctx context.Context, cl *kgo.Client, partitions map[string]int32, topics []string) error {
	start := time.Now()
	wait := 20 * time.Millisecond
	for {
		topic, reason := notReady(ctx, cl, partitions, topics)
		if topic == "" {
			return nil
		}
		t := time.NewTimer(jitter(wait))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("kafka: topic %s not ready after %s: %s: %w",
				topic, time.Since(start).Round(time.Millisecond), reason, ctx.Err())
		}
		wait = min(2*wait, time.Second)
	}
}

// notReady returns the first topic that is not ready yet and why, or "".
// partitions gives the partition count expected of topics created now.
func notReady(ctx context.Context, cl *kgo.Client, partitions map[string]int32, topics []string) (topic, reason string) {
	req := kmsg.NewPtrMetadataRequest()
	for _, t := range topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(t)
		req.Topics = append(req.Topics, rt)
	}
	req.AllowAutoTopicCreation = false
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return strings.Join(topics, ", "), "metadata: " + err.Error()
	}
	got := make(map[string]*kmsg.MetadataResponseTopic, len(resp.Topics))
	for i := range resp.Topics {
		if t := resp.Topics[i].Topic; t != nil {
			got[*t] = &resp.Topics[i]
		}
	}
	for _, name := range topics {
		t := got[name]
		switch {
		case t == nil:
			return name, "not in the metadata"
		case t.ErrorCode != 0:
			return name, kerr.ErrorForCode(t.ErrorCode).Error()
		case len(t.Partitions) == 0:
			return name, "no partitions yet"
		case partitions[name] > 0 && int32(len(t.Partitions)) != partitions[name]:
			return name, fmt.Sprintf("%d of %d partitions known", len(t.Partitions), partitions[name])
		}
		for _, p := range t.Partitions {
			if p.ErrorCode != 0 {
				return name, fmt.Sprintf("partition %d: %v", p.Partition, kerr.ErrorForCode(p.ErrorCode))
			}
			if p.Leader < 0 {
				return name, fmt.Sprintf("partition %d has no leader", p.Partition)
			}
		}
	}
	return "", ""
}

// checkSettings warns about existing topics whose settings fall short of
// the configuration. It only warns: a failure to describe them (say, no
// DescribeConfigs permission) is a warning too.
func checkSettings(ctx context.Context, adm *kadm.Client, cfg Config, log *slog.Logger, topics []string) {
	rcs, err := adm.DescribeTopicConfigs(ctx, topics...)
	if err != nil {
		log.Warn("cannot check the settings of existing topics", "topics", topics, "error", err)
		return
	}
	want := map[string]int{
		settingMaxMessageBytes: int(cfg.MaxMessageBytes),
		settingMinISR:          int(cfg.MinISR()),
	}
	why := map[string]string{
		settingMaxMessageBytes: "larger records are refused by the broker (ingest quarantines such webhooks on disk)",
		settingMinISR:          "acks=all writes are acknowledged with fewer replicas than configured",
	}
	for _, rc := range rcs {
		if rc.Err != nil {
			log.Warn("cannot check the settings of an existing topic", "topic", rc.Name, "error", rc.Err)
			continue
		}
		checkRetention(rc, cfg.RetentionMS(rc.Name), log)
		for _, c := range rc.Configs {
			w, ok := want[c.Key]
			if !ok || c.Value == nil {
				continue
			}
			if n, err := strconv.Atoi(*c.Value); err == nil && n < w {
				log.Warn("existing topic's "+c.Key+" is below the configured value and is left as it is: "+why[c.Key]+
					"; lcpipe does not alter topics it did not create, raise it with kafka-configs --alter",
					"topic", rc.Name, "setting", c.Key, "value", n, "want", w,
					"command", fmt.Sprintf("kafka-configs.sh --bootstrap-server BROKER --alter --entity-type topics --entity-name %s --add-config %s=%d", rc.Name, c.Key, w))
			}
		}
	}
}

// checkRetention warns when an existing topic's retention.ms is not the
// configured one (want "" : not ours to judge). Either way matters: longer
// keeps customers' personal data beyond what the operator promised (and
// erased data replayable), shorter shrinks the replay window.
func checkRetention(rc kadm.ResourceConfig, want string, log *slog.Logger) {
	if want == "" {
		return
	}
	for _, c := range rc.Configs {
		if c.Key != settingRetentionMS || c.Value == nil || *c.Value == want {
			continue
		}
		log.Warn("existing topic's retention.ms differs from the configured value and is left as it is: records (webhook bodies, personal data) are kept for the topic's retention, not the configured one; lcpipe does not alter topics it did not create, set it with kafka-configs --alter",
			"topic", rc.Name, "setting", settingRetentionMS, "value", *c.Value, "want", want, "source", c.Source.String(),
			"command", fmt.Sprintf("kafka-configs.sh --bootstrap-server BROKER --alter --entity-type topics --entity-name %s --add-config %s=%s", rc.Name, settingRetentionMS, want))
	}
}

// jitter returns d ± 20 %, so clients started together do not poll in step.
func jitter(d time.Duration) time.Duration {
	return d + time.Duration((rand.Float64()*0.4-0.2)*float64(d))
}

// Ping asks the cluster for metadata; it answers whether a broker is reachable.
func Ping(ctx context.Context, cl *kgo.Client) error {
	if err := cl.Ping(ctx); err != nil {
		return fmt.Errorf("kafka: ping: %w", Explain(err))
	}
	return nil
}
