package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lcpipe/lcpipe/internal/testenv"
	"github.com/lcpipe/lcpipe/internal/wire"
	"github.com/lcpipe/lcpipe/ops"
)

// fixtureRecord is a raw-topic record of an ingest test fixture.
func fixtureRecord(t testing.TB, topic, name, rid string, at time.Time) *kgo.Record {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("..", "..", "ingest", "testdata", "livechat", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{Topic: topic, Key: wire.Key("org", rid), Value: body, Timestamp: at, Headers: []kgo.RecordHeader{
		{Key: wire.HeaderReceivedAt, Value: []byte(wire.FormatTime(at))},
		{Key: wire.HeaderRequestID, Value: []byte(rid)},
		{Key: wire.HeaderAction, Value: []byte(strings.Split(name, ".")[0])},
		{Key: wire.HeaderIngestVersion, Value: []byte("test")},
	}}
}

func (e *opsEnv) deadLetters(t testing.TB) []ops.DeadLetter {
	t.Helper()
	r := e.mustRun(t, nil, "dlq", "list", "--json")
	var dls []ops.DeadLetter
	if err := json.Unmarshal([]byte(r.stdout), &dls); err != nil {
		t.Fatalf("dlq list --json: %v\n%s", err, r.stdout)
	}
	return dls
}

// TestDLQRedrive: a processor whose decoder cannot read thread_tagged (an
// old build) dead-letters it, and an undecodable body too; dlq list shows
// both with stage, reason and source offset. With the fixed decoder,
// redrive --dry-run sends nothing, redrive --reason sends the tag back
// through the processor, which stores it, and the dead-letter topic shows
// it redriven. Redriving everything sends the broken body, which fails
// again: it returns to the dead-letter topic once, marked redriven, and the
// next redrive leaves it alone (no loop).
func TestDLQRedrive(t *testing.T) {
	e := newOpsEnv(t)
	at := time.Now().Add(-time.Hour).UTC()
	broken := fixtureRecord(t, e.kcfg.RawTopic, "thread_untagged", "broken", at)
	broken.Value = []byte(`{"action":"thread_untagged","organization_id":"org","payload":{`)
	e.produce(t, []*kgo.Record{
		fixtureRecord(t, e.kcfg.RawTopic, "incoming_chat", "chat", at),
		fixtureRecord(t, e.kcfg.RawTopic, "thread_tagged", "tag", at.Add(time.Second)),
		broken,
	})
	old := e.start(t, map[string]string{oldDecoderEnv: "thread_tagged"}, "processor")
	var dls []ops.DeadLetter
	testenv.Eventually(t, 60*time.Second, func() error {
		if dls = e.deadLetters(t); len(dls) != 2 {
			return fmt.Errorf("%d dead letters", len(dls))
		}
		return nil
	})
	stop(t, old)
	var tag, bad ops.DeadLetter
	for _, d := range dls {
		if d.Action == "thread_tagged" {
			tag = d
		} else {
			bad = d
		}
	}
	if tag.Stage != "decode-payload" || !strings.Contains(tag.Reason, "old decoder") || tag.SourceOffset < 0 || tag.SourceTopic != e.kcfg.RawTopic ||
		tag.RequestID != "tag" || tag.AgeSec > 600 || bad.Stage != "decode-envelope" {
		t.Fatalf("dead letters: %+v", dls)
	}
	show := e.mustRun(t, nil, "dlq", "show", fmt.Sprintf("%d:%d", tag.Partition, tag.Offset))
	if !strings.Contains(show.stdout, "old decoder") || !strings.Contains(show.stdout, `"thread_tagged"`) {
		t.Fatalf("dlq show:\n%s", show.stdout)
	}
	tagged := "SELECT count() FROM " + e.chcfg.Database + ".events WHERE kind = 'tag_added'"
	if n := e.count(t, tagged); n != 0 {
		t.Fatalf("%d tags stored by the old decoder", n)
	}

	e.start(t, nil, "processor") // the fixed decoder
	dry := e.mustRun(t, nil, "dlq", "redrive", "--dry-run", "--reason", "OLD DECODER", "--json")
	var res ops.RedriveResult
	if err := json.Unmarshal([]byte(dry.stdout), &res); err != nil || len(res.Sent) != 1 || !res.DryRun {
		t.Fatalf("dry run: %v %s", err, dry.stdout)
	}
	if dls := e.deadLetters(t); len(dls) != 2 || dls[0].RedrivenTo != "" || dls[1].RedrivenTo != "" {
		t.Fatalf("a dry run changed the dead-letter topic: %+v", dls)
	}
	red := e.mustRun(t, nil, "dlq", "redrive", "--reason", "old decoder")
	if !strings.Contains(red.stdout, "1 sent to") {
		t.Fatalf("redrive:\n%s", red.stdout)
	}
	testenv.Eventually(t, 60*time.Second, func() error {
		if n := e.count(t, tagged); n != 1 {
			return fmt.Errorf("%d tags stored", n)
		}
		return nil
	})
	for _, d := range e.deadLetters(t) {
		if d.Action == "thread_tagged" && !strings.HasPrefix(d.RedrivenTo, e.kcfg.RawTopic+":") {
			t.Fatalf("dead letter not shown redriven: %+v", d)
		}
	}

	// Everything: the tag was redriven already, the broken body fails again.
	e.mustRun(t, nil, "dlq", "redrive")
	var again ops.DeadLetter
	testenv.Eventually(t, 60*time.Second, func() error {
		dls := e.deadLetters(t)
		for _, d := range dls {
			if d.Redriven == bad.ID() {
				again = d
			}
		}
		if len(dls) != 3 || again.Redriven == "" {
			return fmt.Errorf("%d dead letters: %+v", len(dls), dls)
		}
		return nil
	})
	if again.Stage != "decode-envelope" || again.RequestID != "broken" {
		t.Fatalf("second failure: %+v", again)
	}
	last := e.mustRun(t, nil, "dlq", "redrive", "--json")
	if err := json.Unmarshal([]byte(last.stdout), &res); err != nil || len(res.Sent) != 0 || res.SkippedRedriven != 1 || res.SkippedDone != 2 {
		t.Fatalf("third redrive: %v %s", err, last.stdout)
	}
	if n := e.count(t, tagged); n != 1 {
		t.Fatalf("%d tags after redriving again", n)
	}
	t.Logf("dlq list:\n%s", e.mustRun(t, nil, "dlq", "list").stdout)
	if r := e.run(t, nil, "dlq", "show", "nonsense"); r.code == 0 || !strings.Contains(r.stderr, "PARTITION:OFFSET") {
		t.Fatalf("bad argument: exit %d, %s", r.code, r.stderr)
	}
}
