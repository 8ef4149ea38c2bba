package dashboards

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/lcpipe/lcpipe/internal/chconn"
	"github.com/lcpipe/lcpipe/internal/secret"
	"github.com/lcpipe/lcpipe/internal/simulate"
	"github.com/lcpipe/lcpipe/internal/testenv"
)

// recentData fills a fresh database, through Kafka and the processor, with
// the last six hours of simulated traffic (dropped when the test ends).
func recentData(t *testing.T) (string, *simulate.Dataset) {
	t.Helper()
	cfg := simulate.DefaultConfig()
	cfg.Seed = 7
	ds, err := simulate.Generate(cfg, time.Now().Add(-6*time.Hour), 6*time.Hour, 1200)
	if err != nil {
		t.Fatal(err)
	}
	_, db, _ := throughProcessor(t, ds)
	return db, ds
}

// analystConn connects as the read-only analyst user of the local setup.
func analystConn(t *testing.T) driver.Conn {
	t.Helper()
	cfg := chconn.DefaultConfig()
	cfg.Addr = testenv.ClickHouseConfig(t).Addr
	cfg.User, cfg.Password = "analyst", "analyst"
	return testenv.ClickHouse(t, cfg)
}

// newTestViewer serves a viewer signed in with its static token: every
// request (a test's or a headless browser's) gets the token's bearer header
// on the way in, as a proxy in front of the dashboards might add it. The
// sign-in itself is tested in auth_test.go.
func newTestViewer(t *testing.T, db string) *httptest.Server {
	t.Helper()
	vc := DefaultViewerConfig()
	vc.Database = db
	vc.Token = secret.Secret(testToken)
	v, err := NewViewer(vc, analystConn(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	h := v.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Set("Authorization", "Bearer "+testToken)
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

const testToken = "test-dashboards-token-0123456789"

func getJSON(t *testing.T, u string, status int, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != status {
		var b [512]byte
		n, _ := resp.Body.Read(b[:])
		t.Fatalf("GET %s: status %d, want %d: %s", u, resp.StatusCode, status, b[:n])
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
}

// TestViewer checks the built-in viewer end to end as the read-only
// analyst user: the page and assets, every panel through the JSON API with
// data, filter lists, and clear JSON errors for bad requests.
func TestViewer(t *testing.T) {
	db, ds := recentData(t)
	srv := newTestViewer(t, db)

	for _, path := range []string{"/", "/assets/app.js", "/assets/style.css", "/healthz"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: %d", path, resp.StatusCode)
		}
	}
	var meta struct {
		Dashboards []struct {
			UID    string `json:"uid"`
			Panels []struct {
				ID string `json:"id"`
			} `json:"panels"`
		} `json:"dashboards"`
	}
	getJSON(t, srv.URL+"/api/dashboards", 200, &meta)
	if len(meta.Dashboards) != len(All()) {
		t.Fatalf("dashboards: %d, want %d", len(meta.Dashboards), len(All()))
	}
	from, to := time.Now().Add(-24*time.Hour).UnixMilli(), time.Now().Add(time.Hour).UnixMilli()
	for _, d := range meta.Dashboards {
		for _, p := range d.Panels {
			q := url.Values{"dashboard": {d.UID}, "panel": {p.ID}, "from": {fmt.Sprint(from)}, "to": {fmt.Sprint(to)}}
			var res Result
			getJSON(t, srv.URL+"/api/query?"+q.Encode(), 200, &res)
			if len(res.Rows) == 0 {
				t.Errorf("%s/%s: no rows", d.UID, p.ID)
			}
		}
	}
	q := url.Values{"dashboard": {"lc-overview"}, "panel": {"total_chats"}, "from": {fmt.Sprint(from)}, "to": {fmt.Sprint(to)},
		"org": {ds.Orgs[0].ID}, "group": {"1"}, "agent": {ds.Orgs[0].Agents[1].ID}}
	var res Result
	getJSON(t, srv.URL+"/api/query?"+q.Encode(), 200, &res)

	var filters struct {
		Orgs   []string `json:"orgs"`
		Groups []uint32 `json:"groups"`
		Agents []string `json:"agents"`
	}
	getJSON(t, srv.URL+"/api/filters", 200, &filters)
	if len(filters.Orgs) != len(ds.Orgs) || len(filters.Groups) == 0 || len(filters.Agents) == 0 {
		t.Errorf("filters: %+v", filters)
	}

	for _, tc := range []struct {
		query  string
		status int
	}{
		{"dashboard=nope&panel=x&from=1&to=2", 404},
		{"dashboard=lc-overview&panel=nope&from=1&to=2", 404},
		{"dashboard=lc-overview&panel=total_chats&from=5&to=2", 400},
		{"dashboard=lc-overview&panel=total_chats&from=x&to=2", 400},
		{"dashboard=lc-overview&panel=total_chats&from=1&to=2&group=abc", 400},
		{"dashboard=lc-overview&panel=total_chats&from=0&to=99999999999999", 400},
	} {
		var e struct {
			Error     string `json:"error"`
			RequestID string `json:"request_id"`
		}
		getJSON(t, srv.URL+"/api/query?"+tc.query, tc.status, &e)
		if e.Error == "" || e.RequestID == "" {
			t.Errorf("%s: error body %+v", tc.query, e)
		}
	}
	// A quote in a filter value is data, not SQL.
	q.Set("org", "x' OR 1=1 --")
	getJSON(t, srv.URL+"/api/query?"+q.Encode(), 200, &res)
	if Float(res.Rows[0][0]) != 0 {
		t.Errorf("injected org matched %v chats", res.Rows[0][0])
	}
	_ = context.Background
}
