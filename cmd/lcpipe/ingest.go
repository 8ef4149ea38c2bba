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
	adminAddr := inv.String("ADMIN_ADDR", "127.0.0.1:9480", "private admin listener (/healthz, /readyz, /status: spool and quarantine for lcpipe status); keep it off the public network, empty turns it off")
	cfg.Kafka = inv.Kafka()
	for _, s := range inv.List("LIVECHAT_WEBHOOK_SECRETS", "", "webhook secret_key values accepted for every organization, comma-separated (single-tenant setups)") {
		cfg.Secrets = append(cfg.Secrets, secret.Secret(s))
	}
	cfg.KafkaTimeout = inv.Duration("INGEST_KAFKA_TIMEOUT", def.KafkaTimeout, "wait for Kafka's ack before a webhook goes to the local spool instead")
	cfg.Linger = inv.Duration("INGEST_KAFKA_LINGER", def.Linger, "how long the producer waits to batch records (adds at most that much latency)")
	cfg.MaxBodyBytes = int(inv.MaxBody())
	cfg.ShutdownTimeout = inv.Duration("INGEST_SHUTDOWN_TIMEOUT", def.ShutdownTimeout, "on SIGTERM, how long in-flight requests may take to finish")
	cfg.Spool = spool.DefaultConfig(inv.String("SPOOL_DIR", def.Spool.Dir, "folder of the local spool used while Kafka is slow or away"))
	cfg.Spool.MaxBytes = inv.Bytes("SPOOL_MAX_BYTES", def.Spool.MaxBytes, "spool size cap; when full and Kafka is away ingest answers 503")
	cfg.Spool.SegmentBytes = inv.Bytes("SPOOL_SEGMENT_BYTES", def.Spool.SegmentBytes, "size of one spool segment file")
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
	srv, err := ingest.New(cfg)
	if err != nil {
		return err
	}
	if adminAddr == "" {
		return srv.Run(ctx)
	}
	adm, err := admin.New(admin.Config{Addr: adminAddr, Log: inv.log.With("component", "admin")})
	if err != nil {
		srv.Close()
		return err
	}
	adm.Handle("GET /status", srv.StatusHandler())
	actx, stopAdmin := context.WithCancel(ctx)
	adminDone := make(chan error, 1)
	go func() { adminDone <- adm.Run(actx) }()
	err = srv.Run(ctx)
	stopAdmin()
	if aerr := <-adminDone; aerr != nil && err == nil {
		err = aerr
	}
	return err
}
