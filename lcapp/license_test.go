package lcapp

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lcpipe/lcpipe/ingest"
	"github.com/lcpipe/lcpipe/ingest/spool"
	"github.com/lcpipe/lcpipe/internal/secret"
	"github.com/lcpipe/lcpipe/internal/testenv"
	"github.com/lcpipe/lcpipe/processor"
	"github.com/lcpipe/lcpipe/schema"
)

const testLicense = 104130623

func TestLicenseSecrets(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	if org, s, err := h.app.LicenseSecrets(ctx, testLicense); err != nil || org != "" || s != nil {
		t.Fatalf("before install: %q %v %v", org, s, err)
	}
	if resp, body := h.signIn(h.browser); resp.StatusCode != 200 {
		t.Fatalf("sign-in: %d %s", resp.StatusCode, body)
	}
	secrets, _ := h.app.WebhookSecrets(ctx, testOrg)
	if org, s, err := h.app.LicenseSecrets(ctx, testLicense); err != nil || org != "" || s != nil {
		t.Fatalf("installed, license not known yet: %q %v %v", org, s, err)
	}
	if st := postAppWebhook(t, h, "application_installed", testOrg, testLicense); st != "recorded" {
		t.Fatalf("application_installed: %s", st)
	}
	org, s, err := h.app.LicenseSecrets(ctx, testLicense)
	if err != nil || org != testOrg || len(s) != 1 || s[0] != secrets[0] {
		t.Fatalf("after application_installed: %q, %d secrets, %v", org, len(s), err)
	}
	if org, s, _ := h.app.LicenseSecrets(ctx, 200); org != "" || s != nil {
		t.Fatalf("license of an organization that did not install: %q", org)
	}
	// A second installation claiming the same license: attributable to neither.
	if err := h.app.store.saveInstallation(&installationRecord{OrganizationID: otherOrg, LicenseID: testLicense}); err != nil {
		t.Fatal(err)
	}
	h.app.secrets.invalidate()
	if org, s, err := h.app.LicenseSecrets(ctx, testLicense); err != nil || org != "" || s != nil {
		t.Fatalf("license claimed twice: %q %v %v", org, s, err)
	}
}

// postAppWebhook posts an App Webhooks delivery (webhooks.md §10), as
// LiveChat does on install, and returns the app's status answer.
func postAppWebhook(t *testing.T, h *harness, event, org string, license int64) string {
	t.Helper()
	body := fmt.Sprintf(`{"applicationID":"app","clientID":%q,"date":%q,"event":%q,"licenseID":%d,"organizationID":%q,"payload":{},"userID":%q}`,
		testClientID, time.Now().Format(time.RFC3339), event, license, org, testAccount)
	resp, err := http.Post(h.base+AppWebhookPath, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Status string }
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return out.Status
}

