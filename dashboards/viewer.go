package dashboards

import (
	"cmp"
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/lcpipe/lcpipe/internal/chconn"
	"github.com/lcpipe/lcpipe/internal/secret"
)

//go:embed web
var webFS embed.FS

// ViewerConfig configures the built-in viewer.
type ViewerConfig struct {
	// Addr is the listen address. Default 127.0.0.1:3000 (not the public
	// webhook listener: dashboards are for people inside).
	Addr string
	// Database holds the analytics tables. Default livechat.
	Database string
	// Refresh is the page's default auto-refresh period. Default 30s.
	Refresh time.Duration
	// QueryTimeout cancels a panel query. Default 20s.
	QueryTimeout time.Duration
	// Token is the static token of single-tenant setups (DASHBOARDS_TOKEN,
	// at least 16 characters): who presents it sees every organization.
	Token secret.Secret
	// SignIn is "Sign in with LiveChat" (lcapp.SignInFlow): an
	// administrator of an organization sees only that organization.
	// At least one of Token and SignIn is required.
	SignIn LiveChatSignIn
	// SessionTTL is how long a sign-in lasts. Default 12h.
	SessionTTL time.Duration
	// SecureCookies marks the session cookie Secure (served over https).
	SecureCookies bool
}

// DefaultViewerConfig returns the defaults documented on ViewerConfig.
func DefaultViewerConfig() ViewerConfig {
	return ViewerConfig{Addr: "127.0.0.1:3000", Database: "livechat", Refresh: 30 * time.Second, QueryTimeout: 20 * time.Second,
		SessionTTL: 12 * time.Hour}
}

// withDefaults fills the zero fields with the defaults documented on
// ViewerConfig.
func (c ViewerConfig) withDefaults() ViewerConfig {
	d := DefaultViewerConfig()
	c.Addr = cmp.Or(c.Addr, d.Addr)
	c.Database = cmp.Or(c.Database, d.Database)
	c.Refresh = cmp.Or(c.Refresh, d.Refresh)
	c.QueryTimeout = cmp.Or(c.QueryTimeout, d.QueryTimeout)
	c.SessionTTL = cmp.Or(c.SessionTTL, d.SessionTTL)
	return c
}

// Validate reports every problem at once (after defaults are applied).
func (c ViewerConfig) Validate() error {
	c = c.withDefaults()
	var errs []error
	if !chconn.ValidIdent(c.Database) {
		errs = append(errs, fmt.Errorf("dashboards: bad database name %q", c.Database))
	}
	if c.Refresh < time.Second {
		errs = append(errs, fmt.Errorf("dashboards: refresh %s must be >= 1s", c.Refresh))
	}
	if c.QueryTimeout <= 0 {
		errs = append(errs, errors.New("dashboards: query timeout must be > 0"))
	}
	if c.Token == "" && c.SignIn == nil {
		errs = append(errs, errors.New("dashboards: no sign-in configured: the dashboards show chat data, so set DASHBOARDS_TOKEN (single tenant, sees every organization) or configure the LiveChat app and DASHBOARDS_PUBLIC_URL (each administrator sees their organization)"))
	}
	if err := validToken(c.Token); err != nil {
		errs = append(errs, err)
	}
	if c.SessionTTL <= 0 {
		errs = append(errs, errors.New("dashboards: session ttl must be > 0"))
	}
	return errors.Join(errs...)
}

// Viewer serves the dashboards as a web page (assets embedded, nothing from
// the internet) and a small JSON API that runs the panels' SQL, to signed-in
// viewers only (auth.go). Give it a connection of the read-only analyst
// user: the API only ever reads.
type Viewer struct {
	cfg  ViewerConfig
	conn driver.Conn
	log  *slog.Logger
	auth *auth
	// perOrg says which panels are filtered by organization (uid/id):
	// only those are shown to a viewer of one organization.
	perOrg map[string]bool
}

// NewViewer checks the configuration (zero fields take their defaults). A
// nil log discards.
func NewViewer(cfg ViewerConfig, conn driver.Conn, log *slog.Logger) (*Viewer, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if conn == nil {
		return nil, errors.New("dashboards: no ClickHouse connection")
	}
	log = cmp.Or(log, slog.New(slog.DiscardHandler))
	v := &Viewer{cfg: cfg, conn: conn, log: log, auth: newAuth(cfg), perOrg: map[string]bool{}}
	for _, d := range All() {
		for _, p := range d.Panels {
			v.perOrg[d.UID+"/"+p.ID] = perOrganization(p)
		}
	}
	return v, nil
}

