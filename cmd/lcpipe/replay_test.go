package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lcpipe/lcpipe/internal/testenv"
	"github.com/lcpipe/lcpipe/replay"
)

// fingerprint sums every stored column but inserted_at over db's events,
// so two databases with the same rows have the same fingerprint.
func (e *opsEnv) fingerprint(t testing.TB, db string) string {
	t.Helper()
	var n, ids, sum uint64
	err := e.conn.QueryRow(context.Background(), "SELECT count(), uniqExact(event_id), sum(cityHash64(event_id, organization_id, action, kind, dedup_key, "+
		"occurred_at_ms, received_at_ms, chat_id, thread_id, event_ref, event_type, author_id, author_type, agent_id, customer_id, tag, "+
		"routing_status, rating_score, properties, payload, src_topic, src_partition, src_offset, src_index, request_id, body_sha256)) FROM "+db+".events").
		Scan(&n, &ids, &sum)
	if err != nil {
		t.Fatal(err)
	}
	if n != ids {
		t.Fatalf("%s: %d rows for %d event ids", db, n, ids)
	}
	return fmt.Sprintf("%d rows, sum %x", n, sum)
}

// derivedFingerprint sums what the panels read from the derived tables
// (all but the insert-time latencies), so a replay that changed no row of
// them leaves it equal.
func (e *opsEnv) derivedFingerprint(t testing.TB, db string) string {
	t.Helper()
	var m, a, ts, wh, we uint64
	err := e.conn.QueryRow(context.Background(), "SELECT "+
		"(SELECT sum(cityHash64(organization_id, chat_id, thread_id, event_id, created_at_ms, event_type, author_id, author_type, text_length)) FROM "+db+".messages), "+
		"(SELECT sum(cityHash64(organization_id, agent_id, changed_at_ms, status, accepting)) FROM "+db+".agent_status), "+
		"(SELECT sum(cityHash64(organization_id, thread_id, n, last, ended)) FROM (SELECT organization_id, thread_id, countMerge(events) AS n, maxMerge(last_event_ms) AS last, minMerge(ended_ms) AS ended FROM "+db+".thread_state GROUP BY organization_id, thread_id)), "+
		"(SELECT sum(cityHash64(minute, organization_id, action, w)) FROM (SELECT minute, organization_id, action, sumMerge(webhooks) AS w FROM "+db+".webhook_minutes GROUP BY minute, organization_id, action)), "+
		"(SELECT sum(cityHash64(minute, organization_id, action, n)) FROM (SELECT minute, organization_id, action, countMerge(events) AS n FROM "+db+".webhook_minutes GROUP BY minute, organization_id, action))").
		Scan(&m, &a, &ts, &wh, &we)
	if err != nil {
		t.Fatal(err)
	}
	if m == 0 || ts == 0 || wh == 0 {
		t.Fatalf("%s: empty derived tables", db)
	}
	return fmt.Sprintf("messages %x, agent_status %x, thread_state %x, webhook_minutes %x/%x", m, a, ts, wh, we)
}

func (e *opsEnv) replay(t testing.TB, args ...string) *replay.Report {
	t.Helper()
	r := e.mustRun(t, nil, append([]string{"replay", "--json"}, args...)...)
	var rep replay.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("%v: %s", err, r.stdout)
	}
	return &rep
}

