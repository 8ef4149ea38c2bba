package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lcpipe/lcpipe/internal/testenv"
	"github.com/lcpipe/lcpipe/ops"
)

// TestGroupReset: refused while a processor is in the group; once it
// stopped, --to earliest makes every record lag again, --to latest none,
// --to TIME the records from that time on (offsets-by-time); a processor
// then reads the records again and stores nothing twice.
func TestGroupReset(t *testing.T) {
	e := newOpsEnv(t)
	from := time.Now().Add(-3 * time.Hour).UTC().Truncate(time.Hour)
	recs, err := simRecords(e.kcfg.RawTopic, 3, 20, from)
	if err != nil {
		t.Fatal(err)
	}
	e.produce(t, recs)
	proc := e.start(t, nil, "processor")
	testenv.Eventually(t, 90*time.Second, func() error {
		if st, _ := e.status(t); st.TotalLag != 0 || len(st.Members) != 1 {
			return fmt.Errorf("lag %d, %d members", st.TotalLag, len(st.Members))
		}
		return nil
	})
	events := "SELECT count() FROM " + e.chcfg.Database + ".events"
	stored := e.count(t, events)
	if r := e.run(t, nil, "group", "reset", "--to", "earliest"); r.code != 1 || !strings.Contains(r.stderr, "active member") {
		t.Fatalf("reset with a live member: exit %d %s", r.code, r.stderr)
	}
	stop(t, proc)

	reset := func(to string, extra ...string) ops.GroupReset {
		r := e.mustRun(t, nil, append([]string{"group", "reset", "--json", "--to", to}, extra...)...)
		var res ops.GroupReset
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
			t.Fatalf("%v: %s", err, r.stdout)
		}
		return res
	}
	if res := reset("earliest", "--dry-run"); !res.DryRun || res.Partitions[0].To != 0 {
		t.Fatalf("dry run %+v", res)
	}
	if st, _ := e.status(t); st.TotalLag != 0 {
		t.Fatalf("dry run moved the group: lag %d", st.TotalLag)
	}
	reset("earliest")
	if st, _ := e.status(t); st.TotalLag != int64(len(recs)) {
		t.Fatalf("after earliest: lag %d, want %d", st.TotalLag, len(recs))
	}
	reset("latest")
	if st, _ := e.status(t); st.TotalLag != 0 {
		t.Fatalf("after latest: lag %d", st.TotalLag)
	}
	mid := from.Add(30 * time.Minute)
	want := 0
	for _, r := range recs {
		if !r.Timestamp.Before(mid) {
			want++
		}
	}
	reset(mid.Format(time.RFC3339))
	if st, _ := e.status(t); st.TotalLag != int64(want) || want == 0 || want == len(recs) {
		t.Fatalf("after %s: lag %d, want %d of %d", mid, st.TotalLag, want, len(recs))
	}
	if r := e.run(t, nil, "group", "reset", "--to", "someday"); r.code != 1 || !strings.Contains(r.stderr, "not a time") {
		t.Fatalf("bad --to: exit %d %s", r.code, r.stderr)
	}

	e.start(t, nil, "processor")
	testenv.Eventually(t, 90*time.Second, func() error {
		if st, _ := e.status(t); st.TotalLag != 0 {
			return fmt.Errorf("lag %d", st.TotalLag)
		}
		return nil
	})
	if n := e.count(t, events); n != stored {
		t.Fatalf("events %d after reading again, %d before", n, stored)
	}
}
