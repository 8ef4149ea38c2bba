package lcapp

import (
	"cmp"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/lcpipe/lcpipe/internal/secret"
)

// SignInFlow is "Sign in with LiveChat" for another web front of the
// project (the built-in dashboards): the settings page's OAuth 2.1
// authorization code grant with PKCE (S256) and a state bound to the
// browser, the token validated at /v2/info for our Client ID, and the
// administrator check (list_agents) — then the token is revoked. The front
// only learns which organization the account administers; nothing is
// stored, no installation is touched. It is net/http (the dashboards are
// not a Fiber app) and safe for concurrent use.
type SignInFlow struct {
	app    *App
	oauth  *oauth2.Config
	cookie http.Cookie // template of the pending sign-in cookie

	mu      sync.Mutex
	pending map[string]*pending
}

// SignInError is a refused sign-in: Status is the HTTP status to answer,
// the message says why (never a credential).
type SignInError struct {
	Status int
	Msg    string
}

func (e *SignInError) Error() string { return e.Msg }

// StatusCode is the HTTP status to answer.
func (e *SignInError) StatusCode() int { return e.Status }

const signInCookie = "lcapp_signin"

// NewSignInFlow builds the flow from the app's configuration; only the
// OAuth part is needed (ClientID, ClientSecret, AccountsURL, APIURL,
// HTTPTimeout, HTTPClient): no store, no encryption key. redirectURL is the
// front's callback (absolute; it must be on the app's redirect whitelist in
// the Developer Console); the pending sign-in cookie is scoped to its path
// and Secure when it is https. Zero fields of cfg take their defaults; a nil
// log discards.
func NewSignInFlow(cfg Config, redirectURL string, log *slog.Logger) (*SignInFlow, error) {
	cfg = cfg.withDefaults()
	var errs []error
	if cfg.ClientID == "" {
		errs = append(errs, errors.New("lcapp: client id is empty (LIVECHAT_CLIENT_ID)"))
	}
	if cfg.ClientSecret == "" {
		errs = append(errs, errors.New("lcapp: client secret is empty (LIVECHAT_CLIENT_SECRET)"))
	}
	for name, v := range map[string]string{"redirect URL": redirectURL, "LIVECHAT_ACCOUNTS_URL": cfg.AccountsURL, "LIVECHAT_API_URL": cfg.APIURL} {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
			errs = append(errs, fmt.Errorf("lcapp: %s=%q is not an absolute http(s) URL without query", name, v))
		}
	}
	if cfg.HTTPTimeout <= 0 {
		errs = append(errs, errors.New("lcapp: http timeout must be positive"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	log = cmp.Or(log, slog.New(slog.DiscardHandler))
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: cfg.HTTPTimeout}
	}
	// An App without a store: only the LiveChat calls (info, revoke,
	// postToken) are used, none that reads or writes installations.
	a := &App{cfg: cfg, log: log, http: hc}
	u, _ := url.Parse(redirectURL)
	return &SignInFlow{
		app: a,
		oauth: &oauth2.Config{
			ClientID:     cfg.ClientID,
			ClientSecret: cfg.ClientSecret.Reveal(),
			Endpoint: oauth2.Endpoint{
				AuthURL:   strings.TrimRight(cfg.AccountsURL, "/") + "/",
				TokenURL:  strings.TrimRight(cfg.AccountsURL, "/") + "/v2/token",
				AuthStyle: oauth2.AuthStyleInParams,
			},
			RedirectURL: redirectURL,
		},
		cookie:  http.Cookie{Name: signInCookie, Path: u.Path, HttpOnly: true, Secure: u.Scheme == "https", SameSite: http.SameSiteLaxMode},
		pending: map[string]*pending{},
	}, nil
}