// TestReplay, with the live processor running: a dry run counts every
// record and finds every stored event already stored; a replay into the
// live database inserts nothing and changes no row; into an empty
// database it gives the same rows; and a replay killed with kill -9 half
// way and started again with the same arguments ends identical.
func TestReplay(t *testing.T) {
	e := newOpsEnv(t)
	recs, err := simRecords(e.kcfg.RawTopic, 5, 120, time.Now().Add(-3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	e.produce(t, recs)
	e.start(t, nil, "processor")
	testenv.Eventually(t, 120*time.Second, func() error {
		if st, _ := e.status(t); st.TotalLag != 0 {
			return fmt.Errorf("lag %d", st.TotalLag)
		}
		return nil
	})
	live := e.fingerprint(t, e.chcfg.Database)
	liveDerived := e.derivedFingerprint(t, e.chcfg.Database)
	stored := e.count(t, "SELECT count() FROM "+e.chcfg.Database+".events")
	t.Logf("%d records, live: %s", len(recs), live)
	stateDir := t.TempDir()

	dry := e.replay(t, "--dry-run", "--state-dir", stateDir)
	if dry.Total.Records != len(recs) || dry.Total.Inserted != 0 || uint64(dry.Total.AlreadyStored) != stored || dry.Total.Duplicates == 0 {
		t.Fatalf("dry run: %+v (want %d records, %d already stored)", dry.Total, len(recs), stored)
	}
	text := e.mustRun(t, nil, "replay", "--dry-run", "--state-dir", stateDir)
	if !strings.Contains(text.stdout, "WOULD INSERT") || !strings.Contains(text.stdout, "incoming_chat") {
		t.Fatalf("dry run text:\n%s", text.stdout)
	}

	same := e.replay(t, "--state-dir", stateDir)
	if same.Total.Records != len(recs) || same.Total.Inserted != 0 {
		t.Fatalf("replay into the live database: %+v", same.Total)
	}
	if got := e.fingerprint(t, e.chcfg.Database); got != live {
		t.Fatalf("live database changed: %s, was %s", got, live)
	}
	if got := e.derivedFingerprint(t, e.chcfg.Database); got != liveDerived {
		t.Fatalf("live derived tables changed: %s, were %s", got, liveDerived)
	}

	fresh := testenv.Name(t, "replay_fresh")
	defer e.conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+fresh)
	rep := e.replay(t, "--database", fresh, "--state-dir", stateDir)
	if uint64(rep.Total.Inserted) != stored || rep.Total.AlreadyStored != 0 {
		t.Fatalf("replay into an empty database: %+v", rep.Total)
	}
	if got := e.fingerprint(t, fresh); got != live {
		t.Fatalf("replayed database: %s, live: %s", got, live)
	}
	if got := e.derivedFingerprint(t, fresh); got != liveDerived {
		t.Fatalf("replayed derived tables: %s, live: %s", got, liveDerived)
	}

	// kill -9 half way, then the same command again.
	killed := testenv.Name(t, "replay_killed")
	defer e.conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+killed)
	args := []string{"replay", "--json", "--database", killed, "--state-dir", stateDir, "--rate", fmt.Sprint(len(recs) / 4)}
	child := e.start(t, map[string]string{"INSERT_LINGER": "100ms"}, args...)
	testenv.Eventually(t, 60*time.Second, func() error {
		files, _ := filepath.Glob(filepath.Join(stateDir, "replay-"+killed+"-*.json"))
		if len(files) == 0 {
			return fmt.Errorf("no progress saved yet")
		}
		if _, err := os.Stat(files[0]); err != nil {
			return err
		}
		return nil
	})
	kill9(t, child)
	n := e.count(t, "SELECT count() FROM "+killed+".events")
	if n == 0 || n >= stored {
		t.Fatalf("killed replay stored %d of %d events: not half way", n, stored)
	}
	again := e.mustRun(t, map[string]string{"INSERT_LINGER": "100ms"}, args...)
	var rep2 replay.Report
	if err := json.Unmarshal([]byte(again.stdout), &rep2); err != nil {
		t.Fatalf("%v: %s", err, again.stdout)
	}
	if len(rep2.Resumed) == 0 {
		t.Fatalf("second run did not resume: %+v", rep2)
	}
	if got := e.fingerprint(t, killed); got != live {
		t.Fatalf("killed and resumed: %s, live: %s (%d stored before the kill)", got, live, n)
	}
	if got := e.derivedFingerprint(t, killed); got != liveDerived {
		t.Fatalf("killed and resumed, derived tables: %s, live: %s", got, liveDerived)
	}
	if files, _ := filepath.Glob(filepath.Join(stateDir, "*.json")); len(files) != 0 {
		t.Fatalf("state files left after complete replays: %v", files)
	}
}
