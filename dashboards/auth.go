package dashboards

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/lcpipe/lcpipe/internal/secret"
)

// The viewer requires a sign-in, in one of two ways (ViewerConfig):
//
//   - "Sign in with LiveChat" (the app's OAuth, lcapp.SignInFlow): an owner,
//     vice owner or administrator of an organization sees that
//     organization's data only. Its organization comes from the sign-in,
//     kept server-side in the session; every panel query is filtered to it
//     by the server (a client's org parameter naming another one is 403),
//     and panels that are not per organization are not shown.
//   - a static token (DASHBOARDS_TOKEN) for single-tenant setups without the
//     app: who presents it sees every organization. It is given once as
//     ?token= on any page (then a session cookie takes over and the URL
//     drops it), in the sign-in form, or as "Authorization: Bearer" (API).
//
// Sessions live in memory (a restart signs everyone out) for SessionTTL.

// LiveChatSignIn is "Sign in with LiveChat" as the viewer uses it
// (lcapp.SignInFlow implements it): Start redirects the browser to
// LiveChat, Finish completes the sign-in at the callback and returns the
// organization the account administers. An error with a StatusCode() int
// method says which HTTP status to answer.
type LiveChatSignIn interface {
	Start(w http.ResponseWriter, r *http.Request)
	Finish(w http.ResponseWriter, r *http.Request) (organizationID, accountID string, err error)
}

// Paths of the sign-in.
const (
	SignInPath       = "/signin"
	SignOutPath      = "/signout"
	LiveChatPath     = "/auth/livechat"
	LiveChatCallback = LiveChatPath + "/callback"
	sessionCookie    = "lcdash_session"
	maxSessions      = 10000
)

// viewerAccess is what the request's viewer may see.
type viewerAccess struct {
	// Org is the one organization a LiveChat sign-in sees; "" means every
	// organization (the static token).
	Org     string `json:"organization"`
	Account string `json:"account,omitempty"`
	Method  string `json:"method"` // "livechat" or "token"
}

type viewerSession struct {
	viewerAccess
	expires time.Time
}

type accessKey struct{}

func accessOf(r *http.Request) viewerAccess {
	a, _ := r.Context().Value(accessKey{}).(viewerAccess)
	return a
}

type auth struct {
	tokenHash [32]byte
	hasToken  bool
	signIn    LiveChatSignIn
	ttl       time.Duration
	secure    bool
	now       func() time.Time

	mu       sync.Mutex
	sessions map[string]*viewerSession
}

func newAuth(cfg ViewerConfig) *auth {
	a := &auth{signIn: cfg.SignIn, ttl: cfg.SessionTTL, secure: cfg.SecureCookies, now: time.Now, sessions: map[string]*viewerSession{}}
	if cfg.Token != "" {
		a.tokenHash, a.hasToken = sha256.Sum256([]byte(cfg.Token.Reveal())), true
	}
	return a
}

// tokenOK compares in constant time (hashes, so the length does not leak).
func (a *auth) tokenOK(t string) bool {
	if !a.hasToken || t == "" {
		return false
	}
	h := sha256.Sum256([]byte(t))
	return subtle.ConstantTimeCompare(h[:], a.tokenHash[:]) == 1
}

func newID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// start creates a session and sets its cookie.
func (a *auth) start(w http.ResponseWriter, acc viewerAccess) {
	id := newID()
	now := a.now()
	a.mu.Lock()
	if len(a.sessions) >= maxSessions {
		for k, s := range a.sessions {
			if now.After(s.expires) || len(a.sessions) >= maxSessions {
				delete(a.sessions, k)
			}
		}
	}
	a.sessions[id] = &viewerSession{viewerAccess: acc, expires: now.Add(a.ttl)}
	a.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id, Path: "/", HttpOnly: true, Secure: a.secure,
		SameSite: http.SameSiteLaxMode, MaxAge: int(a.ttl / time.Second)})
}

func (a *auth) session(r *http.Request) (viewerAccess, bool) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil {
		return viewerAccess{}, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.sessions[ck.Value]
	if !ok || a.now().After(s.expires) {
		delete(a.sessions, ck.Value)
		return viewerAccess{}, false
	}
	return s.viewerAccess, true
}

