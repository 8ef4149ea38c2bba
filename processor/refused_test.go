package processor

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lcpipe/lcpipe/internal/testenv"
	"github.com/lcpipe/lcpipe/internal/wire"
)

// refusingConn has ClickHouse refuse, for its data, any INSERT into events
// that carries the event id poison (as the server does with a value it
// cannot parse or convert): the block is not sent.
type refusingConn struct {
	driver.Conn
	poison  string
	refused atomic.Int64
}

func (c *refusingConn) PrepareBatch(ctx context.Context, query string, opts ...driver.PrepareBatchOption) (driver.Batch, error) {
	b, err := c.Conn.PrepareBatch(ctx, query, opts...)
	if err != nil || !strings.Contains(query, ".events (") {
		return b, err
	}
	return &refusingBatch{Batch: b, c: c}, nil
}

type refusingBatch struct {
	driver.Batch
	c        *refusingConn
	poisoned bool
}

func (b *refusingBatch) Column(i int) driver.BatchColumn {
	col := b.Batch.Column(i)
	if i != 0 {
		return col
	}
	return refusingColumn{BatchColumn: col, b: b}
}

type refusingColumn struct {
	driver.BatchColumn
	b *refusingBatch
}

func (c refusingColumn) Append(v any) error {
	if ids, ok := v.([]string); ok && slices.Contains(ids, c.b.c.poison) {
		c.b.poisoned = true
	}
	return c.BatchColumn.Append(v)
}

func (b *refusingBatch) refuse() error {
	b.c.refused.Add(1)
	_ = b.Batch.Abort()
	return &proto.Exception{Code: 6, Name: "DB::Exception", Message: "Cannot parse input: injected refusal of event " + b.c.poison}
}

func (b *refusingBatch) Flush() error {
	if b.poisoned {
		return b.refuse()
	}
	return b.Batch.Flush()
}

func (b *refusingBatch) Send() error {
	if b.poisoned {
		return b.refuse()
	}
	return b.Batch.Send()
}

// TestRefusedRecordDeadLettered: a record whose row ClickHouse refuses for
// its data goes, alone, to the dead-letter topic with the server's message
// (stage insert); every other event is stored; nothing stalls.
func TestRefusedRecordDeadLettered(t *testing.T) {
	e := newEnv(t)
	g := newGenerator(t, time.Date(2025, 3, 14, 8, 0, 0, 0, time.UTC))
	var all []delivery
	counter := 0
	for n := 0; n < 30; n++ {
		all = append(all, g.deliveries(n, &counter)...)
	}
	want := g.expectedIDs(t, 30)
	// The poison: one incoming_event (one row, one record) of story 7.
	var poison delivery
	var poisonID string
	for _, d := range g.story(7) {
		w, err := livechatDecode(d.body)
		if err != nil {
			t.Fatal(err)
		}
		if w.Action == "incoming_event" {
			poison = d
			poisonID = Transform(Source{ReceivedAt: d.receivedAt}, w, nil, nil)[0].EventID
			break
		}
	}
	delete(want, poisonID)
	produceAll(t, e.kafka, all)

	rc := &refusingConn{Conn: e.conn, poison: poisonID}
	real := e.conn
	e.conn = rc
	p, stop := e.start(t, Config{BatchRows: 200, BatchLinger: 50 * time.Millisecond, InsertRows: 1000, RetryMin: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond})
	e.conn = real
	waitRows(t, real, e.ch.Database, uint64(len(want)), 2*time.Minute)
	testenv.Eventually(t, time.Minute, func() error {
		if n := p.Stats().DeadLetters.Load(); n != 1 {
			return fmt.Errorf("%d dead letters", n)
		}
		return nil
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkExactSet(t, real, e.ch.Database, want)
	cl := testenv.KafkaClient(t, e.kafka, kgo.ConsumeTopics(e.kafka.DLQTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var dead []*kgo.Record
	for len(dead) < 1 && ctx.Err() == nil {
		dead = append(dead, cl.PollFetches(ctx).Records()...)
	}
	if len(dead) != 1 {
		t.Fatalf("%d dead letters in the topic", len(dead))
	}
	d := dead[0]
	if wire.Header(d, wire.HeaderDLQStage) != "insert" || !strings.Contains(wire.Header(d, wire.HeaderDLQError), "injected refusal") ||
		string(d.Value) != string(poison.body) || wire.Header(d, wire.HeaderRequestID) != poison.requestID {
		t.Fatalf("dead letter: stage %q error %q request %q", wire.Header(d, wire.HeaderDLQStage), wire.Header(d, wire.HeaderDLQError), wire.Header(d, wire.HeaderRequestID))
	}
	t.Logf("%d refusals, %d insert failures", rc.refused.Load(), p.Stats().InsertRetries.Load())
}
