package erase

import (
	"log/slog"
	"testing"
)

// Zero fields take the documented defaults; set ones are kept.
func TestWithDefaults(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	tests := []struct {
		name       string
		in         Options
		wantRounds int
		wantLog    *slog.Logger // nil: any non-nil logger
	}{
		{"zero", Options{}, 3, nil},
		{"set", Options{Rounds: 5, Log: log}, 5, log},
	}
	for _, tt := range tests {
		got := tt.in.withDefaults()
		if got.Rounds != tt.wantRounds || got.Log == nil || tt.wantLog != nil && got.Log != tt.wantLog {
			t.Errorf("%s: withDefaults() = rounds %d, log %p; want %d, %p", tt.name, got.Rounds, got.Log, tt.wantRounds, tt.wantLog)
		}
	}
}
