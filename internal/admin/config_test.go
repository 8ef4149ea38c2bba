package admin

import (
	"log/slog"
	"testing"
)

// A nil logger discards; a set one is kept.
func TestWithDefaults(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		name string
		in   Config
		want *slog.Logger // nil: any non-nil logger
	}{
		{"zero", Config{}, nil},
		{"set", Config{Log: log}, log},
	} {
		got := tc.in.withDefaults()
		if got.Log == nil || tc.want != nil && got.Log != tc.want {
			t.Errorf("%s: withDefaults().Log = %p, want %p", tc.name, got.Log, tc.want)
		}
	}
}
