package chaos

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/lcpipe/lcpipe/audit"
	"github.com/lcpipe/lcpipe/ingest"
	"github.com/lcpipe/lcpipe/internal/chconn"
	"github.com/lcpipe/lcpipe/internal/kafka"
	"github.com/lcpipe/lcpipe/internal/testenv"
	"github.com/lcpipe/lcpipe/schema"
)

const (
	secret   = "sim-secret"
	group    = "chaos-processors"
	database = "livechat"
	window   = 2 * time.Minute // DEDUP_WINDOW, the default
)

// TestChaos runs the whole pipeline (2 ingests, 2 processors in one group,
// Kafka, ClickHouse: the real binary on private services) under simulated
// LiveChat load while every component is killed with SIGKILL at random
// (seeded) times, then checks that ClickHouse holds exactly the events the
// raw topic calls for (none lost, none twice, in events and in every
// derived table), that every event of an acknowledged webhook is among
// them, and prints a summary. CHAOS_SEED replays a run's plan and traffic.
func TestChaos(t *testing.T) {
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	dir := artifactDir(t)
	tl := newTimeline(t, dir)
	faults := plan(cfg)
	tl.logf("chaos: seed %d (CHAOS_SEED=%d replays it), %d webhooks at %.0f/s, %d kills per component, artifacts in %s",
		cfg.Seed, cfg.Seed, cfg.Webhooks, cfg.Rate, cfg.Kills, dir)
	for _, f := range faults {
		tl.logf("plan: %s", f)
	}

	// Private services: killing them disturbs no other test. testenv fails
	// (never skips) when one cannot start.
	kinst := testenv.PrivateKafka(t)
	cinst := testenv.PrivateClickHouse(t)
	// At the end a crash is enough (their data is thrown away) and much
	// quicker than the graceful stop testenv registered (runs after this).
	t.Cleanup(func() { kinst.Crash(); cinst.Crash() })
	bin := buildBinary(t, dir)
	tl.logf("services up: Kafka %s, ClickHouse %s; binary built", kinst.Addr, cinst.Addr)

	kcfg := kafka.DefaultConfig()
	kcfg.Brokers = []string{kinst.Addr}
	kcfg.ClientID = "chaos-test"
	cl := testenv.KafkaClient(t, kcfg)
	adm := kadm.NewClient(cl)
	{
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := kafka.EnsureTopics(ctx, cl, kcfg, nil, kcfg.RawTopic, kcfg.DLQTopic)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	chcfg := chconn.DefaultConfig()
	chcfg.Addr = []string{cinst.Addr}
	chcfg.Database = database

	common := []string{
		"KAFKA_BROKERS=" + kinst.Addr, "KAFKA_RAW_TOPIC=" + kcfg.RawTopic, "KAFKA_DLQ_TOPIC=" + kcfg.DLQTopic,
		"KAFKA_TOPIC_PARTITIONS=6", "LOG_LEVEL=info",
	}
	procEnv := append(append([]string{}, common...),
		"CLICKHOUSE_ADDR="+cinst.Addr, "CLICKHOUSE_DATABASE="+database, "KAFKA_GROUP="+group,
		"KAFKA_SESSION_TIMEOUT="+cfg.Session.String(), "DEDUP_WINDOW="+window.String())
	migrate := exec.Command(bin, "migrate")
	migrate.Env = childEnv(procEnv...)
	if out, err := migrate.CombinedOutput(); err != nil {
		t.Fatalf("lcpipe migrate: %v\n%s", err, out)
	}

	var ingests []*ingestChild
	for i := 1; i <= 2; i++ {
		addr, admin := freeAddr(t), freeAddr(t)
		name := fmt.Sprintf("ingest-%d", i)
		env := append(append([]string{}, common...), "INGEST_ADDR="+addr, "ADMIN_ADDR="+admin,
			"SPOOL_DIR="+filepath.Join(dir, name+"-spool"), "LIVECHAT_WEBHOOK_SECRETS="+secret,
			"INGEST_KAFKA_TIMEOUT="+cfg.KafkaTimeout.String(), "KAFKA_CLIENT_ID=chaos-"+name)
		in := &ingestChild{child: newChild(tl, name, bin, dir, env, "ingest"), URL: "http://" + addr + ingest.WebhookPath, Admin: admin}
		ingests = append(ingests, in)
	}
	var procs []*child
	for i := 1; i <= 2; i++ {
		name := fmt.Sprintf("processor-%d", i)
		// Each processor has its own admin listener (two on one host).
		procs = append(procs, newChild(tl, name, bin, dir, append(append([]string{}, procEnv...), "KAFKA_CLIENT_ID=chaos-"+name, "ADMIN_ADDR="), "processor"))
	}
	all := append([]*child{procs[0], procs[1]}, ingests[0].child, ingests[1].child)
	t.Cleanup(func() {
		for _, c := range all {
			c.Kill()
			c.close()
		}
	})
	for _, c := range all {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	for _, in := range ingests {
		if err := in.waitUp(time.Minute); err != nil {
			t.Fatal(err)
		}
	}

	// The run: load, faults and the monitor together.
	ctx, cancel := context.WithTimeout(context.Background(), cfg.loadDuration()*4+10*time.Minute)
	defer cancel()
	mon := newMonitor(ingests, adm, group, tl)
	monCtx, stopMon := context.WithCancel(ctx)
	monDone := make(chan struct{})
	go func() { defer close(monDone); mon.run(monCtx) }()
	watch := testenv.ClickHouse(t, chcfg)
	fr := &faultRunner{cfg: cfg, tl: tl, ingests: ingests, processors: procs, kafka: kinst, clickhouse: cinst,
		rng: newRand(cfg.Seed, 11), inserting: insertOwner(tl, watch, database, kcfg.RawTopic, mon, procs)}
	faultsDone := make(chan struct{})
	began := time.Now()
	go func() { defer close(faultsDone); fr.run(ctx, faults) }()
	urls := []string{ingests[0].URL, ingests[1].URL}
	snd := newSender(cfg, urls, tl)
	loadErr := snd.run(ctx)
	<-faultsDone
	for _, err := range fr.errs {
		t.Error(err)
	}
	if t.Failed() {
		stopMon()
		<-monDone
		t.FailNow() // a service could not restart (logged above)
	}
	if loadErr != nil {
		t.Fatalf("load: %v", loadErr)
	}
	tl.logf("load and faults over after %s; draining", time.Since(began).Round(time.Second))
	drainBegan := time.Now()
	if err := waitDrained(ctx, tl, ingests, adm, group, kcfg.RawTopic, cfg.Drain); err != nil {
		stopMon()
		<-monDone
		t.Fatalf("drain: %v (logs in %s)", err, dir)
	}
	drainTook := time.Since(drainBegan)
	stopMon()
	<-monDone
	mon.finish()
	for _, c := range all {
		if err := c.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	}
	wall := time.Since(began)
	tl.logf("drained in %s; verifying", drainTook.Round(time.Second))

	// The verdict.
	vctx, vcancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer vcancel()
	conn := testenv.ClickHouse(t, chcfg)
	truth, err := readLogTruth(vctx, cl, adm, kcfg.RawTopic, window)
	if err != nil {
		t.Fatalf("read the raw topic: %v", err)
	}
	st, err := readStored(vctx, conn, database)
	if err != nil {
		t.Fatal(err)
	}
	cmp := compare(truth, st, snd.exp)
	derived, err := schema.CheckDerived(vctx, conn, database)
	if err != nil {
		t.Fatalf("check derived tables: %v", err)
	}
	dead, err := dlqRecords(vctx, adm, kcfg.DLQTopic)
	if err != nil {
		t.Fatal(err)
	}
	aud, err := audit.Run(vctx, cl, audit.Options{RawTopic: kcfg.RawTopic, DLQTopic: kcfg.DLQTopic, From: "earliest", To: "latest",
		ClickHouse: conn, Database: database, DedupWindow: window})
	if err != nil {
		t.Fatalf("audit: %v", err)
	}

	sum := summary{cfg: cfg, load: snd, truth: truth, stored: st, cmp: cmp, derived: derived, dead: dead, audit: aud,
		mon: mon, faults: fr, ingests: ingests, procs: procs, wall: wall, drain: drainTook}
	table := sum.table()
	if err := os.WriteFile(filepath.Join(dir, "summary.md"), []byte(table), 0o644); err != nil {
		t.Error(err)
	}
	if p := os.Getenv("CHAOS_REPORT"); p != "" {
		if err := os.WriteFile(p, []byte(table), 0o644); err != nil {
			t.Error(err)
		}
	}
	t.Log("\n" + table)
	fmt.Fprint(os.Stderr, "\n"+table)

	// Exactly once, and nothing acknowledged lost.
	if len(cmp.Lost) > 0 {
		t.Errorf("%d events of the raw topic are not stored: %s", len(cmp.Lost), firstN(cmp.Lost, 5))
	}
	if len(cmp.Duplicated) > 0 || st.Count != st.Unique {
		t.Errorf("duplicates: count() %d, uniqExact(event_id) %d: %s", st.Count, st.Unique, firstN(cmp.Duplicated, 5))
	}
	if len(cmp.Extra) > 0 {
		t.Errorf("%d stored events the raw topic does not call for: %s", len(cmp.Extra), firstN(cmp.Extra, 5))
	}
	if len(cmp.AckLostIDs) > 0 || len(cmp.AckLostKeys) > 0 {
		t.Errorf("acknowledged webhooks lost: %d events (%s), %d state changes (dedup keys %s)",
			len(cmp.AckLostIDs), firstN(cmp.AckLostIDs, 5), len(cmp.AckLostKeys), firstN(cmp.AckLostKeys, 5))
	}
	if len(derived) > 0 {
		t.Errorf("derived tables disagree with events: %v", derived)
	}
	if !aud.OK() {
		t.Errorf("lcpipe audit: %d gaps, %d duplicates, %d derived mismatches (first: %v %v %v)", aud.Total.Gaps,
			len(aud.Duplicates), len(aud.Mismatches), headGaps(aud.Gaps), aud.Duplicates[:min(3, len(aud.Duplicates))], aud.Mismatches[:min(3, len(aud.Mismatches))])
	}
	if dead > 0 || truth.Undecodable > 0 {
		t.Errorf("%d dead letters, %d undecodable raw records: the simulator sends only valid webhooks", dead, truth.Undecodable)
	}
	if n := snd.stats.NotAcked.Load(); n > 0 {
		t.Errorf("%d deliveries never acknowledged after %d attempts (the spool was never full)", n, attempts)
	}
	if snd.exp.badBodies > 0 {
		t.Errorf("%d simulator bodies did not decode", snd.exp.badBodies)
	}
	for comp, n := range fr.kills {
		if n < cfg.Kills {
			t.Errorf("%s killed %d times, want %d", comp, n, cfg.Kills)
		}
	}
	if got := fr.longest("kafka"); got <= cfg.KafkaTimeout {
		t.Errorf("longest Kafka outage %s, want > INGEST_KAFKA_TIMEOUT %s", got, cfg.KafkaTimeout)
	}
	if got := fr.longest("clickhouse"); got <= cfg.Session {
		t.Errorf("longest ClickHouse outage %s, want > the session timeout %s", got, cfg.Session)
	}
	if cfg.Full && fr.longest("kafka") <= time.Minute {
		t.Errorf("full form: longest Kafka outage %s, want > 60s", fr.longest("kafka"))
	}
	if truth.Spooled == 0 {
		t.Errorf("no record went through a spool: the Kafka outages did not exercise it")
	}
	if t.Failed() {
		t.Logf("logs and the timeline are in %s", dir)
	}
}

func headGaps(gs []audit.Gap) []audit.Gap { return gs[:min(3, len(gs))] }

// artifactDir holds the binary, the children's logs, the spools and the
// timeline: CHAOS_ARTIFACTS, else a temporary folder removed when the test
// passes (kept when it fails, to read the logs).
func artifactDir(t *testing.T) string {
	if d := os.Getenv("CHAOS_ARTIFACTS"); d != "" {
		d = filepath.Join(d, time.Now().UTC().Format("20060102T150405"))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	d, err := os.MkdirTemp("", "lcpipe-chaos-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			os.RemoveAll(d)
		}
	})
	return d
}