// perOrganization reports whether the panel's SQL depends on the
// organization filter at all: rendered for two organizations it must
// differ. A panel that does not (the pipeline's flush facts) shows every
// organization's data, so a viewer of one organization does not get it.
func perOrganization(p Panel) bool {
	w := &Watermarks{ThreadsMS: 1, WebhookHoursMS: 1}
	a := p.Render(Params{DB: "db", FromMS: 0, ToMS: 3600_000, BucketS: 60, Group: -1, Org: "org-a", Watermarks: w})
	b := p.Render(Params{DB: "db", FromMS: 0, ToMS: 3600_000, BucketS: 60, Group: -1, Org: "org-b", Watermarks: w})
	return a != b
}

// visible reports whether the viewer may run the panel.
func (v *Viewer) visible(acc viewerAccess, uid, panel string) bool {
	return acc.Org == "" || v.perOrg[uid+"/"+panel]
}

// Handler returns the routes; all but the sign-in, the assets and /healthz
// need a signed-in viewer (401 for the API, a redirect to /signin for
// pages):
//
//	GET /                 the page (web/index.html)
//	GET /assets/...       its script and style
//	GET /api/dashboards   every dashboard and its panels the viewer may see, and who the viewer is
//	GET /api/query        ?dashboard=&panel=&from=&to=&org=&group=&agent= → rows
//	GET /api/filters      ?from=&to= → organizations, groups, agents to filter by
//	GET /signin           the sign-in page (POST: the token form)
//	GET /auth/livechat    Sign in with LiveChat (and /callback)
//	POST /signout         ends the session
//	GET /healthz          200 "ok"
func (v *Viewer) Handler() http.Handler {
	mux := http.NewServeMux()
	v.auth.routes(mux)
	assets, _ := fs.Sub(webFS, "web")
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(assets)))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		b, _ := webFS.ReadFile("web/index.html")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(b)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /api/dashboards", v.dashboards)
	mux.HandleFunc("GET /api/query", v.query)
	mux.HandleFunc("GET /api/filters", v.filters)
	return withRequestID(v.auth.require(mux))
}

type ctxKey struct{}

func withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b [8]byte
		_, _ = rand.Read(b[:])
		id := hex.EncodeToString(b[:])
		w.Header().Set("X-Request-Id", id)
		// A page that never loads anything from elsewhere says so.
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'")
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, id)))
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (v *Viewer) fail(w http.ResponseWriter, r *http.Request, status int, err error) {
	id, _ := r.Context().Value(ctxKey{}).(string)
	if status >= 500 {
		v.log.Warn("dashboard query failed", "request_id", id, "path", r.URL.Path, "err", err)
	}
	writeJSON(w, status, map[string]string{"error": err.Error(), "request_id": id})
}

type panelJSON struct {
	ID          string   `json:"id"`
	Title       string   `json:"title"`
	Description string   `json:"description"`
	Viz         Viz      `json:"viz"`
	Unit        Unit     `json:"unit"`
	Long        bool     `json:"long,omitempty"`
	Hidden      []string `json:"hidden,omitempty"`
	Width       int      `json:"width"`
	Height      int      `json:"height"`
	SQL         string   `json:"sql"`
}

