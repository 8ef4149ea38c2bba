package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/lcpipe/lcpipe/internal/simulate"
)

// runSimulate generates LiveChat traffic. Live mode (default) posts to the
// ingest URL in real time at --rate chats per second until stopped. Dataset
// mode (--chats N) generates N threads over --span ending now (or from
// --start) and writes the bodies to --out; both modes can write the metric
// values the dashboards must show (--report FILE, JSON).
func runSimulate(ctx context.Context, inv *invocation) error {
	cfg := simulate.DefaultConfig()
	live := simulate.DefaultLiveConfig()
	url := inv.fs.String("url", inv.String("SIMULATE_URL", "http://127.0.0.1:8080/webhooks/livechat", "ingest webhook URL the simulator posts to"), "ingest webhook URL (live mode)")
	secret := inv.fs.String("secret", inv.String("SIMULATE_SECRET", cfg.Secret, "secret_key put into every body (must be one ingest accepts)"), "secret_key of every body")
	rateEnv := inv.String("SIMULATE_RATE", "1", "new chats per second in live mode (may be fractional)")
	rateDefault, err := strconv.ParseFloat(rateEnv, 64)
	if err != nil {
		inv.fail("SIMULATE_RATE", rateEnv, err)
	}
	rate := inv.fs.Float64("rate", rateDefault, "new chats per second (live mode)")
	seed := inv.fs.Uint64("seed", uint64(inv.Int("SIMULATE_SEED", 1, "seed: the same seed gives the same traffic")), "seed")
	orgs := inv.fs.Int("orgs", cfg.Orgs, "organizations")
	agents := inv.fs.Int("agents", cfg.AgentsPerOrg, "agents per organization")
	groups := inv.fs.Int("groups", cfg.GroupsPerOrg, "groups per organization")
	retry := inv.fs.Float64("retry-rate", cfg.RetryRate, "share of deliveries sent twice (same body, 5-55 s later)")
	late := inv.fs.Float64("late-rate", cfg.LateRate, "share of self-timestamped deliveries held back 3-30 s (out of order)")
	duration := inv.fs.Duration("duration", 0, "live mode: stop starting chats after this long (0 = until interrupted)")
	drain := inv.fs.Duration("drain", live.Drain, "live mode: after --duration, keep delivering the started chats for up to this long")
	chats := inv.fs.Int("chats", 0, "dataset mode: generate this many threads instead of live traffic")
	span := inv.fs.Duration("span", 24*time.Hour, "dataset mode: time span of the threads")
	startFlag := inv.fs.String("start", "", "dataset mode: RFC 3339 start (default: now - span)")
	out := inv.fs.String("out", "", "dataset mode: write the bodies to this directory")
	report := inv.fs.String("report", "", "write the expected metric values (JSON) to this file; - for stdout")
	if err := inv.parse(); err != nil {
		return err
	}
	cfg.Seed, cfg.Secret, cfg.Orgs, cfg.AgentsPerOrg, cfg.GroupsPerOrg = *seed, *secret, *orgs, *agents, *groups
	cfg.RetryRate, cfg.LateRate = *retry, *late
	if err := cfg.Validate(); err != nil {
		return err
	}

	if *chats > 0 {
		start := time.Now().Add(-*span)
		if *startFlag != "" {
			t, err := time.Parse(time.RFC3339, *startFlag)
			if err != nil {
				return fmt.Errorf("--start: %w", err)
			}
			start = t
		}
		ds, err := simulate.Generate(cfg, start, *span, *chats)
		if err != nil {
			return err
		}
		if *out != "" {
			if err := simulate.WriteFiles(*out, ds.Deliveries); err != nil {
				return err
			}
		}
		inv.log.Info("dataset generated", "threads", len(ds.Threads), "deliveries", len(ds.Deliveries), "out", *out)
		return writeReport(inv, *report, ds)
	}

	live.Rate, live.Duration, live.Drain = *rate, *duration, *drain
	g, err := simulate.New(cfg)
	if err != nil {
		return err
	}
	poster := &simulate.HTTPPoster{URL: *url, Client: &http.Client{Timeout: 10 * time.Second}}
	l, err := simulate.NewLive(live, g, poster, inv.log)
	if err != nil {
		return err
	}
	orgIDs := make([]string, 0, len(g.Orgs()))
	for _, o := range g.Orgs() {
		orgIDs = append(orgIDs, o.ID)
	}
	inv.log.Info("simulator posting live traffic", "url", *url, "chats_per_second", live.Rate, "seed", cfg.Seed, "organizations", orgIDs)
	ds, err := l.Run(ctx)
	if err != nil {
		return err
	}
	inv.log.Info("simulator stopped", "chats", l.Stats.Chats.Load(), "sent", l.Stats.Sent.Load(), "failed", l.Stats.Failed.Load(), "given_up", l.Stats.Dropped.Load())
	return writeReport(inv, *report, ds)
}

// writeReport writes the expected metrics of everything generated.
func writeReport(inv *invocation, path string, ds *simulate.Dataset) error {
	if path == "" {
		return nil
	}
	to := ds.To
	for _, t := range ds.Threads {
		if !t.Start.Before(to) {
			to = t.Start.Add(time.Millisecond)
		}
	}
	rep := struct {
		From     time.Time        `json:"from"`
		To       time.Time        `json:"to"`
		Expected simulate.Metrics `json:"expected"`
		Webhooks map[string]int   `json:"webhooks_by_action"`
		Retries  int              `json:"retried_deliveries"`
	}{From: ds.From, To: to, Expected: ds.Expect(simulate.Filter{From: ds.From, To: to, Group: -1})}
	rep.Webhooks, rep.Retries = ds.WebhookCounts(ds.From, to.Add(24*time.Hour), "")
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("simulate: report: %w", err)
	}
	if path == "-" {
		_, err = fmt.Fprintln(inv.stdout, string(b))
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
