package main

import (
	"context"
	"sync"

	"github.com/lcpipe/lcpipe/dashboards"
	"github.com/lcpipe/lcpipe/internal/chconn"
)

// settleEnv reads the settings of the dashboards' day rollups
// (dashboards.Settler), which every processor runs next to consuming:
// wherever events are written, the rollups that keep long dashboard ranges
// fast are kept up to date. Declared before inv.parse.
func settleEnv(inv *invocation) *dashboards.SettlerConfig {
	d := dashboards.DefaultSettlerConfig()
	c := d
	c.Interval = inv.Duration("SETTLE_INTERVAL", d.Interval,
		"how often the processor brings the dashboards' rollups (threads_settled, webhook_hours) up to date; 0 turns it off")
	c.After = inv.Duration("SETTLE_AFTER", d.After,
		"threads that started before the whole hour this long ago are read from the rollups; newer ones are merged live")
	return &c
}

// startSettler runs the settler on a connection of its own (its INSERT ...
// SELECT of a day must not wait behind, or hold up, the processor's
// inserts) until ctx ends. The returned function waits for it to stop.
// Errors only delay the rollups (the panels then merge more live), so they
// are logged, never fatal.
func startSettler(ctx context.Context, inv *invocation, chcfg chconn.Config, cfg dashboards.SettlerConfig) (wait func(), err error) {
	if cfg.Interval <= 0 {
		inv.log.Info("settler off (SETTLE_INTERVAL=0): dashboards merge every range live")
		return func() {}, nil
	}
	chcfg.MaxOpenConns = 1
	conn, err := chconn.Open(ctx, chcfg)
	if err != nil {
		return nil, err
	}
	cfg.Database = chcfg.Database
	cfg.Log = inv.log
	s := dashboards.NewSettler(conn, cfg)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer conn.Close()
		_ = s.Run(ctx)
	}()
	return wg.Wait, nil
}
