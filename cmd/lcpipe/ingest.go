package main

import (
	"context"
	"fmt"

	"github.com/lcpipe/lcpipe/ingest"
	"github.com/lcpipe/lcpipe/ingest/spool"
	"github.com/lcpipe/lcpipe/internal/admin"
	"github.com/lcpipe/lcpipe/internal/secret"
)

// runIngest serves POST /webhooks/livechat until SIGTERM/SIGINT, then shuts
// down gracefully (in-flight requests finish, producer flushed, spool
// fsynced). With the LiveChat app configured, the per-organization secrets
// of installed organizations are accepted too and the settings page is
// served by the same listener.
func runIngest(ctx context.Context, inv *invocation) error {
	def := ingest.DefaultConfig()
	cfg := def
	cfg.Addr = inv.String("INGEST_ADDR", def.Addr, "listen address of the webhook endpoint")
	adminCfg := adminEnv(inv)
	cfg.Kafka = inv.Kafka()
	for _, s := range inv.List("LIVECHAT_WEBHOOK_SECRETS", "", "webhook secret_key values accepted for every organization, comma-separated (single-tenant setups)") {
		cfg.Secrets = append(cfg.Secrets, secret.Secret(s))
	}
	cfg.KafkaTimeout = inv.Duration("INGEST_KAFKA_TIMEOUT", def.KafkaTimeout, "wait for Kafka's ack before a webhook goes to the local spool instead")
	cfg.Linger = inv.Duration("INGEST_KAFKA_LINGER", def.Linger, "how long the producer waits to batch records (adds at most that much latency)")
	cfg.MaxBodyBytes = int(inv.MaxBody())
	cfg.ShutdownTimeout = inv.Duration("INGEST_SHUTDOWN_TIMEOUT", def.ShutdownTimeout, "on SIGTERM, how long in-flight requests may take to finish")
	cfg.MaxConns = inv.Int("INGEST_MAX_CONNS", def.MaxConns, "most connections served at once (503 above)")
	cfg.MaxConnsPerIP = inv.Int("INGEST_MAX_CONNS_PER_IP", def.MaxConnsPerIP, "most connections from one address (429 above); 0 = off, right behind a proxy or load balancer")
	cfg.HeaderTimeout = inv.Duration("INGEST_HEADER_TIMEOUT", def.HeaderTimeout, "longest wait for a request's headers")
	cfg.BodyTimeout = inv.Duration("INGEST_BODY_TIMEOUT", def.BodyTimeout, "longest wait for a request's body after its headers (408 above)")
	cfg.IdleTimeout = inv.Duration("INGEST_IDLE_TIMEOUT", def.IdleTimeout, "a kept-alive connection idle this long is closed")
	cfg.BodyMemory = inv.Bytes("INGEST_BODY_MEMORY", def.BodyMemory, "bodies over 64KiB read or handled at once (announced sizes); a request over it gets 503 before its body is read")
	cfg.RefusalLogInterval = inv.Duration("INGEST_REFUSAL_LOG_INTERVAL", def.RefusalLogInterval, "refused requests (401, other 4xx, limits) are logged as one summary per interval")
	cfg.Spool = spool.DefaultConfig(inv.String("SPOOL_DIR", def.Spool.Dir, "folder of the local spool used while Kafka is slow or away"))
	cfg.Spool.MaxBytes = inv.Bytes("SPOOL_MAX_BYTES", def.Spool.MaxBytes, "spool size cap; when full and Kafka is away ingest answers 503")
	cfg.Spool.SegmentBytes = inv.Bytes("SPOOL_SEGMENT_BYTES", def.Spool.SegmentBytes, "size of one spool segment file")
	cfg.CanaryInterval = inv.Duration("CANARY_INTERVAL", 0, "post a freshness canary webhook to our own endpoint this often (e.g. 30s; 0 = off); its rows never count in chat analytics")
	telCfg := telemetryEnv(inv)
	app, err := setupApp(ctx, inv)
	if perr := inv.parse(); perr != nil {
		if app != nil {
			app.Close()
		}
		return perr
	}
	if err != nil {
		return fmt.Errorf("ingest: LiveChat app: %w", err)
	}
	if app != nil {
		defer app.Close()
		cfg.Installations = app
		cfg.Routes = app.Routes
		cfg.OnAccepted = app.OnAccepted
	}
	if len(cfg.Secrets) == 0 && app == nil {
		inv.log.Warn("no LIVECHAT_WEBHOOK_SECRETS and no LiveChat app configured: every webhook will be rejected with 401")
	}
	cfg.Version = version
	cfg.Log = inv.log
	tel, stopTel, err := startTelemetry(ctx, inv, telCfg)
	if err != nil {
		return err
	}
	defer stopTel()
	cfg.Telemetry = tel
	srv, err := ingest.New(cfg)
	if err != nil {
		return err
	}
	// Ready when a webhook can be made durable now (Kafka or the spool).
	adminCfg.Ready = srv.Ready
	stopAdmin, err := startAdmin(ctx, inv, adminCfg, tel, func(adm *admin.Server) {
		adm.Handle("GET /status", srv.StatusHandler())
	})
	if err != nil {
		srv.Close()
		return err
	}
	err = srv.Run(ctx)
	if aerr := stopAdmin(); aerr != nil && err == nil {
		err = aerr
	}
	return err
}
