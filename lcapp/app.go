// Package lcapp is the LiveChat app install: the settings page (loaded by
// the Agent App widget's "App Settings" placement) with "Sign in with
// LiveChat", the OAuth 2.1 authorization code grant with PKCE (S256) and a
// state bound to the browser session, the encrypted token store and a
// TokenSource that persists refreshed tokens, the Configuration API calls
// that register the analytics webhooks and enable them for the
// organization, uninstall, and the agent/group directory used to put names
// on ids.
//
// Why it is shaped like this: LiveChat's Configuration API registers
// webhooks per Client ID, not per license — one registration per action
// serves every organization that installed the app, at most 3 per action.
// So the app keeps one registration set with one random secret (created at
// the first install, reconciled — list first, then register what is missing
// and drop our duplicates — on every install and restart) and answers the
// ingest's per-organization secret question with that secret only for
// organizations that are installed. An uninstalled organization's webhooks
// are refused even if they carry the right secret.
//
// Everything that leaves the process through logs or HTTP bodies goes
// through secret.Secret, which does not print.
package lcapp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/lcpipe/lcpipe/internal/secret"
)

// DefaultActions are every v3.6 webhook action: the processor decodes and
// stores all of them (chat actions as facts, configuration actions as
// config rows), and agent_*/group_* also keep the directory fresh.
var DefaultActions = []string{
	"incoming_chat", "chat_deactivated", "chat_access_updated", "chat_transferred",
	"user_added_to_chat", "user_removed_from_chat",
	"incoming_event", "event_updated", "event_deleted", "incoming_rich_message_postback",
	"chat_properties_updated", "chat_properties_deleted", "thread_properties_updated", "thread_properties_deleted",
	"event_properties_updated", "event_properties_deleted",
	"thread_tagged", "thread_untagged", "routing_status_set", "customer_session_fields_updated",
	"events_marked_as_seen", "thread_summary_set",
	"agent_created", "agent_approved", "agent_updated", "agent_suspended", "agent_unsuspended", "agent_deleted",
	"auto_accesses_updated", "bot_created", "bot_updated", "bot_deleted",
	"group_created", "group_updated", "group_deleted", "tag_created", "tag_updated", "tag_deleted",
}

// Paths the app mounts (see Routes).
const (
	SettingsPath   = "/livechat/app"
	CallbackPath   = SettingsPath + "/callback"
	SignInPath     = SettingsPath + "/signin"
	UninstallPath  = SettingsPath + "/uninstall"
	AppWebhookPath = SettingsPath + "/events"
	AssetsPath     = SettingsPath + "/assets"
	// WebhookPath is where LiveChat delivers chat webhooks (served by ingest).
	WebhookPath = "/webhooks/livechat"
)

// Config of the app. ClientID, ClientSecret, PublicBaseURL and
// EncryptionKey are required; zero values of the others take the defaults
// documented on them.
type Config struct {
	// ClientID and ClientSecret of the server-side app (Developer Console).
	ClientID     string
	ClientSecret secret.Secret
	// PublicBaseURL is where LiveChat and browsers reach the ingest service,
	// e.g. https://lcpipe.example.com. Webhooks are registered at
	// PublicBaseURL+WebhookPath, the OAuth redirect is PublicBaseURL+CallbackPath.
	PublicBaseURL string
	// AccountsURL is the accounts service. Default https://accounts.livechat.com.
	AccountsURL string
	// APIURL is the versioned API base. Default https://api.livechatinc.com/v3.6.
	APIURL string
	// EncryptionKey (32 bytes) seals the store (AES-256-GCM).
	EncryptionKey secret.Secret
	// StorePath is the bbolt file. Default .run/lcapp.db.
	StorePath string
	// Actions to register. Default DefaultActions.
	Actions []string
	// DirectoryRefresh is how often agent and group names are re-listed. Default 10m.
	DirectoryRefresh time.Duration
	// SecretCacheTTL bounds how stale the webhook-secret cache may be (an
	// install done by another process shows up after at most this). Default 5s.
	SecretCacheTTL time.Duration
	// HTTPTimeout bounds each call to LiveChat. Default 15s.
	HTTPTimeout time.Duration
	// StoreLockTimeout bounds waiting for another process holding the store. Default 10s.
	StoreLockTimeout time.Duration
	// SessionTTL is how long a browser session (pending sign-in or signed in) lives. Default 12h.
	SessionTTL time.Duration
	// HTTPClient, when set, is used for every call to LiveChat (tests).
	HTTPClient *http.Client
	// Now is the clock (tests). Default time.Now.
	Now func() time.Time
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{
		AccountsURL:      "https://accounts.livechat.com",
		APIURL:           "https://api.livechatinc.com/v3.6",
		StorePath:        ".run/lcapp.db",
		Actions:          slices.Clone(DefaultActions),
		DirectoryRefresh: 10 * time.Minute,
		SecretCacheTTL:   5 * time.Second,
		HTTPTimeout:      15 * time.Second,
		StoreLockTimeout: 10 * time.Second,
		SessionTTL:       12 * time.Hour,
	}
}

