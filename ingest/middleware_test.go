package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/gofiber/fiber/v2"

	"github.com/lcpipe/lcpipe/internal/telemetry"
	"github.com/lcpipe/lcpipe/internal/testenv"
)

// TestOutcomeCounters: observe counts every answer ingest gives, once, by
// its outcome, whichever layer answered (the webhook handler, readBody,
// the error handler after a panic), and labels lcpipe_ingest_webhooks_total
// with the action and the status sent; answers of Config.Routes' own
// routes and unknown paths are not ingest's outcomes. Every answer carries
// its request id.
func TestOutcomeCounters(t *testing.T) {
	cfg := testConfig(t, testenv.KafkaConfig(t))
	cfg.MaxBodyBytes = 64 << 10
	cfg.Installations = secretsFunc(func(_ context.Context, org string) ([]string, error) {
		if org == "org-broken" {
			return nil, errors.New("store unreachable")
		}
		return nil, nil
	})
	cfg.Routes = func(r fiber.Router) {
		r.Get("/app/own", func(c *fiber.Ctx) error { return c.Status(fiber.StatusUnauthorized).SendString("log in") })
		r.Get("/app/panics", func(*fiber.Ctx) error { panic("boom") })
	}
	tel, err := telemetry.New(context.Background(), telemetry.Config{}, telemetry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	cfg.Telemetry = tel
	srv := startServer(t, cfg)

	good := fixtures(t)["incoming_chat.json"]
	wrong := bytes.Replace(good, []byte(`"test-secret"`), []byte(`"wrong-secret"`), 1)
	broken := []byte(`{"action":"incoming_event","organization_id":"org-broken","secret_key":"other","payload":{"chat_id":"C1"}}`)
	tests := []struct {
		name         string
		method, path string
		ctype        string
		body         []byte
		status       int
		counted      func(Counters) int64 // nil: no counter moves
		metric       string               // lcpipe_ingest_webhooks_total sample, "" for none
	}{
		{"stored", "POST", WebhookPath, "application/json", good, 200,
			func(c Counters) int64 { return c.Accepted }, `{action="incoming_chat",code="200"}`},
		{"wrong secret", "POST", WebhookPath, "application/json", wrong, 401,
			func(c Counters) int64 { return c.Unauthorized }, `{action="incoming_chat",code="401"}`},
		{"not JSON", "POST", WebhookPath, "application/json", []byte(`{"action":`), 400,
			func(c Counters) int64 { return c.BadRequest }, `{action="none",code="400"}`},
		{"content type", "POST", WebhookPath, "text/plain", good, 415,
			func(c Counters) int64 { return c.UnsupportedMedia }, `{action="none",code="415"}`},
		{"method", "PUT", WebhookPath, "application/json", good, 405,
			func(c Counters) int64 { return c.MethodNotAllowed }, `{action="none",code="405"}`},
		{"too large", "POST", WebhookPath, "application/json", bytes.Repeat([]byte(" "), 65<<10), 413,
			func(c Counters) int64 { return c.TooLarge }, `{action="none",code="413"}`},
		{"installation lookup fails", "POST", WebhookPath, "application/json", broken, 503,
			func(c Counters) int64 { return c.Unavailable + c.InstallationError }, `{action="incoming_event",code="503"}`},
		{"panic in a route", "GET", "/app/panics", "", nil, 503,
			func(c Counters) int64 { return c.Unavailable }, ""},
		{"a route's own answer", "GET", "/app/own", "", nil, 401, nil, ""},
		{"unknown path", "GET", "/nowhere", "", nil, 404, nil, ""},
	}
	want := map[string]int64{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := srv.Stats().Counters
			r, err := doRequest(tc.method, srv.url+tc.path, tc.ctype, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			if r.status != tc.status {
				t.Fatalf("status %d %s, want %d", r.status, r.body, tc.status)
			}
			rid := r.header.Get(fiber.HeaderXRequestID)
			if rid == "" {
				t.Error("no X-Request-ID")
			}
			if tc.path == WebhookPath {
				var answer struct {
					RequestID string `json:"request_id"`
				}
				if err := json.Unmarshal(r.body, &answer); err != nil || answer.RequestID != rid {
					t.Errorf("answer %s: request_id %q, header %q", r.body, answer.RequestID, rid)
				}
			}
			after := srv.Stats().Counters
			moved := changed(before, after)
			switch {
			case tc.counted == nil && moved != 0:
				t.Errorf("%d counters moved: %+v → %+v", moved, before, after)
			case tc.counted != nil:
				delta := tc.counted(after) - tc.counted(before)
				// The lookup failure moves two counters: unavailable (the
				// outcome) and installation_errors (its cause).
				wantDelta := int64(1)
				if tc.status == 503 && tc.path == WebhookPath {
					wantDelta = 2
				}
				if delta != wantDelta || moved != int(wantDelta) {
					t.Errorf("counter moved by %d (%d counters in all), want %d: %+v → %+v", delta, moved, wantDelta, before, after)
				}
			}
			if tc.metric != "" {
				want[tc.metric]++
			}
		})
	}
	m := metricsText(t, tel)
	for labels, n := range want {
		line := "lcpipe_ingest_webhooks_total" + labels + " " + strconv.FormatInt(n, 10) + "\n"
		if !strings.Contains(m, line) {
			t.Errorf("metrics lack %q", line)
		}
	}
	if strings.Contains(m, `code="404"`) {
		t.Error("an unknown path counted as a webhook")
	}
}

// changed counts the counters that differ (Refused aside: it counts the
// refusals summary, not outcomes).
func changed(a, b Counters) int {
	a.Refused, b.Refused = 0, 0
	var ma, mb map[string]int64
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	_ = json.Unmarshal(ja, &ma)
	_ = json.Unmarshal(jb, &mb)
	n := 0
	for k, v := range ma {
		if mb[k] != v {
			n++
		}
	}
	return n
}
