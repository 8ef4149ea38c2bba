package ingest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/lcpipe/lcpipe/ingest/spool"
	"github.com/lcpipe/lcpipe/internal/kafka"
	"github.com/lcpipe/lcpipe/internal/secret"
	"github.com/lcpipe/lcpipe/internal/telemetry"
	"github.com/lcpipe/lcpipe/internal/testenv"
	"github.com/lcpipe/lcpipe/internal/wire"
)

const testSecret = "test-secret"

func testConfig(t testing.TB, kcfg kafka.Config) Config {
	cfg := DefaultConfig()
	cfg.Kafka = kcfg
	cfg.Secrets = []secret.Secret{testSecret}
	cfg.Spool = spool.DefaultConfig(t.TempDir())
	cfg.Version = "test"
	cfg.Log = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	return cfg
}

type testServer struct {
	*Server
	url  string
	addr string
	// stop cancels Serve, waits for it to return (in-flight requests
	// finish first) and returns its error; later calls return the same.
	stop func() error
}

// startServer serves cfg on a loopback port until stop or the end of the test.
func startServer(t testing.TB, cfg Config) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	var once sync.Once
	var serveErr error
	stop := func() error {
		once.Do(func() { cancel(); serveErr = <-done })
		return serveErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return &testServer{Server: s, url: "http://" + ln.Addr().String(), addr: ln.Addr().String(), stop: stop}
}

var httpClient = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}

type response struct {
	status int
	header http.Header
	body   []byte
}

func doRequest(method, url, ctype string, body []byte, hdr ...string) (response, error) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return response{}, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, b}, err
}

func postWebhook(t testing.TB, url string, body []byte, hdr ...string) response {
	t.Helper()
	r, err := doRequest(http.MethodPost, url+WebhookPath, "application/json", body, hdr...)
	if err != nil {
		t.Fatalf("post: %v", err)
	}
	return r
}

// consume reads the topic from the start until it holds at least want
// records and then stays quiet for idle.
func consume(t testing.TB, kcfg kafka.Config, topic string, want int, idle time.Duration) []*kgo.Record {
	t.Helper()
	cl := testenv.KafkaClient(t, kcfg, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var out []*kgo.Record
	deadline := time.Now().Add(60 * time.Second)
	quietSince := time.Now()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r); n++ })
		for _, e := range fs.Errors() {
			if !errors.Is(e.Err, context.DeadlineExceeded) {
				t.Logf("fetch %s/%d: %v", e.Topic, e.Partition, e.Err)
			}
		}
		if n > 0 {
			quietSince = time.Now()
		}
		if len(out) >= want && time.Since(quietSince) >= idle {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s holds %d records after 60s, want %d", topic, len(out), want)
		}
	}
}