// withDefaults fills the zero fields with the defaults documented on Config.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	c.AccountsURL = cmp.Or(c.AccountsURL, d.AccountsURL)
	c.APIURL = cmp.Or(c.APIURL, d.APIURL)
	c.StorePath = cmp.Or(c.StorePath, d.StorePath)
	if len(c.Actions) == 0 {
		c.Actions = d.Actions
	}
	c.DirectoryRefresh = cmp.Or(c.DirectoryRefresh, d.DirectoryRefresh)
	c.SecretCacheTTL = cmp.Or(c.SecretCacheTTL, d.SecretCacheTTL)
	c.HTTPTimeout = cmp.Or(c.HTTPTimeout, d.HTTPTimeout)
	c.StoreLockTimeout = cmp.Or(c.StoreLockTimeout, d.StoreLockTimeout)
	c.SessionTTL = cmp.Or(c.SessionTTL, d.SessionTTL)
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports every problem at once (after defaults are applied).
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.ClientID == "" {
		errs = append(errs, errors.New("lcapp: client id is empty (LIVECHAT_CLIENT_ID)"))
	}
	if c.ClientSecret == "" {
		errs = append(errs, errors.New("lcapp: client secret is empty (LIVECHAT_CLIENT_SECRET)"))
	}
	for name, v := range map[string]string{"PUBLIC_BASE_URL": c.PublicBaseURL, "LIVECHAT_ACCOUNTS_URL": c.AccountsURL, "LIVECHAT_API_URL": c.APIURL} {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
			errs = append(errs, fmt.Errorf("lcapp: %s=%q is not an absolute http(s) URL without query", name, v))
		}
	}
	if c.EncryptionKey == "" {
		errs = append(errs, errors.New("lcapp: OAuth is configured but APP_ENCRYPTION_KEY is empty: refusing to store tokens unencrypted (generate one with: openssl rand -base64 32)"))
	} else if _, err := ParseKey(c.EncryptionKey.Reveal()); err != nil {
		errs = append(errs, fmt.Errorf("lcapp: APP_ENCRYPTION_KEY: %w", err))
	}
	for name, d := range map[string]time.Duration{"directory refresh": c.DirectoryRefresh, "secret cache ttl": c.SecretCacheTTL,
		"http timeout": c.HTTPTimeout, "store lock timeout": c.StoreLockTimeout, "session ttl": c.SessionTTL} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("lcapp: %s must be positive", name))
		}
	}
	return errors.Join(errs...)
}

// App is one configured LiveChat app. It is safe for concurrent use.
type App struct {
	cfg      Config
	log      *slog.Logger
	store    *store
	oauth    *oauth2.Config
	http     *http.Client
	sessions *sessions
	tokens   *tokens
	dir      *Directory
	secrets  secretCache

	mu   sync.Mutex
	last map[string]lastWebhook // organization -> last accepted webhook

	done chan struct{}
	stop context.CancelFunc

	// regMu serializes, in the process, what the registrations file lock
	// serializes across processes (lockRegistrations).
	regMu sync.Mutex
	// lockWaited, when set (tests), is called when the registrations lock
	// is held by someone else and this App has to wait for it.
	lockWaited func()
}

type lastWebhook struct {
	action string
	at     time.Time
}

