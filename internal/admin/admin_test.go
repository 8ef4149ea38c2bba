package admin

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestEndpoints(t *testing.T) {
	var ready atomic.Pointer[error]
	away := errors.New("kafka away")
	ready.Store(&away)
	s, err := New(Config{Addr: "127.0.0.1:0", Ready: func(context.Context) error { return *ready.Load() }})
	if err != nil {
		t.Fatal(err)
	}
	s.Handle("GET /status", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, `{"ok":1}`) }))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + ln.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	cases := []struct {
		path string
		code int
		body string
	}{
		{"/healthz", 200, "ok"},
		{"/readyz", 503, "kafka away"},
		{"/status", 200, `{"ok":1}`},
		{"/nothing", 404, ""},
	}
	for _, c := range cases {
		code, body := get(c.path)
		if code != c.code || !strings.Contains(body, c.body) {
			t.Errorf("GET %s = %d %q, want %d containing %q", c.path, code, body, c.code, c.body)
		}
	}
	var none error
	ready.Store(&none)
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("readyz after ready: %d", code)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without an address must fail")
	}
}

// TestMetricsAndPprof: /metrics is served when a handler is given, and the
// profiler only with Pprof (ADMIN_PPROF).
func TestMetricsAndPprof(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "lcpipe_up 1\n") })
	for _, tc := range []struct {
		name        string
		cfg         Config
		metrics     int
		pprof       int
		metricsBody string
	}{
		{"neither", Config{}, 404, 404, ""},
		{"metrics", Config{Metrics: metrics}, 200, 404, "lcpipe_up 1"},
		{"both", Config{Metrics: metrics, Pprof: true}, 200, 200, "lcpipe_up 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Addr = "127.0.0.1:0"
			s, err := New(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			for path, want := range map[string]int{"/metrics": tc.metrics, "/debug/pprof/": tc.pprof, "/debug/pprof/cmdline": tc.pprof} {
				rec := httptest.NewRecorder()
				s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
				if rec.Code != want {
					t.Errorf("GET %s = %d, want %d", path, rec.Code, want)
				}
				if path == "/metrics" && !strings.Contains(rec.Body.String(), tc.metricsBody) {
					t.Errorf("GET /metrics = %q", rec.Body.String())
				}
			}
		})
	}
}
