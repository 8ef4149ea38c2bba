package dashboards

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lcpipe/lcpipe/internal/lcfake"
	"github.com/lcpipe/lcpipe/internal/secret"
	"github.com/lcpipe/lcpipe/internal/simulate"
	"github.com/lcpipe/lcpipe/lcapp"
)

func browser(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 30 * time.Second}
}

// fetch GETs u and returns the status, the final URL and the body.
func fetch(t *testing.T, c *http.Client, u string) (int, string, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Request.URL.String(), string(b)
}

func fetchJSON(t *testing.T, c *http.Client, u string, status int, v any) {
	t.Helper()
	code, _, body := fetch(t, c, u)
	if code != status {
		t.Fatalf("GET %s: %d, want %d: %s", u, code, status, body)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(body), v); err != nil {
			t.Fatalf("GET %s: %v: %s", u, err, body)
		}
	}
}

// Without a sign-in nothing but the sign-in page, the assets and /healthz
// answers; the static token (in the URL once, the form, or a bearer header)
// signs in for every organization; signing out ends it.
func TestViewerRequiresSignIn(t *testing.T) {
	vc := DefaultViewerConfig()
	if err := vc.Validate(); err == nil || !strings.Contains(err.Error(), "DASHBOARDS_TOKEN") {
		t.Fatalf("a viewer without any sign-in validated: %v", err)
	}
	vc.Token = "short"
	if err := vc.Validate(); err == nil || !strings.Contains(err.Error(), "16 characters") {
		t.Fatalf("a short token validated: %v", err)
	}
	vc.Token = secret.Secret(testToken)
	v, err := NewViewer(vc, analystConn(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(v.Handler())
	t.Cleanup(srv.Close)
	anon := browser(t)
	for _, p := range []string{"/healthz", "/assets/app.js", "/assets/style.css", SignInPath} {
		if code, _, _ := fetch(t, anon, srv.URL+p); code != 200 {
			t.Errorf("GET %s without sign-in: %d, want 200", p, code)
		}
	}
	for _, p := range []string{"/api/dashboards", "/api/filters", "/api/query?dashboard=lc-overview&panel=total_chats&from=1&to=2"} {
		fetchJSON(t, anon, srv.URL+p, 401, nil)
	}
	if code, at, body := fetch(t, anon, srv.URL+"/?dashboard=lc-overview"); code != 200 || !strings.HasSuffix(at, SignInPath) || !strings.Contains(body, `id="token-form"`) || strings.Contains(body, `id="livechat"`) {
		t.Errorf("the page without sign-in: %d at %s:\n%s", code, at, body)
	}
	if code, _, _ := fetch(t, anon, srv.URL+"/?token=not-the-token-0123456789"); code != 403 {
		t.Errorf("a wrong token in the URL: %d, want 403", code)
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/dashboards", nil)
	req.Header.Set("Authorization", "Bearer not-the-token-0123456789")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Errorf("a wrong bearer token: %v %v", resp.StatusCode, err)
	}

	// The token once in the URL: a session, and the URL loses the token.
	b := browser(t)
	code, at, _ := fetch(t, b, srv.URL+"/?dashboard=lc-agents&token="+testToken)
	if code != 200 || strings.Contains(at, "token") || !strings.Contains(at, "dashboard=lc-agents") {
		t.Errorf("sign-in by URL ended %d at %s", code, at)
	}
	var meta struct {
		Viewer     viewerAccess `json:"viewer"`
		Dashboards []struct{ UID string }
	}
	fetchJSON(t, b, srv.URL+"/api/dashboards", 200, &meta)
	if len(meta.Dashboards) != len(All()) || meta.Viewer.Org != "" || meta.Viewer.Method != "token" {
		t.Errorf("a token viewer sees %d dashboards as %+v", len(meta.Dashboards), meta.Viewer)
	}
	resp, err := b.PostForm(srv.URL+SignOutPath, url.Values{})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	fetchJSON(t, b, srv.URL+"/api/dashboards", 401, nil)

	// The sign-in form.
	resp, err = b.PostForm(srv.URL+SignInPath, url.Values{"token": {testToken}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	fetchJSON(t, b, srv.URL+"/api/dashboards", 200, nil)
}

// TestViewerSignedInWithLiveChat: an administrator of organization A signs
// in through the LiveChat fake and gets A's numbers — every panel it is
// shown equals the panel run for A, the chat count is the simulation's for
// A — and a 403 for B's, whatever the request's org parameter; panels that
// are not per organization are neither listed nor answered; a normal agent
// of A is refused. An administrator of B gets B's numbers and a 403 for A's.
func TestViewerSignedInWithLiveChat(t *testing.T) {
	db, ds := recentData(t)
	orgA, orgB := ds.Orgs[0].ID, ds.Orgs[1].ID
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	clientSecret := "fake-secret-" + newID()
	fake := lcfake.New(lcfake.Config{ClientID: "dashclient0000000000000000000000", ClientSecret: clientSecret,
		RedirectURIs: []string{base + LiveChatCallback}, OwnerOrganizationID: orgA, AnyRoleGetsAdminScopes: true})
	t.Cleanup(fake.Close)
	fake.AddUser(lcfake.User{AccountID: "acc-admin-a", OrganizationID: orgA, Role: "administrator", Email: "admin@a.example"})
	fake.AddUser(lcfake.User{AccountID: "acc-agent-a", OrganizationID: orgA, Role: "normal", Email: "agent@a.example"})
	fake.AddUser(lcfake.User{AccountID: "acc-owner-b", OrganizationID: orgB, Role: "owner", Email: "owner@b.example"})
	acfg := lcapp.DefaultConfig()
	acfg.ClientID, acfg.ClientSecret = "dashclient0000000000000000000000", secret.Secret(clientSecret)
	acfg.AccountsURL, acfg.APIURL = fake.Accounts.URL, fake.APIURL()
	flow, err := lcapp.NewSignInFlow(acfg, base+LiveChatCallback, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	vc := DefaultViewerConfig()
	vc.Database, vc.SignIn = db, flow
	conn := analystConn(t)
	v, err := NewViewer(vc, conn, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: v.Handler()}}
	srv.Start()
	t.Cleanup(srv.Close)

	signIn := func(account string) *http.Client {
		t.Helper()
		fake.SignIn(account)
		b := browser(t)
		code, at, body := fetch(t, b, base+"/")
		if code != 200 || !strings.HasSuffix(at, SignInPath) || !strings.Contains(body, `id="livechat"`) || strings.Contains(body, `id="token-form"`) {
			t.Fatalf("sign-in page: %d at %s:\n%s", code, at, body)
		}
		return b
	}
	from, to := ds.From.UnixMilli(), ds.To.UnixMilli()
	query := func(uid, panel, org string) string {
		q := url.Values{"dashboard": {uid}, "panel": {panel}, "from": {fmt.Sprint(from)}, "to": {fmt.Sprint(to)}}
		if org != "" {
			q.Set("org", org)
		}
		return base + "/api/query?" + q.Encode()
	}
	ctx := context.Background()
	direct := func(p Panel, org string) *Result {
		t.Helper()
		res, err := Run(ctx, conn, p, Params{DB: db, FromMS: from, ToMS: to, BucketS: Bucket(from, to), Group: -1, Org: org})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}

	// A normal agent of A is refused (the administrator check of lcapp).
	agent := signIn("acc-agent-a")
	if code, _, body := fetch(t, agent, base+LiveChatPath); code != 403 || !strings.Contains(body, "administrator") {
		t.Errorf("a normal agent's sign-in: %d\n%s", code, body)
	}
	fetchJSON(t, agent, base+"/api/dashboards", 401, nil)

	for _, tc := range []struct{ account, own, other string }{{"acc-admin-a", orgA, orgB}, {"acc-owner-b", orgB, orgA}} {
		t.Run(tc.account, func(t *testing.T) {
			b := signIn(tc.account)
			if code, at, body := fetch(t, b, base+LiveChatPath); code != 200 || at != base+"/" || !strings.Contains(body, `id="grid"`) {
				t.Fatalf("after Sign in with LiveChat: %d at %s", code, at)
			}
			var meta struct {
				Viewer     viewerAccess `json:"viewer"`
				Dashboards []struct {
					UID    string `json:"uid"`
					Panels []struct {
						ID string `json:"id"`
					} `json:"panels"`
				} `json:"dashboards"`
			}
			fetchJSON(t, b, base+"/api/dashboards", 200, &meta)
			if meta.Viewer.Org != tc.own || meta.Viewer.Method != "livechat" {
				t.Fatalf("viewer %+v, want organization %s", meta.Viewer, tc.own)
			}
			shown := 0
			for _, d := range meta.Dashboards {
				dash, _ := Find(d.UID)
				for _, pj := range d.Panels {
					shown++
					p, _ := dash.Panel(pj.ID)
					if !perOrganization(p) {
						t.Errorf("%s/%s is not per organization but is listed", d.UID, p.ID)
					}
					var got Result
					fetchJSON(t, b, query(d.UID, p.ID, ""), 200, &got)
					var same Result
					fetchJSON(t, b, query(d.UID, p.ID, tc.own), 200, &same)
					fetchJSON(t, b, query(d.UID, p.ID, tc.other), 403, nil)
					if strings.Contains(p.SQL, "now()") {
						continue // values move with the clock: shape only
					}
					want := direct(p, tc.own)
					if !viewerRows(t, got.Rows, want.Rows) || !viewerRows(t, got.Rows, same.Rows) {
						t.Errorf("%s/%s: the viewer got %v, the panel for its organization is %v", d.UID, p.ID, got.Rows, want.Rows)
					}
				}
			}
			hidden := 0
			for _, d := range All() {
				for _, p := range d.Panels {
					if !perOrganization(p) {
						hidden++
						fetchJSON(t, b, query(d.UID, p.ID, ""), 403, nil)
					}
				}
			}
			if hidden == 0 || shown == 0 {
				t.Fatalf("%d panels shown, %d hidden: the test checks nothing", shown, hidden)
			}
			// The simulation's count for the organization, not everyone's.
			var total Result
			fetchJSON(t, b, query("lc-overview", "total_chats", ""), 200, &total)
			f := simulate.Filter{From: ds.From, To: ds.To, Org: tc.own, Group: -1}
			all := simulate.Filter{From: ds.From, To: ds.To, Group: -1}
			if got, want := int(Float(total.Rows[0][0])), ds.Expect(f).Chats; got != want || want == ds.Expect(all).Chats {
				t.Errorf("total chats %d, want %s's %d (all organizations: %d)", got, tc.own, want, ds.Expect(all).Chats)
			}
			var filters struct {
				Orgs []string `json:"orgs"`
			}
			fetchJSON(t, b, base+"/api/filters", 200, &filters)
			if !reflect.DeepEqual(filters.Orgs, []string{tc.own}) {
				t.Errorf("filters list organizations %v", filters.Orgs)
			}
			fetchJSON(t, b, base+"/api/filters?org="+url.QueryEscape(tc.other), 403, nil)
		})
	}
}

// viewerRows compares rows as the viewer sends them (through JSON), with
// grafana_test.go's sameRows (floats to the last bits).
func viewerRows(t *testing.T, a, b [][]any) bool {
	t.Helper()
	norm := func(rows [][]any) [][]any {
		raw, err := json.Marshal(rows)
		if err != nil {
			t.Fatal(err)
		}
		var out [][]any
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	return sameRows(norm(a), norm(b))
}
