package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// fault is one planned kill -9 of a component, with the pause before it is
// started again.
type fault struct {
	comp  string
	at    time.Duration // planned, from the start of the load
	pause time.Duration
	long  bool
	// afterCHDown: instead of at, strike one second after ClickHouse went
	// down for its long outage (a rebalance while INSERTs are in flight).
	afterCHDown bool
	// freeze: SIGSTOP instead of SIGKILL for pause, then SIGCONT: the
	// process outlives its session and wakes up as a zombie owner.
	freeze bool
}

func (f fault) String() string {
	what := "kill -9"
	if f.freeze {
		what = "SIGSTOP"
	}
	when := fmt.Sprintf("at +%.1fs", f.at.Seconds())
	if f.afterCHDown {
		when = "1s into the long ClickHouse outage"
	}
	s := fmt.Sprintf("%s %s %s, pause %.1fs", f.comp, what, when, f.pause.Seconds())
	if f.long {
		s += " (the long outage)"
	}
	return s
}

// plan draws the faults of a run from the seed: for each component Kills
// kills spread over the load, each in its own slot at a random moment,
// with a random pause; one Kafka and one ClickHouse outage are long; one
// processor kill falls into the long ClickHouse outage; and one processor
// is frozen for longer than its session.
func plan(cfg config) []fault {
	rng := rand.New(rand.NewPCG(cfg.Seed, 3))
	window := cfg.loadDuration()
	from, width := window/20, window*8/10
	pause := func() time.Duration {
		return cfg.PauseMin + time.Duration(rng.Int64N(int64(cfg.PauseMax-cfg.PauseMin)+1))
	}
	var out []fault
	for _, comp := range []string{"ingest", "processor", "kafka", "clickhouse"} {
		long := rng.IntN(cfg.Kills)
		for i := 0; i < cfg.Kills; i++ {
			slot := width / time.Duration(cfg.Kills)
			f := fault{comp: comp, at: from + slot*time.Duration(i) + time.Duration(rng.Int64N(int64(slot))), pause: pause()}
			switch {
			case comp == "kafka" && i == long:
				f.long, f.pause = true, cfg.KafkaLong
			case comp == "clickhouse" && i == long:
				f.long, f.pause = true, cfg.ClickHouseLong
			case comp == "processor" && i == long:
				f.afterCHDown = true
			}
			out = append(out, f)
		}
	}
	out = append(out, fault{comp: "processor", freeze: true, at: from + time.Duration(rng.Int64N(int64(width))),
		pause: cfg.Session + 3*time.Second + time.Duration(rng.Int64N(int64(cfg.Session)))})
	sort.SliceStable(out, func(i, j int) bool { return out[i].at < out[j].at })
	return out
}

// outage is one period a component was down (or frozen).
type outage struct {
	comp       string
	down, back time.Duration // since the start of the run
}

// faultRunner carries out a plan: one goroutine per component, each doing
// its faults in order (a fault waits for the component's previous one to
// be over), so two faults of one component never overlap and one ingest
// is always up, while faults of different components meet freely.
type faultRunner struct {
	cfg        config
	tl         *timeline
	ingests    []*ingestChild
	processors []*child
	kafka      service
	clickhouse service
	rng        *rand.Rand
	rngMu      sync.Mutex

	chLongDown chan struct{} // closed when the long ClickHouse outage begins
	// inserting finds the processor with an INSERT running on ClickHouse
	// (nil: pick one at random).
	inserting func(ctx context.Context) *child

	// quiet: every outage holds it shared; the freeze holds it alone, so
	// the zombie it makes meets no other fault (a ClickHouse kill would
	// end its INSERT and hide what the next owner does about it).
	quiet sync.RWMutex

	mu      sync.Mutex
	errs    []error
	outages []outage
	kills   map[string]int
	freezes int

	ingestNext, ingestKills int
}