func (v *Viewer) dashboards(w http.ResponseWriter, r *http.Request) {
	type dash struct {
		UID         string      `json:"uid"`
		Title       string      `json:"title"`
		Description string      `json:"description"`
		Panels      []panelJSON `json:"panels"`
	}
	acc := accessOf(r)
	out := struct {
		RefreshSeconds int          `json:"refresh_seconds"`
		Database       string       `json:"database"`
		Viewer         viewerAccess `json:"viewer"`
		Dashboards     []dash       `json:"dashboards"`
	}{RefreshSeconds: int(v.cfg.Refresh / time.Second), Database: v.cfg.Database, Viewer: acc}
	for _, d := range All() {
		dj := dash{UID: d.UID, Title: d.Title, Description: d.Description}
		for _, p := range d.Panels {
			if !v.visible(acc, d.UID, p.ID) {
				continue
			}
			p = p.withDefaults()
			dj.Panels = append(dj.Panels, panelJSON{ID: p.ID, Title: p.Title, Description: p.Description, Viz: p.Viz, Unit: p.Unit,
				Long: p.Long, Hidden: p.Hidden, Width: p.Width, Height: p.Height, SQL: p.SQL})
		}
		if len(dj.Panels) > 0 {
			out.Dashboards = append(out.Dashboards, dj)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// maxRange bounds a request's time range.
const maxRange = 400 * 24 * time.Hour

// errOtherOrganization: a viewer of one organization asked for another's data.
var errOtherOrganization = errors.New("you are signed in for another organization: its data is not shown to you")

// params reads and checks the filter parameters of a request. The
// organization of a viewer signed in with LiveChat is the session's, never
// the request's: another one in the request is errOtherOrganization.
func (v *Viewer) params(r *http.Request) (Params, error) {
	q := r.URL.Query()
	from, err1 := strconv.ParseInt(q.Get("from"), 10, 64)
	to, err2 := strconv.ParseInt(q.Get("to"), 10, 64)
	if err1 != nil || err2 != nil || from < 0 || to <= from {
		return Params{}, errors.New("from and to must be epoch milliseconds with from < to")
	}
	if time.Duration(to-from)*time.Millisecond > maxRange {
		return Params{}, fmt.Errorf("time range longer than %s", maxRange)
	}
	p := Params{DB: v.cfg.Database, FromMS: from, ToMS: to, BucketS: Bucket(from, to), Group: -1,
		Org: q.Get("org"), Agent: q.Get("agent")}
	if len(p.Org) > 200 || len(p.Agent) > 320 {
		return Params{}, errors.New("org or agent too long")
	}
	if acc := accessOf(r); acc.Org != "" {
		if p.Org != "" && p.Org != acc.Org {
			return Params{}, errOtherOrganization
		}
		p.Org = acc.Org
	}
	if g := q.Get("group"); g != "" {
		n, err := strconv.ParseInt(g, 10, 64)
		if err != nil || n < -1 || n > 1<<32-1 {
			return Params{}, errors.New("group must be a group id (or -1 for all)")
		}
		p.Group = n
	}
	return p, nil
}

// queryCtx bounds a query without a context deadline: clickhouse-go turns
// a deadline into a max_execution_time setting, which a readonly=1 user may
// not send. Cancelling the context still stops the query.
func (v *Viewer) queryCtx(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	t := time.AfterFunc(v.cfg.QueryTimeout, cancel)
	return ctx, func() { t.Stop(); cancel() }
}

func (v *Viewer) query(w http.ResponseWriter, r *http.Request) {
	d, ok := Find(r.URL.Query().Get("dashboard"))
	if !ok {
		v.fail(w, r, http.StatusNotFound, errors.New("unknown dashboard"))
		return
	}
	p, ok := d.Panel(r.URL.Query().Get("panel"))
	if !ok {
		v.fail(w, r, http.StatusNotFound, errors.New("unknown panel"))
		return
	}
	if !v.visible(accessOf(r), d.UID, p.ID) {
		v.fail(w, r, http.StatusForbidden, errors.New("this panel is not per organization (it shows every organization's data): only the dashboards token sees it"))
		return
	}
	params, err := v.params(r)
	if errors.Is(err, errOtherOrganization) {
		v.fail(w, r, http.StatusForbidden, err)
		return
	}
	if err != nil {
		v.fail(w, r, http.StatusBadRequest, err)
		return
	}
	ctx, cancel := v.queryCtx(r.Context())
	defer cancel()
	res, err := Run(ctx, v.conn, p, params)
	if err != nil {
		v.fail(w, r, http.StatusBadGateway, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (v *Viewer) filters(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := v.queryCtx(r.Context())
	defer cancel()
	db := v.cfg.Database
	out := struct {
		Orgs   []string `json:"orgs"`
		Groups []uint32 `json:"groups"`
		Agents []string `json:"agents"`
	}{Orgs: []string{}, Groups: []uint32{}, Agents: []string{}}
	org := r.URL.Query().Get("org")
	if len(org) > 200 {
		v.fail(w, r, http.StatusBadRequest, errors.New("org too long"))
		return
	}
	if acc := accessOf(r); acc.Org != "" {
		if org != "" && org != acc.Org {
			v.fail(w, r, http.StatusForbidden, errOtherOrganization)
			return
		}
		org = acc.Org
		out.Orgs = []string{acc.Org}
	} else {
		row := v.conn.QueryRow(ctx, "SELECT arraySort(groupUniqArray(organization_id)) FROM "+db+".thread_state WHERE hour >= now() - 31 * 86400")
		if err := row.Scan(&out.Orgs); err != nil {
			v.fail(w, r, http.StatusBadGateway, err)
			return
		}
	}
	orgCond := "(" + quote(org) + " = '' OR organization_id = " + quote(org) + ")"
	// Groups and agents active in the last 31 days (cheap: hours of thread_state).
	row := v.conn.QueryRow(ctx, "SELECT arraySort(arrayDistinct(groupArrayArrayMerge(group_ids))), arraySort(arrayDistinct(groupArrayArrayMerge(agent_ids))) FROM "+db+".thread_state WHERE hour >= now() - 31 * 86400 AND "+orgCond)
	if err := row.Scan(&out.Groups, &out.Agents); err != nil {
		v.fail(w, r, http.StatusBadGateway, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}