func TestFixturesStoredExactly(t *testing.T) {
	kcfg := testenv.KafkaConfig(t)
	cfg := testConfig(t, kcfg)
	// What is stored is checked here, on the Kafka path: a loaded machine
	// must not push an ack past the spool timeout (the spool path has its
	// own tests; 8 s is the most ingest allows, under LiveChat's 10 s).
	cfg.KafkaTimeout = 8 * time.Second
	rec := tracetest.NewInMemoryExporter()
	tel, err := telemetry.New(context.Background(), telemetry.Config{}, telemetry.Options{SpanExporter: rec})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Telemetry = tel
	var accepted atomic.Int64
	cfg.OnAccepted = func(org, action string, at time.Time) {
		if org == fixtureOrg && action != "" && !at.IsZero() {
			accepted.Add(1)
		}
	}
	srv := startServer(t, cfg)

	fx := fixtures(t)
	type sent struct {
		name     string
		body     []byte
		before   time.Time
		after    time.Time
		response response
	}
	byID := map[string]sent{}
	for name, body := range fx {
		before := time.Now()
		r := postWebhook(t, srv.url, body)
		if r.status != http.StatusOK {
			t.Fatalf("%s: status %d %s", name, r.status, r.body)
		}
		var ok struct {
			RequestID string `json:"request_id"`
		}
		if err := json.Unmarshal(r.body, &ok); err != nil || ok.RequestID == "" || ok.RequestID != r.header.Get("X-Request-ID") {
			t.Fatalf("%s: response %s", name, r.body)
		}
		byID[ok.RequestID] = sent{name, body, before, time.Now(), r}
	}
	if accepted.Load() != int64(len(fx)) {
		t.Fatalf("OnAccepted called %d times, want %d", accepted.Load(), len(fx))
	}

	recs := consume(t, kcfg, kcfg.RawTopic, len(fx), time.Second)
	if len(recs) != len(fx) {
		t.Fatalf("topic holds %d records, want %d", len(recs), len(fx))
	}
	spans := map[string]string{} // request id -> trace id
	for _, sp := range rec.GetSpans() {
		for _, a := range sp.Attributes {
			if a.Key == "request.id" {
				spans[a.Value.AsString()] = sp.SpanContext.TraceID().String()
			}
		}
	}
	for _, r := range recs {
		s, ok := byID[wire.Header(r, wire.HeaderRequestID)]
		if !ok {
			t.Fatalf("record with unknown request id %q", wire.Header(r, wire.HeaderRequestID))
		}
		t.Run(s.name, func(t *testing.T) {
			want := bytes.Replace(s.body, []byte(`"secret_key": "test-secret"`), []byte(`"secret_key": ""`), 1)
			if !bytes.Equal(r.Value, want) {
				t.Fatalf("value is not the body with the secret blanked:\n%s", r.Value)
			}
			if got, want := string(r.Key), fixtureOrg+"/"+fixtureEntity(s.name); got != want {
				t.Errorf("key %q, want %q", got, want)
			}
			at, err := wire.ParseTime(wire.Header(r, wire.HeaderReceivedAt))
			if err != nil || at.Before(s.before) || at.After(s.after) {
				t.Errorf("received-at %q outside [%s, %s]: %v", wire.Header(r, wire.HeaderReceivedAt), s.before, s.after, err)
			}
			sum := sha256.Sum256(r.Value)
			checks := map[string]string{
				wire.HeaderBodySHA256:    hex.EncodeToString(sum[:]),
				wire.HeaderAction:        strings.SplitN(strings.TrimSuffix(s.name, ".json"), ".", 2)[0],
				wire.HeaderOrganization:  fixtureOrg,
				wire.HeaderIngestVersion: "test",
				wire.HeaderAuth:          wire.AuthStaticSecret,
				wire.HeaderSpooled:       "",
			}
			for h, want := range checks {
				if got := wire.Header(r, h); got != want {
					t.Errorf("header %s = %q, want %q", h, got, want)
				}
			}
			if ra := wire.Header(r, wire.HeaderRemoteAddr); !strings.HasPrefix(ra, "127.0.0.1:") {
				t.Errorf("remote-addr %q", ra)
			}
			tp := wire.Header(r, wire.HeaderTraceparent)
			traceID := spans[wire.Header(r, wire.HeaderRequestID)]
			if traceID == "" || !strings.Contains(tp, traceID) {
				t.Errorf("traceparent %q does not carry the span's trace %q", tp, traceID)
			}
		})
		assertNoSecret(t, "record", append(append(append([]byte{}, r.Key...), r.Value...), headerBytes(r)...))
	}
	assertSpoolHasNoSecret(t, cfg.Spool.Dir)
}

func headerBytes(r *kgo.Record) []byte {
	var b []byte
	for _, h := range r.Headers {
		b = append(append(b, h.Key...), h.Value...)
	}
	return b
}

func assertNoSecret(t testing.TB, where string, b []byte) {
	t.Helper()
	if bytes.Contains(b, []byte(testSecret)) {
		t.Fatalf("the webhook secret appears in the %s", where)
	}
}

// assertSpoolHasNoSecret reads every file under dir; it returns the bytes
// read so callers can check the spool was used at all.
func assertSpoolHasNoSecret(t testing.TB, dir string) int {
	t.Helper()
	n := 0
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err == nil {
			n += len(b)
			assertNoSecret(t, "spool file "+d.Name(), b)
		}
		return nil
	})
	return n
}

type secretsFunc func(ctx context.Context, org string) ([]string, error)

