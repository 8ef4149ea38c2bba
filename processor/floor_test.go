package processor

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lcpipe/lcpipe/internal/chconn"
	"github.com/lcpipe/lcpipe/internal/kafka"
	"github.com/lcpipe/lcpipe/internal/livechat"
	"github.com/lcpipe/lcpipe/internal/testenv"
)

// The floor of BenchmarkProcessor: what any processor must spend to move
// this topic into this schema. A franz-go consumer reads the same topic
// (a fresh group, from the start) and inserts the same rows, computed
// before the clock starts, into a fresh database of the same schema (the
// events table with its views), in INSERTs of the processor's size, and
// commits after each. It decodes nothing, hashes nothing and looks nothing
// up: the processor's cost above it is what its own code costs.

// floorResult is one floor run: rows stored, wall time and the CPU the
// process spent during it.
type floorResult struct {
	rows uint64
	took time.Duration
	cpu  time.Duration
}

func (f floorResult) rate() float64 { return float64(f.rows) / f.took.Seconds() }

// cpuPerEvent is CPU µs per stored row.
func (f floorResult) cpuPerEvent() float64 { return float64(f.cpu.Microseconds()) / float64(f.rows) }

// floorRows are the unique rows of the stories, in delivery order: the rows
// the processor stores.
func floorRows(t testing.TB, g *generator, stories int, topic string) []Row {
	t.Helper()
	var rows []Row
	for s := 0; s < stories; s++ {
		for _, d := range g.story(s) {
			w, err := livechat.Decode(d.body)
			if err != nil {
				t.Fatal(err)
			}
			rows = appendTransform(rows, Source{Topic: topic, ReceivedAt: d.receivedAt, RequestID: d.requestID}, w, nil, nil)
		}
	}
	return rows
}

// benchFloor consumes the topic's webhooks records and inserts rows as the
// records arrive (records × len(rows)/webhooks rows so far), blockRows per
// block, insertRows per INSERT. The CPU is this process's (/proc), measured
// from the first poll to the last commit; nothing else runs in it then.
func benchFloor(b *testing.B, kcfg kafka.Config, chcfg chconn.Config, rows []Row, webhooks, blockRows, insertRows int) floorResult {
	b.Helper()
	fcfg := chcfg
	fcfg.Database = testenv.Name(b, "floor")
	conn := testenv.ClickHouse(b, fcfg)
	b.Cleanup(func() { _ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+fcfg.Database) })
	migrate(b, conn, fcfg.Database)
	st := &store{conn: conn, db: fcfg.Database}
	cl, err := kafka.NewClient(kcfg, kgo.ConsumerGroup(testenv.Name(b, "floorgrp")), kgo.ConsumeTopics(kcfg.RawTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit(), kgo.FetchMaxBytes(4<<20), kgo.FetchMaxPartitionBytes(1<<20))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	runtime.GC()

	cpu0 := procCPU(b, os.Getpid())
	start := time.Now()
	records, sent, inINSERT := 0, 0, 0
	ins, err := st.open(ctx, "")
	if err != nil {
		b.Fatal(err)
	}
	for sent < len(rows) {
		fs := cl.PollFetches(ctx)
		if errs := fs.Errors(); len(errs) > 0 {
			b.Fatalf("floor poll: %v", errs[0].Err)
		}
		records += fs.NumRecords()
		due := len(rows)
		if records < webhooks {
			due = int(int64(records) * int64(len(rows)) / int64(webhooks))
		}
		for due-sent >= blockRows || (due == len(rows) && sent < due) {
			n := min(blockRows, due-sent)
			if err := st.sendBlock(ins, rows[sent:sent+n], 1); err != nil {
				b.Fatal(err)
			}
			sent += n
			inINSERT += n
			if inINSERT >= insertRows || sent == len(rows) {
				if err := ins.Send(); err != nil {
					b.Fatalf("floor insert: %v", err)
				}
				if err := cl.CommitUncommittedOffsets(ctx); err != nil {
					b.Fatalf("floor commit: %v", err)
				}
				inINSERT = 0
				if sent < len(rows) {
					if ins, err = st.open(ctx, ""); err != nil {
						b.Fatal(err)
					}
				}
			}
		}
	}
	res := floorResult{rows: uint64(sent), took: time.Since(start), cpu: procCPU(b, os.Getpid()) - cpu0}
	if n, err := countRows(conn, fcfg.Database); err != nil || n != uint64(len(rows)) {
		b.Fatalf("floor stored %d rows (%v), want %d", n, err, len(rows))
	}
	return res
}

// procCPU is the process's user+system CPU time so far (testenv.ProcCPU).
func procCPU(t testing.TB, pid int) time.Duration {
	t.Helper()
	d, err := testenv.ProcCPU(strconv.Itoa(pid))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// procHWM is the process's peak RSS in MiB (VmHWM), while it runs.
func procHWM(t testing.TB, pid int) float64 {
	t.Helper()
	_, peak, err := testenv.ProcRSS(strconv.Itoa(pid))
	if err != nil {
		t.Fatal(err)
	}
	return float64(peak) / 1024
}
