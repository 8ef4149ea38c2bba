// Package lcfake is an in-process fake of the two LiveChat services the app
// install talks to: the accounts service (OAuth 2.1 authorization code grant
// with PKCE, token exchange, refresh, revoke, token info) and the
// Configuration API v3.6 (webhook methods, license webhook state,
// list_agents, list_groups). LiveChat cannot be reached from here, so the
// install flow is tested against this fake, which follows the documented
// contracts of LiveChat's OAuth 2.1 and Configuration API docs: the same
// paths, parameters, response bodies and error bodies, scopes enforced per
// method, 401 for expired tokens.
//
// Where the docs leave a detail open the fake picks one and says so:
//   - refresh tokens rotate (single use, invalid_grant on reuse) by default,
//     the stricter of the two documented behaviours (the docs say server-side
//     clients keep theirs); Config.KeepRefreshTokens switches to that;
//   - token endpoint statuses: invalid_request/unsupported_grant_type 422,
//     invalid_client/unauthorized_client 401, invalid_grant 403 (the docs
//     list 401/403/422/429/500 with JSON error/error_description);
//   - a code_verifier sent for a code requested without code_challenge is
//     refused (invalid_grant), OAuth 2.1's downgrade protection; the LiveChat
//     docs only say the verifier is required when a challenge was sent;
//   - Configuration API statuses per error type are undocumented: validation
//     400, authentication 401, authorization 403, not_found 404,
//     already_exists 409, limit_reached 422, too_many_requests 429, internal 500,
//     misdirected_request 421.
//
// There is no login screen: the test says which user is signed in at the
// accounts service (SignIn) and the authorize endpoint answers as if that
// user had consented. Every user is an agent of its organization in
// list_agents, with its current role (SetRole); administrator-level scopes
// need an owner, vice owner or administrator (invalid_scope otherwise)
// unless Config.AnyRoleGetsAdminScopes says LiveChat does not enforce it.
package lcfake

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Default scopes of the fake app: everything the analytics install needs.
var DefaultScopes = []string{"webhooks.configuration:rw", "webhooks.state:rw", "agents--all:ro", "groups--all:ro"}

// Config describes the app registered at the fake Developer Console.
type Config struct {
	ClientID     string
	ClientSecret string
	// RedirectURIs is the redirect whitelist (prefix rules of oauth.md §3.5).
	RedirectURIs []string
	// Scopes configured for the app; all are granted. Default DefaultScopes.
	Scopes []string
	// OwnerOrganizationID owns the Client ID: register_webhook and
	// list_webhooks accept owner_client_id only from tokens of this organization.
	OwnerOrganizationID string
	// AccessTokenTTL is the lifetime of access tokens. Default 8h (28800 s).
	AccessTokenTTL time.Duration
	// CodeTTL is how long an authorization code is valid. Default 5m.
	CodeTTL time.Duration
	// KeepRefreshTokens makes refresh tokens reusable (no rotation).
	KeepRefreshTokens bool
	// AppWebhookURL receives app webhooks (application_uninstalled, ...).
	AppWebhookURL string
	// Region is the prefix of codes and access tokens. Default "dal".
	Region string
	// AnyRoleGetsAdminScopes grants administrator-level scopes to every
	// role. The docs say a user who cannot grant a scope gets invalid_scope
	// (oauth.md §2), which the fake enforces by default; this switch models
	// a LiveChat that does not, so an app's own role check can be tested.
	AnyRoleGetsAdminScopes bool
	// RequiredRegion, when set, is the X-Region the API demands; other
	// requests get the historic misdirected_request error with data.region
	// (configuration-api.md §1).
	RequiredRegion string
}

// User is an account that can sign in at the fake accounts service.
type User struct {
	AccountID      string
	OrganizationID string
	LicenseID      int64
	Email          string
	Name           string
	// Role: owner, viceowner, administrator or normal.
	Role string
}

// Agent and Group are what list_agents and list_groups return.
type Agent struct {
	ID          string `json:"id"`
	AccountID   string `json:"account_id"`
	Name        string `json:"name"`
	AvatarPath  string `json:"avatar_path"`
	Role        string `json:"role"`
	LoginStatus string `json:"login_status"`
}

type Group struct {
	ID           uint32 `json:"id"`
	Name         string `json:"name"`
	LanguageCode string `json:"language_code"`
}

