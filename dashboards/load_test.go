package dashboards

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/lcpipe/lcpipe/internal/livechat"
	"github.com/lcpipe/lcpipe/internal/simulate"
	"github.com/lcpipe/lcpipe/processor"
)

// rowsOf turns deliveries, in arrival order, into events rows with the
// processor's pure transform and drops what the processor drops: rows of a
// server identity already seen, and the deliveries the simulator marks as
// retries (the processor's retry rule drops exactly those, see simulate's
// TestRetriesAreTheOnlyRepeats; flips back are kept).
func rowsOf(t testing.TB, deliveries []simulate.Delivery, emit func([]processor.Row)) (kept, dropped int) {
	t.Helper()
	users := processor.NewUserCache(0)
	seen := map[string]bool{}
	var buf []processor.Row
	for i, d := range deliveries {
		w, err := livechat.Decode(d.Body)
		if err != nil {
			t.Fatalf("delivery %d (%s): %v", i, d.Action, err)
		}
		sum := sha256.Sum256(d.Body)
		src := processor.Source{Topic: "sim", Offset: int64(i), ReceivedAt: d.At, RequestID: fmt.Sprintf("req-%d", i), BodySHA256: hex.EncodeToString(sum[:])}
		for _, r := range processor.Transform(src, w, users, nil) {
			if seen[r.EventID] || (d.Retry && r.DedupKey != "") {
				dropped++
				continue
			}
			seen[r.EventID] = true
			buf = append(buf, r)
			kept++
			if len(buf) >= 50_000 {
				emit(buf)
				buf = nil
			}
		}
	}
	if len(buf) > 0 {
		emit(buf)
	}
	return kept, dropped
}

// insertRows writes rows into db.events as the processor does (its column
// list and fill), one block. The payload and properties are left out: the
// panels never read them and a 10M-row benchmark database stays small.
func insertRows(ctx context.Context, conn driver.Conn, db string, rows []processor.Row) error {
	for i := range rows {
		rows[i].Payload, rows[i].Properties = "", ""
	}
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".events ("+processor.InsertColumns()+")")
	if err != nil {
		return err
	}
	if err := processor.AppendRows(b, rows, 0); err != nil {
		return err
	}
	return b.Send()
}
