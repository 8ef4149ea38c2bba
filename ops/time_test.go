package ops

import (
	"testing"
	"time"
)

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"2026-11-27T10:00:00Z", time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC), true},
		{"2026-11-27T10:00:00+02:00", time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC), true},
		{"2026-11-27 10:30", time.Date(2026, 11, 27, 10, 30, 0, 0, time.UTC), true},
		{"2026-11-27", time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC), true},
		{"2h", now.Add(-2 * time.Hour), true},
		{"1795780800000", time.UnixMilli(1795780800000).UTC(), true},
		{"-2h", time.Time{}, false},
		{"42", time.Time{}, false},
		{"someday", time.Time{}, false},
	}
	for _, c := range cases {
		got, err := ParseTime(c.in, now)
		if (err == nil) != c.ok || (c.ok && !got.Equal(c.want)) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
}

func TestBoundPartitionOffsets(t *testing.T) {
	def := Offsets{0: 5, 1: 6, 2: 7}
	got, err := Bound(t.Context(), nil, "topic", "0:100, 2:300", nil, nil, def)
	if err != nil || len(got) != 3 || got[0] != 100 || got[1] != 6 || got[2] != 300 {
		t.Fatalf("Bound = %v, %v", got, err)
	}
	got, err = Bound(t.Context(), nil, "topic", "1:9", nil, nil, nil)
	if err != nil || len(got) != 1 || got[1] != 9 {
		t.Fatalf("Bound without default = %v, %v", got, err)
	}
	if _, err := Bound(t.Context(), nil, "topic", "1:x", nil, nil, nil); err == nil {
		t.Fatal("1:x accepted")
	}
}
