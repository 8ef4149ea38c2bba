package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/lcpipe/lcpipe/dashboards"
	"github.com/lcpipe/lcpipe/internal/chconn"
	"github.com/lcpipe/lcpipe/retention"
)

const retentionSummary = "drop ClickHouse data older than RETENTION_DAYS now (the processor does it every RETENTION_INTERVAL): retention [--dry-run] [--json]"

// retentionEnv reads the data retention settings (package
// retention), read by the processor, which runs the job, and by `lcpipe
// retention`. Declared before inv.parse.
func retentionEnv(inv *invocation) *retention.Config {
	d := retention.DefaultConfig()
	c := d
	c.Days = inv.Int("RETENTION_DAYS", d.Days,
		"keep ClickHouse data (events, derived tables, rollups, pipeline_batches) at least this many days; older data is dropped by whole months, so up to a month more is kept. 0 keeps everything")
	c.Interval = inv.Duration("RETENTION_INTERVAL", d.Interval, "how often the processor drops data older than RETENTION_DAYS")
	if err := c.Validate(); err != nil {
		inv.errs = append(inv.errs, err)
	}
	return &c
}

// withHorizon tells the settler where retention's data starts, so it never
// writes back a day retention dropped.
func withHorizon(s *dashboards.SettlerConfig, r retention.Config) {
	if r.Days > 0 {
		days := r.Days
		s.Horizon = func(now time.Time) time.Time { return retention.Horizon(now, days) }
	}
}

// startRetention runs the retention job on a connection of its own until
// ctx ends (nothing when RETENTION_DAYS is 0). The returned function
// waits for it to stop. A failed pass is logged and tried again.
func startRetention(ctx context.Context, inv *invocation, chcfg chconn.Config, cfg retention.Config) (wait func(), err error) {
	if cfg.Days <= 0 {
		return func() {}, nil
	}
	chcfg.MaxOpenConns = 1
	conn, err := chconn.Open(ctx, chcfg)
	if err != nil {
		return nil, err
	}
	cfg.Database = chcfg.Database
	cfg.Log = inv.log
	inv.log.Info("retention on: data older than the horizon is dropped", "days", cfg.Days,
		"horizon", retention.Horizon(time.Now(), cfg.Days).Format(time.DateOnly), "interval", cfg.Interval)
	job := retention.New(conn, cfg)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer conn.Close()
		_ = job.Run(ctx)
	}()
	return wg.Wait, nil
}

// runRetention makes one retention pass now (or shows what it would drop).
func runRetention(ctx context.Context, inv *invocation) error {
	chcfg := inv.ClickHouse()
	cfg := retentionEnv(inv)
	dry := inv.fs.Bool("dry-run", false, "list what would be dropped and drop nothing")
	asJSON := inv.fs.Bool("json", false, "print the result as JSON")
	if err := inv.parse(); err != nil {
		return err
	}
	if cfg.Days <= 0 {
		return errors.New("RETENTION_DAYS is 0 (keep everything): set it to the days to keep")
	}
	conn, err := chconn.Open(ctx, chcfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	c := *cfg
	c.Database, c.DryRun, c.Log = chcfg.Database, *dry, inv.log
	st, err := retention.New(conn, c).Pass(ctx)
	if *asJSON {
		if jerr := writeJSON(inv.stdout, st); jerr != nil {
			return errors.Join(err, jerr)
		}
	} else {
		printRetention(inv.stdout, st)
	}
	return err
}

func printRetention(w io.Writer, st retention.Stats) {
	fmt.Fprintln(w, st.String())
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TABLE\tPARTITION\tROWS")
	for _, d := range st.Dropped {
		fmt.Fprintf(tw, "%s\t%s\t%d\n", d.Table, d.Partition, d.Rows)
	}
	for t, n := range st.Deleted {
		fmt.Fprintf(tw, "%s\t(rows)\t%d\n", t, n)
	}
	tw.Flush()
	if len(st.Skipped) > 0 {
		fmt.Fprintf(w, "kept, no time partition and no rule: %v\n", st.Skipped)
	}
}