// Webhook is one registration as the fake holds it (with its secret, which
// list_webhooks does not return).
type Webhook struct {
	ID            string          `json:"id"`
	URL           string          `json:"url"`
	Description   string          `json:"description,omitempty"`
	Action        string          `json:"action"`
	SecretKey     string          `json:"secret_key"`
	Filters       json.RawMessage `json:"filters,omitempty"`
	OwnerClientID string          `json:"owner_client_id"`
	Type          string          `json:"type"`
}

type code struct {
	value, redirectURI, challenge, method string
	user                                  User
	expires                               time.Time
	used                                  bool
}

type token struct {
	access, refresh string
	user            User
	scopes          []string
	expires         time.Time
	revoked         bool
	viaRefresh      bool
}

// Fake is the pair of servers. Create with New; Close when done.
type Fake struct {
	Accounts *httptest.Server
	API      *httptest.Server

	cfg Config

	mu           sync.Mutex
	offset       time.Duration
	users        map[string]User
	signedIn     string
	codes        map[string]*code
	access       map[string]*token
	refresh      map[string]*token
	webhooks     []Webhook
	disabled     map[string]bool // organization -> license webhooks disabled
	agents       map[string][]Agent
	groups       map[string][]Group
	calls        map[string]int
	redirectLog  map[string][]time.Time // account -> authorize redirects
	installedOrg map[string]bool
	gone         []string            // secrets of unregistered webhooks, for Issued
	failures     map[string][]string // method -> error types to answer next
	holds        map[string]*hold    // method -> a call to stop before it is served
}

// FailNext makes the next n calls of a Configuration API method answer the
// error type typ (e.g. too_many_requests, internal) before anything else.
func (f *Fake) FailNext(method string, n int, typ string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := 0; i < n; i++ {
		f.failures[method] = append(f.failures[method], typ)
	}
}

// hold stops the n-th next call of a method until released.
type hold struct {
	n       int
	reached chan struct{}
	release chan struct{}
}

// Hold stops the n-th next call (n >= 1) of a Configuration API method
// before it is served, until release is called: reached is closed when that
// call arrives. Tests use it to interleave two clients at a known point.
// The held request also ends when its client gives up.
func (f *Fake) Hold(method string, n int) (reached <-chan struct{}, release func()) {
	h := &hold{n: n, reached: make(chan struct{}), release: make(chan struct{})}
	f.mu.Lock()
	f.holds[method] = h
	f.mu.Unlock()
	var once sync.Once
	return h.reached, func() { once.Do(func() { close(h.release) }) }
}

// waitHold blocks the call when it is the held one.
func (f *Fake) waitHold(r *http.Request, method string) {
	f.mu.Lock()
	h := f.holds[method]
	if h != nil {
		h.n--
		if h.n > 0 {
			h = nil
		} else {
			delete(f.holds, method)
		}
	}
	f.mu.Unlock()
	if h == nil {
		return
	}
	close(h.reached)
	select {
	case <-h.release:
	case <-r.Context().Done():
	}
}

// withDefaults fills the zero fields with the defaults documented on Config.
func (c Config) withDefaults() Config {
	if len(c.Scopes) == 0 {
		c.Scopes = DefaultScopes
	}
	c.AccessTokenTTL = cmp.Or(c.AccessTokenTTL, 8*time.Hour)
	c.CodeTTL = cmp.Or(c.CodeTTL, 5*time.Minute)
	c.Region = cmp.Or(c.Region, "dal")
	return c
}

// New starts the fake accounts service and Configuration API.
func New(cfg Config) *Fake {
	cfg = cfg.withDefaults()
	f := &Fake{
		cfg: cfg, users: map[string]User{}, codes: map[string]*code{}, access: map[string]*token{},
		refresh: map[string]*token{}, disabled: map[string]bool{}, agents: map[string][]Agent{},
		groups: map[string][]Group{}, calls: map[string]int{}, failures: map[string][]string{}, holds: map[string]*hold{}, installedOrg: map[string]bool{}, redirectLog: map[string][]time.Time{},
	}
	acc := http.NewServeMux()
	acc.HandleFunc("GET /{$}", f.authorize)
	acc.HandleFunc("GET /ooops", f.ooops)
	acc.HandleFunc("POST /v2/token", f.token)
	acc.HandleFunc("DELETE /v2/token", f.revoke)
	acc.HandleFunc("GET /v2/info", f.info)
	f.Accounts = httptest.NewServer(acc)
	api := http.NewServeMux()
	api.HandleFunc("POST /v3.6/configuration/action/{method}", f.action)
	f.API = httptest.NewServer(api)
	return f
}

