package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/lcpipe/lcpipe/dashboards"
	"github.com/lcpipe/lcpipe/internal/chconn"
	"github.com/lcpipe/lcpipe/internal/secret"
)

// runDashboards serves the built-in dashboards viewer on its own address
// (never the public webhook listener), reading ClickHouse as the read-only
// analyst user.
func runDashboards(ctx context.Context, inv *invocation) error {
	ch := inv.ClickHouse()
	vc := dashboards.DefaultViewerConfig()
	vc.Addr = inv.String("DASHBOARDS_ADDR", vc.Addr, "listen address of the built-in dashboards (keep it private)")
	ch.User = inv.String("DASHBOARDS_CLICKHOUSE_USER", "analyst", "ClickHouse user of the dashboards (read-only)")
	ch.Password = secret.Secret(inv.String("DASHBOARDS_CLICKHOUSE_PASSWORD", "analyst", "its password"))
	vc.Refresh = inv.Duration("DASHBOARDS_REFRESH", vc.Refresh, "default auto-refresh period of the page")
	vc.QueryTimeout = inv.Duration("DASHBOARDS_QUERY_TIMEOUT", vc.QueryTimeout, "cancel a panel query after this long")
	if err := inv.parse(); err != nil {
		return err
	}
	vc.Database = ch.Database
	conn, err := chconn.Open(ctx, ch)
	if err != nil {
		return err
	}
	defer conn.Close()
	v, err := dashboards.NewViewer(vc, conn, inv.log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", vc.Addr)
	if err != nil {
		return fmt.Errorf("dashboards: listen: %w", err)
	}
	srv := &http.Server{Handler: v.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	inv.log.Info("dashboards listening", "url", "http://"+ln.Addr().String()+"/", "database", vc.Database, "clickhouse_user", ch.User)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("dashboards: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("dashboards: shutdown: %w", err)
	}
	return nil
}
