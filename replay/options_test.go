package replay

import (
	"log/slog"
	"testing"
)

// Zero fields take the documented defaults; set ones are kept.
func TestWithDefaults(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	tests := []struct {
		name             string
		in               Options
		wantFrom, wantTo string
		wantLog          *slog.Logger // nil: any non-nil logger
	}{
		{"zero", Options{}, "earliest", "latest", nil},
		{"set", Options{From: "0:10", To: "2026-01-02T00:00:00Z", Log: log}, "0:10", "2026-01-02T00:00:00Z", log},
	}
	for _, tt := range tests {
		got := tt.in.withDefaults()
		if got.From != tt.wantFrom || got.To != tt.wantTo || got.Log == nil || tt.wantLog != nil && got.Log != tt.wantLog {
			t.Errorf("%s: withDefaults() = %q..%q, log %p; want %q..%q, %p", tt.name, got.From, got.To, got.Log, tt.wantFrom, tt.wantTo, tt.wantLog)
		}
	}
}