func (f secretsFunc) WebhookSecrets(ctx context.Context, org string) ([]string, error) {
	return f(ctx, org)
}

// testLicenses are the licenses secretsFunc's organizations hold.
var testLicenses = map[int64]string{104130623: "org-installed", 200: "org-broken"}

func (f secretsFunc) LicenseSecrets(ctx context.Context, license int64) (string, []string, error) {
	org := testLicenses[license]
	if org == "" {
		return "", nil, nil
	}
	secrets, err := f(ctx, org)
	if err != nil {
		return "", nil, err
	}
	return org, secrets, nil
}

func TestRejectsAndStoresNothing(t *testing.T) {
	kcfg := testenv.KafkaConfig(t)
	cfg := testConfig(t, kcfg)
	cfg.MaxBodyBytes = 8 << 10
	cfg.Installations = secretsFunc(func(_ context.Context, org string) ([]string, error) {
		switch org {
		case "org-installed":
			return []string{"installed-secret"}, nil
		case "org-broken":
			return nil, errors.New("token store down")
		}
		return nil, nil
	})
	cfg.Routes = func(r fiber.Router) {
		r.Get("/app/settings", func(c *fiber.Ctx) error { return c.SendString("settings") })
	}
	srv := startServer(t, cfg)
	good := fixtures(t)["chat_deactivated.json"]
	wrong := bytes.Replace(good, []byte(testSecret), []byte("not-the-secret"), 1)
	big := bytes.Replace(good, []byte(`"additional_data": {}`), []byte(`"additional_data": {"pad": "`+strings.Repeat("x", 9<<10)+`"}`), 1)
	env := func(org, secret string) []byte {
		return []byte(fmt.Sprintf(`{"action":"chat_deactivated","organization_id":%q,"secret_key":%q,"payload":{"chat_id":"X"}}`, org, secret))
	}

	cases := []struct {
		name, method, ctype string
		body                []byte
		status              int
		errContains         string
	}{
		{"wrong secret", "POST", "application/json", wrong, 401, "secret_key"},
		{"no secret", "POST", "application/json", []byte(`{"action":"a","organization_id":"o"}`), 401, "secret_key"},
		{"empty secret", "POST", "application/json", env(fixtureOrg, ""), 401, "secret_key"},
		{"installation secret of another org", "POST", "application/json", env("org-other", "installed-secret"), 401, "secret_key"},
		{"installation lookup fails", "POST", "application/json", env("org-broken", "whatever"), 503, "retry"},
		{"not json content type", "POST", "text/plain", good, 415, "application/json"},
		{"no content type", "POST", "", good, 415, "application/json"},
		{"form content type", "POST", "application/x-www-form-urlencoded", good, 415, "application/json"},
		{"gzip encoded", "POST", "application/json", good, 415, "content encoding"},
		{"too large", "POST", "application/json", big, 413, "larger than"},
		{"malformed json", "POST", "application/json", good[:len(good)/2], 400, "not valid JSON"},
		{"not an object", "POST", "application/json", []byte(`["x"]`), 400, "object"},
		{"missing action", "POST", "application/json", []byte(`{"organization_id":"o","secret_key":"test-secret"}`), 400, "action"},
		{"missing organization", "POST", "application/json", []byte(`{"action":"a","secret_key":"test-secret"}`), 400, "organization_id"},
		{"duplicate secret", "POST", "application/json", []byte(`{"action":"a","organization_id":"o","secret_key":"x","secret_key":"test-secret"}`), 400, "duplicate"},
		{"GET", "GET", "", nil, 405, "POST"},
		{"PUT", "PUT", "application/json", good, 405, "POST"},
		{"DELETE", "DELETE", "", nil, 405, "POST"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var hdr []string
			if tc.name == "gzip encoded" {
				hdr = []string{"Content-Encoding", "gzip"}
			}
			r, err := doRequest(tc.method, srv.url+WebhookPath, tc.ctype, tc.body, hdr...)
			if err != nil {
				t.Fatal(err)
			}
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			var eb errorBody
			if err := json.Unmarshal(r.body, &eb); err != nil || eb.RequestID == "" || !strings.Contains(eb.Error, tc.errContains) {
				t.Fatalf("error body %s, want error containing %q and a request_id", r.body, tc.errContains)
			}
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Fatalf("content type %q", ct)
			}
			assertNoSecret(t, "error response", r.body)
		})
	}

	// What is accepted: the installation secret, an unknown action, a
	// duplicate delivery, JSON with a charset.
	accepted := [][]byte{env("org-installed", "installed-secret"), good, good,
		[]byte(`{"action":"brand_new_action","organization_id":"o","secret_key":"test-secret","payload":{"whatever":[1,2]}}`)}
	for i, b := range accepted {
		r, err := doRequest("POST", srv.url+WebhookPath, "application/json; charset=utf-8", b)
		if err != nil || r.status != 200 {
			t.Fatalf("accepted #%d: %d %s %v", i, r.status, r.body, err)
		}
	}
	recs := consume(t, kcfg, kcfg.RawTopic, len(accepted), 1500*time.Millisecond)
	if len(recs) != len(accepted) {
		t.Fatalf("topic holds %d records, want only the %d accepted ones", len(recs), len(accepted))
	}
	auths := map[string]int{}
	for _, r := range recs {
		auths[wire.Header(r, wire.HeaderAuth)]++
		assertNoSecret(t, "record", r.Value)
		if bytes.Contains(r.Value, []byte("installed-secret")) {
			t.Fatal("installation secret stored")
		}
	}
	if auths[wire.AuthInstallationSecret] != 1 || auths[wire.AuthStaticSecret] != 3 {
		t.Fatalf("auth headers %v", auths)
	}
	st := srv.Stats().Counters
	if st.Unauthorized != 4 || st.TooLarge != 1 || st.UnsupportedMedia != 4 || st.BadRequest != 5 || st.MethodNotAllowed != 3 || st.InstallationError != 1 {
		t.Fatalf("counters %+v", st)
	}

	// Extra routes are mounted; probes answer.
	for path, want := range map[string]int{"/app/settings": 200, "/healthz": 200, "/readyz": 200, "/nope": 404} {
		r, err := doRequest("GET", srv.url+path, "", nil)
		if err != nil || r.status != want {
			t.Fatalf("GET %s: %d %s %v", path, r.status, r.body, err)
		}
	}
}

