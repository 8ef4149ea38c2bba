package main

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// runHealthcheck GETs a URL and succeeds on HTTP 200: container images have
// no curl or wget, so docker-compose healthchecks call the binary itself.
func runHealthcheck(ctx context.Context, inv *invocation) error {
	timeout := inv.fs.Duration("timeout", 3*time.Second, "request timeout")
	if err := inv.parse(); err != nil {
		return err
	}
	if inv.fs.NArg() != 1 {
		return fmt.Errorf("usage: lcpipe healthcheck URL")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, inv.fs.Arg(0), nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %s", inv.fs.Arg(0), resp.Status)
	}
	return nil
}
