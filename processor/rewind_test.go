package processor

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// flakyConn fails inserts into events on purpose, maxFailures times in all
// (then the run must converge): every failEvery-th block send fails (the
// INSERT is aborted), and every failEvery-th INSERT reports an error after
// it was written (as when the connection drops after the server stored the
// block).
type flakyConn struct {
	driver.Conn
	failEvery   int64
	maxFailures int64
	blocks      atomic.Int64
	closes      atomic.Int64
	injected    atomic.Int64
}

func (c *flakyConn) inject(n *atomic.Int64) bool {
	if n.Add(1)%c.failEvery != 0 {
		return false
	}
	for {
		v := c.injected.Load()
		if v >= c.maxFailures {
			return false
		}
		if c.injected.CompareAndSwap(v, v+1) {
			return true
		}
	}
}

func (c *flakyConn) PrepareBatch(ctx context.Context, query string, opts ...driver.PrepareBatchOption) (driver.Batch, error) {
	b, err := c.Conn.PrepareBatch(ctx, query, opts...)
	if err != nil {
		return nil, err
	}
	return &flakyBatch{Batch: b, c: c}, nil
}

type flakyBatch struct {
	driver.Batch
	c *flakyConn
}

var errInjected = errors.New("injected insert failure")

func (b *flakyBatch) Flush() error {
	if b.c.inject(&b.c.blocks) {
		_ = b.Batch.Abort()
		return errInjected
	}
	return b.Batch.Flush()
}

func (b *flakyBatch) Send() error {
	err := b.Batch.Send()
	if err == nil && b.c.inject(&b.c.closes) {
		return errInjected // written, but reported as failed
	}
	return err
}

// Insert failures make the processor read the uncommitted records again
// (recover, rewind), with rows of some failed INSERTs already stored: the
// result is still exactly the unique set.
func TestInsertFailuresRewind(t *testing.T) {
	e := newEnv(t)
	g := newGenerator(t, time.Date(2025, 3, 14, 8, 0, 0, 0, time.UTC))
	stories := 400
	want := g.expectedIDs(t, stories)
	var all []delivery
	counter := 0
	for n := 0; n < stories; n++ {
		all = append(all, g.deliveries(n, &counter)...)
	}
	produceAll(t, e.kafka, all)

	flaky := &flakyConn{Conn: e.conn, failEvery: 3, maxFailures: 8}
	real := e.conn
	e.conn = flaky
	cfg := Config{BatchRows: 700, BatchLinger: 100 * time.Millisecond, InsertRows: 3000, RetryMin: 10 * time.Millisecond, RetryMax: 200 * time.Millisecond}
	p, stop := e.start(t, cfg)
	e.conn = real
	waitRows(t, real, e.ch.Database, uint64(len(want)), 3*time.Minute)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkExactSet(t, real, e.ch.Database, want)
	t.Logf("injected %d failures, %d recoveries, %d records read for %d produced", flaky.injected.Load(), p.Stats().InsertRetries.Load(), p.Stats().Records.Load(), len(all))
	if p.Stats().InsertRetries.Load() == 0 {
		t.Fatal("no insert failed")
	}
}