// Start begins a sign-in: a fresh state and PKCE verifier kept server-side
// under a random id in a short-lived cookie, then the redirect to LiveChat.
func (f *SignInFlow) Start(w http.ResponseWriter, r *http.Request) {
	id := randomToken()
	p := &pending{state: randomToken(), verifier: oauth2.GenerateVerifier(), at: f.app.cfg.Now()}
	f.mu.Lock()
	for k, v := range f.pending {
		if f.app.cfg.Now().Sub(v.at) > pendingTTL || len(f.pending) >= maxSessions {
			delete(f.pending, k)
		}
	}
	f.pending[id] = p
	f.mu.Unlock()
	ck := f.cookie
	ck.Value, ck.MaxAge = id, int(pendingTTL/time.Second)
	http.SetCookie(w, &ck)
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, f.oauth.AuthCodeURL(p.state, oauth2.S256ChallengeOption(p.verifier)), http.StatusFound)
}

// Finish completes the sign-in at the callback: the browser must hold the
// pending sign-in (single use), the state must match it, the code is
// exchanged with its verifier and the client secret, the token must belong
// to our Client ID and name the account, and the account must administer
// the organization. The token is revoked either way. Errors are
// *SignInError.
func (f *SignInFlow) Finish(w http.ResponseWriter, r *http.Request) (organizationID, accountID string, err error) {
	ck, cerr := r.Cookie(signInCookie)
	var p *pending
	if cerr == nil {
		f.mu.Lock()
		p = f.pending[ck.Value]
		delete(f.pending, ck.Value)
		f.mu.Unlock()
	}
	gone := f.cookie
	gone.MaxAge = -1
	http.SetCookie(w, &gone)
	if p == nil || f.app.cfg.Now().Sub(p.at) > pendingTTL {
		return "", "", &SignInError{http.StatusBadRequest, "no sign-in is in progress for this browser (expired or already used): start again"}
	}
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		return "", "", &SignInError{http.StatusBadRequest, "LiveChat refused the authorization: " + e}
	}
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(p.state)) != 1 {
		return "", "", &SignInError{http.StatusBadRequest, "the state parameter does not match the sign-in started from this browser (possible cross-site request forgery)"}
	}
	code := q.Get("code")
	if code == "" {
		return "", "", &SignInError{http.StatusBadRequest, "the callback carries no authorization code"}
	}
	ctx := context.WithValue(r.Context(), oauth2.HTTPClient, f.app.http)
	tok, err := f.oauth.Exchange(ctx, code, oauth2.VerifierOption(p.verifier))
	if err != nil {
		return "", "", &SignInError{http.StatusBadGateway, "LiveChat did not accept the authorization code (" + describeOAuthError(err) + ")"}
	}
	access := secret.Secret(tok.AccessToken)
	// The front keeps nothing: the token goes back whatever happens next.
	defer f.app.revokeQuietly(context.WithoutCancel(ctx), access)
	org, _ := tok.Extra("organization_id").(string)
	account, _ := tok.Extra("account_id").(string)
	ti, err := f.app.info(ctx, access)
	if err != nil {
		return "", "", &SignInError{http.StatusBadGateway, "could not validate the token at LiveChat accounts: " + err.Error()}
	}
	if org == "" || ti.ClientID != f.app.cfg.ClientID || ti.OrganizationID != org || ti.AccountID != account {
		return "", "", &SignInError{http.StatusBadRequest, "the token was issued to another app, organization or account"}
	}
	if _, err := f.app.administratorByToken(ctx, access, account); err != nil {
		if errors.Is(err, ErrNotAdministrator) {
			return "", "", &SignInError{http.StatusForbidden, "your LiveChat account is " + err.Error() + " " + org + ": only its owner, vice owners and administrators may sign in"}
		}
		status := http.StatusBadGateway
		if IsAPIError(err, "authorization") {
			status = http.StatusForbidden
		}
		return "", "", &SignInError{status, err.Error()}
	}
	f.app.log.Info("signed in with LiveChat", "organization_id", org, "account_id", account)
	return org, account, nil
}
