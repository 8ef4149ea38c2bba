package lcapp

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/lcpipe/lcpipe/internal/lcfake"
	"github.com/lcpipe/lcpipe/internal/secret"
)

// logSink collects every log line the tests produce; TestMain greps it for
// every credential the fakes handed out.
var logSink = &syncBuffer{}

// fakes collects every fake started, for the grep.
var (
	fakesMu sync.Mutex
	fakes   []*lcfake.Fake
	// extraSecrets are secrets made outside the fakes (encryption keys).
	extraSecrets []string
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestMain(m *testing.M) {
	code := m.Run()
	logs := logSink.String()
	fakesMu.Lock()
	var secrets []string
	for _, f := range fakes {
		secrets = append(secrets, f.Issued()...)
	}
	secrets = append(secrets, extraSecrets...)
	fakesMu.Unlock()
	leaks := 0
	for _, s := range secrets {
		if len(s) >= 8 && strings.Contains(logs, s) {
			leaks++
		}
	}
	fmt.Printf("log grep: %d log bytes, %d credentials checked, %d found in logs\n", len(logs), len(secrets), leaks)
	if len(fakes) > 0 && (len(secrets) < 10 || len(logs) == 0) {
		fmt.Println("log grep: FAIL: fakes ran but too little to check")
		code = 1
	}
	if leaks > 0 {
		fmt.Println("log grep: FAIL: a token or secret appears in the logs")
		code = 1
	}
	os.Exit(code)
}

const (
	testClientID = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"
	testOrg      = "390e44e6-f1e6-0368c-z6ddb-74g14508c2ex"
	testAccount  = "d24a4e8b-7c9a-4d0e-9f3b-1c2d3e4f5a6b"
	otherOrg     = "7c0f2f6e-6c7e-4a43-9d6f-2b1d6b3a7e11"
	otherAccount = "0a7f3c2e-5b4d-4e1f-8a9b-7c6d5e4f3a2b"
)

// harness is one ingest-like HTTP server with the app's routes, the fake
// LiveChat, and a browser (cookie jar).
type harness struct {
	t       *testing.T
	fake    *lcfake.Fake
	app     *App
	cfg     Config
	base    string
	srv     *fiber.App
	browser *http.Client
	log     *slog.Logger
	// received counts webhooks the stand-in receiver accepted.
	mu       sync.Mutex
	accepted int
}

type harnessOpt func(*lcfake.Config, *Config)

func newHarness(t *testing.T, opts ...harnessOpt) *harness {
	t.Helper()
	return buildHarness(t, nil, opts...)
}

// buildHarness starts the fake and the app; serve, when not nil, serves the
// app's routes on ln instead of the stand-in receiver (the real ingest).
func buildHarness(t *testing.T, serve func(*harness, net.Listener), opts ...harnessOpt) *harness {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	fcfg := lcfake.Config{
		ClientID: testClientID, ClientSecret: "fake-client-secret-" + randomToken(),
		RedirectURIs: []string{base + "/livechat/app"}, OwnerOrganizationID: testOrg,
	}
	key := randomKey()
	cfg := DefaultConfig()
	cfg.ClientID, cfg.PublicBaseURL = testClientID, base
	cfg.EncryptionKey = secret.Secret(key)
	cfg.StorePath = filepath.Join(t.TempDir(), "lcapp.db")
	cfg.SecretCacheTTL = time.Millisecond
	for _, o := range opts {
		o(&fcfg, &cfg)
	}
	cfg.ClientSecret = secret.Secret(fcfg.ClientSecret)
	fake := lcfake.New(fcfg)
	t.Cleanup(fake.Close)
	fakesMu.Lock()
	fakes = append(fakes, fake)
	extraSecrets = append(extraSecrets, key)
	fakesMu.Unlock()
	fake.AddUser(lcfake.User{AccountID: testAccount, OrganizationID: testOrg, LicenseID: 104130623, Role: "owner", Email: "owner@example.com"})
	fake.AddUser(lcfake.User{AccountID: otherAccount, OrganizationID: otherOrg, LicenseID: 200, Role: "administrator", Email: "admin@other.example"})
	fake.SignIn(testAccount)
	cfg.AccountsURL, cfg.APIURL = fake.Accounts.URL, fake.APIURL()
	fake.SetAppWebhookURL(base + AppWebhookPath)

	h := &harness{t: t, fake: fake, cfg: cfg, base: base}
	h.log = slog.New(slog.NewTextHandler(io.MultiWriter(logSink, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	h.app = h.newApp()
	h.browser = newBrowser(t)
	if serve != nil {
		serve(h, ln)
		return h
	}
	h.srv = fiber.New(fiber.Config{DisableStartupMessage: true})
	h.app.Routes(h.srv)
	h.srv.Post(WebhookPath, h.receive)
	go func() { _ = h.srv.Listener(ln) }()
	t.Cleanup(func() { _ = h.srv.ShutdownWithTimeout(200 * time.Millisecond) })
	return h
}

// newApp builds an App over the harness's store (a "restart" when called again).
func (h *harness) newApp() *App {
	h.t.Helper()
	a, err := New(h.cfg, h.log)
	if err != nil {
		h.t.Fatal(err)
	}
	// A background reload of the secret cache may still be opening the
	// store when the test ends: wait for it before the temporary folder goes.
	h.t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for {
			a.secrets.mu.Lock()
			busy := a.secrets.reloading
			a.secrets.mu.Unlock()
			if !busy || time.Now().After(deadline) {
				return
			}
			time.Sleep(time.Millisecond)
		}
	})
	return a
}

// receive stands in for the ingest's secret check (the real ingest is
// exercised in ingest_test.go): 200 when secret_key is one of the
// organization's secrets, 401 otherwise.
func (h *harness) receive(c *fiber.Ctx) error {
	var env struct {
		SecretKey string `json:"secret_key"`
		Org       string `json:"organization_id"`
		Action    string `json:"action"`
	}
	if err := c.BodyParser(&env); err != nil {
		return c.Status(400).JSON(fiber.Map{"error": "bad body"})
	}
	secrets, err := h.app.WebhookSecrets(c.UserContext(), env.Org)
	if err != nil {
		return c.Status(503).JSON(fiber.Map{"error": "secrets unavailable"})
	}
	for _, s := range secrets {
		if s == env.SecretKey {
			h.app.OnAccepted(env.Org, env.Action, time.Now())
			h.mu.Lock()
			h.accepted++
			h.mu.Unlock()
			return c.SendStatus(200)
		}
	}
	return c.Status(401).JSON(fiber.Map{"error": "invalid secret_key"})
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func randomKey() string { return randomToken()[:43] + "=" }

func newBrowser(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 10 * time.Second}
}

// noFollow is a browser that stops at redirects (to tamper with them).
func noFollow(c *http.Client) *http.Client {
	cp := *c
	cp.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &cp
}

func (h *harness) get(c *http.Client, u string) (*http.Response, string) {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Accept", "text/html")
	resp, err := c.Do(req)
	if err != nil {
		h.t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	// No page, error or confirmation, ever shows a LiveChat credential.
	for _, s := range h.fake.Issued() {
		if len(s) >= 8 && strings.Contains(string(b), s) {
			h.t.Errorf("GET %s: a token or secret appears in the response body", resp.Request.URL.Path)
		}
	}
	return resp, string(b)
}

// signIn drives the whole browser flow and returns the confirmation page.
func (h *harness) signIn(c *http.Client) (*http.Response, string) {
	h.t.Helper()
	resp, body := h.get(c, h.base+SettingsPath)
	if resp.StatusCode != 200 || !strings.Contains(body, "Sign in with LiveChat") {
		h.t.Fatalf("settings page: %d %s", resp.StatusCode, body)
	}
	return h.get(c, h.base+SignInPath)
}

// callbackURL runs sign-in up to LiveChat's redirect back and returns the
// callback URL (with code and state) without calling it.
func (h *harness) callbackURL(c *http.Client) string {
	h.t.Helper()
	nf := noFollow(c)
	resp, _ := h.get(nf, h.base+SignInPath)
	if resp.StatusCode != http.StatusFound {
		h.t.Fatalf("signin: status %d", resp.StatusCode)
	}
	resp, body := h.get(nf, resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound {
		h.t.Fatalf("authorize: status %d %s", resp.StatusCode, body)
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, h.base+CallbackPath) {
		h.t.Fatalf("authorize redirected to %s", loc)
	}
	return loc
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