// Close stops both servers.
func (f *Fake) Close() {
	f.Accounts.Close()
	f.API.Close()
}

// APIURL is the versioned Configuration/Agent API base (…/v3.6).
func (f *Fake) APIURL() string { return f.API.URL + "/v3.6" }

// SetAppWebhookURL sets where app webhooks are sent.
func (f *Fake) SetAppWebhookURL(u string) { f.mu.Lock(); f.cfg.AppWebhookURL = u; f.mu.Unlock() }

// Advance moves the fake's clock forward (expires tokens and codes).
func (f *Fake) Advance(d time.Duration) { f.mu.Lock(); f.offset += d; f.mu.Unlock() }

func (f *Fake) now() time.Time { return time.Now().Add(f.offset) }

// AddUser registers an account; SignIn makes it the signed-in browser user.
func (f *Fake) AddUser(u User) { f.mu.Lock(); f.users[u.AccountID] = u; f.mu.Unlock() }

// SetRole changes a user's role (owner, viceowner, administrator, normal);
// list_agents shows the new one at once, tokens already issued stay valid.
func (f *Fake) SetRole(accountID, role string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if u, ok := f.users[accountID]; ok {
		u.Role = role
		f.users[accountID] = u
	}
}

// SignIn makes accountID the user the authorize endpoint acts for ("" = nobody).
func (f *Fake) SignIn(accountID string) { f.mu.Lock(); f.signedIn = accountID; f.mu.Unlock() }

// SetAgents and SetGroups seed an organization's directory.
func (f *Fake) SetAgents(org string, a []Agent) { f.mu.Lock(); f.agents[org] = a; f.mu.Unlock() }
func (f *Fake) SetGroups(org string, g []Group) { f.mu.Lock(); f.groups[org] = g; f.mu.Unlock() }

// Webhooks returns the registrations of the client, secrets included.
func (f *Fake) Webhooks(clientID string) []Webhook {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Webhook
	for _, w := range f.webhooks {
		if w.OwnerClientID == clientID {
			out = append(out, w)
		}
	}
	return out
}

// LicenseWebhooksEnabled reports the license webhook state of an organization.
func (f *Fake) LicenseWebhooksEnabled(org string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.installedOrg[org] && !f.disabled[org]
}

// Issued returns every credential the fake ever handed out or was given:
// client secret, codes, access and refresh tokens, webhook secret keys. Tests
// grep their logs and error bodies for these.
func (f *Fake) Issued() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []string{f.cfg.ClientSecret}
	for c := range f.codes {
		out = append(out, c)
	}
	for _, t := range f.access {
		out = append(out, t.access, t.refresh)
	}
	for _, w := range f.webhooks {
		out = append(out, w.SecretKey)
	}
	return append(out, f.gone...)
}

// Calls returns how many times a Configuration API method or token grant
// ("token:authorization_code", "token:refresh_token") was called.
func (f *Fake) Calls(name string) int { f.mu.Lock(); defer f.mu.Unlock(); return f.calls[name] }

// ExpireAccessTokens makes every access token of the organization expired
// now, as if its 8 hours had passed (refresh tokens stay valid).
func (f *Fake) ExpireAccessTokens(org string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, t := range f.access {
		if t.user.OrganizationID == org {
			t.expires = f.now().Add(-time.Second)
		}
	}
}

// RevokeTokens revokes every access and refresh token of the organization
// while the app stays installed, as when a user revokes the app's access
// in their LiveChat account: API calls then fail with "authentication" and
// refreshes with invalid_grant.
func (f *Fake) RevokeTokens(org string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, t := range f.access {
		if t.user.OrganizationID == org {
			t.revoked = true
			delete(f.refresh, t.refresh)
		}
	}
}

