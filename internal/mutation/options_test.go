package mutation

import (
	"testing"
	"time"

	"github.com/lcpipe/lcpipe/internal/backoff"
)

// Zero fields take the documented defaults; set ones are kept.
func TestWithDefaults(t *testing.T) {
	for _, tc := range []struct {
		name     string
		in, want Options
	}{
		{"zero", Options{Database: "db"}, Options{Database: "db", Poll: backoff.Policy{Min: 50 * time.Millisecond, Max: 2 * time.Second}}},
		{"min only", Options{Poll: backoff.Policy{Min: time.Second}}, Options{Poll: backoff.Policy{Min: time.Second, Max: 2 * time.Second}}},
		{"set", Options{Poll: backoff.Policy{Min: time.Millisecond, Max: time.Minute}}, Options{Poll: backoff.Policy{Min: time.Millisecond, Max: time.Minute}}},
	} {
		if got := tc.in.withDefaults(); got != tc.want {
			t.Errorf("%s: withDefaults() = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
