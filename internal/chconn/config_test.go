package chconn

import (
	"slices"
	"testing"
	"time"
)

// Zero tuning fields take the documented defaults; set ones, and where to
// connect, are kept.
func TestWithDefaults(t *testing.T) {
	d := DefaultConfig()
	for _, tc := range []struct {
		name     string
		in, want Config
	}{
		{"zero", Config{}, Config{User: d.User, DialTimeout: d.DialTimeout, ReadTimeout: d.ReadTimeout, MaxOpenConns: d.MaxOpenConns}},
		{"set", Config{Addr: []string{"ch:9000"}, Database: "db", User: "u", DialTimeout: time.Second, ReadTimeout: time.Minute, MaxOpenConns: 1},
			Config{Addr: []string{"ch:9000"}, Database: "db", User: "u", DialTimeout: time.Second, ReadTimeout: time.Minute, MaxOpenConns: 1}},
	} {
		got := tc.in.withDefaults()
		if !slices.Equal(got.Addr, tc.want.Addr) || got.Database != tc.want.Database || got.User != tc.want.User ||
			got.DialTimeout != tc.want.DialTimeout || got.ReadTimeout != tc.want.ReadTimeout || got.MaxOpenConns != tc.want.MaxOpenConns {
			t.Errorf("%s: withDefaults() = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