// Uninstall revokes every token of the organization, as LiveChat does when
// a license removes the app, and sends the application_uninstalled app
// webhook when an AppWebhookURL is set. It returns the webhook's HTTP status
// (0 when none was sent).
func (f *Fake) Uninstall(ctx context.Context, org string) (int, error) {
	f.mu.Lock()
	var lic int64
	var account string
	for _, t := range f.access {
		if t.user.OrganizationID == org {
			t.revoked = true
			lic, account = t.user.LicenseID, t.user.AccountID
		}
	}
	delete(f.installedOrg, org)
	hook := f.cfg.AppWebhookURL
	f.mu.Unlock()
	if hook == "" {
		return 0, nil
	}
	body, _ := json.Marshal(map[string]any{
		"applicationID": "app-" + f.cfg.ClientID, "applicationName": "lcpipe analytics", "clientID": f.cfg.ClientID,
		"date": f.now().Format(time.RFC3339), "event": "application_uninstalled", "licenseID": lic,
		"organizationID": org, "payload": map[string]any{}, "userID": account,
	})
	return post(ctx, hook, body)
}

// Deliver sends a license webhook for action to every registration of that
// action (of any client) when the organization has the app installed and its
// license webhooks enabled, with the envelope of webhooks.md §3. It returns
// the HTTP status of each delivery.
func (f *Fake) Deliver(ctx context.Context, org, action string, payload any) ([]int, error) {
	f.mu.Lock()
	var targets []Webhook
	if f.installedOrg[org] && !f.disabled[org] {
		for _, w := range f.webhooks {
			if w.Action == action && w.Type == "license" {
				targets = append(targets, w)
			}
		}
	}
	f.mu.Unlock()
	var codes []int
	for _, w := range targets {
		body, _ := json.Marshal(map[string]any{
			"webhook_id": w.ID, "secret_key": w.SecretKey, "action": action, "organization_id": org,
			"payload": payload, "additional_data": map[string]any{},
		})
		c, err := post(ctx, w.URL, body)
		if err != nil {
			return codes, err
		}
		codes = append(codes, c)
	}
	return codes, nil
}

func post(ctx context.Context, u string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func random(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// ---- accounts service ----

func (f *Fake) ooopsRedirect(w http.ResponseWriter, r *http.Request, exception, details string) {
	q := url.Values{"oauth_exception": {exception}}
	if details != "" {
		q.Set("exception_details", details)
	}
	http.Redirect(w, r, "/ooops?"+q.Encode(), http.StatusFound)
}

func (f *Fake) ooops(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusBadRequest)
	fmt.Fprintf(w, "LiveChat accounts: oauth_exception=%s exception_details=%s\n",
		r.URL.Query().Get("oauth_exception"), r.URL.Query().Get("exception_details"))
}

// redirectAllowed applies oauth.md §3.5: same scheme and host, registered
// path a prefix of the requested one, no query or fragment, no traversal.
func (f *Fake) redirectAllowed(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.RawQuery != "" || u.Fragment != "" || strings.Contains(u.Path, "..") {
		return false
	}
	for _, reg := range f.cfg.RedirectURIs {
		ru, err := url.Parse(reg)
		if err != nil {
			continue
		}
		if ru.Scheme == u.Scheme && ru.Host == u.Host && strings.HasPrefix(u.Path, ru.Path) {
			return true
		}
	}
	return false
}

func adminRole(role string) bool {
	return role == "owner" || role == "viceowner" || role == "administrator"
}

func adminScope(s string) bool {
	return strings.HasPrefix(s, "webhooks") || strings.HasPrefix(s, "chats--all")
}

func (f *Fake) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f.mu.Lock()
	defer f.mu.Unlock()
	if q.Get("client_id") != f.cfg.ClientID {
		f.ooopsRedirect(w, r, "unauthorized_client", "client_id_not_found")
		return
	}
	redirect := q.Get("redirect_uri")
	if redirect == "" {
		f.ooopsRedirect(w, r, "invalid_request", "redirect_uri_not_set")
		return
	}
	if !f.redirectAllowed(redirect) {
		f.ooopsRedirect(w, r, "unauthorized_client", "invalid_redirect_uri")
		return
	}
	if q.Get("response_type") != "code" {
		f.ooopsRedirect(w, r, "unsupported_response_type", "")
		return
	}
	challenge, method := q.Get("code_challenge"), q.Get("code_challenge_method")
	if challenge != "" {
		if len(challenge) < 43 || len(challenge) > 128 {
			f.ooopsRedirect(w, r, "invalid_request", "")
			return
		}
		switch method {
		case "":
			method = "plain"
		case "S256", "s256":
			method = "S256"
		case "plain":
		default:
			f.ooopsRedirect(w, r, "invalid_request", "")
			return
		}
	}
	user, ok := f.users[f.signedIn]
	if !ok {
		// Not signed in: the accounts service would show its login page.
		http.Redirect(w, r, "/ooops?identity_exception=unauthorized", http.StatusFound)
		return
	}
	// Max 3 redirects to the OAuth server per 30 s per client per user.
	now := f.now()
	var recent []time.Time
	for _, t := range f.redirectLog[user.AccountID] {
		if now.Sub(t) < 30*time.Second {
			recent = append(recent, t)
		}
	}
	f.redirectLog[user.AccountID] = append(recent, now)
	if len(recent) >= 3 {
		f.ooopsRedirect(w, r, "invalid_request", "too_many_redirects")
		return
	}
	for _, s := range f.cfg.Scopes {
		if adminScope(s) && !adminRole(user.Role) && !f.cfg.AnyRoleGetsAdminScopes {
			f.ooopsRedirect(w, r, "invalid_scope", "")
			return
		}
	}
	c := &code{value: f.cfg.Region + ":" + random(18), redirectURI: redirect, challenge: challenge,
		method: method, user: user, expires: now.Add(f.cfg.CodeTTL)}
	f.codes[c.value] = c
	dest, _ := url.Parse(redirect)
	dq := url.Values{"code": {c.value}}
	if st := q.Get("state"); st != "" {
		dq.Set("state", st)
	}
	dest.RawQuery = dq.Encode()
	http.Redirect(w, r, dest.String(), http.StatusFound)
}

