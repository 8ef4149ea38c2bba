package main

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync/atomic"

	"github.com/lcpipe/lcpipe/internal/chconn"
	"github.com/lcpipe/lcpipe/processor"
	"github.com/lcpipe/lcpipe/schema"
)

// processorConfigHook, when set, edits the processor's configuration
// before it starts. Only tests set it (to play an older decoder in
// `lcpipe dlq redrive` tests); nothing in a real run does.
var processorConfigHook func(*processor.Config)

// runProcessor consumes the raw topic and writes each unique event once
// into ClickHouse (see package processor). It applies the schema
// migrations first, so a processor never writes to an older schema.
func runProcessor(ctx context.Context, inv *invocation) error {
	kcfg := inv.Kafka()
	chcfg := inv.ClickHouse()
	d := processor.DefaultConfig()
	cfg := d
	cfg.Group = inv.String("KAFKA_GROUP", d.Group, "consumer group of the processors; a new group starts at the earliest offset")
	cfg.BatchRows = inv.Int("BATCH_ROWS", d.BatchRows, "rows per batch: a batch is de-duplicated and sent to ClickHouse when it has this many")
	cfg.BatchBytes = inv.Bytes("BATCH_BYTES", d.BatchBytes, "approximate memory per batch: a batch is de-duplicated and sent when it is this large")
	cfg.BatchLinger = inv.Duration("BATCH_LINGER", d.BatchLinger, "longest a batch waits before it is flushed (Go duration)")
	cfg.InsertRows = inv.Int("INSERT_ROWS", d.InsertRows, "rows per ClickHouse INSERT: consecutive batches stream into one INSERT (one part); offsets are committed when it completes")
	cfg.InsertLinger = inv.Duration("INSERT_LINGER", d.InsertLinger, "longest an INSERT stays open collecting batches (Go duration)")
	cfg.DedupWindow = inv.Duration("DEDUP_WINDOW", d.DedupWindow, "retry horizon of state changes (tags, properties, status...): the same state again for the same subject, with nothing different in between, closer than this is a retry")
	cfg.SessionTimeout = inv.Duration("KAFKA_SESSION_TIMEOUT", d.SessionTimeout, "consumer group session: how long a crashed processor keeps its partitions")
	cfg.LagInterval = inv.Duration("LAG_INTERVAL", d.LagInterval, "how often the consumer group's lag (records and seconds, per partition) is sampled from Kafka for /metrics and pipeline_lag; negative turns it off")
	adminCfg := adminEnv(inv)
	telCfg := telemetryEnv(inv)
	memLimit := inv.Bytes("GOMEMLIMIT", 256<<20, "soft memory limit of the Go runtime; batches and caches are sized to stay below the default")
	settle := settleEnv(inv)
	keep := retentionEnv(inv)
	// The LiveChat app (OAuth), when configured, names agents and groups.
	app, appErr := setupApp(ctx, inv)
	if err := inv.parse(); err != nil {
		if app != nil {
			app.Close()
		}
		return err
	}
	if app != nil {
		defer app.Close()
	}
	if appErr != nil {
		return fmt.Errorf("processor: LiveChat app: %w", appErr)
	}
	if processorConfigHook != nil {
		processorConfigHook(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	// GC works harder near the limit instead of letting a backlog grow RSS.
	debug.SetMemoryLimit(memLimit)
	// The flusher uses three connections: lookups, the open INSERT and the
	// previous INSERT completing in the background. Every pooled connection
	// keeps the buffer of the largest block it sent (one batch), so a small
	// pool bounds memory.
	chcfg.MaxOpenConns = 3
	tel, stopTel, err := startTelemetry(ctx, inv, telCfg)
	if err != nil {
		return err
	}
	defer stopTel()
	// The admin listener answers from the start (a migration can take a
	// while); ready once consuming with Kafka and ClickHouse answering.
	var running atomic.Pointer[processor.Processor]
	adminCfg.Ready = func(ctx context.Context) error {
		p := running.Load()
		if p == nil {
			return errors.New("starting: migrating the schema")
		}
		return p.Ready(ctx)
	}
	stopAdmin, err := startAdmin(ctx, inv, adminCfg, tel, nil)
	if err != nil {
		return err
	}
	defer func() {
		if aerr := stopAdmin(); aerr != nil {
			inv.log.Warn("admin listener", "error", aerr)
		}
	}()
	conn, err := chconn.Open(ctx, chcfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := schema.Migrate(ctx, conn, schema.Options{Database: chcfg.Database, Cluster: chcfg.Cluster}, inv.log); err != nil {
		return err
	}
	var dir processor.Directory
	if app != nil {
		dir = app.Directory()
	}
	p, err := processor.New(processor.Options{
		Config:     cfg,
		Kafka:      kcfg,
		ClickHouse: conn,
		Database:   chcfg.Database,
		Directory:  dir,
		Log:        inv.log,
		Telemetry:  tel,
	})
	if err != nil {
		return err
	}
	running.Store(p)
	// The dashboards' day rollups are kept next to the writes; stopped when
	// the processor stops.
	// So is data retention (RETENTION_DAYS); the settler leaves the days
	// it drops alone.
	withHorizon(settle, *keep)
	sctx, stopSettler := context.WithCancel(ctx)
	waitSettler, err := startSettler(sctx, inv, chcfg, *settle)
	if err != nil {
		stopSettler()
		return err
	}
	waitRetention, err := startRetention(sctx, inv, chcfg, *keep)
	if err != nil {
		stopSettler()
		waitSettler()
		return err
	}
	err = p.Run(ctx)
	stopSettler()
	waitSettler()
	waitRetention()
	return err
}
