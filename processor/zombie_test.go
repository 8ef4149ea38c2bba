package processor

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/lcpipe/lcpipe/internal/testenv"
)

// TestLostPartitionsInsertNothing: after OnPartitionsLost (a session that
// expired: a new owner may already read those partitions), the old owner
// sends none of their rows any more and commits none of their offsets. What
// it had already sent into its open INSERT cannot be recalled (ClickHouse
// completes an INSERT whose client goes away, 18.16 even on a Cancel), so
// that INSERT is ended at once; its query id names the lost partitions and
// the new owner waits for it (TestNewOwnerKillsZombieInsert).
func TestLostPartitionsInsertNothing(t *testing.T) {
	e := newEnv(t)
	g := newGenerator(t, time.Date(2025, 3, 14, 8, 0, 0, 0, time.UTC))
	var all []delivery
	counter := 0
	for n := 0; n < 5; n++ {
		all = append(all, g.deliveries(n, &counter)...)
	}
	produceAll(t, e.kafka, all)
	// The first block of the first INSERT is held while the partitions
	// are lost: it is in the open INSERT, which must then never complete.
	gate := &gateConn{Conn: e.conn, entered: make(chan struct{}), release: make(chan struct{})}
	real := e.conn
	e.conn = gate
	p, stop := e.start(t, Config{BatchLinger: 50 * time.Millisecond})
	e.conn = real
	select {
	case <-gate.entered:
	case <-time.After(time.Minute):
		t.Fatal("no block sent")
	}
	parts := make([]int32, e.kafka.Partitions)
	for i := range parts {
		parts[i] = int32(i)
	}
	p.onLost(context.Background(), nil, map[string][]int32{e.kafka.RawTopic: parts})
	close(gate.release)
	testenv.Eventually(t, 30*time.Second, func() error {
		if p.Stats().InsertRetries.Load() == 0 {
			return fmt.Errorf("the flusher has not handled the loss yet")
		}
		return nil
	})
	// Whatever the held INSERT carried is all there ever is.
	var n0 uint64
	testenv.Eventually(t, 10*time.Second, func() error {
		running, err := (&store{conn: e.conn, db: e.ch.Database}).runningInserts(context.Background(), e.kafka.RawTopic)
		if err != nil || len(running) > 0 {
			return fmt.Errorf("inserts still running: %v %v", running, err)
		}
		n0, err = countRows(e.conn, e.ch.Database)
		return err
	})
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		var n, inserts uint64
		if err := e.conn.QueryRow(context.Background(), "SELECT count(), uniqExact(insert_id) FROM "+e.ch.Database+".events").Scan(&n, &inserts); err != nil {
			t.Fatal(err)
		}
		if n != n0 || inserts > 1 {
			t.Fatalf("rows of lost partitions inserted after the loss: %d rows (%d at the loss) by %d inserts", n, n0, inserts)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err := stop(); err != nil {
		t.Logf("stop: %v", err)
	}
	offs, err := kadm.NewClient(testenv.KafkaClient(t, e.kafka)).FetchOffsets(context.Background(), p.cfg.Group)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(offs); n != 0 {
		t.Fatalf("offsets of lost partitions committed: %v", offs)
	}
}

// TestNewOwnerKillsZombieInsert: an INSERT of the partitions a processor
// receives is still running (its previous owner was killed or lost them):
// the new owner reads nothing before it is gone, and kills it after
// ZombieInsertWait instead of going on beside it.
func TestNewOwnerKillsZombieInsert(t *testing.T) {
	e := newEnv(t)
	st := &store{conn: e.conn, db: e.ch.Database}
	parts := make([]int32, e.kafka.Partitions)
	for i := range parts {
		parts[i] = int32(i)
	}
	// 60 s of work unless killed.
	zombieID := insertQueryID(st.db, e.kafka.RawTopic, parts, "zombie")
	zombieDone := make(chan error, 1)
	go func() {
		ctx := ch.Context(context.Background(), ch.WithQueryID(zombieID))
		zombieDone <- e.conn.Exec(ctx, "INSERT INTO "+st.db+".events (event_id, organization_id) SELECT toString(number), 'zombie' FROM numbers(600) WHERE sleepEachRow(0.1) = 0 SETTINGS max_block_size = 1")
	}()
	testenv.Eventually(t, 30*time.Second, func() error {
		running, err := st.runningInserts(context.Background(), e.kafka.RawTopic)
		if err != nil {
			return err
		}
		if len(running[0]) == 0 {
			return fmt.Errorf("zombie insert not running yet")
		}
		return nil
	})
	d := delivery{key: []byte("o/c"), body: readFixture(t, "thread_tagged"), receivedAt: time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC), requestID: "r"}
	produceAll(t, e.kafka, []delivery{d})
	start := time.Now()
	p, stop := e.start(t, Config{BatchLinger: 50 * time.Millisecond, ZombieInsertWait: 2 * time.Second})
	var zerr error
	select {
	case zerr = <-zombieDone:
	case <-time.After(45 * time.Second):
		t.Fatal("the zombie insert was neither waited for nor killed")
	}
	if zerr == nil {
		t.Fatal("the zombie insert completed: it should have been killed")
	}
	if time.Since(start) < 2*time.Second {
		t.Fatalf("killed after %s, before ZombieInsertWait", time.Since(start))
	}
	testenv.Eventually(t, time.Minute, func() error {
		var n uint64
		if err := e.conn.QueryRow(context.Background(), "SELECT count() FROM "+st.db+".events WHERE organization_id != 'zombie'").Scan(&n); err != nil {
			return err
		}
		if n != 1 {
			return fmt.Errorf("%d rows stored", n)
		}
		return nil
	})
	_ = p
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// gateConn holds the first block sent into events until released.
type gateConn struct {
	driver.Conn
	once             sync.Once
	entered, release chan struct{}
}

func (c *gateConn) PrepareBatch(ctx context.Context, query string, opts ...driver.PrepareBatchOption) (driver.Batch, error) {
	b, err := c.Conn.PrepareBatch(ctx, query, opts...)
	if err != nil {
		return nil, err
	}
	return &gateBatch{Batch: b, c: c}, nil
}

type gateBatch struct {
	driver.Batch
	c *gateConn
}

func (b *gateBatch) Flush() error {
	err := b.Batch.Flush()
	b.c.once.Do(func() {
		close(b.c.entered)
		<-b.c.release
	})
	return err
}