// New builds the app. It touches no disk and no network: the store file is
// opened per operation, Run starts the background refreshes. A nil log
// discards.
func New(cfg Config, log *slog.Logger) (*App, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log = cmp.Or(log, slog.New(slog.DiscardHandler))
	key, _ := ParseKey(cfg.EncryptionKey.Reveal())
	st, err := newStore(cfg.StorePath, key, cfg.StoreLockTimeout)
	if err != nil {
		return nil, err
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: cfg.HTTPTimeout}
	}
	base := strings.TrimRight(cfg.PublicBaseURL, "/")
	cfg.PublicBaseURL = base
	a := &App{
		cfg:   cfg,
		log:   log,
		store: st,
		http:  hc,
		oauth: &oauth2.Config{
			ClientID:     cfg.ClientID,
			ClientSecret: cfg.ClientSecret.Reveal(),
			// The authorize endpoint is the accounts root (oauth.md §3.1);
			// the client secret travels in the form body as the docs show.
			Endpoint: oauth2.Endpoint{
				AuthURL:   strings.TrimRight(cfg.AccountsURL, "/") + "/",
				TokenURL:  strings.TrimRight(cfg.AccountsURL, "/") + "/v2/token",
				AuthStyle: oauth2.AuthStyleInParams,
			},
			RedirectURL: base + CallbackPath,
			// No Scopes: the app is granted the scopes configured in the
			// Developer Console; scope= is only documented for the JS SDK.
		},
		sessions: newSessions(cfg.SessionTTL, cfg.Now, urlPath(base)+SettingsPath),
		dir:      newDirectory(),
		last:     map[string]lastWebhook{},
		done:     make(chan struct{}),
	}
	a.tokens = &tokens{app: a, locks: map[string]*sync.Mutex{}}
	close(a.done) // replaced by Run
	return a, nil
}

// WebhookURL is where the registered webhooks point.
func (a *App) WebhookURL() string { return a.cfg.PublicBaseURL + WebhookPath }

// Directory returns the agent/group name directory (it implements the
// processor's Directory interface). On a nil App it returns a nil
// *Directory, which answers "" for every id.
func (a *App) Directory() *Directory {
	if a == nil {
		return nil
	}
	return a.dir
}

func (a *App) ctx(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, a.http)
}

// Run refreshes the directory of every installed organization every
// DirectoryRefresh (and soon after an agent/group webhook or a look-up of an
// unknown organization) until ctx ends. Errors are logged, never fatal.
func (a *App) Run(ctx context.Context) {
	full := time.NewTicker(a.cfg.DirectoryRefresh)
	defer full.Stop()
	poll := time.NewTicker(min(10*time.Second, a.cfg.DirectoryRefresh))
	defer poll.Stop()
	a.refreshAll(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-full.C:
			a.refreshAll(ctx)
		case <-poll.C:
			for _, org := range a.dir.takeWanted() {
				a.refreshDirectory(ctx, org)
			}
		}
	}
}

// Start runs Run in the background; Close stops it.
func (a *App) Start(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	a.mu.Lock()
	a.stop, a.done = cancel, done
	a.mu.Unlock()
	go func() {
		defer close(done)
		a.Run(ctx)
	}()
}

