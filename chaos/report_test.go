package chaos

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/lcpipe/lcpipe/audit"
	"github.com/lcpipe/lcpipe/schema"
)

func newRand(seed, stream uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, stream)) }

// summary is the run's table (Markdown, as BENCHMARKS.md holds it).
type summary struct {
	cfg         config
	load        *sender
	truth       *logTruth
	stored      *stored
	cmp         comparison
	derived     []schema.Disagreement
	dead        int64
	audit       *audit.Report
	mon         *monitor
	faults      *faultRunner
	ingests     []*ingestChild
	procs       []*child
	wall, drain time.Duration
}

func (s summary) table() string {
	var b strings.Builder
	row := func(k, format string, args ...any) { fmt.Fprintf(&b, "| %s | %s |\n", k, fmt.Sprintf(format, args...)) }
	form := "CI form"
	if s.cfg.Full {
		form = "full form"
	}
	fmt.Fprintf(&b, "Chaos run (%s), %s UTC, %d CPUs, seed %d\n\n", form, time.Now().UTC().Format("2006-01-02 15:04"), runtime.NumCPU(), s.cfg.Seed)
	b.WriteString("| What | Result |\n| --- | --- |\n")
	st := &s.load.stats
	d := st.Deliveries.Load()
	first := d - st.Retries.Load()
	row("webhooks sent (deliveries)", "%d: %d first deliveries + %d same-body retries (%.1f %% of them retried); %d HTTP attempts", d, first,
		st.Retries.Load(), 100*float64(st.Retries.Load())/float64(max(first, 1)), st.Attempts.Load())
	row("acknowledged (200)", "%d", st.Acked.Load())
	codes := st.Codes()
	if len(codes) == 0 {
		codes = []string{"none"}
	}
	row("non-200 answers (retried)", "%s", strings.Join(codes, "; "))
	row("not acknowledged after 4 attempts", "%d (server-named events of them stored all the same: %d)", st.NotAcked.Load(), s.cmp.NotAckStored)
	row("raw records in Kafka", "%d (%d through a spool), %d events in them", s.truth.Records, s.truth.Spooled, s.truth.Rows)
	row("events the raw topic calls for", "%d (state changes kept %d, retries of them %d)", len(s.truth.IDs), s.truth.StateKept, s.truth.StateRetries)
	row("events of acknowledged webhooks", "%d server-named, %d distinct state changes", len(s.load.exp.ackIDs), len(s.load.exp.ackKeys))
	row("stored in events", "%d rows, %d distinct event_id", s.stored.Count, s.stored.Unique)
	row("lost · duplicated · unexpected", "**%d · %d · %d**", len(s.cmp.Lost), len(s.cmp.Duplicated), len(s.cmp.Extra))
	row("acknowledged but not stored", "**%d** events, **%d** state changes", len(s.cmp.AckLostIDs), len(s.cmp.AckLostKeys))
	if len(s.derived) == 0 {
		row("derived tables vs events (schema.CheckDerived)", "all agree")
	} else {
		row("derived tables vs events (schema.CheckDerived)", "**disagree: %v**", s.derived)
	}
	row("lcpipe audit (whole topic)", "%d gaps, %d duplicates, %d derived mismatches; %d stored, %d retries (%s)",
		s.audit.Total.Gaps, len(s.audit.Duplicates), len(s.audit.Mismatches), s.audit.Total.Stored, s.audit.Total.Retries, s.audit.Took)
	row("duplicates dropped (pipeline_batches)", "%d by event ID, %d state-change retries (%d flushes)", s.stored.DupIdentity, s.stored.DupWindow, s.stored.Batches)
	row("dead letters", "%d", s.dead)
	var spool []string
	for _, in := range s.ingests {
		spool = append(spool, fmt.Sprintf("%s %d records / %.1f MiB (spooled %d, drained %d)", in.name,
			s.mon.maxRecords[in.name], float64(s.mon.maxBytes[in.name])/(1<<20), s.mon.spooled[in.name], s.mon.drained[in.name]))
	}
	row("max spool depth", "%d records / %.1f MiB together; %s", s.mon.maxTotal, float64(s.mon.maxTotalBytes)/(1<<20), strings.Join(spool, "; "))
	row("kills (kill -9)", "%s", s.kills())
	row("longest outage", "Kafka %.0f s, ClickHouse %.0f s, an ingest %.0f s, a processor %.0f s", s.faults.longest("kafka").Seconds(),
		s.faults.longest("clickhouse").Seconds(), s.faults.longest("ingest").Seconds(), s.faults.longest("processor").Seconds())
	var exits []string
	for _, c := range append([]*child{s.ingests[0].child, s.ingests[1].child}, s.procs...) {
		starts, _, ex := c.counts()
		exits = append(exits, fmt.Sprintf("%s %d starts, %d own exits", c.name, starts, ex))
	}
	row("process starts", "%s", strings.Join(exits, "; "))
	row("processor rebalances", "%d assignment changes seen; in the logs: %d revokes, %d partitions lost, %d waits for a running INSERT, %d INSERTs killed, %d insert failures read again",
		s.mon.rebalances, s.count("partitions revoked"), s.count("partitions lost"), s.count("waiting for running inserts"),
		s.count("still running; killing them"), s.count("insert failed; reading the uncommitted records again"))
	row("wall time", "%s (load %s, drain after the last fault %s)", s.wall.Round(time.Second), st.Took.Round(time.Second), s.drain.Round(time.Second))
	return b.String()
}

// count sums the processors' log lines containing text.
func (s summary) count(text string) int {
	n := 0
	for _, p := range s.procs {
		n += p.grepCount(text)
	}
	return n
}

func (s summary) kills() string {
	var parts []string
	per := map[string]int{}
	for _, c := range append([]*child{s.ingests[0].child, s.ingests[1].child}, s.procs...) {
		_, k, _ := c.counts()
		per[c.name] = k
	}
	comps := make([]string, 0, len(s.faults.kills))
	for c := range s.faults.kills {
		comps = append(comps, c)
	}
	sort.Strings(comps)
	for _, c := range comps {
		detail := ""
		switch c {
		case "ingest":
			detail = fmt.Sprintf(" (ingest-1 %d, ingest-2 %d)", per["ingest-1"], per["ingest-2"])
		case "processor":
			detail = fmt.Sprintf(" (processor-1 %d, processor-2 %d; plus %d SIGSTOP longer than the session)", per["processor-1"], per["processor-2"], s.faults.freezes)
		}
		parts = append(parts, fmt.Sprintf("%s %d%s", c, s.faults.kills[c], detail))
	}
	return strings.Join(parts, ", ")
}