func TestReadyWithoutKafkaWhileSpoolWritable(t *testing.T) {
	kcfg := kafka.DefaultConfig()
	kcfg.Brokers = []string{freeAddr(t)} // nothing listens
	cfg := testConfig(t, kcfg)
	cfg.KafkaTimeout = 200 * time.Millisecond
	srv := startServer(t, cfg)
	r := postWebhook(t, srv.url, fixtures(t)["incoming_chat.json"])
	if r.status != 200 {
		t.Fatalf("post with Kafka away: %d %s", r.status, r.body)
	}
	r, _ = doRequest("GET", srv.url+"/readyz", "", nil)
	var ready struct {
		Kafka string      `json:"kafka"`
		Spool spool.Stats `json:"spool"`
	}
	if err := json.Unmarshal(r.body, &ready); err != nil || r.status != 200 || ready.Spool.Records != 1 || !strings.HasPrefix(ready.Kafka, "unreachable") {
		t.Fatalf("readyz: %d %s", r.status, r.body)
	}
	if n := assertSpoolHasNoSecret(t, cfg.Spool.Dir); n == 0 {
		t.Fatal("spool is empty after a spooled webhook")
	}
}

func TestSpoolFullAnswers503(t *testing.T) {
	kcfg := kafka.DefaultConfig()
	kcfg.Brokers = []string{freeAddr(t)}
	cfg := testConfig(t, kcfg)
	cfg.KafkaTimeout = 100 * time.Millisecond
	cfg.MaxBodyBytes = 16 << 10
	cfg.Spool.MaxRecordBytes = 1 << 20
	cfg.Spool.MaxBytes = 8 << 10
	cfg.Spool.SegmentBytes = 4 << 10
	srv := startServer(t, cfg)
	body := fixtures(t)["incoming_chat.json"] // 6 KB: the second does not fit
	if r := postWebhook(t, srv.url, body); r.status != 200 {
		t.Fatalf("first: %d %s", r.status, r.body)
	}
	r := postWebhook(t, srv.url, body)
	var eb errorBody
	if r.status != 503 || json.Unmarshal(r.body, &eb) != nil || !strings.Contains(eb.Error, "spool full") {
		t.Fatalf("second: %d %s", r.status, r.body)
	}
	r, _ = doRequest("GET", srv.url+"/readyz", "", nil)
	if r.status != 503 {
		t.Fatalf("readyz with Kafka away and spool full: %d %s", r.status, r.body)
	}
}