func tokenError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

func (f *Fake) mint(u User, viaRefresh bool) *token {
	t := &token{access: f.cfg.Region + ":" + random(24), refresh: random(24), user: u,
		scopes: slices.Clone(f.cfg.Scopes), expires: f.now().Add(f.cfg.AccessTokenTTL), viaRefresh: viaRefresh}
	f.access[t.access] = t
	f.refresh[t.refresh] = t
	if !f.installedOrg[u.OrganizationID] {
		// Authorizing the app installs it; license webhooks are enabled
		// automatically unless the license disabled them before.
		f.installedOrg[u.OrganizationID] = true
	}
	return t
}

func (f *Fake) tokenResponse(w http.ResponseWriter, t *token) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"access_token": t.access, "token_type": "Bearer", "expires_in": int(f.cfg.AccessTokenTTL / time.Second),
		"refresh_token": t.refresh, "scope": strings.Join(t.scopes, ","),
		"account_id": t.user.AccountID, "organization_id": t.user.OrganizationID,
	})
}

func (f *Fake) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		tokenError(w, http.StatusUnprocessableEntity, "invalid_request", "malformed form body")
		return
	}
	p := r.PostForm
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["token:"+p.Get("grant_type")]++
	if p.Get("client_id") != f.cfg.ClientID {
		tokenError(w, http.StatusUnauthorized, "unauthorized_client", "unknown client_id")
		return
	}
	if subtle.ConstantTimeCompare([]byte(p.Get("client_secret")), []byte(f.cfg.ClientSecret)) != 1 {
		tokenError(w, http.StatusUnauthorized, "invalid_client", "client authentication failed")
		return
	}
	switch p.Get("grant_type") {
	case "authorization_code":
		c, ok := f.codes[p.Get("code")]
		switch {
		case !ok:
			tokenError(w, http.StatusForbidden, "invalid_grant", "unknown authorization code")
			return
		case c.used:
			tokenError(w, http.StatusForbidden, "invalid_grant", "authorization code already used")
			return
		case f.now().After(c.expires):
			tokenError(w, http.StatusForbidden, "invalid_grant", "authorization code expired")
			return
		case p.Get("redirect_uri") != c.redirectURI:
			tokenError(w, http.StatusForbidden, "invalid_grant", "redirect_uri does not match the authorization request")
			return
		}
		if c.challenge != "" {
			v := p.Get("code_verifier")
			if v == "" {
				tokenError(w, http.StatusUnprocessableEntity, "invalid_request", "code_verifier is required")
				return
			}
			want := v
			if c.method == "S256" {
				sum := sha256.Sum256([]byte(v))
				want = base64.RawURLEncoding.EncodeToString(sum[:])
			}
			if subtle.ConstantTimeCompare([]byte(want), []byte(c.challenge)) != 1 {
				// A wrong verifier burns the code too (single use).
				c.used = true
				tokenError(w, http.StatusForbidden, "invalid_grant", "code_verifier does not match code_challenge")
				return
			}
		} else if p.Get("code_verifier") != "" {
			// OAuth 2.1 downgrade protection: a verifier for a code that was
			// requested without a challenge means the code was injected.
			c.used = true
			tokenError(w, http.StatusForbidden, "invalid_grant", "code_verifier sent for a code requested without code_challenge")
			return
		}
		c.used = true
		f.tokenResponse(w, f.mint(c.user, false))
	case "refresh_token":
		old, ok := f.refresh[p.Get("refresh_token")]
		if !ok || old.revoked {
			tokenError(w, http.StatusForbidden, "invalid_grant", "refresh token is invalid, expired or revoked")
			return
		}
		if f.cfg.KeepRefreshTokens {
			t := &token{access: f.cfg.Region + ":" + random(24), refresh: old.refresh, user: old.user,
				scopes: old.scopes, expires: f.now().Add(f.cfg.AccessTokenTTL), viaRefresh: true}
			f.access[t.access] = t
			f.refresh[t.refresh] = t
			f.tokenResponse(w, t)
			return
		}
		delete(f.refresh, old.refresh)
		t := f.mint(old.user, true)
		t.scopes = old.scopes
		f.tokenResponse(w, t)
	default:
		tokenError(w, http.StatusUnprocessableEntity, "unsupported_grant_type", "grant_type must be authorization_code or refresh_token")
	}
}

