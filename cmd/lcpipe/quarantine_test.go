package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/lcpipe/lcpipe/ingest"
	"github.com/lcpipe/lcpipe/internal/testenv"
	"github.com/lcpipe/lcpipe/ops"
)

func (e *opsEnv) setMaxMessageBytes(t testing.TB, n int) {
	t.Helper()
	cl := testenv.KafkaClient(t, e.kcfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v := fmt.Sprint(n)
	resp, err := kadm.NewClient(cl).AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "max.message.bytes", Value: &v}}, e.kcfg.RawTopic)
	if err == nil {
		_, err = resp.On(e.kcfg.RawTopic, nil)
	}
	if err != nil {
		t.Fatalf("set max.message.bytes: %v", err)
	}
}

// TestQuarantineRedrive: the raw topic takes at most 1 MiB per record, so a
// 3 MiB webhook is acknowledged by ingest (spooled) and then quarantined.
// quarantine list and status (through ingest's admin listener) show it;
// redrive fails while the limit stands (exit 1, the file stays), and after
// the limit is raised it sends the webhook, removes the file, and the
// processor stores it.
func TestQuarantineRedrive(t *testing.T) {
	e := newOpsEnv(t)
	e.setMaxMessageBytes(t, 1<<20)
	spoolDir, webhook, adminAddr := t.TempDir(), freeAddr(t), freeAddr(t)
	e.env["SPOOL_DIR"] = spoolDir
	e.start(t, map[string]string{"INGEST_ADDR": webhook, "ADMIN_ADDR": adminAddr, "LIVECHAT_WEBHOOK_SECRETS": "test-secret",
		"INGEST_KAFKA_TIMEOUT": "1s"}, "ingest")

	body, err := os.ReadFile(filepath.Join("..", "..", "ingest", "testdata", "livechat", "incoming_event.json"))
	if err != nil {
		t.Fatal(err)
	}
	// Random letters: the producer compresses batches and max.message.bytes
	// applies to the compressed batch, so the text must not compress below 1 MiB.
	text := make([]byte, 3<<20)
	for i := range text {
		text[i] = 'a' + byte(rand.N(26))
	}
	big := bytes.Replace(body, []byte("The order number is 48213."), text, 1)
	testenv.Eventually(t, 30*time.Second, func() error {
		resp, err := http.Post("http://"+webhook+ingest.WebhookPath, "application/json", bytes.NewReader(big))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("POST: %d", resp.StatusCode)
		}
		return nil
	})
	var list []ops.Quarantined
	testenv.Eventually(t, 60*time.Second, func() error {
		r := e.mustRun(t, nil, "quarantine", "list", "--json")
		if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
			t.Fatalf("%v: %s", err, r.stdout)
		}
		if len(list) != 1 {
			return fmt.Errorf("%d quarantined", len(list))
		}
		return nil
	})
	if list[0].Action != "incoming_event" || list[0].BodyBytes < 3<<20 {
		t.Fatalf("quarantined: %+v", list[0])
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		st, _ := e.status(t, "--ingest", "http://"+adminAddr)
		if len(st.Ingests) != 1 || st.Ingests[0].Status == nil || st.Ingests[0].Status.Quarantine.Files != 1 ||
			st.Ingests[0].Status.Spool.UsedBytes < 3<<20 {
			return fmt.Errorf("ingest status %+v", st.Ingests)
		}
		return nil
	})
	if r := e.run(t, nil, "status", "--ingest", "http://"+adminAddr, "--max-spool", "1MiB"); r.code != 1 || !strings.Contains(r.stdout, "--max-spool") {
		t.Fatalf("status over --max-spool: exit %d\n%s", r.code, r.stdout)
	}

	r := e.run(t, nil, "quarantine", "redrive")
	if r.code != 1 || !strings.Contains(r.stdout, "refused it again") {
		t.Fatalf("redrive with the limit still low: exit %d\n%s\n%s\n%s", r.code, r.stdout, r.stderr, e.mustRun(t, nil, "dlq", "list").stdout)
	}
	if files, _ := filepath.Glob(filepath.Join(spoolDir, "dead", "*.rec")); len(files) != 1 {
		t.Fatalf("files after a failed redrive: %v", files)
	}

	e.setMaxMessageBytes(t, 8<<20)
	// The broker applies a topic's new settings a moment after it
	// accepted them: an operator would run redrive again, and so does the
	// test (a refused redrive keeps the file).
	testenv.Eventually(t, 60*time.Second, func() error {
		r = e.run(t, nil, "quarantine", "redrive")
		if r.code != 0 || !strings.Contains(r.stdout, "1 sent to") {
			return fmt.Errorf("redrive: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		return nil
	})
	if files, _ := filepath.Glob(filepath.Join(spoolDir, "dead", "*.rec")); len(files) != 0 {
		t.Fatalf("files after redrive: %v", files)
	}
	e.start(t, nil, "processor")
	testenv.Eventually(t, 60*time.Second, func() error {
		n := e.count(t, "SELECT count() FROM "+e.chcfg.Database+".events WHERE event_ref = 'RW4T8ZQK3D_4' AND text_length >= 3145728")
		if n != 1 {
			return fmt.Errorf("%d stored", n)
		}
		return nil
	})
}
