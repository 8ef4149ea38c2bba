package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/lcpipe/lcpipe/dashboards"
	"github.com/lcpipe/lcpipe/internal/chconn"
	"github.com/lcpipe/lcpipe/internal/secret"
	"github.com/lcpipe/lcpipe/lcapp"
)

// runDashboards serves the built-in dashboards viewer on its own address
// (never the public webhook listener), reading ClickHouse as the read-only
// analyst user, to signed-in viewers only: DASHBOARDS_TOKEN (every
// organization) and/or "Sign in with LiveChat" when the LiveChat app and
// DASHBOARDS_PUBLIC_URL are configured (an administrator sees their
// organization).
func runDashboards(ctx context.Context, inv *invocation) error {
	ch := inv.ClickHouse()
	vc := dashboards.DefaultViewerConfig()
	vc.Addr = inv.String("DASHBOARDS_ADDR", vc.Addr, "listen address of the built-in dashboards (keep it private)")
	ch.User = inv.String("DASHBOARDS_CLICKHOUSE_USER", "analyst", "ClickHouse user of the dashboards (read-only)")
	ch.Password = secret.Secret(inv.String("DASHBOARDS_CLICKHOUSE_PASSWORD", "analyst", "its password"))
	vc.Refresh = inv.Duration("DASHBOARDS_REFRESH", vc.Refresh, "default auto-refresh period of the page")
	vc.QueryTimeout = inv.Duration("DASHBOARDS_QUERY_TIMEOUT", vc.QueryTimeout, "cancel a panel query after this long")
	vc.Token = secret.Secret(inv.String("DASHBOARDS_TOKEN", "", "static sign-in token of the dashboards (16+ characters; sees every organization): open /?token=... once, or send Authorization: Bearer"))
	vc.SessionTTL = inv.Duration("DASHBOARDS_SESSION_TTL", vc.SessionTTL, "how long a dashboards sign-in lasts")
	public := inv.String("DASHBOARDS_PUBLIC_URL", "", "URL browsers open the dashboards at; with the LiveChat app configured it enables Sign in with LiveChat (put it + /auth/livechat/callback on the app's redirect whitelist)")
	acfg := lcapp.DefaultConfig()
	oauthEnv(inv, &acfg, false)
	adminCfg := adminEnv(inv)
	telCfg := telemetryEnv(inv)
	if err := inv.parse(); err != nil {
		return err
	}
	vc.Database = ch.Database
	switch {
	case acfg.ClientID != "" && public != "":
		u, err := url.Parse(public)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.Trim(u.Path, "/") != "" || u.RawQuery != "" {
			return fmt.Errorf("dashboards: DASHBOARDS_PUBLIC_URL=%q must be an http(s) URL without path or query (the dashboards are served at the root)", public)
		}
		flow, err := lcapp.NewSignInFlow(acfg, strings.TrimRight(public, "/")+dashboards.LiveChatCallback, inv.log.With("component", "signin"))
		if err != nil {
			return fmt.Errorf("dashboards: Sign in with LiveChat: %w", err)
		}
		vc.SignIn, vc.SecureCookies = flow, u.Scheme == "https"
	case acfg.ClientID != "":
		inv.log.Warn("the LiveChat app is configured but DASHBOARDS_PUBLIC_URL is not: Sign in with LiveChat is off for the dashboards")
	}
	if err := vc.Validate(); err != nil { // before connecting: a clear error first
		return err
	}
	tel, stopTel, err := startTelemetry(ctx, inv, telCfg)
	if err != nil {
		return err
	}
	defer stopTel()
	conn, err := chconn.Open(ctx, ch)
	if err != nil {
		return err
	}
	defer conn.Close()
	// Ready when ClickHouse answers the read-only user.
	adminCfg.Ready = conn.Ping
	stopAdmin, err := startAdmin(ctx, inv, adminCfg, tel, nil)
	if err != nil {
		return err
	}
	defer func() {
		if aerr := stopAdmin(); aerr != nil {
			inv.log.Warn("admin listener", "error", aerr)
		}
	}()
	v, err := dashboards.NewViewer(vc, conn, inv.log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", vc.Addr)
	if err != nil {
		return fmt.Errorf("dashboards: listen: %w", err)
	}
	srv := &http.Server{Handler: observeHTTP(tel, v.Handler()), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	inv.log.Info("dashboards listening", "url", "http://"+ln.Addr().String()+"/", "database", vc.Database, "clickhouse_user", ch.User,
		"token_sign_in", vc.Token != "", "livechat_sign_in", vc.SignIn != nil)
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