// bearer returns the token named by Authorization: Bearer or ?code=.
func bearer(r *http.Request) string {
	if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
		return strings.TrimPrefix(h, "Bearer ")
	}
	return r.URL.Query().Get("code")
}

func (f *Fake) revoke(w http.ResponseWriter, r *http.Request) {
	v := bearer(r)
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.access[v]
	if !ok {
		t, ok = f.refresh[v]
	}
	if !ok || t.revoked {
		tokenError(w, http.StatusNotFound, "not_found", "token not found")
		return
	}
	t.revoked = true
	delete(f.refresh, t.refresh)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte("{}"))
}

func (f *Fake) info(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.access[bearer(r)]
	if !ok || t.revoked || f.now().After(t.expires) {
		tokenError(w, http.StatusUnauthorized, "unauthorized", "invalid or expired access token")
		return
	}
	out := map[string]any{
		"access_token": t.access, "account_id": t.user.AccountID, "client_id": f.cfg.ClientID,
		"expires_in": int(t.expires.Sub(f.now()) / time.Second), "organization_id": t.user.OrganizationID,
		"scope": strings.Join(t.scopes, ","), "token_type": "Bearer",
	}
	if t.viaRefresh {
		out["refresh_token"] = t.refresh
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// ---- Configuration API ----

var errStatus = map[string]int{
	"validation": 400, "authentication": 401, "authorization": 403, "not_found": 404,
	"already_exists": 409, "limit_reached": 422, "too_many_requests": 429, "internal": 500,
}

func apiError(w http.ResponseWriter, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(errStatus[typ])
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"type": typ, "message": msg}})
}

func okJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// hasScope applies the scope rules of oauth.md §4: rw includes ro, and
// --all ⊇ --access ⊇ --my.
func hasScope(granted []string, need string) bool {
	for _, g := range granted {
		if g == need {
			return true
		}
		gn, gm, _ := strings.Cut(g, ":")
		nn, nm, _ := strings.Cut(need, ":")
		if !(gm == nm || (gm == "rw" && nm == "ro")) {
			continue
		}
		if gn == nn {
			return true
		}
		gb, gl, gok := strings.Cut(gn, "--")
		nb, nl, nok := strings.Cut(nn, "--")
		rank := map[string]int{"my": 1, "access": 2, "groups": 2, "all": 3}
		if gok && nok && gb == nb && rank[gl] >= rank[nl] && rank[nl] > 0 {
			return true
		}
	}
	return false
}

var methodScope = map[string]string{
	"register_webhook": "webhooks.configuration:rw", "list_webhooks": "webhooks.configuration:rw",
	"unregister_webhook": "webhooks.configuration:rw", "enable_license_webhooks": "webhooks.state:rw",
	"disable_license_webhooks": "webhooks.state:rw", "get_license_webhooks_state": "webhooks.state:ro",
	"list_agents": "agents--all:ro", "list_groups": "groups--all:ro", "list_webhook_names": "",
}

