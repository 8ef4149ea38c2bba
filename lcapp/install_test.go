package lcapp

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/lcpipe/lcpipe/internal/lcfake"
	"github.com/lcpipe/lcpipe/internal/livechat"
	"github.com/lcpipe/lcpipe/internal/secret"
)

// The registered actions are exactly the v3.6 actions the processor decodes.
func TestDefaultActionsMatchDecoder(t *testing.T) {
	if len(DefaultActions) != livechat.V36Actions {
		t.Fatalf("%d default actions, the decoder knows %d v3.6 actions", len(DefaultActions), livechat.V36Actions)
	}
	for _, a := range DefaultActions {
		if !livechat.Known(a) || livechat.CanonicalAction(a) != a {
			t.Errorf("action %q is not a v3.6 action of the decoder", a)
		}
	}
}

// TestInstallEndToEnd: settings page → Sign in → fake authorize (PKCE) →
// callback → confirmation; one registration per action with the stored
// secret; webhooks with that secret accepted, others refused; restart keeps
// everything and registers nothing twice.
func TestInstallEndToEnd(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	resp, body := h.signIn(h.browser)
	if resp.StatusCode != 200 || resp.Request.URL.Path != SettingsPath {
		t.Fatalf("after sign-in: %d at %s: %s", resp.StatusCode, resp.Request.URL, body)
	}
	for _, want := range []string{`id="confirmation"`, testOrg, fmt.Sprintf("Registered actions (%d)", len(DefaultActions)), "none yet", "incoming_event"} {
		if !strings.Contains(body, want) {
			t.Errorf("confirmation page lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "Not registered") {
		t.Errorf("confirmation lists missing actions:\n%s", body)
	}

	// The session id changed at sign-in (no fixation): the pre-sign-in id
	// does not open the confirmation.
	if n := len(h.app.sessions.m); n != 1 {
		t.Errorf("%d sessions after sign-in, want 1 (the rotated one)", n)
	}

	secrets, err := h.app.WebhookSecrets(ctx, testOrg)
	if err != nil || len(secrets) != 1 || len(secrets[0]) < 40 {
		t.Fatalf("WebhookSecrets = %d secrets, %v", len(secrets), err)
	}
	assertRegistrations(t, h, secrets[0])
	if !h.fake.LicenseWebhooksEnabled(testOrg) {
		t.Error("license webhooks not enabled")
	}
	if s, _ := h.app.WebhookSecrets(ctx, otherOrg); s != nil {
		t.Errorf("an organization that did not install got secrets")
	}

	// A real delivery from the fake, carrying the registered secret → 200.
	codes, err := h.fake.Deliver(ctx, testOrg, "incoming_chat", map[string]any{"chat": map[string]any{"id": "PJ0MRSHTDG"}})
	if err != nil || len(codes) != 1 || codes[0] != 200 {
		t.Fatalf("delivery with the stored secret: %v %v", codes, err)
	}
	// The same envelope with another secret → 401.
	if c := postWebhook(t, h.base+WebhookPath, testOrg, "wrong-"+secrets[0]); c != 401 {
		t.Fatalf("webhook with another secret: %d, want 401", c)
	}
	_, body = h.get(h.browser, h.base+SettingsPath)
	if !strings.Contains(body, "(incoming_chat)") {
		t.Errorf("last webhook received not shown:\n%s", body)
	}

	// Sign in again (re-install) and restart: still exactly one per action.
	registers := h.fake.Calls("register_webhook")
	if resp, body := h.signIn(newBrowser(t)); resp.StatusCode != 200 || !strings.Contains(body, `id="confirmation"`) {
		t.Fatalf("re-install: %d %s", resp.StatusCode, body)
	}
	if err := h.app.Close(); err != nil {
		t.Fatal(err)
	}
	restarted := h.newApp()
	h.app = restarted
	if _, err := restarted.Reconcile(ctx, testOrg); err != nil {
		t.Fatal(err)
	}
	if got := h.fake.Calls("register_webhook"); got != registers {
		t.Errorf("re-install/restart registered %d more webhooks", got-registers)
	}
	again, err := restarted.WebhookSecrets(ctx, testOrg)
	if err != nil || len(again) != 1 || again[0] != secrets[0] {
		t.Fatalf("after restart the secret changed or vanished")
	}
	assertRegistrations(t, h, secrets[0])
	st, err := restarted.Status(testOrg)
	if err != nil || st.LastAction != "incoming_chat" || len(st.Registered) != len(DefaultActions) {
		t.Errorf("status after restart: %+v %v", st, err)
	}
	if codes, _ := h.fake.Deliver(ctx, testOrg, "incoming_event", map[string]any{}); len(codes) != 1 || codes[0] != 200 {
		t.Errorf("delivery after restart: %v", codes)
	}
}

func assertRegistrations(t *testing.T, h *harness, secret string) {
	t.Helper()
	hooks := h.fake.Webhooks(testClientID)
	var actions []string
	for _, w := range hooks {
		actions = append(actions, w.Action)
		if w.SecretKey != secret || w.URL != h.base+WebhookPath || w.Type != "license" {
			t.Errorf("registration %s (%s): url %s type %s, secret matches stored: %v", w.ID, w.Action, w.URL, w.Type, w.SecretKey == secret)
		}
	}
	sort.Strings(actions)
	want := slices.Clone(DefaultActions)
	sort.Strings(want)
	if !slices.Equal(actions, want) {
		t.Fatalf("registered actions:\n got %v\nwant %v", actions, want)
	}
}

func postWebhook(t *testing.T, u, org, secret string) int {
	t.Helper()
	body := `{"webhook_id":"x","secret_key":"` + secret + `","action":"incoming_chat","organization_id":"` + org + `","payload":{},"additional_data":{}}`
	resp, err := http.Post(u, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func assertNothingStored(t *testing.T, h *harness) {
	t.Helper()
	if _, err := h.app.Status(testOrg); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("an installation was stored: %v", err)
	}
	if orgs, _ := h.app.store.installedOrganizations(); len(orgs) != 0 {
		t.Errorf("installations stored: %v", orgs)
	}
	if n := len(h.fake.Webhooks(testClientID)); n != 0 {
		t.Errorf("%d webhooks registered", n)
	}
}

func TestCallbackRefusals(t *testing.T) {
	t.Run("forged state", func(t *testing.T) {
		h := newHarness(t)
		cb := h.callbackURL(h.browser)
		u, _ := url.Parse(cb)
		q := u.Query()
		q.Set("state", "attacker-chosen-state")
		u.RawQuery = q.Encode()
		resp, body := h.get(h.browser, u.String())
		if resp.StatusCode != 400 || !strings.Contains(body, "state parameter does not match") {
			t.Fatalf("forged state: %d %s", resp.StatusCode, body)
		}
		if n := h.fake.Calls("token:authorization_code"); n != 0 {
			t.Errorf("code exchanged %d times despite a forged state", n)
		}
		// The genuine callback cannot be used afterwards either: the state is single use.
		resp, body = h.get(h.browser, cb)
		if resp.StatusCode != 400 || !strings.Contains(body, "no sign-in is in progress") {
			t.Fatalf("callback after a refused one: %d %s", resp.StatusCode, body)
		}
		assertNothingStored(t, h)
	})
	t.Run("callback from another browser (no session)", func(t *testing.T) {
		h := newHarness(t)
		cb := h.callbackURL(h.browser)
		resp, body := h.get(newBrowser(t), cb)
		if resp.StatusCode != 400 || !strings.Contains(body, "session cookie missing") {
			t.Fatalf("no session: %d %s", resp.StatusCode, body)
		}
		assertNothingStored(t, h)
	})
	t.Run("wrong verifier (injected code of another sign-in)", func(t *testing.T) {
		h := newHarness(t)
		victim := newBrowser(t)
		victimCB, _ := url.Parse(h.callbackURL(victim))
		attackerCB, _ := url.Parse(h.callbackURL(h.browser))
		// The victim's browser, its own state, the attacker's code: the
		// exchange uses the victim's verifier, which does not match.
		q := victimCB.Query()
		q.Set("code", attackerCB.Query().Get("code"))
		victimCB.RawQuery = q.Encode()
		resp, body := h.get(victim, victimCB.String())
		if resp.StatusCode != 400 || !strings.Contains(body, "invalid_grant") || !strings.Contains(body, "code_verifier does not match") {
			t.Fatalf("wrong verifier: %d %s", resp.StatusCode, body)
		}
		assertNothingStored(t, h)
	})
	t.Run("injected code requested without PKCE (downgrade)", func(t *testing.T) {
		h := newHarness(t)
		cb, _ := url.Parse(h.callbackURL(h.browser))
		// The attacker authorizes without code_challenge and injects that code.
		q := url.Values{"response_type": {"code"}, "client_id": {testClientID}, "redirect_uri": {h.base + CallbackPath}}
		resp, _ := h.get(noFollow(newBrowser(t)), h.fake.Accounts.URL+"/?"+q.Encode())
		loc, _ := url.Parse(resp.Header.Get("Location"))
		cq := cb.Query()
		cq.Set("code", loc.Query().Get("code"))
		cb.RawQuery = cq.Encode()
		resp, body := h.get(h.browser, cb.String())
		if resp.StatusCode != 400 || !strings.Contains(body, "requested without code_challenge") {
			t.Fatalf("downgraded code: %d %s", resp.StatusCode, body)
		}
		assertNothingStored(t, h)
	})
	t.Run("missing verifier", func(t *testing.T) {
		h := newHarness(t)
		cb, _ := url.Parse(h.callbackURL(h.browser))
		// A client that does not send the verifier for a PKCE code.
		conf := *h.app.oauth
		_, err := conf.Exchange(h.app.ctx(ctxT(t)), cb.Query().Get("code"))
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.ErrorCode != "invalid_request" || !strings.Contains(re.ErrorDescription, "code_verifier is required") {
			t.Fatalf("exchange without verifier: %v", err)
		}
		assertNothingStored(t, h)
	})
	t.Run("replayed code", func(t *testing.T) {
		h := newHarness(t)
		cb := h.callbackURL(h.browser)
		resp, body := h.get(h.browser, cb)
		if resp.StatusCode != 200 || !strings.Contains(body, `id="confirmation"`) {
			t.Fatalf("first use: %d %s", resp.StatusCode, body)
		}
		before, _ := h.app.store.loadInstallation(testOrg)
		// Replaying the callback URL: its state is spent.
		resp, body = h.get(h.browser, cb)
		if resp.StatusCode != 400 || !strings.Contains(body, "no sign-in is in progress") {
			t.Fatalf("replayed callback: %d %s", resp.StatusCode, body)
		}
		// The spent code injected into a fresh sign-in: LiveChat refuses it.
		fresh, _ := url.Parse(h.callbackURL(h.browser))
		old, _ := url.Parse(cb)
		q := fresh.Query()
		q.Set("code", old.Query().Get("code"))
		fresh.RawQuery = q.Encode()
		resp, body = h.get(h.browser, fresh.String())
		if resp.StatusCode != 400 || !strings.Contains(body, "authorization code already used") {
			t.Fatalf("replayed code: %d %s", resp.StatusCode, body)
		}
		after, _ := h.app.store.loadInstallation(testOrg)
		if after == nil || after.AccessToken != before.AccessToken || !after.InstalledAt.Equal(before.InstalledAt) {
			t.Errorf("the replay changed the stored installation")
		}
		if n := h.fake.Calls("token:authorization_code"); n != 2 {
			t.Errorf("token exchanges = %d, want 2 (first use + refused replay)", n)
		}
	})
	t.Run("pre-sign-in session id is useless afterwards (fixation)", func(t *testing.T) {
		h := newHarness(t)
		cb := h.callbackURL(h.browser)
		u, _ := url.Parse(h.base + SettingsPath)
		before := h.browser.Jar.Cookies(u)
		if resp, body := h.get(h.browser, cb); resp.StatusCode != 200 || !strings.Contains(body, `id="confirmation"`) {
			t.Fatalf("sign-in: %d", resp.StatusCode)
		}
		after := h.browser.Jar.Cookies(u)
		if len(before) != 1 || len(after) != 1 || before[0].Value == after[0].Value {
			t.Fatalf("session cookie not rotated: %d → %d", len(before), len(after))
		}
		planted := newBrowser(t)
		planted.Jar.SetCookies(u, before)
		if _, body := h.get(planted, h.base+SettingsPath); strings.Contains(body, `id="confirmation"`) {
			t.Fatal("the pre-sign-in session id opens the confirmation")
		}
	})
	t.Run("JSON error body for API clients", func(t *testing.T) {
		h := newHarness(t)
		resp, err := http.Get(h.base + CallbackPath + "?code=x&state=y")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b struct {
			Error     string `json:"error"`
			RequestID string `json:"request_id"`
		}
		if err := decodeJSON(resp, &b); err != nil || resp.StatusCode != 400 || b.Error == "" {
			t.Fatalf("JSON error: %d %+v %v", resp.StatusCode, b, err)
		}
	})
}

func TestTokenRefreshPersists(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	h.signIn(h.browser)
	before, _ := h.app.store.loadInstallation(testOrg)

	// The access token expires at LiveChat: the API answers 401, the app
	// refreshes (rotating the refresh token), retries and persists.
	h.fake.ExpireAccessTokens(testOrg)
	hooks, _, err := h.app.Webhooks(ctx, testOrg)
	if err != nil || len(hooks) != len(DefaultActions) {
		t.Fatalf("list after expiry: %d %v", len(hooks), err)
	}
	after, _ := h.app.store.loadInstallation(testOrg)
	if after.AccessToken == before.AccessToken || after.RefreshToken == before.RefreshToken || !after.Expiry.After(before.Expiry) {
		t.Fatalf("refreshed token not persisted")
	}
	if n := h.fake.Calls("token:refresh_token"); n != 1 {
		t.Fatalf("refreshes = %d, want 1", n)
	}
	// The spent refresh token is refused by LiveChat (rotation).
	_, err = h.app.oauth.TokenSource(h.app.ctx(ctx), &oauth2.Token{RefreshToken: before.RefreshToken}).Token()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Fatalf("reused refresh token: %v", err)
	}

	// Restart: the persisted token is used as is, no refresh needed.
	h.app = h.newApp()
	if _, _, err := h.app.Webhooks(ctx, testOrg); err != nil {
		t.Fatal(err)
	}
	if n := h.fake.Calls("token:refresh_token"); n != 2 { // ours + the refused reuse
		t.Fatalf("restart refreshed again (%d)", n)
	}

	// Proactive refresh through the oauth2.TokenSource when our clock says
	// the token is about to expire (no 401 round trip).
	skew := after.Expiry.Sub(time.Now())
	h.app.cfg.Now = func() time.Time { return time.Now().Add(skew) }
	tok, err := h.app.TokenSource(ctx, testOrg).Token()
	if err != nil || tok.AccessToken == after.AccessToken {
		t.Fatalf("TokenSource did not refresh: %v", err)
	}
	stored, _ := h.app.store.loadInstallation(testOrg)
	if stored.AccessToken != tok.AccessToken {
		t.Fatal("TokenSource's new token not persisted")
	}
	if n := h.fake.Calls("token:refresh_token"); n != 3 {
		t.Fatalf("refreshes = %d, want 3", n)
	}
}

func TestRevokedRefreshNeedsReauth(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	h.signIn(h.browser)
	h.fake.SetAppWebhookURL("") // LiveChat revokes silently here
	if _, err := h.fake.Uninstall(ctx, testOrg); err != nil {
		t.Fatal(err)
	}
	_, _, err := h.app.Webhooks(ctx, testOrg)
	if !errors.Is(err, ErrReauthorize) || !strings.Contains(err.Error(), "invalid_grant") {
		t.Fatalf("err = %v, want ErrReauthorize", err)
	}
	st, _ := h.app.Status(testOrg)
	if !st.NeedsReauth {
		t.Error("installation not marked as needing re-authorization")
	}
	_, body := h.get(h.browser, h.base+SettingsPath)
	if !strings.Contains(body, "Sign in again") {
		t.Errorf("page does not ask to sign in again:\n%s", body)
	}
}

func TestUninstall(t *testing.T) {
	t.Run("explicit action", func(t *testing.T) {
		h := newHarness(t)
		_, body := h.signIn(h.browser)
		i := strings.Index(body, `name="csrf" value="`)
		csrf := body[i+len(`name="csrf" value="`):]
		csrf = csrf[:strings.IndexByte(csrf, '"')]
		// Without the form token: refused.
		resp, err := h.browser.PostForm(h.base+UninstallPath, url.Values{"csrf": {"nope"}})
		if err != nil || resp.StatusCode != 403 {
			t.Fatalf("uninstall without csrf: %v %v", resp.StatusCode, err)
		}
		resp.Body.Close()
		resp, err = h.browser.PostForm(h.base+UninstallPath, url.Values{"csrf": {csrf}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Request.URL.Path != SettingsPath {
			t.Fatalf("uninstall: %d at %s", resp.StatusCode, resp.Request.URL)
		}
		if n := len(h.fake.Webhooks(testClientID)); n != 0 {
			t.Errorf("%d webhooks still registered", n)
		}
		if h.fake.LicenseWebhooksEnabled(testOrg) {
			t.Error("license webhooks still enabled")
		}
		if _, err := h.app.Status(testOrg); !errors.Is(err, ErrNotInstalled) {
			t.Errorf("installation not deleted: %v", err)
		}
		if s, _ := h.app.WebhookSecrets(ctxT(t), testOrg); s != nil {
			t.Error("secrets still served after uninstall")
		}
	})
	t.Run("app webhook", func(t *testing.T) {
		h := newHarness(t)
		ctx := ctxT(t)
		h.signIn(h.browser)
		secret, _ := h.app.WebhookSecrets(ctx, testOrg)
		// A forged uninstall while the token is valid is ignored.
		forged := `{"clientID":"` + testClientID + `","event":"application_uninstalled","organizationID":"` + testOrg + `","licenseID":1}`
		resp, err := http.Post(h.base+AppWebhookPath, "application/json", strings.NewReader(forged))
		if err != nil {
			t.Fatal(err)
		}
		var b map[string]string
		_ = decodeJSON(resp, &b)
		if resp.StatusCode != 200 || b["status"] != "ignored" {
			t.Fatalf("forged uninstall: %d %v", resp.StatusCode, b)
		}
		if _, err := h.app.Status(testOrg); err != nil {
			t.Fatalf("forged uninstall removed the installation: %v", err)
		}
		// LiveChat's own: tokens revoked, then the webhook → tokens deleted.
		code, err := h.fake.Uninstall(ctx, testOrg)
		if err != nil || code != 200 {
			t.Fatalf("uninstall webhook: %d %v", code, err)
		}
		if _, err := h.app.Status(testOrg); !errors.Is(err, ErrNotInstalled) {
			t.Errorf("installation kept after uninstall webhook: %v", err)
		}
		if c := postWebhook(t, h.base+WebhookPath, testOrg, secret[0]); c != 401 {
			t.Errorf("webhook of an uninstalled organization: %d, want 401", c)
		}
	})
}

func TestSecondOrganizationSharesRegistrations(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	h.signIn(h.browser)
	secret, _ := h.app.WebhookSecrets(ctx, testOrg)
	registers := h.fake.Calls("register_webhook")
	h.fake.SignIn(otherAccount)
	_, body := h.signIn(newBrowser(t))
	if !strings.Contains(body, otherOrg) || !strings.Contains(body, "cannot register the app&#39;s webhooks") {
		t.Fatalf("second organization page:\n%s", body)
	}
	if h.fake.Calls("register_webhook") != registers {
		t.Error("a second organization registered webhooks again")
	}
	s2, _ := h.app.WebhookSecrets(ctx, otherOrg)
	if len(s2) != 1 || s2[0] != secret[0] {
		t.Error("second organization does not get the registration secret")
	}
	if codes, _ := h.fake.Deliver(ctx, otherOrg, "incoming_chat", map[string]any{}); len(codes) != 1 || codes[0] != 200 {
		t.Errorf("delivery for the second organization: %v", codes)
	}
	// Uninstalling the first keeps the registrations the second still uses.
	if err := h.app.Uninstall(ctx, testOrg); err != nil {
		t.Fatal(err)
	}
	if n := len(h.fake.Webhooks(testClientID)); n != len(DefaultActions) {
		t.Errorf("registrations after first uninstall: %d", n)
	}
}

// PUBLIC_BASE_URL moved: reconcile re-registers at the new URL with a new
// secret and removes the registrations at the old one; another
// environment's registrations (other URL) are left alone.
func TestPublicURLMoved(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	h.signIn(h.browser)
	old, _ := h.app.WebhookSecrets(ctx, testOrg)
	// Another environment of the same app registered one webhook elsewhere.
	rec, _ := h.app.store.loadInstallation(testOrg)
	if err := h.app.post(ctx, "register_webhook", secret.Secret(rec.AccessToken), "", []byte(`{"action":"incoming_chat","secret_key":"staging-secret-123","url":"https://staging.example.com/webhooks/livechat","owner_client_id":"`+testClientID+`","type":"license"}`), nil); err != nil {
		t.Fatal(err)
	}
	h.cfg.PublicBaseURL = "https://new.example.com"
	moved := h.newApp()
	res, err := moved.Reconcile(ctx, testOrg)
	if err != nil || len(res.Registered) != len(DefaultActions) || len(res.Removed) != len(DefaultActions) {
		t.Fatalf("reconcile after move: %+v %v", res, err)
	}
	now, _ := moved.WebhookSecrets(ctx, testOrg)
	if len(now) != 2 || now[0] == old[0] || now[1] != old[0] {
		t.Fatal("the secret was not renewed (the old one stays accepted for a while: TestRotationAcceptsBothSecrets)")
	}
	staging := 0
	for _, w := range h.fake.Webhooks(testClientID) {
		switch w.URL {
		case "https://new.example.com" + WebhookPath:
			if w.SecretKey != now[0] {
				t.Error("new registration with another secret")
			}
		case "https://staging.example.com/webhooks/livechat":
			staging++
		default:
			t.Errorf("registration left at %s", w.URL)
		}
	}
	if staging != 1 {
		t.Errorf("the other environment's registration was touched")
	}
}

// A token whose prefix does not name the API region: misdirected_request is
// retried once in the region the error names, which is remembered.
func TestMisdirectedRegion(t *testing.T) {
	h := newHarness(t, func(f *lcfake.Config, _ *Config) { f.Region, f.RequiredRegion = "fra-a", "fra" })
	_, body := h.signIn(h.browser)
	if !strings.Contains(body, fmt.Sprintf("Registered actions (%d)", len(DefaultActions))) {
		t.Fatalf("install in another region:\n%s", body)
	}
	rec, _ := h.app.store.loadInstallation(testOrg)
	if rec.Region != "fra" {
		t.Fatalf("region remembered = %q, want fra", rec.Region)
	}
	before := h.fake.Calls("list_webhooks")
	if _, _, err := h.app.Webhooks(ctxT(t), testOrg); err != nil || h.fake.Calls("list_webhooks") != before+1 {
		t.Fatalf("remembered region not used: %v", err)
	}
}

// Rate limiting and LiveChat's internal errors are retried (bounded);
// permanent errors are not.
func TestTransientAPIErrorsRetried(t *testing.T) {
	h := newHarness(t)
	h.fake.FailNext("register_webhook", 2, "too_many_requests")
	h.fake.FailNext("list_webhooks", 1, "internal")
	_, body := h.signIn(h.browser)
	if !strings.Contains(body, fmt.Sprintf("Registered actions (%d)", len(DefaultActions))) || strings.Contains(body, "failed") {
		t.Fatalf("install with transient errors:\n%s", body)
	}
	h.fake.FailNext("list_webhooks", 5, "internal")
	_, _, err := h.app.Webhooks(ctxT(t), testOrg)
	if !IsAPIError(err, "internal") {
		t.Fatalf("persistent internal errors: %v", err)
	}
	if n := h.fake.Calls("list_webhooks"); n != 2+4 {
		t.Fatalf("list_webhooks calls = %d, want 2 + 1 attempt + 3 retries", n)
	}
}

func TestMissingScope(t *testing.T) {
	h := newHarness(t, func(f *lcfake.Config, _ *Config) {
		f.Scopes = []string{"webhooks.state:rw", "agents--all:ro", "groups--all:ro"}
	})
	_, body := h.signIn(h.browser)
	if !strings.Contains(body, "Missing scope: webhooks.configuration:rw") {
		t.Fatalf("page does not show the missing scope:\n%s", body)
	}
	_, _, err := h.app.Webhooks(ctxT(t), testOrg)
	if !IsAPIError(err, "authorization") || !strings.Contains(err.Error(), "HTTP 403 authorization: Missing scope: webhooks.configuration:rw") {
		t.Fatalf("err = %v", err)
	}
}

func TestDirectory(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	h.fake.SetAgents(testOrg, []lcfake.Agent{{ID: "jane@example.com", Name: "Jane Doe"}, {ID: "bob@example.com", Name: "Bob"}})
	h.fake.SetGroups(testOrg, []lcfake.Group{{ID: 0, Name: "General"}, {ID: 7, Name: "Sales"}})
	d := h.app.Directory()
	if got := d.AgentName(testOrg, "jane@example.com"); got != "" {
		t.Fatalf("name before install: %q", got)
	}
	h.signIn(h.browser)
	if d.AgentName(testOrg, "jane@example.com") != "Jane Doe" || d.GroupName(testOrg, 7) != "Sales" || d.GroupName(testOrg, 0) != "General" {
		t.Fatalf("directory after install: %q %q", d.AgentName(testOrg, "jane@example.com"), d.GroupName(testOrg, 7))
	}
	if d.AgentName(testOrg, "nobody@example.com") != "" || d.GroupName(otherOrg, 7) != "" {
		t.Fatal("unknown ids must give empty names")
	}
	// An agent renamed: the config webhook schedules a refresh; the API
	// failing keeps the old names.
	h.fake.SetAgents(testOrg, []lcfake.Agent{{ID: "jane@example.com", Name: "Jane Roe"}})
	h.app.OnAccepted(testOrg, "agent_updated", time.Now())
	if w := d.takeWanted(); !slices.Contains(w, testOrg) {
		t.Fatalf("agent_updated did not schedule a refresh: %v", w)
	}
	h.app.RefreshDirectory(ctx, testOrg)
	if d.AgentName(testOrg, "jane@example.com") != "Jane Roe" {
		t.Fatal("rename not picked up")
	}
	h.fake.API.Close()
	h.app.RefreshDirectory(ctx, testOrg)
	if d.AgentName(testOrg, "jane@example.com") != "Jane Roe" || d.GroupName(testOrg, 7) != "Sales" {
		t.Fatal("a failing API dropped the names")
	}
}

func TestNilDirectory(t *testing.T) {
	var a *App
	var d processorDirectory = a.Directory()
	if d.AgentName("o", "a") != "" || d.GroupName("o", 1) != "" {
		t.Fatal("nil directory returned a name")
	}
}

type processorDirectory interface {
	AgentName(organizationID, agentID string) string
	GroupName(organizationID string, groupID uint32) string
}

func TestStoreEncryptedAtRest(t *testing.T) {
	h := newHarness(t)
	h.signIn(h.browser)
	rec, _ := h.app.store.loadInstallation(testOrg)
	hook, _ := h.app.WebhookSecrets(ctxT(t), testOrg)
	raw, err := os.ReadFile(h.cfg.StorePath)
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]string{"access token": rec.AccessToken, "refresh token": rec.RefreshToken, "webhook secret": hook[0]} {
		if strings.Contains(string(raw), s) {
			t.Errorf("%s readable in the store file", name)
		}
	}
	// Another key cannot read it, and says so.
	cfg := h.cfg
	cfg.EncryptionKey = secret.Secret(randomKey())
	other, err := New(cfg, h.log)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Status(testOrg); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("wrong key: %v", err)
	}
}

// The type itself is tested in internal/secret, every config in cmd/lcpipe.
func TestSecretDoesNotPrint(t *testing.T) {
	cfg := Config{ClientSecret: "cs-very-secret", EncryptionKey: "key-very-secret"}
	if out := sprintf("%+v %#v", cfg, cfg); strings.Contains(out, "very-secret") {
		t.Fatalf("config printed a secret: %s", out)
	}
}

func TestConfigValidate(t *testing.T) {
	good := DefaultConfig()
	good.ClientID, good.ClientSecret, good.PublicBaseURL = "id", "secret", "https://lcpipe.example.com"
	good.EncryptionKey = secret.Secret(randomKey())
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"ok", func(*Config) {}, ""},
		{"no key", func(c *Config) { c.EncryptionKey = "" }, "refusing to store tokens unencrypted"},
		{"short key", func(c *Config) { c.EncryptionKey = "c2hvcnQ=" }, "32 bytes"},
		{"hex key", func(c *Config) { c.EncryptionKey = secret.Secret(strings.Repeat("ab", 32)) }, ""},
		{"no client id", func(c *Config) { c.ClientID = "" }, "LIVECHAT_CLIENT_ID"},
		{"no secret", func(c *Config) { c.ClientSecret = "" }, "LIVECHAT_CLIENT_SECRET"},
		{"relative url", func(c *Config) { c.PublicBaseURL = "lcpipe.example.com" }, "PUBLIC_BASE_URL"},
		{"no actions: every action", func(c *Config) { c.Actions = nil }, ""},
		{"negative ttl", func(c *Config) { c.SessionTTL = -time.Second }, "session ttl must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.mod(&c)
			err := c.Validate()
			if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
}
