package lcapp

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"golang.org/x/oauth2"

	"github.com/lcpipe/lcpipe/internal/secret"
)

const (
	sessionCookie = "lcapp_session"
	// pendingTTL bounds a sign-in between the redirect to LiveChat and the
	// callback (codes live a few minutes at LiveChat too).
	pendingTTL = 10 * time.Minute
	// maxSessions bounds memory if someone opens the page in a loop.
	maxSessions = 10000
)

// session is one browser's state, found by the random id in its cookie.
// The OAuth state and PKCE verifier live here, never in the browser, so a
// callback is accepted only from the browser that started the sign-in.
type session struct {
	seen    time.Time
	pending *pending
	org     string // organization this browser signed in to
	account string // LiveChat account that signed in (an administrator of org then)
	csrf    string // token of the uninstall form
	flash   string
}

type pending struct {
	state, verifier string
	at              time.Time
}

type sessions struct {
	mu  sync.Mutex
	m   map[string]*session
	ttl time.Duration
	now func() time.Time
	// path of the cookie: the settings path under PUBLIC_BASE_URL's own
	// path, which a reverse proxy strips before ingest sees the request
	// (a browser sends a cookie back only below the path it was set for).
	path string
}

func newSessions(ttl time.Duration, now func() time.Time, path string) *sessions {
	return &sessions{m: map[string]*session{}, ttl: ttl, now: now, path: path}
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// lookup returns the session of the request's cookie, or nil.
func (s *sessions) lookup(c *fiber.Ctx) *session {
	id := c.Cookies(sessionCookie)
	if id == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.m[id]
	if !ok || s.now().Sub(ss.seen) > s.ttl {
		delete(s.m, id)
		return nil
	}
	ss.seen = s.now()
	return ss
}

// create starts a new session and sets its cookie.
func (s *sessions) create(c *fiber.Ctx, secure bool) *session {
	id := randomToken()
	ss := &session{seen: s.now(), csrf: randomToken()}
	s.mu.Lock()
	if len(s.m) >= maxSessions {
		for k, v := range s.m {
			if s.now().Sub(v.seen) > s.ttl || len(s.m) >= maxSessions {
				delete(s.m, k)
			}
		}
	}
	s.m[id] = ss
	s.mu.Unlock()
	ck := &fiber.Cookie{Name: sessionCookie, Value: id, Path: s.path, HTTPOnly: true, SameSite: fiber.CookieSameSiteLaxMode}
	if secure {
		// The settings page is framed by the Agent App: a cross-site iframe
		// sends the cookie only with SameSite=None, which requires Secure.
		ck.Secure, ck.SameSite = true, fiber.CookieSameSiteNoneMode
	}
	c.Cookie(ck)
	return ss
}

// rotate gives the request's session a new id (and cookie) and forgets the
// old one: done when a browser becomes signed in, so an id planted or seen
// before sign-in is worth nothing afterwards.
func (s *sessions) rotate(c *fiber.Ctx, secure bool, old *session) *session {
	ns := s.create(c, secure)
	s.mu.Lock()
	for id, v := range s.m {
		if v == old {
			delete(s.m, id)
		}
	}
	ns.flash = old.flash
	s.mu.Unlock()
	return ns
}

func (s *sessions) update(fn func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn()
}

func (a *App) secureCookies() bool { return strings.HasPrefix(a.cfg.PublicBaseURL, "https://") }

// signIn starts the authorization code grant: a fresh state and PKCE
// verifier bound to this browser's session, then the redirect to LiveChat.
func (a *App) signIn(c *fiber.Ctx) error {
	ss := a.sessions.lookup(c)
	if ss == nil {
		ss = a.sessions.create(c, a.secureCookies())
	}
	p := &pending{state: randomToken(), verifier: oauth2.GenerateVerifier(), at: a.cfg.Now()}
	a.sessions.update(func() { ss.pending = p })
	c.Set("Cache-Control", "no-store")
	return c.Redirect(a.oauth.AuthCodeURL(p.state, oauth2.S256ChallengeOption(p.verifier)), http.StatusFound)
}

// callbackError is a refused callback: the status and what the user sees.
type callbackError struct {
	status int
	msg    string
}

func (e *callbackError) Error() string { return e.msg }

// callback finishes the grant. Every check happens before anything is
// stored: the browser must hold the session that started the sign-in, the
// state must match it (CSRF), the code is exchanged with the session's PKCE
// verifier and the client secret, and the token must belong to our Client ID.
func (a *App) callback(c *fiber.Ctx) error {
	who, err := a.finishSignIn(c)
	org := who.org
	if err != nil {
		var ce *callbackError
		if !errors.As(err, &ce) {
			ce = &callbackError{status: http.StatusInternalServerError, msg: "sign-in failed: " + err.Error()}
		}
		a.log.Warn("sign-in refused", "reason", ce.msg, "status", ce.status)
		return a.fail(c, ce.status, ce.msg)
	}
	ss := a.sessions.lookup(c)
	res, rerr := a.Reconcile(c.UserContext(), org)
	msg := ""
	if rerr != nil {
		msg = "Connected, but setting up webhooks failed: " + rerr.Error()
		a.log.Warn("install: reconcile failed", "organization_id", org, "err", rerr)
	} else if res.Registration != "" {
		msg = "Connected, but this organization cannot register the app's webhooks: " + res.Registration
	}
	_ = a.store.modifyInstallation(org, func(r *installationRecord) { r.LastError = msg })
	a.refreshDirectory(c.UserContext(), org)
	if ss != nil {
		ss = a.sessions.rotate(c, a.secureCookies(), ss)
		a.sessions.update(func() { ss.org, ss.account, ss.flash = org, who.account, msg })
	}
	return c.Redirect(a.basePath()+SettingsPath, http.StatusSeeOther)
}

func (a *App) finishSignIn(c *fiber.Ctx) (signedIn, error) {
	ss := a.sessions.lookup(c)
	if ss == nil {
		return signedIn{}, &callbackError{http.StatusBadRequest, "no sign-in was started from this browser (session cookie missing or expired): open the settings page and click Sign in with LiveChat again; nothing was stored"}
	}
	var p *pending
	a.sessions.update(func() { p, ss.pending = ss.pending, nil }) // single use
	if p == nil || a.cfg.Now().Sub(p.at) > pendingTTL {
		return signedIn{}, &callbackError{http.StatusBadRequest, "no sign-in is in progress for this browser (already completed or expired): start again; nothing was stored"}
	}
	if e := c.Query("error"); e != "" {
		return signedIn{}, &callbackError{http.StatusBadRequest, "LiveChat refused the authorization: " + strings.Clone(e) + "; nothing was stored"}
	}
	state := c.Query("state")
	if subtle.ConstantTimeCompare([]byte(state), []byte(p.state)) != 1 {
		return signedIn{}, &callbackError{http.StatusBadRequest, "the state parameter does not match the sign-in started from this browser (possible cross-site request forgery); nothing was stored"}
	}
	code := strings.Clone(c.Query("code"))
	if code == "" {
		return signedIn{}, &callbackError{http.StatusBadRequest, "the callback carries no authorization code; nothing was stored"}
	}
	ctx := a.ctx(c.UserContext())
	tok, err := a.oauth.Exchange(ctx, code, oauth2.VerifierOption(p.verifier))
	if err != nil {
		status := http.StatusBadGateway
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode != "" {
			status = http.StatusBadRequest
		}
		return signedIn{}, &callbackError{status, "LiveChat did not accept the authorization code (" + describeOAuthError(err) + "); nothing was stored"}
	}
	org, _ := tok.Extra("organization_id").(string)
	if org == "" {
		return signedIn{}, &callbackError{http.StatusBadGateway, "the token response has no organization_id; nothing was stored"}
	}
	ti, err := a.info(ctx, secret.Secret(tok.AccessToken))
	if err != nil {
		return signedIn{}, &callbackError{http.StatusBadGateway, "could not validate the new token at LiveChat accounts: " + err.Error() + "; nothing was stored"}
	}
	account, _ := tok.Extra("account_id").(string)
	if ti.ClientID != a.cfg.ClientID || ti.OrganizationID != org || ti.AccountID != account {
		return signedIn{}, &callbackError{http.StatusBadRequest, "the token was issued to another app, organization or account; nothing was stored"}
	}
	// Only an administrator may connect (or re-connect) the organization:
	// the token stored is the one every later call uses.
	role, err := a.administratorByToken(ctx, secret.Secret(tok.AccessToken), account)
	if err != nil {
		a.revokeQuietly(ctx, secret.Secret(tok.AccessToken))
		if errors.Is(err, ErrNotAdministrator) {
			return signedIn{}, &callbackError{http.StatusForbidden, "your LiveChat account is " + err.Error() + " " + org +
				": only its owner, vice owners and administrators may connect it; nothing was stored"}
		}
		status := http.StatusBadGateway
		if IsAPIError(err, "authorization") {
			status = http.StatusForbidden // the app's scopes lack agents--all:ro: fix the app, not a retry
		}
		return signedIn{}, &callbackError{status, err.Error() + "; nothing was stored"}
	}
	scope, _ := tok.Extra("scope").(string)
	now := a.cfg.Now()
	rec := &installationRecord{
		OrganizationID: org, AccountID: account, Region: regionOf(tok.AccessToken, ""), Scopes: splitScopes(scope),
		AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, TokenType: tok.TokenType, Expiry: tok.Expiry,
		InstalledAt: now,
	}
	if old, err := a.store.loadInstallation(org); err == nil && old != nil {
		rec.LicenseID, rec.LastWebhookAt, rec.LastWebhookName = old.LicenseID, old.LastWebhookAt, old.LastWebhookName
	}
	if err := a.store.saveInstallation(rec); err != nil {
		return signedIn{}, err
	}
	a.secrets.invalidate()
	a.log.Info("organization signed in; tokens stored encrypted", "organization_id", org, "account_id", account, "role", role, "scopes", scope)
	return signedIn{org: org, account: account}, nil
}

type signedIn struct{ org, account string }

// revokeQuietly revokes a token the app will not keep (best effort).
func (a *App) revokeQuietly(ctx context.Context, token secret.Secret) {
	if err := a.revoke(ctx, token); err != nil {
		a.log.Warn("could not revoke a token that is not kept", "err", err)
	}
}

// uninstall is the settings page's explicit "Disconnect" action.
func (a *App) uninstall(c *fiber.Ctx) error {
	ss := a.sessions.lookup(c)
	if ss == nil || ss.org == "" {
		return a.fail(c, http.StatusForbidden, "this browser is not signed in to an organization")
	}
	if subtle.ConstantTimeCompare([]byte(c.FormValue("csrf")), []byte(ss.csrf)) != 1 {
		return a.fail(c, http.StatusForbidden, "the form token does not match this browser's session")
	}
	org := ss.org
	// The role is checked again: it may have changed since sign-in.
	if _, err := a.administratorOf(c.UserContext(), org, ss.account); err != nil {
		status, msg := http.StatusBadGateway, "Disconnect refused: "+err.Error()+"; try again"
		switch {
		case errors.Is(err, ErrNotAdministrator):
			status, msg = http.StatusForbidden, "Disconnect refused: your LiveChat account is no longer an administrator of organization "+org
		case errors.Is(err, ErrReauthorize):
			status, msg = http.StatusForbidden, "Disconnect refused: LiveChat rejects the stored grant, so your role cannot be checked: sign in again, then disconnect"
		case IsAPIError(err, "authorization"):
			status = http.StatusForbidden
		}
		a.log.Warn("disconnect refused", "organization_id", org, "account_id", ss.account, "err", err)
		return a.fail(c, status, msg)
	}
	err := a.Uninstall(c.UserContext(), org)
	flash := "Disconnected organization " + org + "."
	if err != nil && !errors.Is(err, ErrNotInstalled) {
		flash += " Some steps at LiveChat failed: " + err.Error()
	}
	a.sessions.update(func() { ss.org, ss.flash = "", flash })
	return c.Redirect(a.basePath()+SettingsPath, http.StatusSeeOther)
}
