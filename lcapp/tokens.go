package lcapp

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/oauth2"
)

// Errors of the token layer.
var (
	// ErrNotInstalled: no stored installation for the organization.
	ErrNotInstalled = errors.New("the app is not installed for this organization (sign in on the settings page)")
	// ErrReauthorize: LiveChat rejected the refresh token (invalid_grant);
	// an administrator must sign in again on the settings page.
	ErrReauthorize = errors.New("LiveChat rejected the stored refresh token (invalid_grant): the token expired or was revoked; an administrator must sign in again on the settings page")
)

// refreshEarly refreshes a token this long before it expires, so a call
// never starts with a token about to die in flight.
const refreshEarly = time.Minute

// tokens hands out valid access tokens per organization, refreshing and
// persisting them. Refreshes are serialized per organization in the process
// and, with a file lock beside the store, across the processes sharing it
// (ingest, processor, CLI): LiveChat rotates refresh tokens, so two processes
// refreshing with the same one would make the second fail with invalid_grant
// and wrongly mark the installation for re-authorization. Under both locks
// the store is re-read first, so a token another process rotated is used.
type tokens struct {
	app   *App
	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

func (t *tokens) lock(org string) *sync.Mutex {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.locks[org]
	if !ok {
		l = &sync.Mutex{}
		t.locks[org] = l
	}
	return l
}

func (t *tokens) valid(rec *installationRecord) bool {
	return rec.AccessToken != "" && t.app.cfg.Now().Add(refreshEarly).Before(rec.Expiry)
}

// token returns a usable access token for the organization. stale, when not
// empty, is an access token the API just refused: it is refreshed even if
// its expiry says it is still valid.
func (t *tokens) token(ctx context.Context, org, stale string) (*installationRecord, error) {
	rec, err := t.app.store.loadInstallation(org)
	if err != nil {
		return nil, err
	}
	if rec == nil {
		return nil, ErrNotInstalled
	}
	if rec.NeedsReauth {
		return nil, ErrReauthorize
	}
	if t.valid(rec) && rec.AccessToken != stale {
		return rec, nil
	}
	l := t.lock(org)
	l.Lock()
	defer l.Unlock()
	unlock, err := lockFile(ctx, t.app.store.path+".refresh.lock", nil)
	if err != nil {
		return nil, fmt.Errorf("lcapp: refresh token for organization %s: %w", org, err)
	}
	defer unlock()
	for attempt := 0; ; attempt++ {
		// Re-read: another goroutine or process may have refreshed meanwhile.
		rec, err = t.app.store.loadInstallation(org)
		if err != nil {
			return nil, err
		}
		if rec == nil {
			return nil, ErrNotInstalled
		}
		if t.valid(rec) && rec.AccessToken != stale {
			return rec, nil
		}
		used := rec.RefreshToken
		tok, err := t.app.oauth.TokenSource(t.app.ctx(ctx), &oauth2.Token{RefreshToken: used}).Token()
		if err != nil {
			var re *oauth2.RetrieveError
			if errors.As(err, &re) && re.ErrorCode == "invalid_grant" {
				cur, lerr := t.app.store.loadInstallation(org)
				if lerr == nil && cur != nil && cur.RefreshToken != used && attempt == 0 {
					continue // rotated by another process: use the new one
				}
				t.app.log.Warn("refresh token rejected; installation needs re-authorization", "organization_id", org)
				_ = t.app.store.modifyInstallation(org, func(r *installationRecord) {
					if r.RefreshToken == used {
						r.NeedsReauth, r.LastError = true, ErrReauthorize.Error()
					}
				})
				return nil, ErrReauthorize
			}
			return nil, fmt.Errorf("lcapp: refresh token for organization %s: %s", org, describeOAuthError(err))
		}
		var saved *installationRecord
		err = t.app.store.modifyInstallation(org, func(r *installationRecord) {
			r.AccessToken, r.Expiry, r.RefreshedAt = tok.AccessToken, tok.Expiry, t.app.cfg.Now()
			if tok.RefreshToken != "" {
				r.RefreshToken = tok.RefreshToken
			}
			if tok.TokenType != "" {
				r.TokenType = tok.TokenType
			}
			if s, _ := tok.Extra("scope").(string); s != "" {
				r.Scopes = splitScopes(s)
			}
			if r.Region == "" {
				r.Region = regionOf(tok.AccessToken, "")
			}
			r.LastError = ""
			cp := *r
			saved = &cp
		})
		if err != nil {
			// The refreshed token exists only in memory now; a rotated refresh
			// token would be lost with it, so say so loudly.
			return nil, fmt.Errorf("lcapp: persist refreshed token for organization %s: %w", org, err)
		}
		if saved == nil {
			return nil, ErrNotInstalled // uninstalled while refreshing
		}
		t.app.log.Info("access token refreshed and persisted", "organization_id", org, "expiry", saved.Expiry)
		return saved, nil
	}
}

// lockFile takes an exclusive flock on path (created when missing), waiting
// until it is free or ctx ends; waited, when not nil, is called once when it
// has to wait. Refreshes and reconciles are rare, so polling is cheap and
// keeps the wait cancellable.
func lockFile(ctx context.Context, path string, waited func()) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	for first := true; ; first = false {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if first && waited != nil {
			waited()
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for lock %s: %w", path, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TokenSource returns an oauth2.TokenSource for the organization whose
// refreshed tokens are written back to the store. ctx bounds every refresh.
func (a *App) TokenSource(ctx context.Context, organizationID string) oauth2.TokenSource {
	return &persistingSource{ctx: ctx, app: a, org: organizationID}
}

type persistingSource struct {
	ctx context.Context
	app *App
	org string
}

func (s *persistingSource) Token() (*oauth2.Token, error) {
	rec, err := s.app.tokens.token(s.ctx, s.org, "")
	if err != nil {
		return nil, err
	}
	return &oauth2.Token{AccessToken: rec.AccessToken, TokenType: "Bearer", RefreshToken: rec.RefreshToken, Expiry: rec.Expiry}, nil
}

// describeOAuthError turns an oauth2 error into text without the response
// body (which oauth2 includes for non-standard errors).
func describeOAuthError(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		if re.ErrorCode != "" {
			d := re.ErrorCode
			if re.ErrorDescription != "" {
				d += ": " + re.ErrorDescription
			}
			return fmt.Sprintf("LiveChat accounts answered HTTP %d %s", status, d)
		}
		return fmt.Sprintf("LiveChat accounts answered HTTP %d without an OAuth error code", status)
	}
	return err.Error()
}

func splitScopes(s string) []string {
	var out []string
	for _, p := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		out = append(out, p)
	}
	return out
}

// regionOf takes the region hint from an access token prefix ("dal:…").
func regionOf(access, old string) string {
	if i := strings.IndexByte(access, ':'); i > 0 && i < 10 {
		return access[:i]
	}
	return old
}
