package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/lcpipe/lcpipe/internal/lcfake"
	"github.com/lcpipe/lcpipe/lcapp"
)

const (
	cliClientID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
	cliOrg      = "5a1c9e2b-3d4f-4a6b-8c7d-9e0f1a2b3c4d"
	cliAccount  = "b7c8d9e0-f1a2-4b3c-9d4e-5f6a7b8c9d0e"
)

type cliEnv struct {
	fake *lcfake.Fake
	logs *bytes.Buffer
}

func randomB64(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// installForCLI runs ingest's part (setupApp, routes) and a browser
// sign-in against the fake, leaving an installation in a store the CLI
// then uses through the same environment.
func installForCLI(t *testing.T, scopes []string) *cliEnv {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	fake := lcfake.New(lcfake.Config{ClientID: cliClientID, ClientSecret: "cs-" + randomB64(18),
		RedirectURIs: []string{base + "/livechat/app"}, OwnerOrganizationID: cliOrg, Scopes: scopes})
	t.Cleanup(fake.Close)
	fake.AddUser(lcfake.User{AccountID: cliAccount, OrganizationID: cliOrg, Role: "owner"})
	fake.SignIn(cliAccount)
	t.Setenv("LIVECHAT_CLIENT_ID", cliClientID)
	t.Setenv("LIVECHAT_CLIENT_SECRET", fake.Issued()[0])
	t.Setenv("PUBLIC_BASE_URL", base)
	t.Setenv("LIVECHAT_ACCOUNTS_URL", fake.Accounts.URL)
	t.Setenv("LIVECHAT_API_URL", fake.APIURL())
	key := randomB64(32)
	t.Setenv("APP_ENCRYPTION_KEY", key)
	t.Setenv("APP_STORE_PATH", filepath.Join(t.TempDir(), "app.db"))

	env := &cliEnv{fake: fake, logs: &bytes.Buffer{}}
	inv := newInvocation("ingest", "test", nil, io.Discard, slog.New(slog.NewTextHandler(env.logs, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	app, err := setupApp(ctx, inv)
	if err != nil || app == nil {
		t.Fatalf("setupApp: %v %v", app, err)
	}
	t.Cleanup(func() { _ = app.Close() })
	srv := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Routes(srv)
	go func() { _ = srv.Listener(ln) }()
	t.Cleanup(func() { _ = srv.ShutdownWithTimeout(200 * time.Millisecond) })

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	resp, err := browser.Get(base + lcapp.SignInPath)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), cliOrg) {
		t.Fatalf("sign-in: %d %s", resp.StatusCode, body)
	}
	t.Cleanup(func() { assertNoCredentials(t, fake, key, env.logs.String()) })
	return env
}

func (e *cliEnv) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	inv := newInvocation("webhooks", webhooksSummary, args, &out, slog.New(slog.NewTextHandler(e.logs, nil)))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := runWebhooks(ctx, inv)
	return out.String(), err
}

func assertNoCredentials(t *testing.T, fake *lcfake.Fake, key, text string) {
	t.Helper()
	for _, s := range append(fake.Issued(), key) {
		if len(s) >= 8 && strings.Contains(text, s) {
			t.Errorf("a token or secret appears in the CLI output or logs")
			return
		}
	}
}

func TestWebhooksCommand(t *testing.T) {
	env := installForCLI(t, nil)
	out, err := env.run(t, "list", "--organization", cliOrg)
	if err != nil || strings.Count(out, " yes ") != len(lcapp.DefaultActions) || !strings.Contains(out, "license webhooks enabled for "+cliOrg+": true") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	out, err = env.run(t, "register", "--organization", cliOrg)
	if err != nil || !strings.Contains(out, "registered 0, already present 38, removed 0") {
		t.Fatalf("register (idempotent): %v\n%s", err, out)
	}
	// An expired access token is refreshed transparently.
	env.fake.ExpireAccessTokens(cliOrg)
	if out, err = env.run(t, "list", "--organization", cliOrg); err != nil {
		t.Fatalf("list after expiry: %v\n%s", err, out)
	}
	out, err = env.run(t, "unregister", "--organization", cliOrg)
	if err != nil || !strings.Contains(out, "unregistered 38 webhooks") || len(env.fake.Webhooks(cliClientID)) != 0 {
		t.Fatalf("unregister: %v\n%s", err, out)
	}
	out, err = env.run(t, "register", "--organization", cliOrg)
	if err != nil || !strings.Contains(out, "registered 38, already present 0") {
		t.Fatalf("register again: %v\n%s", err, out)
	}
	assertNoCredentials(t, env.fake, "", out)
}

func TestWebhooksCommandErrors(t *testing.T) {
	t.Run("missing scope shows the API error body", func(t *testing.T) {
		env := installForCLI(t, []string{"webhooks.state:rw", "agents--all:ro", "groups--all:ro"})
		_, err := env.run(t, "list", "--organization", cliOrg)
		if err == nil || !strings.Contains(err.Error(), "HTTP 403 authorization: Missing scope: webhooks.configuration:rw") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("revoked token asks to sign in again", func(t *testing.T) {
		env := installForCLI(t, nil)
		if _, err := env.fake.Uninstall(context.Background(), cliOrg); err != nil {
			t.Fatal(err)
		}
		_, err := env.run(t, "list", "--organization", cliOrg)
		if err == nil || !strings.Contains(err.Error(), "invalid_grant") || !strings.Contains(err.Error(), "sign in again") {
			t.Fatalf("err = %v", err)
		}
		assertNoCredentials(t, env.fake, "", err.Error())
	})
	t.Run("unknown organization", func(t *testing.T) {
		env := installForCLI(t, nil)
		_, err := env.run(t, "list", "--organization", "00000000-0000-0000-0000-000000000000")
		if err == nil || !strings.Contains(err.Error(), "not installed") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("usage", func(t *testing.T) {
		env := &cliEnv{logs: &bytes.Buffer{}}
		if _, err := env.run(t, "frobnicate", "--organization", "x"); err == nil || !strings.Contains(err.Error(), "list|register|unregister") {
			t.Fatalf("err = %v", err)
		}
		if _, err := env.run(t, "list"); err == nil || !strings.Contains(err.Error(), "--organization is required") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("not configured", func(t *testing.T) {
		for _, k := range []string{"LIVECHAT_CLIENT_ID", "LIVECHAT_CLIENT_SECRET"} {
			t.Setenv(k, "")
		}
		env := &cliEnv{logs: &bytes.Buffer{}}
		if _, err := env.run(t, "list", "--organization", cliOrg); err == nil || !strings.Contains(err.Error(), "not configured") {
			t.Fatalf("err = %v", err)
		}
		inv := newInvocation("ingest", "test", nil, io.Discard, slog.New(slog.DiscardHandler))
		if app, err := setupApp(context.Background(), inv); app != nil || err != nil {
			t.Fatalf("setupApp without OAuth = %v, %v; want nil, nil", app, err)
		}
	})
	t.Run("no encryption key", func(t *testing.T) {
		t.Setenv("LIVECHAT_CLIENT_ID", cliClientID)
		t.Setenv("LIVECHAT_CLIENT_SECRET", "cs")
		t.Setenv("PUBLIC_BASE_URL", "https://lcpipe.example.com")
		t.Setenv("APP_ENCRYPTION_KEY", "")
		inv := newInvocation("ingest", "test", nil, io.Discard, slog.New(slog.DiscardHandler))
		app, err := setupApp(context.Background(), inv)
		if app != nil || err == nil || !strings.Contains(err.Error(), "APP_ENCRYPTION_KEY is empty") {
			t.Fatalf("setupApp without key = %v, %v", app, err)
		}
	})
}
