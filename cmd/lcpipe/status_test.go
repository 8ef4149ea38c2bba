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

func (e *opsEnv) status(t testing.TB, args ...string) (*ops.Status, result) {
	t.Helper()
	r := e.run(t, nil, append([]string{"status", "--json"}, args...)...)
	var st ops.Status
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status --json: %v\nstdout: %s\nstderr: %s", err, r.stdout, r.stderr)
	}
	return &st, r
}

// TestStatusLag: with the processor running the lag drains to 0 and the
// group has a member; stopped, the lag grows with every webhook produced
// (records and time), and --max-lag makes status exit 1; restarted, the
// lag returns to 0 and status exits 0. The ingest's admin listener answers
// its spool and quarantine.
func TestStatusLag(t *testing.T) {
	e := newOpsEnv(t)
	ingestAdmin := freeAddr(t)
	e.start(t, map[string]string{"INGEST_ADDR": freeAddr(t), "ADMIN_ADDR": ingestAdmin, "SPOOL_DIR": t.TempDir(),
		"LIVECHAT_WEBHOOK_SECRETS": "sim-secret"}, "ingest")
	recs, err := simRecords(e.kcfg.RawTopic, 1, 30, time.Now().Add(-2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	third := len(recs) / 3
	e.produce(t, recs[:third])
	proc := e.start(t, nil, "processor")
	testenv.Eventually(t, 90*time.Second, func() error {
		st, _ := e.status(t)
		if st.TotalLag != 0 || len(st.Members) != 1 || st.LastInsert == nil {
			return fmt.Errorf("lag %d, %d members, last insert %v", st.TotalLag, len(st.Members), st.LastInsert)
		}
		return nil
	})
	stop(t, proc)

	e.produce(t, recs[third:2*third])
	st1, r := e.status(t, "--max-lag", "1", "--ingest", "http://"+ingestAdmin)
	if st1.TotalLag != int64(2*third-third) || st1.MaxLagSecs < 3600 || r.code != 1 || len(st1.Members) != 0 {
		t.Fatalf("stopped: lag %d (want %d), lag time %.0fs, exit %d, members %d", st1.TotalLag, third, st1.MaxLagSecs, r.code, len(st1.Members))
	}
	if !strings.Contains(strings.Join(st1.Problems, ";"), "--max-lag") {
		t.Fatalf("problems %v", st1.Problems)
	}
	if len(st1.Ingests) != 1 || st1.Ingests[0].Status == nil || st1.Ingests[0].Status.Spool.MaxBytes == 0 {
		t.Fatalf("ingest status %+v", st1.Ingests)
	}
	e.produce(t, recs[2*third:])
	st2, _ := e.status(t)
	if st2.TotalLag != int64(len(recs)-third) {
		t.Fatalf("lag did not grow: %d then %d (want %d)", st1.TotalLag, st2.TotalLag, len(recs)-third)
	}
	text := e.run(t, nil, "status")
	if !strings.Contains(text.stdout, "PARTITION") || !strings.Contains(text.stdout, fmt.Sprint(st2.TotalLag)) {
		t.Fatalf("text status:\n%s", text.stdout)
	}

	e.start(t, nil, "processor")
	testenv.Eventually(t, 90*time.Second, func() error {
		st, r := e.status(t, "--max-lag", "1", "--max-lag-age", "1m", "--max-spool", "1MiB", "--ingest", "http://"+ingestAdmin)
		if st.TotalLag != 0 || r.code != 0 {
			return fmt.Errorf("lag %d, exit %d, problems %v", st.TotalLag, r.code, st.Problems)
		}
		return nil
	})
	if n := e.count(t, "SELECT count() FROM "+e.chcfg.Database+".events"); n == 0 {
		t.Fatal("no events stored")
	}
}