func (f *Fake) action(w http.ResponseWriter, r *http.Request) {
	method := r.PathValue("method")
	scope, known := methodScope[method]
	if !known {
		apiError(w, "not_found", "unknown method "+method)
		return
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		apiError(w, "validation", "Content-Type must be application/json")
		return
	}
	var body map[string]json.RawMessage
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&body); err != nil {
		apiError(w, "validation", "request body is not a JSON object")
		return
	}
	f.waitHold(r, method)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[method]++
	if q := f.failures[method]; len(q) > 0 {
		f.failures[method] = q[1:]
		apiError(w, q[0], "injected "+q[0])
		return
	}
	if method == "list_webhook_names" {
		okJSON(w, webhookNames())
		return
	}
	t, ok := f.access[bearer(r)]
	switch {
	case !ok || t.revoked:
		apiError(w, "authentication", "Invalid access token")
		return
	case f.now().After(t.expires):
		apiError(w, "authentication", "Access token expired")
		return
	case !hasScope(t.scopes, scope):
		apiError(w, "authorization", "Missing scope: "+scope)
		return
	}
	if rr := f.cfg.RequiredRegion; rr != "" && r.Header.Get("X-Region") != rr {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusMisdirectedRequest)
		_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
			"type": "misdirected_request", "message": "Wrong region", "data": map[string]string{"region": rr}}})
		return
	}
	org := t.user.OrganizationID
	str := func(k string) string {
		var s string
		if raw, ok := body[k]; ok {
			_ = json.Unmarshal(raw, &s)
		}
		return s
	}
	ownerOK := func() bool {
		id := str("owner_client_id")
		if id != f.cfg.ClientID || org != f.cfg.OwnerOrganizationID {
			apiError(w, "authorization", "owner_client_id does not belong to your organization")
			return false
		}
		return true
	}
	switch method {
	case "register_webhook":
		for _, k := range []string{"action", "secret_key", "url", "owner_client_id", "type"} {
			if str(k) == "" {
				apiError(w, "validation", "`"+k+"` is required")
				return
			}
		}
		if !ownerOK() {
			return
		}
		action := str("action")
		allowed, ok := actionFilters[action]
		if !ok {
			apiError(w, "validation", "`action` is not a valid webhook action: "+action)
			return
		}
		if typ := str("type"); typ != "license" && typ != "bot" {
			apiError(w, "validation", "`type` must be license or bot")
			return
		}
		if len(str("url")) > 500 {
			apiError(w, "validation", "`url` is longer than 500 characters")
			return
		}
		if u, err := url.Parse(str("url")); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			apiError(w, "validation", "`url` is not a valid URL")
			return
		}
		if raw, ok := body["filters"]; ok {
			var filters map[string]json.RawMessage
			if err := json.Unmarshal(raw, &filters); err != nil {
				apiError(w, "validation", "`filters` must be an object")
				return
			}
			for k := range filters {
				if !slices.Contains(allowed, k) {
					apiError(w, "validation", "filter `"+k+"` is not supported for action "+action)
					return
				}
			}
		}
		n := 0
		for _, h := range f.webhooks {
			if h.OwnerClientID == f.cfg.ClientID && h.Action == action {
				n++
			}
		}
		if n >= 3 {
			apiError(w, "limit_reached", "at most 3 webhooks per action per Client ID")
			return
		}
		h := Webhook{ID: strings.ToLower(random(24))[:25], URL: str("url"), Description: str("description"),
			Action: action, SecretKey: str("secret_key"), Filters: body["filters"],
			OwnerClientID: str("owner_client_id"), Type: str("type")}
		f.webhooks = append(f.webhooks, h)
		okJSON(w, map[string]string{"id": h.ID})
	case "list_webhooks":
		if str("owner_client_id") == "" {
			apiError(w, "validation", "`owner_client_id` is required")
			return
		}
		if !ownerOK() {
			return
		}
		type listed struct {
			ID            string          `json:"id"`
			URL           string          `json:"url"`
			Description   string          `json:"description"`
			Action        string          `json:"action"`
			Filters       json.RawMessage `json:"filters,omitempty"`
			OwnerClientID string          `json:"owner_client_id"`
			Type          string          `json:"type"`
		}
		out := []listed{}
		for _, h := range f.webhooks {
			if h.OwnerClientID == f.cfg.ClientID {
				out = append(out, listed{h.ID, h.URL, h.Description, h.Action, h.Filters, h.OwnerClientID, h.Type})
			}
		}
		okJSON(w, out)
	case "unregister_webhook":
		if str("id") == "" || str("owner_client_id") == "" {
			apiError(w, "validation", "`id` and `owner_client_id` are required")
			return
		}
		if !ownerOK() {
			return
		}
		i := slices.IndexFunc(f.webhooks, func(h Webhook) bool { return h.ID == str("id") && h.OwnerClientID == f.cfg.ClientID })
		if i < 0 {
			apiError(w, "not_found", "Webhook not found")
			return
		}
		f.gone = append(f.gone, f.webhooks[i].SecretKey)
		f.webhooks = slices.Delete(f.webhooks, i, i+1)
		okJSON(w, struct{}{})
	case "enable_license_webhooks", "disable_license_webhooks", "get_license_webhooks_state":
		if id := str("owner_client_id"); id != "" && id != f.cfg.ClientID {
			apiError(w, "authorization", "owner_client_id does not belong to your organization")
			return
		}
		switch method {
		case "enable_license_webhooks":
			delete(f.disabled, org)
			okJSON(w, struct{}{})
		case "disable_license_webhooks":
			f.disabled[org] = true
			okJSON(w, struct{}{})
		default:
			okJSON(w, map[string]bool{"license_webhooks_enabled": f.installedOrg[org] && !f.disabled[org]})
		}
	case "list_agents":
		okJSON(w, f.listAgents(org))
	case "list_groups":
		out := slices.Clone(f.groups[org])
		if out == nil {
			out = []Group{}
		}
		okJSON(w, out)
	}
}