func (a *auth) end(w http.ResponseWriter, r *http.Request) {
	if ck, err := r.Cookie(sessionCookie); err == nil {
		a.mu.Lock()
		delete(a.sessions, ck.Value)
		a.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Path: "/", MaxAge: -1, HttpOnly: true, Secure: a.secure, SameSite: http.SameSiteLaxMode})
}

// public are the paths served without a sign-in: nothing in them reads data.
func public(path string) bool {
	return path == "/healthz" || strings.HasPrefix(path, "/assets/") || path == SignInPath || path == SignOutPath ||
		path == LiveChatPath || path == LiveChatCallback
}

// require is the middleware: it finds the request's viewer (Bearer token,
// ?token=, session cookie) or answers 401 (API) / redirects to the sign-in
// page (pages).
func (a *auth) require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if public(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
			if !a.tokenOK(strings.TrimPrefix(h, "Bearer ")) {
				writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "the bearer token is not the dashboards token"})
				return
			}
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), accessKey{}, viewerAccess{Method: "token"})))
			return
		}
		if q := r.URL.Query(); q.Has("token") && r.Method == http.MethodGet {
			if !a.tokenOK(q.Get("token")) {
				a.page(w, http.StatusForbidden, "That token is not the dashboards token.")
				return
			}
			a.start(w, viewerAccess{Method: "token"})
			q.Del("token")
			u := *r.URL
			u.RawQuery = q.Encode()
			http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
			return
		}
		acc, ok := a.session(r)
		if !ok {
			if strings.HasPrefix(r.URL.Path, "/api/") {
				writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "sign in first", "sign_in": SignInPath})
				return
			}
			http.Redirect(w, r, SignInPath, http.StatusSeeOther)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), accessKey{}, acc)))
	})
}

// routes mounts the sign-in pages on mux.
func (a *auth) routes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+SignInPath, func(w http.ResponseWriter, r *http.Request) {
		if _, ok := a.session(r); ok {
			http.Redirect(w, r, "/", http.StatusSeeOther)
			return
		}
		a.page(w, http.StatusOK, "")
	})
	mux.HandleFunc("POST "+SignInPath, func(w http.ResponseWriter, r *http.Request) {
		if !a.tokenOK(r.PostFormValue("token")) {
			a.page(w, http.StatusForbidden, "That token is not the dashboards token.")
			return
		}
		a.start(w, viewerAccess{Method: "token"})
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
	mux.HandleFunc("POST "+SignOutPath, func(w http.ResponseWriter, r *http.Request) {
		a.end(w, r)
		http.Redirect(w, r, SignInPath, http.StatusSeeOther)
	})
	mux.HandleFunc("GET "+LiveChatPath, func(w http.ResponseWriter, r *http.Request) {
		if a.signIn == nil {
			http.NotFound(w, r)
			return
		}
		a.signIn.Start(w, r)
	})
	mux.HandleFunc("GET "+LiveChatCallback, func(w http.ResponseWriter, r *http.Request) {
		if a.signIn == nil {
			http.NotFound(w, r)
			return
		}
		org, account, err := a.signIn.Finish(w, r)
		if err == nil && org == "" {
			err = errors.New("the sign-in named no organization")
		}
		if err != nil {
			status := http.StatusForbidden
			var sc interface{ StatusCode() int }
			if errors.As(err, &sc) {
				status = sc.StatusCode()
			}
			a.page(w, status, "Sign-in refused: "+err.Error())
			return
		}
		a.end(w, r) // a new session id: one seen before sign-in is worth nothing
		a.start(w, viewerAccess{Org: org, Account: account, Method: "livechat"})
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
}

var signInTmpl = template.Must(template.ParseFS(webFS, "web/signin.html"))

func (a *auth) page(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = signInTmpl.Execute(w, struct {
		Error         string
		LiveChat      bool
		LiveChatStart string
		Token         bool
	}{msg, a.signIn != nil, LiveChatPath, a.hasToken})
}

// validToken is the check of ViewerConfig.Token.
func validToken(t secret.Secret) error {
	if t != "" && len(t.Reveal()) < 16 {
		return errors.New("dashboards: DASHBOARDS_TOKEN must be at least 16 characters (e.g. openssl rand -hex 24)")
	}
	if strings.ContainsAny(t.Reveal(), " \t\r\n") {
		return errors.New("dashboards: DASHBOARDS_TOKEN must not contain spaces")
	}
	return nil
}
