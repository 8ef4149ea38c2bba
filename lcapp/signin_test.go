package lcapp

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/lcpipe/lcpipe/internal/lcfake"
	"github.com/lcpipe/lcpipe/internal/secret"
)

// frontWith serves a SignInFlow the way another front (the dashboards)
// mounts it: /start and /callback; the callback answers "org account" or
// the error's status and message.
func frontWith(t *testing.T, fake *lcfake.Config) (*lcfake.Fake, string) {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	fcfg := *fake
	fcfg.RedirectURIs = []string{srv.URL + "/callback"}
	f := lcfake.New(fcfg)
	t.Cleanup(f.Close)
	fakesMu.Lock()
	fakes = append(fakes, f)
	fakesMu.Unlock()
	cfg := DefaultConfig()
	cfg.ClientID, cfg.ClientSecret = fcfg.ClientID, "wrong"
	cfg.AccountsURL, cfg.APIURL = f.Accounts.URL, f.APIURL()
	if _, err := NewSignInFlow(cfg, "not a url", nil); err == nil {
		t.Fatal("a relative redirect URL was accepted")
	}
	cfg.ClientSecret = secret.Secret(fcfg.ClientSecret)
	flow, err := NewSignInFlow(cfg, srv.URL+"/callback", slog.New(slog.NewTextHandler(io.MultiWriter(logSink, testWriter{t}), nil)))
	if err != nil {
		t.Fatal(err)
	}
	mux.HandleFunc("GET /start", flow.Start)
	mux.HandleFunc("GET /callback", func(w http.ResponseWriter, r *http.Request) {
		org, account, err := flow.Finish(w, r)
		var se *SignInError
		if errors.As(err, &se) {
			http.Error(w, se.Msg, se.StatusCode())
			return
		}
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprint(w, org+" "+account)
	})
	return f, srv.URL
}

func TestSignInFlow(t *testing.T) {
	fcfg := &lcfake.Config{ClientID: testClientID, ClientSecret: "fake-client-secret-" + randomToken(), OwnerOrganizationID: testOrg, AnyRoleGetsAdminScopes: true}
	f, front := frontWith(t, fcfg)
	f.AddUser(lcfake.User{AccountID: testAccount, OrganizationID: testOrg, Role: "administrator", Email: "admin@example.com"})
	f.AddUser(lcfake.User{AccountID: agentAccount, OrganizationID: testOrg, Role: "normal", Email: "agent@example.com"})
	get := func(c *http.Client, u string) (int, string) {
		t.Helper()
		resp, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, s := range f.Issued() {
			if len(s) >= 8 && strings.Contains(string(b), s) {
				t.Errorf("a credential appears in the answer")
			}
		}
		return resp.StatusCode, strings.TrimSpace(string(b))
	}

	f.SignIn(testAccount)
	if code, body := get(newBrowser(t), front+"/start"); code != 200 || body != testOrg+" "+testAccount {
		t.Fatalf("administrator: %d %q", code, body)
	}
	if got := f.Calls("token:authorization_code"); got != 1 {
		t.Fatalf("%d code exchanges", got)
	}
	f.SignIn(agentAccount)
	if code, body := get(newBrowser(t), front+"/start"); code != 403 || !strings.Contains(body, "administrator") {
		t.Fatalf("normal agent: %d %q", code, body)
	}
	// A callback without the browser's pending sign-in (another browser, or
	// replayed) is refused before any exchange.
	f.SignIn(testAccount)
	nf := noFollow(newBrowser(t))
	resp, err := nf.Get(front + "/start")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = nf.Get(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	callback := resp.Header.Get("Location")
	if code, _ := get(newBrowser(t), callback); code != 400 {
		t.Fatalf("callback from another browser: %d", code)
	}
	if got := f.Calls("token:authorization_code"); got != 2 {
		t.Fatalf("%d code exchanges, want 2 (the refused callback must not exchange)", got)
	}
}
