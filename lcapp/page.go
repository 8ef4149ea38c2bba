package lcapp

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/lcpipe/lcpipe/internal/secret"
)

//go:embed assets
var assets embed.FS

var pageTmpl = template.Must(template.ParseFS(assets, "assets/settings.html"))

// Routes mounts the settings page, the OAuth endpoints and the app-webhook
// endpoint on the ingest service's router.
func (a *App) Routes(r fiber.Router) {
	r.Get(SettingsPath, a.page)
	r.Get(SignInPath, a.signIn)
	r.Get(CallbackPath, a.callback)
	r.Post(UninstallPath, a.uninstall)
	r.Post(AppWebhookPath, a.appWebhook)
	r.Get(AssetsPath+"/style.css", func(c *fiber.Ctx) error {
		b, err := assets.ReadFile("assets/style.css")
		if err != nil {
			return err
		}
		c.Set("Cache-Control", "public, max-age=3600")
		c.Type("css")
		return c.Send(b)
	})
}

// basePath is PUBLIC_BASE_URL's path ("" or e.g. "/lcpipe"): links and
// redirects the browser follows carry it.
func (a *App) basePath() string { return urlPath(a.cfg.PublicBaseURL) }

func urlPath(base string) string {
	u, err := url.Parse(base)
	if err != nil {
		return ""
	}
	return strings.TrimRight(u.Path, "/")
}

type pageData struct {
	Base        string
	Error       string
	Flash       string
	SignedIn    bool
	Org         string
	AccountID   string
	LicenseID   int64
	Region      string
	Scopes      []string
	InstalledAt string
	NeedsReauth bool
	Registered  []string
	Missing     []string
	WebhookURL  string
	LastAction  string
	LastAt      string
	CSRF        string
}

// Status is what the settings page shows about one organization.
type Status struct {
	OrganizationID string
	AccountID      string
	Registered     []string // configured actions with a registration
	Missing        []string // configured actions without one
	LastAction     string
	LastAt         time.Time
	NeedsReauth    bool
	LastError      string
}

// Status reports the installation of an organization from the store (no
// API call); ErrNotInstalled when there is none.
func (a *App) Status(org string) (Status, error) {
	rec, err := a.store.loadInstallation(org)
	if err != nil {
		return Status{}, err
	}
	if rec == nil {
		return Status{}, ErrNotInstalled
	}
	reg, err := a.store.loadRegistration(a.cfg.ClientID)
	if err != nil {
		return Status{}, err
	}
	st := Status{OrganizationID: org, AccountID: rec.AccountID, NeedsReauth: rec.NeedsReauth, LastError: rec.LastError,
		LastAction: rec.LastWebhookName, LastAt: rec.LastWebhookAt}
	for _, act := range a.cfg.Actions {
		if reg != nil && reg.IDs[act] != "" {
			st.Registered = append(st.Registered, act)
		} else {
			st.Missing = append(st.Missing, act)
		}
	}
	sort.Strings(st.Registered)
	a.mu.Lock()
	if l, ok := a.last[org]; ok && l.at.After(st.LastAt) {
		st.LastAction, st.LastAt = l.action, l.at
	}
	a.mu.Unlock()
	return st, nil
}

func (a *App) page(c *fiber.Ctx) error {
	d := pageData{Base: a.basePath(), WebhookURL: a.WebhookURL()}
	if ss := a.sessions.lookup(c); ss != nil {
		a.sessions.update(func() { d.Flash, ss.flash = ss.flash, ""; d.Org, d.CSRF = ss.org, ss.csrf })
	}
	if d.Org != "" {
		rec, err := a.store.loadInstallation(d.Org)
		if err != nil {
			return a.fail(c, http.StatusServiceUnavailable, "the installation store is unavailable: "+err.Error())
		}
		st, serr := a.Status(d.Org)
		if rec != nil && serr == nil {
			d.SignedIn = true
			d.AccountID, d.LicenseID, d.Region, d.Scopes = rec.AccountID, rec.LicenseID, rec.Region, rec.Scopes
			d.InstalledAt = rec.InstalledAt.UTC().Format(time.RFC3339)
			d.NeedsReauth, d.Registered, d.Missing = rec.NeedsReauth, st.Registered, st.Missing
			if d.Flash == "" {
				d.Flash = rec.LastError
			}
			d.LastAction = st.LastAction
			if !st.LastAt.IsZero() {
				d.LastAt = st.LastAt.UTC().Format(time.RFC3339)
			}
		}
	}
	return a.render(c, http.StatusOK, d)
}

func (a *App) render(c *fiber.Ctx, status int, d pageData) error {
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, d); err != nil {
		return err
	}
	c.Set("Cache-Control", "no-store")
	c.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors https://*.livechatinc.com https://*.livechat.com https://*.text.com 'self'")
	c.Type("html", "utf-8")
	return c.Status(status).Send(buf.Bytes())
}

// fail answers an error: an HTML page for browsers, otherwise the
// project's JSON error body {"error", "request_id"}.
func (a *App) fail(c *fiber.Ctx, status int, msg string) error {
	if strings.Contains(c.Get(fiber.HeaderAccept), "text/html") {
		return a.render(c, status, pageData{Base: a.basePath(), Error: msg})
	}
	return c.Status(status).JSON(fiber.Map{"error": msg, "request_id": requestID(c)})
}

// requestID reuses the id the ingest middleware gave the request (its
// Locals key or response header), or makes one.
func requestID(c *fiber.Ctx) string {
	for _, k := range []string{"request_id", "requestid"} {
		if v, ok := c.Locals(k).(string); ok && v != "" {
			return v
		}
	}
	if v := c.GetRespHeader(fiber.HeaderXRequestID); v != "" {
		return v
	}
	id := "lcapp-" + randomToken()[:12]
	c.Set(fiber.HeaderXRequestID, id)
	return id
}

