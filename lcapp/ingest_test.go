package lcapp

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lcpipe/lcpipe/ingest"
	"github.com/lcpipe/lcpipe/ingest/spool"
	"github.com/lcpipe/lcpipe/internal/testenv"
	"github.com/lcpipe/lcpipe/internal/wire"
	"github.com/lcpipe/lcpipe/processor"
)

// The app is an ingest.SecretSource and its directory a processor.Directory.
var (
	_ ingest.SecretSource = (*App)(nil)
	_ processor.Directory = (*Directory)(nil)
)

// TestIngestUsesInstallationSecret runs the real ingest server (real Kafka)
// with the App as its Installations, Routes and OnAccepted: the settings
// page and OAuth callback are served by ingest, LiveChat's (the fake's)
// delivery signed with the stored secret is accepted (200) and lands in
// Kafka with the secret blanked, another secret is refused (401).
func TestIngestUsesInstallationSecret(t *testing.T) {
	kcfg := testenv.KafkaConfig(t)
	var srv *ingest.Server
	h := buildHarness(t, func(h *harness, ln net.Listener) {
		cfg := ingest.DefaultConfig()
		cfg.Kafka = kcfg
		cfg.Spool = spool.DefaultConfig(filepath.Join(t.TempDir(), "spool"))
		cfg.Installations = h.app
		cfg.Routes = h.app.Routes
		cfg.OnAccepted = h.app.OnAccepted
		cfg.Log = h.log.With("component", "ingest")
		var err error
		srv, err = ingest.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ctx, ln) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("ingest serve: %v", err)
			}
		})
	})
	ctx := ctxT(t)

	resp, body := h.signIn(h.browser)
	if resp.StatusCode != 200 || !strings.Contains(body, `id="confirmation"`) || !strings.Contains(body, testOrg) {
		t.Fatalf("sign-in through ingest: %d %s", resp.StatusCode, body)
	}
	secrets, err := h.app.WebhookSecrets(ctx, testOrg)
	if err != nil || len(secrets) != 1 {
		t.Fatalf("secrets: %v", err)
	}
	assertRegistrations(t, h, secrets[0])

	codes, err := h.fake.Deliver(ctx, testOrg, "incoming_chat", map[string]any{"chat": map[string]any{"id": "PJ0MRSHTDG", "thread": map[string]any{"id": "QTHR0001"}}})
	if err != nil || len(codes) != 1 || codes[0] != 200 {
		t.Fatalf("delivery signed with the stored secret: %v %v", codes, err)
	}
	if c := postWebhook(t, h.base+ingest.WebhookPath, testOrg, "another-secret-"+randomToken()); c != 401 {
		t.Fatalf("webhook with another secret: %d, want 401", c)
	}
	if c := postWebhook(t, h.base+ingest.WebhookPath, otherOrg, secrets[0]); c != 401 {
		t.Fatalf("right secret, organization that did not install: %d, want 401", c)
	}
	if st := srv.Stats().Counters; st.Accepted != 1 || st.Unauthorized != 2 {
		t.Errorf("ingest counters: %+v", st)
	}

	// The accepted webhook is in Kafka, authenticated by the installation
	// secret, with the secret itself blanked.
	cl := testenv.KafkaClient(t, kcfg, kgo.ConsumeTopics(kcfg.RawTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var rec *kgo.Record
	for rec == nil && pctx.Err() == nil {
		fs := cl.PollFetches(pctx)
		fs.EachRecord(func(r *kgo.Record) { rec = r })
	}
	if rec == nil {
		t.Fatal("no record in the raw topic")
	}
	if wire.Header(rec, wire.HeaderAuth) != wire.AuthInstallationSecret || wire.Header(rec, wire.HeaderOrganization) != testOrg {
		t.Errorf("record headers: auth=%q org=%q", wire.Header(rec, wire.HeaderAuth), wire.Header(rec, wire.HeaderOrganization))
	}
	if strings.Contains(string(rec.Value), secrets[0]) {
		t.Error("the secret reached Kafka")
	}

	// OnAccepted feeds the confirmation page's "last webhook received".
	_, body = h.get(h.browser, h.base+SettingsPath)
	if !strings.Contains(body, "(incoming_chat)") {
		t.Errorf("last webhook not shown:\n%s", body)
	}
}
