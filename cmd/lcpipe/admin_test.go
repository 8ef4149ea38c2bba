package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lcpipe/lcpipe/internal/testenv"
)

// adminGet GETs path from an admin listener.
func adminGet(addr, path string) (int, string, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// checkAdmin waits until the admin listener at addr is ready, then checks
// /healthz, /metrics (with the given metric names) and /debug/pprof/
// (served only with ADMIN_PPROF).
func checkAdmin(t *testing.T, addr string, pprof bool, metrics ...string) {
	t.Helper()
	testenv.Eventually(t, 60*time.Second, func() error {
		code, body, err := adminGet(addr, "/readyz")
		if err != nil {
			return err
		}
		if code != 200 {
			return fmt.Errorf("/readyz %d %s", code, body)
		}
		return nil
	})
	if code, body, err := adminGet(addr, "/healthz"); err != nil || code != 200 {
		t.Errorf("/healthz: %d %q %v", code, body, err)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		code, body, err := adminGet(addr, "/metrics")
		if err != nil || code != 200 {
			return fmt.Errorf("/metrics: %d %v", code, err)
		}
		for _, m := range append(metrics, "go_goroutines", "process_resident_memory_bytes", "target_info") {
			if !strings.Contains(body, "\n"+m) {
				return fmt.Errorf("/metrics lacks %s", m)
			}
		}
		return nil
	})
	want := 404
	if pprof {
		want = 200
	}
	if code, _, err := adminGet(addr, "/debug/pprof/"); err != nil || code != want {
		t.Errorf("/debug/pprof/ = %d (%v), want %d", code, err, want)
	}
}

// TestRunDashboardsAdmin runs the dashboards command: its admin listener
// answers (ready once ClickHouse answers), serves /metrics with the
// viewer's request metrics, and no profiler unless ADMIN_PPROF.
func TestRunDashboardsAdmin(t *testing.T) {
	chcfg := testenv.ClickHouseConfig(t)
	testenv.ClickHouse(t, chcfg)
	adminAddr, viewer := freeAddr(t), freeAddr(t)
	env := map[string]string{
		"CLICKHOUSE_ADDR":     strings.Join(chcfg.Addr, ","),
		"CLICKHOUSE_DATABASE": chcfg.Database,
		"DASHBOARDS_ADDR":     viewer,
		"DASHBOARDS_TOKEN":    "admin-test-token-0123456789",
		"ADMIN_ADDR":          adminAddr,
	}
	inv := newInvocation("dashboards", "test", nil, io.Discard, slog.New(slog.DiscardHandler))
	inv.lookup = func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runDashboards(ctx, inv) }()
	testenv.Eventually(t, 30*time.Second, func() error {
		select {
		case err := <-done:
			t.Fatalf("dashboards stopped: %v", err)
		default:
		}
		// Signed in with the static token (the dashboards refuse the anonymous).
		req, _ := http.NewRequest(http.MethodGet, "http://"+viewer+"/", nil)
		req.Header.Set("Authorization", "Bearer admin-test-token-0123456789")
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("viewer / = %d", resp.StatusCode)
		}
		return nil
	})
	checkAdmin(t, adminAddr, false, `lcpipe_dashboards_requests_total{code="200",route="page"}`, "lcpipe_dashboards_request_duration_seconds_bucket")
	cancel()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("runDashboards: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("runDashboards did not stop")
	}
	if _, _, err := adminGet(adminAddr, "/healthz"); err == nil {
		t.Errorf("admin listener still answers after shutdown")
	}
}
