package lcfake

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

const (
	clientID = "c0ffee00c0ffee00c0ffee00c0ffee00"
	secret   = "client-secret"
	org      = "org-1"
	redirect = "https://app.example.com/lc"
)

func newFake(t *testing.T, mod ...func(*Config)) *Fake {
	cfg := Config{ClientID: clientID, ClientSecret: secret, RedirectURIs: []string{redirect}, OwnerOrganizationID: org}
	for _, m := range mod {
		m(&cfg)
	}
	f := New(cfg)
	t.Cleanup(f.Close)
	f.AddUser(User{AccountID: "acc-1", OrganizationID: org, Role: "owner"})
	f.AddUser(User{AccountID: "acc-2", OrganizationID: org, Role: "normal"})
	f.SignIn("acc-1")
	return f
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// authorize returns the Location of the authorize answer.
func authorize(t *testing.T, f *Fake, q url.Values) *url.URL {
	t.Helper()
	resp, err := noRedirect.Get(f.Accounts.URL + "/?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: status %d", resp.StatusCode)
	}
	u, _ := url.Parse(resp.Header.Get("Location"))
	return u
}

func challenge(v string) string {
	s := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(s[:])
}

const verifier = "verifier-0123456789-0123456789-0123456789-abcdef"

func authQuery(mod ...func(url.Values)) url.Values {
	q := url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirect + "/callback"},
		"state": {"st"}, "code_challenge": {challenge(verifier)}, "code_challenge_method": {"S256"}}
	for _, m := range mod {
		m(q)
	}
	return q
}

type tokenResp struct {
	status int
	body   map[string]any
}

func postToken(t *testing.T, f *Fake, form url.Values) tokenResp {
	t.Helper()
	resp, err := http.PostForm(f.Accounts.URL+"/v2/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return tokenResp{resp.StatusCode, m}
}

func exchangeForm(code string, mod ...func(url.Values)) url.Values {
	v := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {clientID},
		"client_secret": {secret}, "redirect_uri": {redirect + "/callback"}, "code_verifier": {verifier}}
	for _, m := range mod {
		m(v)
	}
	return v
}

func TestAuthorizeRedirects(t *testing.T) {
	tests := []struct {
		name, signedIn, wantPath, wantParam string
		mod                                 func(url.Values)
	}{
		{"ok", "acc-1", "/lc/callback", "code", func(url.Values) {}},
		{"unknown client", "acc-1", "/ooops", "oauth_exception=unauthorized_client", func(q url.Values) { q.Set("client_id", "nope") }},
		{"redirect not whitelisted", "acc-1", "/ooops", "exception_details=invalid_redirect_uri", func(q url.Values) { q.Set("redirect_uri", "https://evil.example.com/lc") }},
		{"redirect with query", "acc-1", "/ooops", "invalid_redirect_uri", func(q url.Values) { q.Set("redirect_uri", redirect+"?x=1") }},
		{"no redirect", "acc-1", "/ooops", "redirect_uri_not_set", func(q url.Values) { q.Del("redirect_uri") }},
		{"implicit not supported here", "acc-1", "/ooops", "unsupported_response_type", func(q url.Values) { q.Set("response_type", "token") }},
		{"short challenge", "acc-1", "/ooops", "invalid_request", func(q url.Values) { q.Set("code_challenge", "short") }},
		{"agent cannot grant admin scopes", "acc-2", "/ooops", "invalid_scope", func(url.Values) {}},
		{"not signed in", "", "/ooops", "identity_exception=unauthorized", func(url.Values) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			f.SignIn(tt.signedIn)
			u := authorize(t, f, authQuery(tt.mod))
			if u.Path != tt.wantPath || !strings.Contains(u.RawQuery, tt.wantParam) {
				t.Fatalf("redirected to %s", u)
			}
			if tt.wantParam == "code" {
				if !strings.HasPrefix(u.Query().Get("code"), "dal:") || u.Query().Get("state") != "st" {
					t.Fatalf("callback %s", u)
				}
			}
		})
	}
}

