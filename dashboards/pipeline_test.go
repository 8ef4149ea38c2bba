package dashboards

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lcpipe/lcpipe/internal/simulate"
	"github.com/lcpipe/lcpipe/internal/testenv"
	"github.com/lcpipe/lcpipe/internal/wire"
	"github.com/lcpipe/lcpipe/processor"
	"github.com/lcpipe/lcpipe/schema"
)

// throughProcessor sends the dataset's deliveries, in arrival order, to a
// fresh raw topic as ingest would (key, received-at and the other headers),
// runs the real processor into a fresh migrated database until it has
// consumed every record, and returns the database. This is the path the
// dashboards' numbers take in production, de-duplication included.
func throughProcessor(t testing.TB, ds *simulate.Dataset) (driver.Conn, string, *processor.Stats) {
	t.Helper()
	ctx := context.Background()
	chCfg := testenv.ClickHouseConfig(t)
	conn := testenv.ClickHouse(t, chCfg)
	if _, err := schema.Migrate(ctx, conn, schema.Options{Database: chCfg.Database}, nil); err != nil {
		t.Fatal(err)
	}
	kCfg := testenv.KafkaConfig(t)
	cl := testenv.KafkaClient(t, kCfg)
	recs := make([]*kgo.Record, 0, len(ds.Deliveries))
	for i, d := range ds.Deliveries {
		sum := sha256.Sum256(d.Body)
		entity := d.ChatID
		recs = append(recs, &kgo.Record{
			Topic: kCfg.RawTopic,
			Key:   wire.Key(d.OrgID, entity),
			Value: d.Body,
			Headers: []kgo.RecordHeader{
				{Key: wire.HeaderReceivedAt, Value: []byte(wire.FormatTime(d.At))},
				{Key: wire.HeaderRequestID, Value: []byte(fmt.Sprintf("sim-%d", i))},
				{Key: wire.HeaderBodySHA256, Value: []byte(hex.EncodeToString(sum[:]))},
				{Key: wire.HeaderAction, Value: []byte(d.Action)},
				{Key: wire.HeaderOrganization, Value: []byte(d.OrgID)},
				{Key: wire.HeaderIngestVersion, Value: []byte("simulate")},
			},
		})
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for start := 0; start < len(recs); start += 5000 {
		end := min(start+5000, len(recs))
		if err := cl.ProduceSync(pctx, recs[start:end]...).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	pcfg := processor.DefaultConfig()
	pcfg.Group = testenv.Name(t, "group")
	pcfg.BatchLinger = 300 * time.Millisecond
	pcfg.BatchRows = 20_000
	p, err := processor.New(processor.Options{Config: pcfg, Kafka: kCfg, ClickHouse: conn, Database: chCfg.Database})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	testenv.Eventually(t, 3*time.Minute, func() error {
		select {
		case err := <-done:
			t.Fatalf("processor stopped early: %v", err)
		default:
		}
		if n := p.Stats().Records.Load(); n < int64(len(recs)) {
			return fmt.Errorf("processor consumed %d of %d records", n, len(recs))
		}
		return nil
	})
	stop()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("processor: %v", err)
	}
	st := p.Stats()
	t.Logf("processor: %d records, %d rows inserted, %d identity + %d window duplicates dropped, %d dead letters",
		st.Records.Load(), st.Inserted.Load(), st.DupIdentity.Load(), st.DupWindow.Load(), st.DeadLetters.Load())
	return conn, chCfg.Database, st
}