// Close stops the background refresh and saves the "last webhook received"
// of every organization.
func (a *App) Close() error {
	a.mu.Lock()
	stop, done := a.stop, a.done
	last := make(map[string]lastWebhook, len(a.last))
	for k, v := range a.last {
		last[k] = v
	}
	a.mu.Unlock()
	if stop != nil {
		stop()
	}
	<-done
	var errs []error
	for org, l := range last {
		if err := a.store.modifyInstallation(org, func(r *installationRecord) {
			if l.at.After(r.LastWebhookAt) {
				r.LastWebhookAt, r.LastWebhookName = l.at, l.action
			}
		}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// OnAccepted records the last webhook accepted for an organization (shown on
// the settings page) and schedules a directory refresh after agent and group
// changes. Ingest calls it for every accepted webhook; it never blocks on I/O.
func (a *App) OnAccepted(organizationID, action string, receivedAt time.Time) {
	if organizationID == "" {
		return // a v3.3 webhook of a license no installation holds: nothing to show or refresh
	}
	a.mu.Lock()
	a.last[organizationID] = lastWebhook{action: action, at: receivedAt}
	a.mu.Unlock()
	if strings.HasPrefix(action, "agent_") || strings.HasPrefix(action, "group_") {
		a.dir.want(organizationID)
	}
}

// WebhookSecrets returns the secrets a webhook of the organization may carry:
// the registration secret when the organization has the app installed,
// nothing otherwise. It answers from memory: a snapshot of the store that
// is refreshed in the background once older than SecretCacheTTL (the request
// that notices keeps the old one). Only when there is no snapshot (start,
// or just after an install or uninstall in this process) does it read the
// store itself, bounded by ctx; a failing store then returns an error (the
// ingest answers 503, so LiveChat retries).
func (a *App) WebhookSecrets(ctx context.Context, organizationID string) ([]string, error) {
	snap, err := a.secretSnapshot(ctx)
	if err != nil {
		return nil, err
	}
	if !snap.orgs[organizationID] || snap.secret == "" {
		return nil, nil
	}
	return snap.accepted(a.cfg.Now()), nil
}

// LicenseSecrets answers WebhookSecrets for a LiveChat v3.3 webhook, which
// names its license (license_id) instead of its organization: the installed
// organization holding the license and its secrets, or "" and nil when no
// installation is known to hold it. An installation learns its license from
// the application_installed app webhook (licenseID); a license claimed by
// two installations resolves to neither. Same snapshot, same failure modes
// as WebhookSecrets.
func (a *App) LicenseSecrets(ctx context.Context, licenseID int64) (string, []string, error) {
	snap, err := a.secretSnapshot(ctx)
	if err != nil {
		return "", nil, err
	}
	org := snap.licenses[licenseID]
	if org == "" || !snap.orgs[org] || snap.secret == "" {
		return "", nil, nil
	}
	return org, snap.accepted(a.cfg.Now()), nil
}

func (a *App) secretSnapshot(ctx context.Context) (*secretSnapshot, error) {
	return a.secrets.get(ctx, a.cfg.Now(), a.cfg.SecretCacheTTL, func() (*secretSnapshot, error) {
		orgs, licenses, reg, err := a.store.snapshot(a.cfg.ClientID)
		snap := &secretSnapshot{orgs: orgs, licenses: licenses}
		if reg != nil {
			snap.secret, snap.previous, snap.previousUntil = reg.Secret, reg.Previous, reg.PreviousUntil
		}
		return snap, err
	}, a.log)
}

type secretSnapshot struct {
	orgs     map[string]bool
	licenses map[int64]string // license -> installed organization holding it
	secret   string
	// previous is the secret before the last rotation, accepted until
	// previousUntil: deliveries signed with it may still arrive (retries,
	// registrations not yet removed).
	previous      string
	previousUntil time.Time
}

// accepted is the registration secret, then the previous one while it is
// still accepted.
func (s *secretSnapshot) accepted(now time.Time) []string {
	if s.previous != "" && s.previous != s.secret && now.Before(s.previousUntil) {
		return []string{s.secret, s.previous}
	}
	return []string{s.secret}
}

// secretCache is the in-memory snapshot behind WebhookSecrets.
type secretCache struct {
	mu        sync.Mutex
	snap      *secretSnapshot
	loaded    time.Time
	reloading bool
	gen       uint64 // bumped by invalidate: a reload started earlier must not win
}

func (c *secretCache) get(ctx context.Context, now time.Time, ttl time.Duration, load func() (*secretSnapshot, error), log *slog.Logger) (*secretSnapshot, error) {
	c.mu.Lock()
	if snap := c.snap; snap != nil {
		if now.Sub(c.loaded) >= ttl && !c.reloading {
			c.reloading = true
			go c.reload(c.gen, now, load, log)
		}
		c.mu.Unlock()
		return snap, nil
	}
	gen := c.gen
	c.mu.Unlock()
	type result struct {
		snap *secretSnapshot
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		s, err := load()
		ch <- result{s, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("lcapp: webhook secrets: %w", r.err)
		}
		c.mu.Lock()
		if c.gen == gen {
			c.snap, c.loaded = r.snap, now
		}
		c.mu.Unlock()
		return r.snap, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("lcapp: webhook secrets: store not readable in time: %w", ctx.Err())
	}
}

func (c *secretCache) reload(gen uint64, now time.Time, load func() (*secretSnapshot, error), log *slog.Logger) {
	s, err := load()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reloading = false
	if err != nil {
		log.Warn("webhook secret cache reload failed; serving the previous snapshot", "err", err)
		c.loaded = now // retry after another TTL, not on every request
		return
	}
	if c.gen == gen {
		c.snap, c.loaded = s, now
	}
}

func (c *secretCache) invalidate() {
	c.mu.Lock()
	c.snap = nil
	c.gen++
	c.mu.Unlock()
}