func TestTooManyRedirects(t *testing.T) {
	f := newFake(t)
	for i := 0; i < 3; i++ {
		if u := authorize(t, f, authQuery()); u.Path != "/lc/callback" {
			t.Fatalf("authorize %d: %s", i, u)
		}
	}
	if u := authorize(t, f, authQuery()); !strings.Contains(u.RawQuery, "too_many_redirects") {
		t.Fatalf("4th authorize within 30 s: %s", u)
	}
	f.Advance(31 * time.Second)
	if u := authorize(t, f, authQuery()); u.Path != "/lc/callback" {
		t.Fatalf("after 30 s: %s", u)
	}
}

func TestTokenExchange(t *testing.T) {
	tests := []struct {
		name       string
		mod        func(url.Values)
		status     int
		errCode    string
		replay     bool
		afterClock time.Duration
	}{
		{"ok", func(url.Values) {}, 200, "", false, 0},
		{"wrong secret", func(v url.Values) { v.Set("client_secret", "x") }, 401, "invalid_client", false, 0},
		{"no secret", func(v url.Values) { v.Del("client_secret") }, 401, "invalid_client", false, 0},
		{"unknown client", func(v url.Values) { v.Set("client_id", "x") }, 401, "unauthorized_client", false, 0},
		{"missing verifier", func(v url.Values) { v.Del("code_verifier") }, 422, "invalid_request", false, 0},
		{"wrong verifier", func(v url.Values) { v.Set("code_verifier", verifier+"x") }, 403, "invalid_grant", false, 0},
		{"other redirect", func(v url.Values) { v.Set("redirect_uri", redirect+"/other") }, 403, "invalid_grant", false, 0},
		{"replayed", func(url.Values) {}, 403, "invalid_grant", true, 0},
		{"expired code", func(url.Values) {}, 403, "invalid_grant", false, 6 * time.Minute},
		{"verifier without challenge", func(v url.Values) {}, 403, "invalid_grant", false, -1},
		{"bad grant type", func(v url.Values) { v.Set("grant_type", "password") }, 422, "unsupported_grant_type", false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			q := authQuery()
			if tt.afterClock < 0 {
				q.Del("code_challenge")
				q.Del("code_challenge_method")
				tt.afterClock = 0
			}
			code := authorize(t, f, q).Query().Get("code")
			if tt.replay {
				if r := postToken(t, f, exchangeForm(code)); r.status != 200 {
					t.Fatalf("first use: %+v", r)
				}
			}
			f.Advance(tt.afterClock)
			r := postToken(t, f, exchangeForm(code, tt.mod))
			if r.status != tt.status {
				t.Fatalf("status %d, want %d: %v", r.status, tt.status, r.body)
			}
			if tt.errCode != "" {
				if r.body["error"] != tt.errCode || r.body["error_description"] == "" {
					t.Fatalf("error body %v, want error=%s", r.body, tt.errCode)
				}
				return
			}
			for _, k := range []string{"access_token", "token_type", "expires_in", "refresh_token", "scope", "account_id", "organization_id"} {
				if _, ok := r.body[k]; !ok {
					t.Errorf("token response lacks %s", k)
				}
			}
			if r.body["expires_in"].(float64) != 28800 || r.body["token_type"] != "Bearer" || !strings.HasPrefix(r.body["access_token"].(string), "dal:") || strings.Contains(r.body["refresh_token"].(string), ":") {
				t.Errorf("token response %v", r.body)
			}
		})
	}
}

func issue(t *testing.T, f *Fake) map[string]any {
	code := authorize(t, f, authQuery()).Query().Get("code")
	r := postToken(t, f, exchangeForm(code))
	if r.status != 200 {
		t.Fatalf("exchange: %+v", r)
	}
	return r.body
}