// service is a private Kafka or ClickHouse (testenv.Instance).
type service interface {
	Crash() // kill -9, so that a start starts it again
	TryStart() error
}

func (r *faultRunner) intn(n int) int {
	r.rngMu.Lock()
	defer r.rngMu.Unlock()
	return r.rng.IntN(n)
}

func (r *faultRunner) record(o outage) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.outages = append(r.outages, o)
}

// run does the plan, starting now (the start of the load); it returns when
// every component is up again after its last fault.
func (r *faultRunner) run(ctx context.Context, faults []fault) {
	r.kills = map[string]int{}
	r.chLongDown = make(chan struct{})
	byComp := map[string][]fault{}
	for _, f := range faults {
		key := f.comp
		switch {
		case f.afterCHDown:
			// Its own sequence: it must strike while ClickHouse is down,
			// whatever the other processor faults are doing.
			key += " during the ClickHouse outage"
		case f.freeze:
			key += " freeze" // may wait long for an INSERT to catch
		}
		byComp[key] = append(byComp[key], f)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, fs := range byComp {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, f := range fs {
				if f.afterCHDown {
					select {
					case <-r.chLongDown:
						time.Sleep(time.Second)
					case <-ctx.Done():
						return
					}
				} else if d := time.Until(start.Add(f.at)); d > 0 {
					select {
					case <-time.After(d):
					case <-ctx.Done():
						return
					}
				}
				if ctx.Err() != nil {
					return
				}
				r.strike(f.comp, f)
			}
		}()
	}
	wg.Wait()
}

func (r *faultRunner) strike(comp string, f fault) {
	if f.freeze {
		r.quiet.Lock()
		defer r.quiet.Unlock()
	} else {
		r.quiet.RLock()
		defer r.quiet.RUnlock()
	}
	down := r.tl.since()
	switch {
	case comp == "ingest":
		// Alternate (from a random first), so both instances are killed.
		r.mu.Lock()
		if r.ingestKills == 0 {
			r.ingestNext = r.intn(len(r.ingests))
		}
		in := r.ingests[(r.ingestNext+r.ingestKills)%len(r.ingests)]
		r.ingestKills++
		r.mu.Unlock()
		in.Kill()
		r.tl.logf("FAULT %s kill -9 (pause %.1fs)", in.name, f.pause.Seconds())
		time.Sleep(f.pause)
		if err := in.Start(); err != nil {
			r.tl.logf("%v", err)
		}
		if err := in.waitUp(time.Minute); err != nil {
			r.tl.logf("%v", err)
		}
		r.tl.logf("RESTART %s (down %.1fs)", in.name, (r.tl.since() - down).Seconds())
		r.record(outage{comp: in.name, down: down, back: r.tl.since()})
	case comp == "processor" && f.freeze:
		// Freeze the owner of a running INSERT: it becomes a zombie whose
		// INSERT the next owner must wait for (or kill).
		p, how := r.pickProcessor(), "no INSERT seen running: picked at random"
		if r.inserting != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if q := r.inserting(ctx); q != nil {
				p, how = q, "while its INSERT runs"
			}
			cancel()
		}
		r.tl.logf("FAULT %s SIGSTOP for %.1fs (longer than its %s session), %s", p.name, f.pause.Seconds(), r.cfg.Session, how)
		if !p.Freeze(f.pause) {
			r.tl.logf("%s was not running: not frozen", p.name)
			return
		}
		r.tl.logf("RESUME %s SIGCONT", p.name)
		r.mu.Lock()
		r.freezes++
		r.mu.Unlock()
		r.record(outage{comp: p.name + " (frozen)", down: down, back: r.tl.since()})
		return
	case comp == "processor":
		p := r.pickProcessor()
		p.Kill()
		r.tl.logf("FAULT %s kill -9 (pause %.1fs)%s", p.name, f.pause.Seconds(), map[bool]string{true: " during the long ClickHouse outage"}[f.afterCHDown])
		time.Sleep(f.pause)
		if err := p.Start(); err != nil {
			r.tl.logf("%v", err)
		}
		r.tl.logf("RESTART %s", p.name)
		r.record(outage{comp: p.name, down: down, back: r.tl.since()})
	case comp == "kafka" || comp == "clickhouse":
		svc := r.kafka
		if comp == "clickhouse" {
			svc = r.clickhouse
		}
		svc.Crash()
		r.tl.logf("FAULT %s kill -9 (pause %.1fs%s)", comp, f.pause.Seconds(), map[bool]string{true: ", the long outage"}[f.long])
		if comp == "clickhouse" && f.long {
			close(r.chLongDown)
		}
		time.Sleep(f.pause)
		for try := 1; ; try++ {
			err := svc.TryStart()
			if err == nil {
				break
			}
			r.tl.logf("%s did not start (try %d): %v", comp, try, err)
			if try == 5 {
				r.failed(fmt.Errorf("%s did not start after %d tries", comp, try))
				return
			}
			// What is left of a failed start goes, then again.
			svc.Crash()
		}
		r.tl.logf("RESTART %s (down %.1fs)", comp, (r.tl.since() - down).Seconds())
		r.record(outage{comp: comp, down: down, back: r.tl.since()})
	}
	r.mu.Lock()
	r.kills[comp]++
	r.mu.Unlock()
}

