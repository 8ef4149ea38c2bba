package audit

import (
	"testing"
	"time"

	"github.com/lcpipe/lcpipe/processor"
)

// Zero fields take the documented defaults; set ones are kept.
func TestWithDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   Options
		want Options
	}{
		{"zero", Options{}, Options{Chunk: 20_000, MaxListed: 1000, DedupWindow: processor.DefaultConfig().DedupWindow}},
		{"set", Options{Chunk: 10, MaxListed: 5, DedupWindow: time.Minute}, Options{Chunk: 10, MaxListed: 5, DedupWindow: time.Minute}},
	}
	for _, tt := range tests {
		if got := tt.in.withDefaults(); got != tt.want {
			t.Errorf("%s: withDefaults() = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}