func refreshForm(rt string) url.Values {
	return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {clientID}, "client_secret": {secret}}
}

func TestRefresh(t *testing.T) {
	t.Run("rotating", func(t *testing.T) {
		f := newFake(t)
		tok := issue(t, f)
		r := postToken(t, f, refreshForm(tok["refresh_token"].(string)))
		if r.status != 200 || r.body["refresh_token"] == tok["refresh_token"] || r.body["access_token"] == tok["access_token"] {
			t.Fatalf("refresh: %+v", r)
		}
		if again := postToken(t, f, refreshForm(tok["refresh_token"].(string))); again.status != 403 || again.body["error"] != "invalid_grant" {
			t.Fatalf("reuse: %+v", again)
		}
	})
	t.Run("kept (server-side clients per the docs)", func(t *testing.T) {
		f := newFake(t, func(c *Config) { c.KeepRefreshTokens = true })
		tok := issue(t, f)
		for i := 0; i < 2; i++ {
			if r := postToken(t, f, refreshForm(tok["refresh_token"].(string))); r.status != 200 || r.body["refresh_token"] != tok["refresh_token"] {
				t.Fatalf("refresh %d: %+v", i, r)
			}
		}
	})
}

type apiResp struct {
	status int
	raw    string
}

func call(t *testing.T, f *Fake, token, method string, body any) apiResp {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, f.APIURL()+"/configuration/action/"+method, strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return apiResp{resp.StatusCode, strings.TrimSpace(string(raw))}
}

func errType(r apiResp) string {
	var e struct {
		Error struct{ Type, Message string } `json:"error"`
	}
	_ = json.Unmarshal([]byte(r.raw), &e)
	return e.Error.Type
}

