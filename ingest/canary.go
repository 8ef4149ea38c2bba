package ingest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/lcpipe/lcpipe/internal/wire"
)

// The freshness canary (Config.CanaryInterval): ingest posts a synthetic
// webhook of action wire.ActionCanary for organization
// wire.CanaryOrganization to its own public endpoint, over HTTP, so it
// takes every step a LiveChat webhook takes (listener, middleware, secret
// check, Kafka or the spool, the processor's decode, dedup and INSERT). The
// processor stores it as a row of kind "canary", which no chat analytic
// reads, and records when it became queryable (pipeline_canaries, the
// lcpipe_canary_freshness_seconds histogram): the pipeline's end-to-end
// freshness, measured even when no customer traffic flows.
//
// The canary is signed with a random secret made at start and accepted
// like a static secret; it is blanked before the record is stored (as
// every secret_key is), so it never leaves the process.

// canary is the sender's state.
type canary struct {
	secret   string
	instance string
	seq      atomic.Uint64
	ok, fail metric.AddOption
}

func newCanary() (*canary, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("ingest: canary secret: %w", err)
	}
	host, _ := os.Hostname()
	return &canary{
		secret:   hex.EncodeToString(b[:]),
		instance: host + "-" + strconv.Itoa(os.Getpid()),
		ok:       metric.WithAttributeSet(attribute.NewSet(attribute.String("result", "ok"))),
		fail:     metric.WithAttributeSet(attribute.NewSet(attribute.String("result", "error"))),
	}, nil
}

// body is the next canary webhook.
func (c *canary) body(now time.Time) []byte {
	id := c.instance + "-" + strconv.FormatInt(now.UnixNano(), 36) + "-" + strconv.FormatUint(c.seq.Add(1), 10)
	b, _ := json.Marshal(map[string]any{
		"webhook_id":      "lcpipe-canary-" + id,
		"secret_key":      c.secret,
		"action":          wire.ActionCanary,
		"organization_id": wire.CanaryOrganization,
		"payload":         map[string]string{"id": id, "sent_at": now.UTC().Format(time.RFC3339Nano), "instance": c.instance},
		"additional_data": map[string]any{},
	})
	return b
}

// canaryURL is the webhook endpoint of the listener at addr, through
// loopback when it listens on every interface.
func canaryURL(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "http://" + addr.String() + WebhookPath
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + WebhookPath
}

// canaryLoop posts a canary every CanaryInterval until ctx ends.
func (s *Server) canaryLoop(ctx context.Context, addr net.Addr) {
	url := canaryURL(addr)
	hc := &http.Client{Timeout: 10 * time.Second}
	t := time.NewTicker(s.cfg.CanaryInterval)
	defer t.Stop()
	failing := false
	for {
		err := s.sendCanary(ctx, hc, url)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			s.tel.canaries.Add(ctx, 1, s.canary.fail)
			if !failing {
				s.log.Warn("canary not accepted by our own endpoint (retried every CANARY_INTERVAL)", "url", url, "error", err)
			}
			failing = true
		default:
			s.tel.canaries.Add(ctx, 1, s.canary.ok)
			if failing {
				s.log.Info("canary accepted again")
			}
			failing = false
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Server) sendCanary(ctx context.Context, hc *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(s.canary.body(time.Now())))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
	}
	return nil
}
