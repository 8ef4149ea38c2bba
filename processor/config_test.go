package processor

import (
	"reflect"
	"testing"
	"time"
)

func TestConfigWithDefaults(t *testing.T) {
	d := DefaultConfig()
	tests := []struct {
		name string
		in   Config
		want func(Config) Config // from DefaultConfig
	}{
		{"zero takes every default", Config{}, func(c Config) Config { return c }},
		{"set fields are kept", Config{
			Group: "g", BatchRows: 10, BatchBytes: 1 << 20, BatchLinger: time.Millisecond, DedupWindow: time.Hour,
			MaxPendingBatches: 5, FetchMaxBytes: 2 << 20, IDCacheSize: 7, WindowCacheSize: 8, UserCacheSize: 9,
			InsertRows: 3, InsertLinger: time.Minute, ZombieInsertWait: time.Second, DecodeWorkers: 4,
			RetryMin: time.Millisecond, RetryMax: time.Second, ShutdownTimeout: time.Second, Instance: "i",
			SessionTimeout: 10 * time.Second, LagInterval: -1,
		}, func(Config) Config {
			return Config{
				Group: "g", BatchRows: 10, BatchBytes: 1 << 20, BatchLinger: time.Millisecond, DedupWindow: time.Hour,
				MaxPendingBatches: 5, FetchMaxBytes: 2 << 20, IDCacheSize: 7, WindowCacheSize: 8, UserCacheSize: 9,
				InsertRows: 3, InsertLinger: time.Minute, ZombieInsertWait: time.Second, DecodeWorkers: 4,
				RetryMin: time.Millisecond, RetryMax: time.Second, ShutdownTimeout: time.Second, Instance: "i",
				SessionTimeout: 10 * time.Second, LagInterval: -1,
			}
		}},
		{"some set, the rest default", Config{Group: "g", BatchBytes: 64 << 10, LagInterval: -1},
			func(c Config) Config { c.Group, c.BatchBytes, c.LagInterval = "g", 64<<10, -1; return c }},
		{"range passes through", Config{Range: &Range{}}, func(c Config) Config { c.Range = &Range{}; return c }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.in.withDefaults()
			want := tt.want(d)
			if (got.Range == nil) != (want.Range == nil) {
				t.Fatalf("Range: got %v, want %v", got.Range, want.Range)
			}
			got.Range, want.Range = nil, nil
			if !reflect.DeepEqual(got, want) {
				t.Errorf("withDefaults:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}