func TestConfigurationAPI(t *testing.T) {
	f := newFake(t)
	at := issue(t, f)["access_token"].(string)
	reg := map[string]any{"action": "incoming_chat", "secret_key": "s3cr3t-key", "url": "https://lcpipe.example.com/webhooks/livechat", "owner_client_id": clientID, "type": "license"}

	r := call(t, f, at, "register_webhook", reg)
	var id struct{ ID string }
	if r.status != 200 || json.Unmarshal([]byte(r.raw), &id) != nil || len(id.ID) != 25 {
		t.Fatalf("register: %+v", r)
	}
	r = call(t, f, at, "list_webhooks", map[string]string{"owner_client_id": clientID})
	if r.status != 200 || strings.Contains(r.raw, "s3cr3t-key") || !strings.Contains(r.raw, `"id":"`+id.ID+`"`) || !strings.Contains(r.raw, `"type":"license"`) {
		t.Fatalf("list (must not show the secret): %+v", r)
	}
	for i := 0; i < 2; i++ {
		call(t, f, at, "register_webhook", reg)
	}
	if r := call(t, f, at, "register_webhook", reg); r.status != 422 || errType(r) != "limit_reached" {
		t.Fatalf("4th registration of one action: %+v", r)
	}
	bad := []struct {
		name string
		mod  func(map[string]any)
		want string
	}{
		{"no secret", func(m map[string]any) { delete(m, "secret_key") }, "validation"},
		{"bad type", func(m map[string]any) { m["type"] = "chat" }, "validation"},
		{"unknown action", func(m map[string]any) { m["action"] = "incoming_customer" }, "validation"},
		{"author_type on incoming_chat", func(m map[string]any) {
			m["action"] = "chat_deactivated"
			m["filters"] = map[string]any{"author_type": "agent"}
		}, "validation"},
		{"url too long", func(m map[string]any) { m["url"] = "https://x.example.com/" + strings.Repeat("a", 500) }, "validation"},
		{"foreign client", func(m map[string]any) { m["owner_client_id"] = "other" }, "authorization"},
	}
	for _, b := range bad {
		m := map[string]any{}
		for k, v := range reg {
			m[k] = v
		}
		m["action"] = "thread_tagged"
		b.mod(m)
		if r := call(t, f, at, "register_webhook", m); errType(r) != b.want {
			t.Errorf("%s: %+v, want %s", b.name, r, b.want)
		}
	}
	if r := call(t, f, at, "unregister_webhook", map[string]string{"id": id.ID, "owner_client_id": clientID}); r.status != 200 {
		t.Fatalf("unregister: %+v", r)
	}
	if r := call(t, f, at, "unregister_webhook", map[string]string{"id": id.ID, "owner_client_id": clientID}); r.status != 404 || errType(r) != "not_found" {
		t.Fatalf("unregister twice: %+v", r)
	}
	if r := call(t, f, at, "get_license_webhooks_state", map[string]any{}); r.raw != `{"license_webhooks_enabled":true}` {
		t.Fatalf("state after install: %+v", r)
	}
	call(t, f, at, "disable_license_webhooks", map[string]any{})
	if r := call(t, f, at, "get_license_webhooks_state", map[string]any{}); r.raw != `{"license_webhooks_enabled":false}` {
		t.Fatalf("state after disable: %+v", r)
	}
	// Disabled stays disabled after re-authorizing, until enabled.
	at = issue(t, f)["access_token"].(string)
	if f.LicenseWebhooksEnabled(org) {
		t.Fatal("re-install re-enabled webhooks")
	}
	call(t, f, at, "enable_license_webhooks", map[string]any{})
	if !f.LicenseWebhooksEnabled(org) {
		t.Fatal("enable did not enable")
	}
	if r := call(t, f, "", "list_webhook_names", map[string]string{"version": "3.6"}); r.status != 200 || !strings.Contains(r.raw, `"action":"incoming_event"`) {
		t.Fatalf("list_webhook_names without auth: %+v", r)
	}
	f.SetAgents(org, []Agent{{ID: "a@example.com", Name: "A"}})
	if r := call(t, f, at, "list_agents", map[string]any{}); r.status != 200 || !strings.Contains(r.raw, `"name":"A"`) {
		t.Fatalf("list_agents: %+v", r)
	}
	if r := call(t, f, at, "list_groups", map[string]any{}); r.raw != "[]" {
		t.Fatalf("list_groups: %+v", r)
	}
}

