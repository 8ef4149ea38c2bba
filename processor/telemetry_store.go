package processor

import (
	"context"
	"fmt"
	"time"
)

// insertCanaries writes the canaries that became queryable at t
// (pipeline_canaries, migration 0110). Statistics: a failure is logged,
// nothing depends on it.
func (s *store) insertCanaries(ctx context.Context, t time.Time, instance string, cs []canaryPoint) error {
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.db+".pipeline_canaries (queryable_at, queryable_at_ms, sent_at_ms, received_at_ms, instance, event_id, request_id, src_partition, src_offset)")
	if err != nil {
		return fmt.Errorf("clickhouse: prepare pipeline_canaries insert: %w", err)
	}
	for _, c := range cs {
		if err := b.Append(t.UTC(), uint64(t.UnixMilli()), c.sentMs, c.receivedMs, instance, c.eventID, c.requestID, c.partition, c.offset); err != nil {
			_ = b.Abort()
			return fmt.Errorf("clickhouse: append pipeline_canaries row: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("clickhouse: insert pipeline_canaries rows: %w", err)
	}
	return nil
}

// insertLag writes one lag sample, a row per partition (pipeline_lag).
func (s *store) insertLag(ctx context.Context, t time.Time, instance, group, topic string, parts []partLag) error {
	if len(parts) == 0 {
		return nil
	}
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.db+".pipeline_lag (sampled_at, sampled_at_ms, instance, consumer_group, src_topic, partition, log_end, committed, lag_records, lag_seconds)")
	if err != nil {
		return fmt.Errorf("clickhouse: prepare pipeline_lag insert: %w", err)
	}
	for _, p := range parts {
		if err := b.Append(t.UTC(), uint64(t.UnixMilli()), instance, group, topic, p.partition, p.end, p.committed, p.records, p.seconds); err != nil {
			_ = b.Abort()
			return fmt.Errorf("clickhouse: append pipeline_lag row: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("clickhouse: insert pipeline_lag rows: %w", err)
	}
	return nil
}