// TestLicenseWebhooksEndToEnd runs LiveChat (the fake), the app, the real
// ingest, Kafka, a processor and ClickHouse: the same incoming_event webhook
// as a v3.4+ body (organization_id) and as a v3.3 body (license_id only) is
// answered 200 and stored, the v3.3 row with the organization the app knows
// holds the license; a v3.3 body of a license no installation holds is
// refused with the installation secret and, sent with the static secret,
// stored with its license and no organization.
func TestLicenseWebhooksEndToEnd(t *testing.T) {
	kcfg := testenv.KafkaConfig(t)
	chcfg := testenv.ClickHouseConfig(t)
	conn := testenv.ClickHouse(t, chcfg)
	mctx, mcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer mcancel()
	if _, err := schema.Migrate(mctx, conn, schema.Options{Database: chcfg.Database}, nil); err != nil {
		t.Fatal(err)
	}
	const static = "static-license-test-secret"
	h := buildHarness(t, func(h *harness, ln net.Listener) {
		cfg := ingest.DefaultConfig()
		cfg.Kafka = kcfg
		cfg.Spool = spool.DefaultConfig(filepath.Join(t.TempDir(), "spool"))
		cfg.Secrets = []secret.Secret{static}
		cfg.Installations = h.app
		cfg.Routes = h.app.Routes
		cfg.OnAccepted = h.app.OnAccepted
		cfg.Log = h.log.With("component", "ingest")
		srv, err := ingest.New(cfg)
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
	if resp, body := h.signIn(h.browser); resp.StatusCode != 200 {
		t.Fatalf("sign-in: %d %s", resp.StatusCode, body)
	}
	if st := postAppWebhook(t, h, "application_installed", testOrg, testLicense); st != "recorded" {
		t.Fatalf("application_installed: %s", st)
	}
	secrets, err := h.app.WebhookSecrets(ctx, testOrg)
	if err != nil || len(secrets) != 1 {
		t.Fatalf("secrets: %v", err)
	}

	p, err := processor.New(processor.Options{
		Config: processor.Config{Group: testenv.Name(t, "grp"), BatchLinger: 100 * time.Millisecond, InsertLinger: 200 * time.Millisecond},
		Kafka:  kcfg, ClickHouse: conn, Database: chcfg.Database, Directory: h.app.Directory(), Log: h.log.With("component", "processor"),
	})
	if err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithCancel(context.Background())
	pdone := make(chan error, 1)
	go func() { pdone <- p.Run(pctx) }()
	t.Cleanup(func() {
		pcancel()
		if err := <-pdone; err != nil {
			t.Errorf("processor: %v", err)
		}
	})

	event := func(id string) map[string]any {
		return map[string]any{"chat_id": "PJ0MRSHTDG", "thread_id": "QTHR0001", "event": map[string]any{
			"id": id, "type": "message", "author_id": "anna.kowalski@example.com", "created_at": "2025-03-14T09:16:45.210000Z",
			"recipients": "all", "text": "hello"}}
	}
	// v3.4+: LiveChat (the fake) delivers with organization_id.
	codes, err := h.fake.Deliver(ctx, testOrg, "incoming_event", event("QTHR0001_1"))
	if err != nil || len(codes) != 1 || codes[0] != 200 {
		t.Fatalf("v3.4 delivery: %v %v", codes, err)
	}
	v33 := func(license int64, secret, eventID string) int {
		body, _ := json.Marshal(map[string]any{"webhook_id": "w33", "secret_key": secret, "action": "incoming_event",
			"license_id": license, "payload": event(eventID), "additional_data": map[string]any{}})
		resp, err := http.Post(h.base+ingest.WebhookPath, "application/json", strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := v33(testLicense, secrets[0], "QTHR0001_2"); c != 200 {
		t.Fatalf("v3.3 body, installed license: %d", c)
	}
	if c := v33(555, secrets[0], "QTHR0001_3"); c != 401 {
		t.Fatalf("v3.3 body, license no installation holds: %d, want 401", c)
	}
	if c := v33(555, static, "QTHR0001_3"); c != 200 {
		t.Fatalf("v3.3 body, static secret: %d", c)
	}

	type row struct {
		org     string
		license uint64
	}
	want := map[string]row{"QTHR0001_1": {testOrg, 0}, "QTHR0001_2": {testOrg, testLicense}, "QTHR0001_3": {"", 555}}
	testenv.Eventually(t, time.Minute, func() error {
		rows, err := conn.Query(context.Background(), "SELECT event_ref, organization_id, license_id FROM "+chcfg.Database+".events")
		if err != nil {
			return err
		}
		defer rows.Close()
		got := map[string]row{}
		for rows.Next() {
			var ref string
			var r row
			if err := rows.Scan(&ref, &r.org, &r.license); err != nil {
				return err
			}
			got[ref] = r
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("events %v, want %v", got, want)
		}
		return nil
	})
	if n := p.Stats().DeadLetters.Load(); n != 0 {
		t.Fatalf("%d dead letters", n)
	}
}