// eventBody is a distinct incoming_event for chat and sequence number.
func eventBody(tmpl []byte, chat string, seq int) []byte {
	b := bytes.Replace(tmpl, []byte("RW4T8ZQK2C"), []byte(chat), 1)
	return bytes.Replace(b, []byte("RW4T8ZQK3D_5"), []byte(fmt.Sprintf("%s_%06d", chat, seq)), 1)
}

// seqOf extracts chat and sequence from a record made by eventBody.
func seqOf(t testing.TB, value []byte) (string, int) {
	var v struct {
		Payload struct {
			ChatID string `json:"chat_id"`
			Event  struct {
				ID string `json:"id"`
			} `json:"event"`
		} `json:"payload"`
	}
	if err := json.Unmarshal(value, &v); err != nil {
		t.Fatalf("record value: %v", err)
	}
	var seq int
	fmt.Sscanf(strings.TrimPrefix(v.Payload.Event.ID, v.Payload.ChatID+"_"), "%d", &seq)
	return v.Payload.ChatID, seq
}

// checkDelivered verifies every acked (chat, seq) is in recs at least once
// and that, per chat, first occurrences are in posting order.
func checkDelivered(t testing.TB, recs []*kgo.Record, acked map[string]int) (dups int) {
	t.Helper()
	seen := map[string]map[int]bool{}
	last := map[string]int{}
	for _, r := range recs {
		chat, seq := seqOf(t, r.Value)
		if seen[chat] == nil {
			seen[chat] = map[int]bool{}
			last[chat] = -1
		}
		if seen[chat][seq] {
			dups++
			continue
		}
		seen[chat][seq] = true
		if seq < last[chat] {
			t.Fatalf("chat %s: seq %d stored after %d (per-key order broken)", chat, seq, last[chat])
		}
		last[chat] = seq
		assertNoSecret(t, "record", r.Value)
	}
	missing := 0
	for chat, n := range acked {
		for seq := range n {
			if !seen[chat][seq] {
				missing++
				if missing < 5 {
					t.Errorf("acked webhook %s/%d is not in the topic", chat, seq)
				}
			}
		}
	}
	if missing > 0 {
		t.Fatalf("%d acked webhooks missing", missing)
	}
	return dups
}