func (r *faultRunner) failed(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, err)
}

// pickProcessor picks a processor at random, one that runs (and is not
// frozen) when there is one.
func (r *faultRunner) pickProcessor() *child {
	i := r.intn(len(r.processors))
	for k := range r.processors {
		if p := r.processors[(i+k)%len(r.processors)]; p.Running() {
			return p
		}
	}
	return r.processors[i]
}

// longest returns the longest outage of components whose name starts with prefix.
func (r *faultRunner) longest(prefix string) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	var m time.Duration
	for _, o := range r.outages {
		if strings.HasPrefix(o.comp, prefix) && !strings.HasSuffix(o.comp, "(frozen)") {
			m = max(m, o.back-o.down)
		}
	}
	return m
}

// insertOwner returns a function that waits until ClickHouse runs an
// INSERT of the processors (its query id names the source partitions:
// "lcpipe:<db>:<topic>:<p1>,<p2>,...:<nonce>", processor/store.go) and
// returns the processor that owns those partitions.
func insertOwner(tl *timeline, conn driver.Conn, db, topic string, mon *monitor, procs []*child) func(context.Context) *child {
	prefix := "lcpipe:" + db + ":" + topic + ":"
	return func(ctx context.Context) *child {
		seen, polls, errs := 0, 0, 0
		var lastErr error
		defer func() {
			tl.logf("freeze: %d polls of system.processes, %d failed (last: %v), %d processor INSERTs seen", polls, errs, lastErr, seen)
		}()
		for ctx.Err() == nil {
			polls++
			var ids []string
			rows, err := conn.Query(ctx, "SELECT query_id FROM system.processes WHERE startsWith(query_id, ?)", prefix)
			if err != nil {
				errs++
				lastErr = err
			} else {
				for rows.Next() {
					var id string
					if rows.Scan(&id) == nil {
						ids = append(ids, id)
					}
				}
				rows.Close()
			}
			for _, id := range ids {
				parts, _, _ := strings.Cut(strings.TrimPrefix(id, prefix), ":")
				first, _, _ := strings.Cut(parts, ",")
				p, err := strconv.Atoi(first)
				if err != nil {
					continue
				}
				seen++
				owner := mon.owner(int32(p))
				if seen == 1 {
					tl.logf("freeze: INSERT %s, partition %d owned by %q", id, p, owner)
				}
				for _, c := range procs {
					if "chaos-"+c.name == owner && c.Running() {
						return c
					}
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		return nil
	}
}
