package ingest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lcpipe/lcpipe/ingest/spool"
	"github.com/lcpipe/lcpipe/internal/testenv"
	"github.com/lcpipe/lcpipe/internal/wire"
)

// TestSpoolFaultFailsReadiness starts ingest on a spool left by a previous
// run whose oldest segment has a damaged frame in the middle. Nothing may
// be cut or deleted: /readyz answers 503 with the reason, /healthz shows
// the fault, the records before the damage reach Kafka, and once the frame
// reads again (an operator restored the file) the rest follows, in order,
// and readiness comes back.
func TestSpoolFaultFailsReadiness(t *testing.T) {
	kcfg := testenv.KafkaConfig(t)
	cfg := testConfig(t, kcfg)
	cfg.Spool.SegmentBytes = 4 << 10
	cfg.Spool.RetryMin, cfg.Spool.RetryMax = 10*time.Millisecond, 100*time.Millisecond

	// A previous run's spool: 3+ segments of numbered records of one chat.
	sp, err := spool.Open(cfg.Spool)
	if err != nil {
		t.Fatal(err)
	}
	const n = 40
	for i := range n {
		rec := &kgo.Record{Key: []byte("org/CHAT"), Value: []byte(fmt.Sprintf(`{"n":%d,"pad":"%s"}`, i, strings.Repeat("p", 200))),
			Timestamp: time.Now(), Headers: []kgo.RecordHeader{{Key: wire.HeaderRequestID, Value: []byte(fmt.Sprint(i))}}}
		if err := sp.Append(context.Background(), encodeSpoolEntry(rec)); err != nil {
			t.Fatal(err)
		}
	}
	sp.Close()
	segs, _ := filepath.Glob(filepath.Join(cfg.Spool.Dir, "*.seg"))
	sort.Strings(segs)
	if len(segs) < 3 {
		t.Fatalf("%d segments", len(segs))
	}
	damaged := segs[0]
	b, err := os.ReadFile(damaged)
	if err != nil {
		t.Fatal(err)
	}
	at := len(b) / 2
	b[at] ^= 0xff
	if err := os.WriteFile(damaged, b, 0o640); err != nil {
		t.Fatal(err)
	}

	srv := startServer(t, cfg)
	var ready struct {
		Reason string      `json:"reason"`
		Spool  spool.Stats `json:"spool"`
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		r, err := doRequest("GET", srv.url+"/readyz", "", nil)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(r.body, &ready); err != nil {
			return err
		}
		if r.status != 503 || !strings.Contains(ready.Reason, filepath.Base(damaged)) || ready.Spool.Fault == nil || ready.Spool.Faults == 0 {
			return fmt.Errorf("readyz %d %s", r.status, r.body)
		}
		return nil
	})
	st, err := healthStats(srv.url)
	if err != nil || st.Spool.Fault == nil {
		t.Fatalf("healthz does not show the fault: %+v %v", st.Spool, err)
	}
	// The records before the damage are delivered; the file stays.
	before := consume(t, kcfg, kcfg.RawTopic, 1, time.Second)
	if _, err := os.Stat(damaged); err != nil {
		t.Fatalf("damaged segment removed: %v", err)
	}

	b[at] ^= 0xff // restored
	if err := os.WriteFile(damaged, b, 0o640); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		r, err := doRequest("GET", srv.url+"/readyz", "", nil)
		if err != nil {
			return err
		}
		if r.status != 200 || !srv.spool.Empty() {
			return fmt.Errorf("readyz %d %s", r.status, r.body)
		}
		return nil
	})
	recs := consume(t, kcfg, kcfg.RawTopic, n, time.Second)
	next := 0
	for _, r := range recs {
		var v struct{ N int }
		if err := json.Unmarshal(r.Value, &v); err != nil {
			t.Fatal(err)
		}
		if v.N == next {
			next++
		} else if v.N > next {
			t.Fatalf("record %d arrived before %d", v.N, next)
		}
	}
	if next != n {
		t.Fatalf("topic holds records 0..%d of %d (%d before the repair)", next-1, n, len(before))
	}
}
