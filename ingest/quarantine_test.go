package ingest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lcpipe/lcpipe/ingest/spool"
	"github.com/lcpipe/lcpipe/internal/wire"
)

// TestQuarantineCountsTowardSpoolCap: quarantined files are listed, read
// back as the record ingest built, and their bytes fill the spool's cap
// (an append that would pass it is refused) until they are removed.
func TestQuarantineCountsTowardSpoolCap(t *testing.T) {
	dir := t.TempDir()
	q := NewQuarantine(dir + "/dead")
	rec := &kgo.Record{Key: []byte("k"), Value: make([]byte, 40<<10), Timestamp: time.Unix(1700000000, 0).UTC(),
		Headers: []kgo.RecordHeader{{Key: wire.HeaderRequestID, Value: []byte("r1")}}}
	path, err := q.Put("r1", encodeSpoolEntry(rec))
	if err != nil {
		t.Fatal(err)
	}
	list, err := q.List()
	if err != nil || len(list) != 1 || list[0].Path != path {
		t.Fatalf("list %v %v", list, err)
	}
	got, err := q.Read(path)
	if err != nil || string(got.Key) != "k" || len(got.Value) != 40<<10 || !got.Timestamp.Equal(rec.Timestamp) || wire.Header(got, wire.HeaderRequestID) != "r1" {
		t.Fatalf("read %+v %v", got, err)
	}
	cfg := spool.DefaultConfig(dir)
	cfg.MaxBytes, cfg.SegmentBytes, cfg.ExtraBytes = 64<<10, 32<<10, q.Bytes
	sp, err := spool.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	ctx := context.Background()
	if err := sp.Append(ctx, make([]byte, 30<<10)); !errors.Is(err, spool.ErrFull) {
		t.Fatalf("append over the cap with the quarantine: %v", err)
	}
	if err := q.Remove(path); err != nil {
		t.Fatal(err)
	}
	q.rescan()
	if files, b := q.Size(); files != 0 || b != 0 {
		t.Fatalf("size after remove: %d files %d bytes", files, b)
	}
	if err := sp.Append(ctx, make([]byte, 30<<10)); err != nil {
		t.Fatalf("append after the quarantine emptied: %v", err)
	}
}