// listAgents is the organization's agents: those set with SetAgents and
// every user of the organization (a LiveChat user is an agent of its
// license), with their current role.
func (f *Fake) listAgents(org string) []Agent {
	out := slices.Clone(f.agents[org])
	if out == nil {
		out = []Agent{}
	}
	ids := make([]string, 0, len(f.users))
	for id := range f.users {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		u := f.users[id]
		if u.OrganizationID != org || slices.ContainsFunc(out, func(a Agent) bool { return a.AccountID == u.AccountID }) {
			continue
		}
		name := u.Name
		if name == "" {
			name = u.Email
		}
		out = append(out, Agent{ID: u.Email, AccountID: u.AccountID, Name: name, Role: u.Role, LoginStatus: "accepting chats"})
	}
	return out
}

var (
	chatFilters  = []string{"chat_presence", "only_my_chats", "source_type"}
	eventFilters = []string{"chat_presence", "author_type", "only_my_chats", "source_type"}
)

// actionFilters is the v3.6 action catalogue with the filters each allows
// (configuration-api.md §3.1.1).
var actionFilters = func() map[string][]string {
	m := map[string][]string{}
	for _, a := range []string{"incoming_chat", "chat_deactivated", "chat_access_updated", "chat_transferred",
		"user_added_to_chat", "user_removed_from_chat", "event_deleted", "incoming_rich_message_postback",
		"chat_properties_updated", "chat_properties_deleted", "thread_properties_updated", "thread_properties_deleted",
		"event_properties_updated", "event_properties_deleted", "thread_tagged", "thread_untagged",
		"events_marked_as_seen", "thread_summary_set"} {
		m[a] = chatFilters
	}
	m["incoming_event"], m["event_updated"] = eventFilters, eventFilters
	m["routing_status_set"] = []string{"agent_ids", "source_type"}
	m["customer_session_fields_updated"] = []string{"chat_presence", "source_type"}
	for _, a := range []string{"group_created", "group_updated", "group_deleted", "agent_created", "agent_updated",
		"agent_deleted", "agent_suspended", "agent_unsuspended", "agent_approved", "bot_created", "bot_updated",
		"bot_deleted", "auto_accesses_updated", "tag_created", "tag_deleted", "tag_updated"} {
		m[a] = []string{"source_type"}
	}
	return m
}()

func webhookNames() []map[string]any {
	names := make([]string, 0, len(actionFilters))
	for a := range actionFilters {
		names = append(names, a)
	}
	sort.Strings(names)
	out := make([]map[string]any, 0, len(names))
	for _, a := range names {
		e := map[string]any{"action": a, "filters": actionFilters[a]}
		if slices.Contains(actionFilters[a], "chat_presence") || a == "routing_status_set" {
			e["additional_data"] = []string{"chat_properties", "chat_presence_user_ids"}
		}
		out = append(out, e)
	}
	return out
}