func TestAPIAuth(t *testing.T) {
	f := newFake(t, func(c *Config) { c.Scopes = []string{"agents--all:ro", "webhooks.state:ro"} })
	at := issue(t, f)["access_token"].(string)
	tests := []struct {
		name, token, method, want string
		status                    int
	}{
		{"no token", "", "list_agents", "authentication", 401},
		{"unknown token", "dal:nope", "list_agents", "authentication", 401},
		{"missing scope", at, "list_groups", "authorization", 403},
		{"ro does not give rw", at, "enable_license_webhooks", "authorization", 403},
		{"ro scope ok", at, "get_license_webhooks_state", "", 200},
		{"unknown method", at, "frobnicate", "not_found", 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := call(t, f, tt.token, tt.method, map[string]any{})
			if r.status != tt.status || errType(r) != tt.want {
				t.Fatalf("%+v, want %d %s", r, tt.status, tt.want)
			}
		})
	}
	t.Run("expired token", func(t *testing.T) {
		f.Advance(8*time.Hour + time.Second)
		r := call(t, f, at, "list_agents", map[string]any{})
		if r.status != 401 || errType(r) != "authentication" || !strings.Contains(r.raw, "expired") {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("content type required", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, f.APIURL()+"/configuration/action/list_agents", strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer "+at)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
}

func TestScopeRules(t *testing.T) {
	tests := []struct {
		granted []string
		need    string
		want    bool
	}{
		{[]string{"agents--all:ro"}, "agents--all:ro", true},
		{[]string{"agents--all:rw"}, "agents--all:ro", true},
		{[]string{"agents--all:ro"}, "agents--all:rw", false},
		{[]string{"agents--all:ro"}, "agents--my:ro", true},
		{[]string{"agents--my:ro"}, "agents--all:ro", false},
		{[]string{"webhooks.state:rw"}, "webhooks.state:ro", true},
		{[]string{"webhooks.state:ro"}, "webhooks.configuration:rw", false},
	}
	for _, tt := range tests {
		if got := hasScope(tt.granted, tt.need); got != tt.want {
			t.Errorf("hasScope(%v, %s) = %v", tt.granted, tt.need, got)
		}
	}
}

func TestRevokeAndInfo(t *testing.T) {
	f := newFake(t)
	at := issue(t, f)["access_token"].(string)
	req, _ := http.NewRequest(http.MethodGet, f.Accounts.URL+"/v2/info", nil)
	req.Header.Set("Authorization", "Bearer "+at)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var info map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&info)
	resp.Body.Close()
	if info["client_id"] != clientID || info["organization_id"] != org {
		t.Fatalf("info %v", info)
	}
	del := func() int {
		req, _ := http.NewRequest(http.MethodDelete, f.Accounts.URL+"/v2/token?code="+url.QueryEscape(at), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := del(); c != 200 {
		t.Fatalf("revoke %d", c)
	}
	if c := del(); c != 404 {
		t.Fatalf("revoke twice %d", c)
	}
	if r := call(t, f, at, "list_agents", map[string]any{}); r.status != 401 {
		t.Fatalf("revoked token used: %+v", r)
	}
	if _, err := f.Uninstall(context.Background(), org); err != nil {
		t.Fatal(err)
	}
}

// Users are agents of their organization in list_agents, with their current
// role; RevokeTokens kills access and refresh tokens; a normal agent gets
// invalid_scope for the default (administrator) scopes unless the fake is
// told every role may have them.
func TestRolesAndRevokedGrant(t *testing.T) {
	f := newFake(t)
	at := issue(t, f)
	var agents []Agent
	r := call(t, f, at["access_token"].(string), "list_agents", map[string]any{})
	if err := json.Unmarshal([]byte(r.raw), &agents); err != nil || len(agents) != 2 {
		t.Fatalf("list_agents: %+v %v", r, err)
	}
	roles := map[string]string{}
	for _, a := range agents {
		roles[a.AccountID] = a.Role
	}
	if roles["acc-1"] != "owner" || roles["acc-2"] != "normal" {
		t.Fatalf("roles: %v", roles)
	}
	f.SetRole("acc-2", "administrator")
	r = call(t, f, at["access_token"].(string), "list_agents", map[string]any{})
	if !strings.Contains(r.raw, `"account_id":"acc-2","name":"","avatar_path":"","role":"administrator"`) {
		t.Fatalf("SetRole not shown: %s", r.raw)
	}

	f.SignIn("acc-2")
	f.SetRole("acc-2", "normal")
	if u := authorize(t, f, authQuery()); u.Query().Get("oauth_exception") != "invalid_scope" {
		t.Fatalf("normal agent authorized for admin scopes: %s", u)
	}
	g := newFake(t, func(c *Config) { c.AnyRoleGetsAdminScopes = true })
	g.SignIn("acc-2")
	if u := authorize(t, g, authQuery()); u.Query().Get("code") == "" {
		t.Fatalf("AnyRoleGetsAdminScopes: %s", u)
	}

	f.RevokeTokens(org)
	if r := call(t, f, at["access_token"].(string), "list_agents", map[string]any{}); errType(r) != "authentication" {
		t.Fatalf("revoked access token: %+v", r)
	}
	if r := postToken(t, f, refreshForm(at["refresh_token"].(string))); r.status != 403 || r.body["error"] != "invalid_grant" {
		t.Fatalf("revoked refresh token: %+v", r)
	}
}
