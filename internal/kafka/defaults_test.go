package kafka

import (
	"testing"
	"time"
)

// Zero fields that mean the default take it; set ones, and the fields
// without a default, are kept.
func TestWithDefaults(t *testing.T) {
	tests := []struct {
		name     string
		in, want Config
	}{
		{"zero", Config{}, Config{MaxMessageBytes: DefaultMaxMessageBytes, RawRetention: DefaultRawRetention, DLQRetention: DefaultDLQRetention}},
		{"set", Config{MaxMessageBytes: 1 << 20, RawRetention: time.Hour, DLQRetention: -1},
			Config{MaxMessageBytes: 1 << 20, RawRetention: time.Hour, DLQRetention: -1}},
		{"no defaults for where to write", Config{RawTopic: "t", Partitions: 0},
			Config{RawTopic: "t", MaxMessageBytes: DefaultMaxMessageBytes, RawRetention: DefaultRawRetention, DLQRetention: DefaultDLQRetention}},
	}
	for _, tt := range tests {
		got := tt.in.withDefaults()
		if got.MaxMessageBytes != tt.want.MaxMessageBytes || got.RawRetention != tt.want.RawRetention ||
			got.DLQRetention != tt.want.DLQRetention || got.RawTopic != tt.want.RawTopic || got.Partitions != tt.want.Partitions {
			t.Errorf("%s: withDefaults() = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}
