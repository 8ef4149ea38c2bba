package dashboards

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

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

const loadColumns = "event_id, organization_id, action, kind, dedup_key, occurred_at, occurred_at_ms, received_at, received_at_ms, " +
	"chat_id, thread_id, event_ref, event_type, author_id, author_type, visibility, is_welcome, text_length, system_message_type, " +
	"agent_id, customer_id, group_ids, user_type, tag, transfer_group_ids, transfer_agent_ids, queued_at_ms, routing_status, " +
	"rating_score, rating_has_score, rating_comment, thread_created_at_ms, continuous, greeting_id, customer_country_code, start_url, request_id, body_sha256"

// insertRows writes rows into db.events column by column, one block.
func insertRows(ctx context.Context, conn driver.Conn, db string, rows []processor.Row) error {
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".events ("+loadColumns+")")
	if err != nil {
		return err
	}
	for i, c := range columnsOf(rows) {
		if err := b.Column(i).Append(c); err != nil {
			return fmt.Errorf("column %d: %w", i, err)
		}
	}
	return b.Send()
}

// columnsOf returns one typed slice per loadColumns column.
func columnsOf(rows []processor.Row) []any {
	n := len(rows)
	strs := func(f func(*processor.Row) string) []string {
		out := make([]string, n)
		for i := range rows {
			out[i] = f(&rows[i])
		}
		return out
	}
	u64 := func(f func(*processor.Row) uint64) []uint64 {
		out := make([]uint64, n)
		for i := range rows {
			out[i] = f(&rows[i])
		}
		return out
	}
	u8 := func(f func(*processor.Row) uint8) []uint8 {
		out := make([]uint8, n)
		for i := range rows {
			out[i] = f(&rows[i])
		}
		return out
	}
	times := func(f func(*processor.Row) uint64) []time.Time {
		out := make([]time.Time, n)
		for i := range rows {
			out[i] = time.UnixMilli(int64(f(&rows[i]))).UTC()
		}
		return out
	}
	u32s := func(f func(*processor.Row) []uint32) [][]uint32 {
		out := make([][]uint32, n)
		for i := range rows {
			out[i] = append([]uint32{}, f(&rows[i])...)
		}
		return out
	}
	strss := func(f func(*processor.Row) []string) [][]string {
		out := make([][]string, n)
		for i := range rows {
			out[i] = append([]string{}, f(&rows[i])...)
		}
		return out
	}
	textLen := make([]uint32, n)
	score := make([]int8, n)
	for i := range rows {
		textLen[i], score[i] = rows[i].TextLength, rows[i].RatingScore
	}
	cols := []any{
		strs(func(r *processor.Row) string { return r.EventID }),
		strs(func(r *processor.Row) string { return r.OrganizationID }),
		strs(func(r *processor.Row) string { return r.Action }),
		strs(func(r *processor.Row) string { return r.Kind }),
		strs(func(r *processor.Row) string { return r.DedupKey }),
		times(func(r *processor.Row) uint64 { return r.OccurredAtMs }),
		u64(func(r *processor.Row) uint64 { return r.OccurredAtMs }),
		times(func(r *processor.Row) uint64 { return r.ReceivedAtMs }),
		u64(func(r *processor.Row) uint64 { return r.ReceivedAtMs }),
		strs(func(r *processor.Row) string { return r.ChatID }),
		strs(func(r *processor.Row) string { return r.ThreadID }),
		strs(func(r *processor.Row) string { return r.EventRef }),
		strs(func(r *processor.Row) string { return r.EventType }),
		strs(func(r *processor.Row) string { return r.AuthorID }),
		strs(func(r *processor.Row) string { return r.AuthorType }),
		strs(func(r *processor.Row) string { return r.Visibility }),
		u8(func(r *processor.Row) uint8 { return r.IsWelcome }),
		textLen,
		strs(func(r *processor.Row) string { return r.SystemMessageType }),
		strs(func(r *processor.Row) string { return r.AgentID }),
		strs(func(r *processor.Row) string { return r.CustomerID }),
		u32s(func(r *processor.Row) []uint32 { return r.GroupIDs }),
		strs(func(r *processor.Row) string { return r.UserType }),
		strs(func(r *processor.Row) string { return r.Tag }),
		u32s(func(r *processor.Row) []uint32 { return r.TransferGroupIDs }),
		strss(func(r *processor.Row) []string { return r.TransferAgentIDs }),
		u64(func(r *processor.Row) uint64 { return r.QueuedAtMs }),
		strs(func(r *processor.Row) string { return r.RoutingStatus }),
		score,
		u8(func(r *processor.Row) uint8 { return r.RatingHasScore }),
		strs(func(r *processor.Row) string { return r.RatingComment }),
		u64(func(r *processor.Row) uint64 { return r.ThreadCreatedAtMs }),
		u8(func(r *processor.Row) uint8 { return r.Continuous }),
		strs(func(r *processor.Row) string { return r.GreetingID }),
		strs(func(r *processor.Row) string { return r.CustomerCountryCode }),
		strs(func(r *processor.Row) string { return r.StartURL }),
		strs(func(r *processor.Row) string { return r.RequestID }),
		strs(func(r *processor.Row) string { return r.BodySHA256 }),
	}
	return cols
}
