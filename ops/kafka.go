// Package ops holds the operators' tools that look at and repair the
// pipeline from outside: `lcpipe status` (lag, inserts, dead letters, ingest
// spools, settler watermarks), `lcpipe dlq` (dead letters: list, show,
// redrive through the processor), `lcpipe quarantine` (webhooks Kafka
// refused: list, redrive) and `lcpipe group reset`. Each is one function
// over clients the caller builds (Kafka, kadm, ClickHouse), returning a
// typed report the command prints as text or JSON, so a cron job or a
// container check can read the same facts a person does.
//
// Replaying a range and auditing completeness are their own packages
// (replay, audit): they run the processor's code over a range.
package ops

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Offsets are per-partition offsets of one topic.
type Offsets map[int32]int64

// Partitions lists the partitions, sorted.
func (o Offsets) Partitions() []int32 {
	out := make([]int32, 0, len(o))
	for p := range o {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func listed(lo kadm.ListedOffsets, err error, topic, what string) (Offsets, error) {
	if err != nil {
		return nil, fmt.Errorf("kafka: list %s offsets of %s: %w", what, topic, err)
	}
	if err := lo.Error(); err != nil {
		return nil, fmt.Errorf("kafka: list %s offsets of %s: %w", what, topic, err)
	}
	out := Offsets{}
	lo.Each(func(l kadm.ListedOffset) {
		if l.Topic == topic {
			out[l.Partition] = l.Offset
		}
	})
	if len(out) == 0 {
		return nil, fmt.Errorf("kafka: topic %s: %w", topic, kerr.UnknownTopicOrPartition)
	}
	return out, nil
}

// EndOffsets are the log end offsets (the next offset to be written).
func EndOffsets(ctx context.Context, adm *kadm.Client, topic string) (Offsets, error) {
	lo, err := adm.ListEndOffsets(ctx, topic)
	return listed(lo, err, topic, "end")
}

// StartOffsets are the first offsets still in the log.
func StartOffsets(ctx context.Context, adm *kadm.Client, topic string) (Offsets, error) {
	lo, err := adm.ListStartOffsets(ctx, topic)
	return listed(lo, err, topic, "start")
}

// OffsetsAfter are, per partition, the first offset whose record timestamp
// is at or after t (the end offset when there is none): Kafka's
// offsets-by-time.
func OffsetsAfter(ctx context.Context, adm *kadm.Client, topic string, t time.Time) (Offsets, error) {
	lo, err := adm.ListOffsetsAfterMilli(ctx, t.UnixMilli(), topic)
	out, err := listed(lo, err, topic, "by-time")
	if err != nil {
		return nil, err
	}
	// -1 means no record at or after t: the range ends at the log end.
	var end Offsets
	for p, o := range out {
		if o >= 0 {
			continue
		}
		if end == nil {
			if end, err = EndOffsets(ctx, adm, topic); err != nil {
				return nil, err
			}
		}
		out[p] = end[p]
	}
	return out, nil
}

// Committed are the group's committed offsets on topic; a partition
// without a commit is absent.
func Committed(ctx context.Context, adm *kadm.Client, group, topic string) (Offsets, error) {
	resp, err := adm.FetchOffsetsForTopics(ctx, group, topic)
	if err != nil {
		return nil, fmt.Errorf("kafka: fetch committed offsets of group %s: %w", group, err)
	}
	if err := resp.Error(); err != nil {
		return nil, fmt.Errorf("kafka: fetch committed offsets of group %s: %w", group, err)
	}
	out := Offsets{}
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.At >= 0 {
			out[o.Partition] = o.At
		}
	})
	return out, nil
}