// TestKafkaStoppedWhilePosting posts 10k webhooks (50 chats × 200 events,
// each chat's events in order) and stops a private broker in the middle:
// every request must still get 200, the spool must grow, and once the
// broker is back the topic must hold every acked body, in per-chat order.
func TestKafkaStoppedWhilePosting(t *testing.T) {
	pk := testenv.PrivateKafka(t)
	kcfg := kafka.DefaultConfig()
	kcfg.Brokers = []string{pk.Addr}
	kcfg.RawTopic = testenv.Name(t, "raw")
	kcfg.DLQTopic = testenv.Name(t, "dlq")
	kcfg.Partitions = 3
	cfg := testConfig(t, kcfg)
	cfg.KafkaTimeout = time.Second
	cfg.Spool.RetryMax = time.Second
	srv := startServer(t, cfg)
	tmpl := fixtures(t)["incoming_event.agent_message.json"]
	testenv.Eventually(t, 30*time.Second, func() error {
		r := postWebhook(t, srv.url, eventBody(tmpl, "WARMUP", 0))
		if r.status != 200 || srv.Stats().Counters.Spooled > 0 || srv.spool.Pending() > 0 {
			return fmt.Errorf("warm-up not stored directly: %d %+v", r.status, srv.Stats())
		}
		return nil
	})

	const chats, perChat = 50, 200
	var phase1 sync.WaitGroup
	phase1.Add(chats)
	stopping, stopped := make(chan struct{}), make(chan struct{})
	acked := map[string]int{"WARMUP": 1}
	var mu sync.Mutex
	var failures atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := range chats {
		chat := fmt.Sprintf("CHAT%04d", w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := range perChat {
				switch seq {
				case 60:
					phase1.Done()
					<-stopping
				case 120:
					<-stopped
				}
				r, err := doRequest("POST", srv.url+WebhookPath, "application/json", eventBody(tmpl, chat, seq))
				if err != nil || r.status != 200 {
					failures.Add(1)
					t.Errorf("%s/%d: %d %s %v", chat, seq, r.status, r.body, err)
					return // later events must not overtake a failed one
				}
				mu.Lock()
				acked[chat] = seq + 1
				mu.Unlock()
			}
		}()
	}
	phase1.Wait()
	t.Logf("phase 1 (Kafka up): %d webhooks in %s; stopping Kafka", chats*60, time.Since(start))
	close(stopping)
	pk.Stop()
	close(stopped)
	wg.Wait()
	if failures.Load() > 0 {
		t.Fatalf("%d requests failed", failures.Load())
	}
	st := srv.Stats()
	t.Logf("all %d posted in %s; stats %+v", chats*perChat, time.Since(start), st)
	if st.Spool.Records < chats*(perChat-120) {
		t.Fatalf("spool holds %d records, want at least %d (everything posted after the stop)", st.Spool.Records, chats*(perChat-120))
	}
	assertSpoolHasNoSecret(t, cfg.Spool.Dir)

	pk.Start()
	restarted := time.Now()
	testenv.Eventually(t, 90*time.Second, func() error {
		if n := srv.spool.Pending(); n > 0 {
			return fmt.Errorf("spool still holds %d records", n)
		}
		return nil
	})
	t.Logf("spool drained %s after Kafka restart", time.Since(restarted))
	if segs, _ := filepath.Glob(filepath.Join(cfg.Spool.Dir, "*.seg")); len(segs) != 0 {
		t.Fatalf("segments left after drain: %v", segs)
	}
	recs := consume(t, kcfg, kcfg.RawTopic, chats*perChat+1, 2*time.Second)
	dups := checkDelivered(t, recs, acked)
	spooled := 0
	for _, r := range recs {
		if wire.Header(r, wire.HeaderSpooled) == "1" {
			spooled++
		}
	}
	t.Logf("topic: %d records for %d acked webhooks (%d duplicates, %d via the spool)", len(recs), chats*perChat+1, dups, spooled)
}

// healthStats reads a server's /healthz stats.
func healthStats(url string) (Stats, error) {
	r, err := doRequest("GET", url+"/healthz", "", nil)
	if err != nil {
		return Stats{}, err
	}
	var h struct {
		Stats Stats `json:"stats"`
	}
	if err := json.Unmarshal(r.body, &h); err != nil {
		return Stats{}, fmt.Errorf("healthz %d %s: %w", r.status, r.body, err)
	}
	return h.Stats, nil
}

