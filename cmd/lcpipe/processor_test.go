package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lcpipe/lcpipe/internal/testenv"
	"github.com/lcpipe/lcpipe/internal/wire"
)

// TestRunProcessorSettles runs the processor command from its environment on
// the real Kafka and ClickHouse: an incoming_chat of a past day goes through
// to `events`, the settler it runs next to consuming writes that day's
// thread into threads_settled, the admin listener is ready and serves the
// processor's metrics and the profiler, and on SIGTERM (cancel) all stop and
// the settler's staging tables are gone.
func TestRunProcessorSettles(t *testing.T) {
	kcfg := testenv.KafkaConfig(t)
	chcfg := testenv.ClickHouseConfig(t)
	conn := testenv.ClickHouse(t, chcfg)
	body, err := os.ReadFile(filepath.Join("..", "..", "ingest", "testdata", "livechat", "incoming_chat.json"))
	if err != nil {
		t.Fatal(err)
	}
	cl := testenv.KafkaClient(t, kcfg)
	rec := &kgo.Record{
		Topic: kcfg.RawTopic,
		Key:   wire.Key("3f2b8c1e-9d4a-4e6b-8f1a-2c5d7e9b0a14", "RW4T8ZQK2C"),
		Value: body,
		Headers: []kgo.RecordHeader{
			{Key: wire.HeaderReceivedAt, Value: []byte(wire.FormatTime(time.Date(2025, 3, 14, 9, 15, 20, 0, time.UTC)))},
			{Key: wire.HeaderRequestID, Value: []byte("settle-test")},
			{Key: wire.HeaderAction, Value: []byte("incoming_chat")},
			{Key: wire.HeaderIngestVersion, Value: []byte("test")},
		},
	}
	pctx, pcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer pcancel()
	if err := cl.ProduceSync(pctx, rec).FirstErr(); err != nil {
		t.Fatal(err)
	}

	adminAddr := freeAddr(t)
	env := map[string]string{
		"KAFKA_BROKERS":       strings.Join(kcfg.Brokers, ","),
		"KAFKA_RAW_TOPIC":     kcfg.RawTopic,
		"KAFKA_DLQ_TOPIC":     kcfg.DLQTopic,
		"KAFKA_GROUP":         testenv.Name(t, "group"),
		"CLICKHOUSE_ADDR":     strings.Join(chcfg.Addr, ","),
		"CLICKHOUSE_DATABASE": chcfg.Database,
		"BATCH_LINGER":        "100ms",
		"INSERT_LINGER":       "200ms",
		"SETTLE_INTERVAL":     "300ms",
		"ADMIN_ADDR":          adminAddr,
		"ADMIN_PPROF":         "true",
		"LAG_INTERVAL":        "200ms",
	}
	inv := newInvocation("processor", "test", nil, io.Discard, slog.New(slog.DiscardHandler))
	inv.lookup = func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runProcessor(ctx, inv) }()

	db := chcfg.Database
	testenv.Eventually(t, 60*time.Second, func() error {
		select {
		case err := <-done:
			t.Fatalf("processor stopped early: %v", err)
		default:
		}
		var threads, marks uint64
		err := conn.QueryRow(context.Background(), fmt.Sprintf(
			"SELECT (SELECT count() FROM %s.threads_settled WHERE thread_id != ''), (SELECT count() FROM %s.rollup_days WHERE name = 'threads_settled')", db, db)).
			Scan(&threads, &marks)
		if err != nil {
			return err
		}
		if threads != 1 || marks == 0 {
			return fmt.Errorf("threads_settled has %d threads, rollup_days %d marks", threads, marks)
		}
		return nil
	})
	// The admin listener: ready (consuming, ClickHouse reachable), the
	// processor's metrics, the profiler (ADMIN_PPROF).
	checkAdmin(t, adminAddr, true, "lcpipe_processor_records_total 1", "lcpipe_processor_rows_inserted_total",
		`lcpipe_processor_lag_records{partition="0"}`, "lcpipe_freshness_received_to_queryable_seconds_count")
	cancel()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("runProcessor: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("runProcessor did not stop after cancel")
	}
	var stages uint64
	if err := conn.QueryRow(context.Background(),
		"SELECT count() FROM system.tables WHERE database = '"+db+"' AND name LIKE '%_stage_%'").Scan(&stages); err != nil {
		t.Fatal(err)
	}
	if stages != 0 {
		t.Errorf("%d staging tables left after the processor stopped", stages)
	}
}
