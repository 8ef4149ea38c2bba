package dashboards

import (
	"log/slog"
	"testing"
	"time"
)

// Zero fields take the documented defaults; set ones are kept.
func TestWithDefaults(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	settlers := []struct {
		name string
		in   SettlerConfig
		want SettlerConfig // Now and Log are checked for being set
	}{
		{"zero", SettlerConfig{}, SettlerConfig{Interval: time.Minute, After: time.Hour}},
		{"set", SettlerConfig{Interval: time.Second, After: 2 * time.Hour, Log: log}, SettlerConfig{Interval: time.Second, After: 2 * time.Hour, Log: log}},
	}
	for _, tt := range settlers {
		got := tt.in.withDefaults()
		if got.Interval != tt.want.Interval || got.After != tt.want.After || got.Now == nil || got.Log == nil ||
			tt.want.Log != nil && got.Log != tt.want.Log {
			t.Errorf("settler %s: withDefaults() = %+v, want %+v", tt.name, got, tt.want)
		}
	}

	viewers := []struct {
		name string
		in   ViewerConfig
		want ViewerConfig
	}{
		{"zero", ViewerConfig{}, DefaultViewerConfig()},
		{"set", ViewerConfig{Addr: ":1", Database: "db", Refresh: time.Minute, QueryTimeout: time.Second, SessionTTL: time.Hour},
			ViewerConfig{Addr: ":1", Database: "db", Refresh: time.Minute, QueryTimeout: time.Second, SessionTTL: time.Hour}},
	}
	for _, tt := range viewers {
		if got := tt.in.withDefaults(); got != tt.want {
			t.Errorf("viewer %s: withDefaults() = %+v, want %+v", tt.name, got, tt.want)
		}
	}

	panels := []struct {
		in, want Panel
	}{
		{Panel{}, Panel{Width: 8, Height: 8, Unit: UnitNone}},
		{Panel{Width: 24, Height: 4, Unit: UnitSeconds}, Panel{Width: 24, Height: 4, Unit: UnitSeconds}},
	}
	for _, tt := range panels {
		if got := tt.in.withDefaults(); got.Width != tt.want.Width || got.Height != tt.want.Height || got.Unit != tt.want.Unit {
			t.Errorf("panel withDefaults(%+v) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}
