package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lcpipe/lcpipe/audit"
	"github.com/lcpipe/lcpipe/internal/testenv"
)

func (e *opsEnv) audit(t testing.TB, args ...string) (*audit.Report, result) {
	t.Helper()
	r := e.run(t, nil, append([]string{"audit", "--json"}, args...)...)
	var rep audit.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("audit --json: %v\nstdout: %s\nstderr: %s", err, r.stdout, r.stderr)
	}
	return &rep, r
}

// TestAudit: over a run with LiveChat retries, a processor killed with
// kill -9 and restarted, a poison record and a replay into the live
// database, audit accounts for every record (stored, retry, dead-lettered)
// with 0 gaps, 0 duplicates and derived tables that agree, and exits 0.
// After one event is deleted by hand it reports exactly that event as a
// gap and exits 1.
func TestAudit(t *testing.T) {
	e := newOpsEnv(t)
	from := time.Now().Add(-3 * time.Hour).UTC()
	recs, err := simRecords(e.kcfg.RawTopic, 7, 100, from)
	if err != nil {
		t.Fatal(err)
	}
	half := len(recs) / 2
	poison := fixtureRecord(t, e.kcfg.RawTopic, "thread_tagged", "poison", from.Add(time.Minute))
	poison.Value = []byte(`{"action":"thread_tagged","organization_id":"o","payload":[`)
	e.produce(t, append(recs[:half:half], poison))
	proc := e.start(t, nil, "processor")
	events := "SELECT count() FROM " + e.chcfg.Database + ".events"
	testenv.Eventually(t, 90*time.Second, func() error {
		if n := e.count(t, events); n == 0 {
			return fmt.Errorf("nothing stored yet")
		}
		return nil
	})
	before := e.count(t, events)
	e.produce(t, recs[half:])
	testenv.Eventually(t, 60*time.Second, func() error {
		if n := e.count(t, events); n == before {
			return fmt.Errorf("second half not started")
		}
		return nil
	})
	kill9(t, proc) // a crash, perhaps in the middle of an INSERT
	e.start(t, nil, "processor")
	testenv.Eventually(t, 120*time.Second, func() error {
		if st, _ := e.status(t); st.TotalLag != 0 {
			return fmt.Errorf("lag %d", st.TotalLag)
		}
		return nil
	})
	e.replay(t, "--state-dir", t.TempDir())

	span := []string{"--from", from.Add(-time.Hour).Format(time.RFC3339), "--to", time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}
	rep, r := e.audit(t, span...)
	if r.code != 0 || !rep.OK() {
		t.Fatalf("audit: exit %d\n%s\n%s", r.code, e.run(t, nil, append([]string{"audit"}, span...)...).stdout, r.stderr)
	}
	if rep.Total.Records != len(recs)+1 || rep.Total.Retries == 0 || rep.Total.DeadLettered != 1 || rep.Total.Stored != int(e.count(t, events)) {
		t.Fatalf("audit counts %+v (want %d records, %d stored)", rep.Total, len(recs)+1, e.count(t, events))
	}
	for _, table := range []string{"messages", "agent_status", "thread_state", "webhook_minutes"} {
		if rep.DerivedChecked[table] == 0 {
			t.Fatalf("derived table %s not checked: %v", table, rep.DerivedChecked)
		}
	}
	text := e.mustRun(t, nil, append([]string{"audit"}, span...)...)
	if !strings.Contains(text.stdout, "0 gap(s), 0 duplicate(s)") {
		t.Fatalf("audit text:\n%s", text.stdout)
	}

	// Delete one message event that no other record repeats.
	retried := map[string]bool{}
	for _, rt := range rep.Retries {
		retried[rt.StoredAs] = true
	}
	if len(rep.Retries) >= 1000 {
		t.Fatal("retry list truncated: cannot pick an event without retries")
	}
	var victim string
	rows, err := e.conn.Query(context.Background(), "SELECT event_id FROM "+e.chcfg.Database+".events WHERE kind = 'event' AND dedup_key = '' ORDER BY event_id")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() && victim == "" {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		if !retried[id] {
			victim = id
		}
	}
	rows.Close()
	if victim == "" {
		t.Fatal("no event to delete")
	}
	ctx := context.Background()
	if err := e.conn.Exec(ctx, "ALTER TABLE "+e.chcfg.Database+".events DELETE WHERE event_id = ?", victim); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 60*time.Second, func() error {
		if n := e.count(t, "SELECT count() FROM system.mutations WHERE database = ? AND table = 'events' AND is_done = 0", e.chcfg.Database); n > 0 {
			return fmt.Errorf("%d mutations running", n)
		}
		if n := e.count(t, events+" WHERE event_id = ?", victim); n > 0 {
			return fmt.Errorf("not deleted yet")
		}
		return nil
	})
	rep, r = e.audit(t, span...)
	if r.code != 1 || rep.Total.Gaps != 1 || len(rep.Gaps) != 1 || rep.Gaps[0].EventID != victim || len(rep.Duplicates) != 0 {
		t.Fatalf("after deleting %s: exit %d, gaps %+v, duplicates %v", victim, r.code, rep.Gaps, rep.Duplicates)
	}
	// The derived tables still hold the deleted event: they now disagree.
	if len(rep.Mismatches) == 0 {
		t.Fatalf("derived tables agree with events after a delete from events only")
	}
	t.Logf("gap: %+v; mismatches: %+v", rep.Gaps[0], rep.Mismatches)
}