// ReadAt reads the record at offsets[p] of every partition given (at most
// wait). A partition whose offset holds no record yet (or was compacted
// away: the next one is returned then) is absent from the result.
func ReadAt(ctx context.Context, cl *kgo.Client, topic string, offsets Offsets, wait time.Duration) (map[int32]*kgo.Record, error) {
	out := map[int32]*kgo.Record{}
	if len(offsets) == 0 {
		return out, nil
	}
	parts := map[int32]kgo.Offset{}
	for p, o := range offsets {
		parts[p] = kgo.NewOffset().At(o)
	}
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts})
	defer cl.RemoveConsumePartitions(map[string][]int32{topic: offsets.Partitions()})
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for len(out) < len(offsets) && ctx.Err() == nil {
		fs := cl.PollRecords(ctx, 1000)
		for _, r := range fs.Records() {
			if _, ok := out[r.Partition]; !ok && r.Offset >= offsets[r.Partition] {
				out[r.Partition] = r
			}
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				ferr = err
			}
		})
		if ferr != nil {
			return out, fmt.Errorf("kafka: read %s: %w", topic, ferr)
		}
	}
	return out, nil
}

// ReadRange calls fn for every record of topic in [from[p], to[p]) of each
// partition in to (from defaults to 0, i.e. the log start), in offset order
// per partition, with cl's direct consumption (no group). It returns when
// every partition reached its end, fn fails or ctx ends.
func ReadRange(ctx context.Context, cl *kgo.Client, topic string, from, to Offsets, fn func(*kgo.Record) error) error {
	parts := map[int32]kgo.Offset{}
	left := map[int32]int64{}
	for p, end := range to {
		start := from[p]
		if start >= end {
			continue
		}
		parts[p] = kgo.NewOffset().At(start)
		left[p] = end
	}
	if len(parts) == 0 {
		return nil
	}
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts})
	defer cl.RemoveConsumePartitions(map[string][]int32{topic: Offsets(left).Partitions()})
	for len(left) > 0 {
		fs := cl.PollRecords(ctx, 5000)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				ferr = err
			}
		})
		if ferr != nil {
			return fmt.Errorf("kafka: read %s: %w", topic, ferr)
		}
		for _, r := range fs.Records() {
			end, ok := left[r.Partition]
			if !ok || r.Offset >= end {
				continue
			}
			if err := fn(r); err != nil {
				return err
			}
			if r.Offset+1 >= end {
				delete(left, r.Partition)
			}
		}
	}
	return nil
}

// partOffsets matches "PARTITION:OFFSET,..." (a time has a date before any colon).
var partOffsets = regexp.MustCompile(`^\s*\d+\s*:\s*\d+(\s*,\s*\d+\s*:\s*\d+)*\s*$`)

// Bound resolves one end of a range of topic: "earliest", "latest" (or
// "now"), a time (ParseTime, through Kafka's offsets-by-time) or
// "PARTITION:OFFSET,...". def fills the partitions a P:O list leaves out
// (nil: they are not in the range).
func Bound(ctx context.Context, adm *kadm.Client, topic, spec string, logStart, logEnd, def Offsets) (Offsets, error) {
	out := Offsets{}
	switch spec {
	case "earliest":
		for p, o := range logStart {
			out[p] = o
		}
		return out, nil
	case "latest", "now":
		for p, o := range logEnd {
			out[p] = o
		}
		return out, nil
	}
	if partOffsets.MatchString(spec) {
		for p, o := range def {
			out[p] = o
		}
		for _, part := range strings.Split(spec, ",") {
			ps, os, _ := strings.Cut(strings.TrimSpace(part), ":")
			p, err1 := strconv.ParseInt(strings.TrimSpace(ps), 10, 32)
			n, err2 := strconv.ParseInt(strings.TrimSpace(os), 10, 64)
			if err1 != nil || err2 != nil || p < 0 || n < 0 {
				return nil, fmt.Errorf("%q is not PARTITION:OFFSET", part)
			}
			out[int32(p)] = n
		}
		return out, nil
	}
	t, err := ParseTime(spec, time.Now())
	if err != nil {
		return nil, err
	}
	return OffsetsAfter(ctx, adm, topic, t)
}