// TestKill9DuringSpoolWrite runs ingest as a child process with Kafka
// unreachable, so every webhook is appended to the spool, posts from 16
// connections and SIGKILLs the child while appends are in flight. A restart
// on the same spool (now with Kafka) must drain it: every webhook that got
// a 200 is in the topic, still marked spooled, with its original
// received-at.
func TestKill9DuringSpoolWrite(t *testing.T) {
	kcfg := testenv.KafkaConfig(t)
	spoolDir := t.TempDir()
	addr := freeAddr(t)
	env := []string{"CHILD_RAW_TOPIC=" + kcfg.RawTopic, "CHILD_DLQ_TOPIC=" + kcfg.DLQTopic, "CHILD_SPOOL_DIR=" + spoolDir,
		"CHILD_KAFKA_TIMEOUT=200ms"}
	first := startChild(t, "ingest", addr, append(env, "CHILD_BROKERS="+freeAddr(t))...)

	tmpl := fixtures(t)["incoming_event.agent_message.json"]
	const workers = 16
	var mu sync.Mutex
	acked := map[string]int{}
	var total atomic.Int64
	var wg sync.WaitGroup
	killed := make(chan struct{})
	for w := range workers {
		chat := fmt.Sprintf("KILL%02d", w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; ; seq++ {
				r, err := doRequest("POST", "http://"+addr+WebhookPath, "application/json", eventBody(tmpl, chat, seq))
				if err != nil || r.status != 200 {
					select {
					case <-killed:
						return // expected: the process is gone
					default:
					}
					t.Errorf("%s/%d before the kill: %d %s %v", chat, seq, r.status, r.body, err)
					return
				}
				mu.Lock()
				acked[chat] = seq + 1
				mu.Unlock()
				total.Add(1)
			}
		}()
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := total.Load(); n < 3000 {
			return fmt.Errorf("only %d acked", n)
		}
		return nil
	})
	close(killed)
	first.kill() // SIGKILL while 16 requests are appending
	wg.Wait()
	killedAt := time.Now()
	mu.Lock()
	n := 0
	for _, v := range acked {
		n += v
	}
	mu.Unlock()
	t.Logf("killed after %d acked webhooks", n)
	assertSpoolHasNoSecret(t, spoolDir)

	second := startChild(t, "ingest", addr, append(env, "CHILD_BROKERS="+strings.Join(kcfg.Brokers, ","))...)
	testenv.Eventually(t, 60*time.Second, func() error {
		st, err := healthStats("http://" + second.addr)
		if err != nil {
			return err
		}
		if st.Spool.Records > 0 || st.Counters.Drained == 0 {
			return fmt.Errorf("spool still holds %d records (drained %d)", st.Spool.Records, st.Counters.Drained)
		}
		return nil
	})
	recs := consume(t, kcfg, kcfg.RawTopic, n, 2*time.Second)
	dups := checkDelivered(t, recs, acked)
	for _, r := range recs {
		at, err := wire.ParseTime(wire.Header(r, wire.HeaderReceivedAt))
		if wire.Header(r, wire.HeaderSpooled) != "1" || err != nil || at.After(killedAt) {
			t.Fatalf("record not marked spooled or received-at %q not kept", wire.Header(r, wire.HeaderReceivedAt))
		}
	}
	t.Logf("topic: %d records for %d acked webhooks (%d duplicates or unacked-but-written)", len(recs), n, dups)
}

// TestGracefulShutdownFinishesInFlight cancels Serve while ten requests are
// inside the handler (held by a slow installation lookup): all ten must get
// their 200 and be in the topic, and the port must be closed afterwards.
func TestGracefulShutdownFinishesInFlight(t *testing.T) {
	kcfg := testenv.KafkaConfig(t)
	cfg := testConfig(t, kcfg)
	cfg.Secrets = nil
	var inside sync.WaitGroup
	inside.Add(10)
	cfg.Installations = secretsFunc(func(context.Context, string) ([]string, error) {
		inside.Done()
		time.Sleep(500 * time.Millisecond)
		return []string{testSecret}, nil
	})
	srv := startServer(t, cfg)
	url := srv.url
	testenv.Eventually(t, 10*time.Second, func() error {
		_, err := doRequest("GET", url+"/healthz", "", nil)
		return err
	})

	body := fixtures(t)["thread_tagged.json"]
	statuses := make(chan int, 10)
	for range 10 {
		go func() {
			r, err := doRequest("POST", url+WebhookPath, "application/json", body)
			if err != nil {
				t.Errorf("in-flight request failed: %v", err)
				statuses <- 0
				return
			}
			statuses <- r.status
		}()
	}
	inside.Wait()
	// SIGTERM in the binary; Serve returns once the in-flight requests are answered.
	if err := srv.stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}
	for range 10 {
		if s := <-statuses; s != 200 {
			t.Fatalf("in-flight request answered %d during shutdown", s)
		}
	}
	if _, err := net.DialTimeout("tcp", srv.addr, time.Second); err == nil {
		t.Fatal("still accepting connections after shutdown")
	}
	if recs := consume(t, kcfg, kcfg.RawTopic, 10, time.Second); len(recs) != 10 {
		t.Fatalf("topic holds %d records, want 10", len(recs))
	}
}
