package main

import (
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/lcpipe/lcpipe/internal/kafka"
)

// TestKafkaEnv: the topic settings and the record size every Kafka client
// is built for come from the environment, min.insync.replicas defaulting to
// min(2, replication) and max.message.bytes following INGEST_MAX_BODY.
func TestKafkaEnv(t *testing.T) {
	tests := []struct {
		name         string
		env          map[string]string
		minISR       int16
		maxMsg       int32
		err          string
		maxBodyBytes int64
	}{
		{"defaults", nil, 1, 5<<20 + kafka.RecordOverheadBytes, "", 5 << 20},
		{"replicated", map[string]string{"KAFKA_TOPIC_REPLICATION": "3"}, 2, kafka.DefaultMaxMessageBytes, "", 5 << 20},
		{"two replicas", map[string]string{"KAFKA_TOPIC_REPLICATION": "2"}, 2, kafka.DefaultMaxMessageBytes, "", 5 << 20},
		{"explicit min isr", map[string]string{"KAFKA_TOPIC_REPLICATION": "3", "KAFKA_TOPIC_MIN_INSYNC_REPLICAS": "3"}, 3, kafka.DefaultMaxMessageBytes, "", 5 << 20},
		{"min isr above replication", map[string]string{"KAFKA_TOPIC_MIN_INSYNC_REPLICAS": "2"}, 2, kafka.DefaultMaxMessageBytes, "KAFKA_TOPIC_MIN_INSYNC_REPLICAS", 5 << 20},
		{"larger bodies", map[string]string{"INGEST_MAX_BODY": "10MiB"}, 1, 10<<20 + kafka.RecordOverheadBytes, "", 10 << 20},
		{"body too large for kafka", map[string]string{"INGEST_MAX_BODY": "2GiB"}, 1, 0, "INGEST_MAX_BODY", 2 << 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv := newInvocation("processor", "test", nil, io.Discard, slog.New(slog.DiscardHandler))
			inv.lookup = func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }
			c := inv.Kafka()
			body := inv.MaxBody()
			err := inv.parse()
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want it to name %s", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.MinISR() != tt.minISR || c.MaxMessageBytes != tt.maxMsg || body != tt.maxBodyBytes {
				t.Fatalf("min isr %d, max message bytes %d, body %d; want %d, %d, %d", c.MinISR(), c.MaxMessageBytes, body, tt.minISR, tt.maxMsg, tt.maxBodyBytes)
			}
			n := 0
			for _, v := range inv.vars {
				if v.Name == "INGEST_MAX_BODY" {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("INGEST_MAX_BODY listed %d times in the environment spec", n)
			}
		})
	}
}