// appWebhookBody is the App Webhooks envelope (webhooks.md §10).
type appWebhookBody struct {
	ClientID       string `json:"clientID"`
	Event          string `json:"event"`
	LicenseID      int64  `json:"licenseID"`
	OrganizationID string `json:"organizationID"`
	UserID         string `json:"userID"`
}

// appWebhook handles application_installed / application_uninstalled. App
// webhooks carry no secret (webhooks.md §10), so anyone can send one: an
// uninstall is acted on only when LiveChat confirms it (confirmUninstall),
// otherwise it is answered 200 "ignored" and the installation stays.
func (a *App) appWebhook(c *fiber.Ctx) error {
	var b appWebhookBody
	if err := json.Unmarshal(c.Body(), &b); err != nil {
		return c.Status(http.StatusBadRequest).JSON(fiber.Map{"error": "body is not an app webhook JSON object", "request_id": requestID(c)})
	}
	if b.ClientID != a.cfg.ClientID {
		return c.Status(http.StatusBadRequest).JSON(fiber.Map{"error": "clientID is not this app's Client ID", "request_id": requestID(c)})
	}
	if b.OrganizationID == "" {
		return c.Status(http.StatusBadRequest).JSON(fiber.Map{"error": "organizationID is missing", "request_id": requestID(c)})
	}
	b.OrganizationID = strings.Clone(b.OrganizationID)
	ctx := c.UserContext()
	rec, err := a.store.loadInstallation(b.OrganizationID)
	if err != nil {
		return c.Status(http.StatusServiceUnavailable).JSON(fiber.Map{"error": "installation store unavailable", "request_id": requestID(c)})
	}
	if rec == nil {
		return c.JSON(fiber.Map{"status": "ignored", "reason": "organization not installed"})
	}
	switch b.Event {
	case "application_installed":
		if b.LicenseID != 0 {
			_ = a.store.modifyInstallation(b.OrganizationID, func(r *installationRecord) { r.LicenseID = b.LicenseID })
			a.secrets.invalidate() // v3.3 webhooks of this license resolve from now on
		}
		return c.JSON(fiber.Map{"status": "recorded"})
	case "application_uninstalled":
		confirmed, why, err := a.confirmUninstall(ctx, b.OrganizationID)
		if err != nil {
			// Not knowing is not confirming: 503, so a genuine one may be retried.
			a.log.Warn("application_uninstalled: could not ask LiveChat; ignored for now", "organization_id", b.OrganizationID, "err", err)
			return c.Status(http.StatusServiceUnavailable).JSON(fiber.Map{"error": "could not confirm the uninstall with LiveChat", "request_id": requestID(c)})
		}
		if !confirmed {
			a.log.Warn("application_uninstalled not confirmed by LiveChat; ignored", "organization_id", b.OrganizationID, "reason", why)
			return c.JSON(fiber.Map{"status": "ignored", "reason": why})
		}
		others := slices.ContainsFunc(mustOrgs(a), func(o string) bool { return o != b.OrganizationID })
		if err := a.forget(b.OrganizationID); err != nil {
			return c.Status(http.StatusServiceUnavailable).JSON(fiber.Map{"error": "installation store unavailable", "request_id": requestID(c)})
		}
		a.log.Info("organization uninstalled (app webhook, token revoked by LiveChat); stored tokens deleted",
			"organization_id", b.OrganizationID, "other_installations", others)
		return c.JSON(fiber.Map{"status": "uninstalled"})
	}
	return c.JSON(fiber.Map{"status": "ignored", "reason": "event not handled"})
}

// confirmUninstall asks LiveChat whether the organization really removed
// the app. An uninstall revokes the app's tokens, so the one answer that
// confirms it is /v2/info rejecting a stored access token that has not
// expired (a token we hold, obtained from LiveChat: a forger cannot revoke
// it). Every other state is not a confirmation, whatever the local flags
// say: a token that still validates means the event is forged; a grant
// already rejected (the installation needs re-authorization) or rejected
// at refresh now cannot tell an uninstall from a revoked or expired grant,
// so the installation stays (an administrator signs in again or
// disconnects; a stale one only keeps accepting the webhooks LiveChat no
// longer sends). err is a failure to ask (network, 5xx).
func (a *App) confirmUninstall(ctx context.Context, org string) (confirmed bool, why string, err error) {
	rec, err := a.store.loadInstallation(org)
	if err != nil || rec == nil {
		return false, "organization not installed", err
	}
	if rec.NeedsReauth {
		return false, "the stored grant was already rejected: LiveChat cannot confirm an uninstall", nil
	}
	if !a.tokens.valid(rec) {
		// Expired (or about to): refresh first; only a live token can confirm.
		rec, err = a.tokens.token(ctx, org, "")
		switch {
		case errors.Is(err, ErrReauthorize):
			return false, "the refresh token is rejected: LiveChat cannot confirm an uninstall", nil
		case errors.Is(err, ErrNotInstalled):
			return false, "organization not installed", nil
		case err != nil:
			return false, "", err
		}
	}
	if _, err := a.info(ctx, secret.Secret(rec.AccessToken)); err != nil {
		if errors.Is(err, errTokenInvalid) {
			return true, "", nil
		}
		return false, "", err
	}
	return false, "the organization's token still validates", nil
}

func mustOrgs(a *App) []string {
	o, _ := a.store.installedOrganizations()
	return o
}
