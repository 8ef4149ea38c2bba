package processor

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/lcpipe/lcpipe/internal/chconn"
	"github.com/lcpipe/lcpipe/internal/testenv"
)

// TestCrashKill9: a 200k-event run (with 20 % repeated deliveries) while
// the processor is killed with SIGKILL at random moments of active
// processing, at least 5 times, and restarted each time → exactly the
// unique set is stored: no gap, no duplicate.
func TestCrashKill9(t *testing.T) {
	e := newEnv(t)
	g := newGenerator(t, time.Date(2025, 3, 14, 8, 0, 0, 0, time.UTC))
	perStory := len(g.expectedIDs(t, 1))
	stories := (200_000 + perStory - 1) / perStory
	want := g.expectedIDs(t, stories)
	var all []delivery
	counter := 0
	for n := 0; n < stories; n++ {
		all = append(all, g.deliveries(n, &counter)...)
	}
	t.Logf("%d deliveries, %d unique events", len(all), len(want))

	// Produce in paced chunks while the processor runs and is killed.
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		chunks := 10
		size := (len(all) + chunks - 1) / chunks
		for i := 0; i < len(all); i += size {
			produceAll(t, e.kafka, all[i:min(i+size, len(all))])
			time.Sleep(700 * time.Millisecond)
		}
	}()

	group := testenv.Name(t, "grp")
	childEnv := []string{"CHILD_BATCH_ROWS=5000", "CHILD_LINGER=100ms"}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	kills := 0
	last := uint64(0)
	for kills < 5 {
		cmd := startChild(t, e, group, childEnv...)
		// Wait for this child to make progress, then kill it at a random moment.
		testenv.Eventually(t, 2*time.Minute, func() error {
			n, err := countRows(e.conn, e.ch.Database)
			if err != nil {
				return err
			}
			if n <= last && n < uint64(len(want)) {
				return fmt.Errorf("no progress yet (%d rows)", n)
			}
			return nil
		})
		time.Sleep(time.Duration(rng.IntN(800)) * time.Millisecond)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		kills++
		last, _ = countRows(e.conn, e.ch.Database)
		t.Logf("kill -9 #%d: %d rows stored", kills, last)
		if last >= uint64(len(want)) {
			t.Logf("the run finished before kill #%d; later kills hit replays", kills)
		}
	}
	<-produced
	cmd := startChild(t, e, group, childEnv...)
	waitRows(t, e.conn, e.ch.Database, uint64(len(want)), 3*time.Minute)
	time.Sleep(2 * time.Second) // anything left would show up as extra rows
	stopChild(t, cmd)
	checkExactSet(t, e.conn, e.ch.Database, want)
}

// TestClickHouseOutage: ClickHouse stops for 60 s in the middle of a run →
// the processor pauses fetching (memory stays bounded, it reads nothing
// more), resumes when ClickHouse is back, and nothing is lost or doubled.
func TestClickHouseOutage(t *testing.T) {
	kcfg := testenv.KafkaConfig(t)
	inst := testenv.PrivateClickHouse(t)
	chcfg := chconn.DefaultConfig()
	chcfg.Addr = []string{inst.Addr}
	chcfg.Database = testenv.Name(t, "test")
	chcfg.DialTimeout = time.Second
	conn := testenv.ClickHouse(t, chcfg)
	migrate(t, conn, chcfg.Database)
	e := &env{kafka: kcfg, ch: chcfg, conn: conn}

	g := newGenerator(t, time.Date(2025, 3, 14, 8, 0, 0, 0, time.UTC))
	stories := 3000
	want := g.expectedIDs(t, stories)
	func() {
		var all []delivery
		counter := 0
		for n := 0; n < stories; n++ {
			all = append(all, g.deliveries(n, &counter)...)
		}
		produceAll(t, kcfg, all)
	}()
	runtime.GC()
	debug.FreeOSMemory()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	t.Logf("heap in use before the processor starts: %.0f MiB", float64(base.HeapInuse)/(1<<20))

	cfg := Config{BatchRows: 4000, BatchBytes: 4 << 20, BatchLinger: 100 * time.Millisecond, RetryMax: 2 * time.Second}
	p, stop := e.start(t, cfg)
	testenv.Eventually(t, time.Minute, func() error {
		if p.Stats().Inserted.Load() == 0 {
			return fmt.Errorf("nothing inserted yet")
		}
		return nil
	})
	inst.Stop()
	down := time.Now()
	t.Logf("ClickHouse stopped with %d rows inserted, %d records read", p.Stats().Inserted.Load(), p.Stats().Records.Load())

	var peakHeap uint64
	var readAt10s int64
	for time.Since(down) < 60*time.Second {
		// Live heap (after a collection): what the processor holds.
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		peakHeap = max(peakHeap, ms.HeapAlloc)
		if readAt10s == 0 && time.Since(down) > 10*time.Second {
			readAt10s = p.Stats().Records.Load()
		}
		time.Sleep(time.Second)
	}
	readAt60s := p.Stats().Records.Load()

	t.Logf("outage: paused %d times, records read at +10s %d, at +60s %d, peak live heap %.0f MiB, insert retries %d",
		p.Stats().Pauses.Load(), readAt10s, readAt60s, float64(peakHeap)/(1<<20), p.Stats().InsertRetries.Load())
	if p.Stats().Pauses.Load() == 0 {
		t.Fatal("the processor did not pause fetching")
	}
	if readAt60s != readAt10s {
		t.Fatalf("the processor kept reading during the outage: %d → %d records", readAt10s, readAt60s)
	}
	// The bound is on what the processor holds beyond the test's own data
	// (the generated deliveries and expected IDs, ~100 MiB, measured in
	// base): its sealed batches ((MaxPendingBatches+1) × 4 MiB and their
	// column copies), the client's fetch buffers and the ID caches. A reader
	// that kept fetching would pass it within seconds; an absolute limit
	// sat too close to the test's own data and failed on noise.
	if grown := int64(peakHeap) - int64(base.HeapAlloc); grown > 96<<20 {
		t.Fatalf("the processor's heap grew by %d MiB during the outage (peak %d MiB, test data %d MiB)",
			grown>>20, peakHeap>>20, base.HeapAlloc>>20)
	}
	inst.Start()
	waitRows(t, conn, chcfg.Database, uint64(len(want)), 3*time.Minute)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkExactSet(t, conn, chcfg.Database, want)
	_ = context.Background
}
