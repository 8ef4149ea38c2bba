package ops

import (
	"net/http"
	"testing"
	"time"
)

// Zero fields take the documented defaults; set ones are kept.
func TestStatusOptionsWithDefaults(t *testing.T) {
	hc := &http.Client{Timeout: time.Second}
	for _, tc := range []struct {
		name        string
		in          StatusOptions
		wantHTTP    *http.Client // nil: a client with a 5s timeout
		wantTimeout time.Duration
	}{
		{"zero", StatusOptions{}, nil, 5 * time.Second},
		{"set", StatusOptions{HTTP: hc, ReadTimeout: time.Minute}, hc, time.Minute},
	} {
		got := tc.in.withDefaults()
		okHTTP := got.HTTP == tc.wantHTTP || tc.wantHTTP == nil && got.HTTP != nil && got.HTTP.Timeout == 5*time.Second
		if !okHTTP || got.ReadTimeout != tc.wantTimeout {
			t.Errorf("%s: withDefaults() = http %v, read timeout %s; want %v, %s", tc.name, got.HTTP, got.ReadTimeout, tc.wantHTTP, tc.wantTimeout)
		}
	}
}
