package ops

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lcpipe/lcpipe/internal/progress"
	"github.com/lcpipe/lcpipe/internal/wire"
)

// DeadLetter is one record of the dead-letter topic, as the processor (or
// ingest) wrote it: why, where it came from and when.
type DeadLetter struct {
	Topic     string    `json:"topic"`
	Partition int32     `json:"partition"`
	Offset    int64     `json:"offset"`
	At        time.Time `json:"at"`
	AgeSec    float64   `json:"age_seconds"`
	Stage     string    `json:"stage"`
	Reason    string    `json:"reason"`
	// Source is the raw record: topic, partition and offset (-1 when the
	// record never reached the raw topic, e.g. ingest's quarantine notices).
	SourceTopic     string `json:"source_topic"`
	SourcePartition int32  `json:"source_partition"`
	SourceOffset    int64  `json:"source_offset"`
	Action          string `json:"action"`
	Organization    string `json:"organization_id"`
	RequestID       string `json:"request_id"`
	Bytes           int    `json:"bytes"`
	// Redriven is set when this dead letter is the failure of a redriven
	// record: the dead letter that was redriven ("topic:partition:offset").
	Redriven string `json:"redriven,omitempty"`
	// RedrivenTo is set when a redrive sent this dead letter back: the raw
	// record ("topic:partition:offset").
	RedrivenTo string `json:"redriven_to,omitempty"`

	rec *kgo.Record
}

// Record is the dead-letter record itself.
func (d *DeadLetter) Record() *kgo.Record { return d.rec }

// ID is the dead letter's "topic:partition:offset".
func (d *DeadLetter) ID() string {
	return fmt.Sprintf("%s:%d:%d", d.Topic, d.Partition, d.Offset)
}

// ParseDeadLetter reads a dead-letter record's headers.
func ParseDeadLetter(r *kgo.Record, now time.Time) DeadLetter {
	d := DeadLetter{
		Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, At: r.Timestamp.UTC(),
		Stage: wire.Header(r, wire.HeaderDLQStage), Reason: wire.Header(r, wire.HeaderDLQError),
		SourceTopic: wire.Header(r, wire.HeaderDLQTopic), SourcePartition: -1, SourceOffset: -1,
		Action: wire.Header(r, wire.HeaderAction), Organization: wire.Header(r, wire.HeaderOrganization),
		RequestID: wire.Header(r, wire.HeaderRequestID), Bytes: len(r.Value),
		Redriven: wire.Header(r, wire.HeaderRedriven), rec: r,
	}
	if t, err := wire.ParseTime(wire.Header(r, wire.HeaderDLQAt)); err == nil {
		d.At = t.UTC()
	}
	d.AgeSec = max(now.Sub(d.At).Seconds(), 0)
	if n, err := wire.ParseOffset(wire.Header(r, wire.HeaderDLQPartition)); err == nil {
		d.SourcePartition = int32(n)
	}
	if n, err := wire.ParseOffset(wire.Header(r, wire.HeaderDLQOffset)); err == nil {
		d.SourceOffset = n
	}
	return d
}

// DLQFilter selects dead letters; empty fields match everything.
type DLQFilter struct {
	// Reason matches when it is a substring of the error (case-insensitive).
	Reason string
	// Stage matches the stage exactly (decode-envelope, decode-payload,
	// validate, ingest, ...).
	Stage string
}

func (f DLQFilter) match(d *DeadLetter) bool {
	if f.Reason != "" && !strings.Contains(strings.ToLower(d.Reason), strings.ToLower(f.Reason)) {
		return false
	}
	return f.Stage == "" || d.Stage == f.Stage
}

// ListDeadLetters reads the whole dead-letter topic (as it is at the call)
// and returns the dead letters matching f, oldest first per partition.
func ListDeadLetters(ctx context.Context, cl *kgo.Client, topic string, f DLQFilter, bar func(total int64) *progress.Bar) ([]DeadLetter, error) {
	adm := kadm.NewClient(cl)
	start, err := StartOffsets(ctx, adm, topic)
	if err != nil {
		return nil, err
	}
	end, err := EndOffsets(ctx, adm, topic)
	if err != nil {
		return nil, err
	}
	return readDeadLetters(ctx, cl, topic, start, end, f, bar)
}

func readDeadLetters(ctx context.Context, cl *kgo.Client, topic string, from, to Offsets, f DLQFilter, bar func(int64) *progress.Bar) ([]DeadLetter, error) {
	var total int64
	for p, e := range to {
		total += max(e-from[p], 0)
	}
	var b *progress.Bar
	if bar != nil {
		b = bar(total)
	}
	defer b.Finish()
	now := time.Now()
	var out []DeadLetter
	err := ReadRange(ctx, cl, topic, from, to, func(r *kgo.Record) error {
		b.Add(1)
		d := ParseDeadLetter(r, now)
		if f.match(&d) {
			out = append(out, d)
		}
		return nil
	})
	return out, err
}

// ShowDeadLetter reads the dead letter at partition:offset.
func ShowDeadLetter(ctx context.Context, cl *kgo.Client, topic string, partition int32, offset int64) (*DeadLetter, error) {
	recs, err := ReadAt(ctx, cl, topic, Offsets{partition: offset}, 10*time.Second)
	if err != nil {
		return nil, err
	}
	r, ok := recs[partition]
	if !ok || r.Offset != offset {
		return nil, fmt.Errorf("no dead letter at %s partition %d offset %d", topic, partition, offset)
	}
	d := ParseDeadLetter(r, time.Now())
	return &d, nil
}

// StageRedrive is the dlq-stage of a redrive notice: a body-less record
// `lcpipe dlq redrive` writes to the dead-letter topic after it sent a dead
// letter back (HeaderRedriven names the dead letter, the error says where
// it went), so the topic itself shows what was redriven and a later
// redrive does not send it again.
const StageRedrive = "redrive"

// RedriveOptions tune DLQRedrive.
type RedriveOptions struct {
	DLQTopic, RawTopic string
	Filter             DLQFilter
	// All sends dead letters already redriven once too (they are stored by
	// then, or failed again: the processor drops what is stored).
	All bool
	// IncludeRedriven sends dead letters that are failures of an earlier
	// redrive too (by default they are left: no loop).
	IncludeRedriven bool
	DryRun          bool
	Bar             func(total int64) *progress.Bar
}

// RedriveResult says what a redrive did (or would do).
type RedriveResult struct {
	Examined int `json:"examined"`
	// Sent are the dead letters produced back to the raw topic (would be,
	// with DryRun).
	Sent []DeadLetter `json:"sent"`
	// SkippedDone were redriven before (--all sends them again).
	SkippedDone int `json:"skipped_already_redriven"`
	// SkippedRedriven are failures of an earlier redrive, left alone.
	SkippedRedriven int `json:"skipped_failed_after_redrive"`
	// SkippedNoBody are dead letters without a body (ingest's notices of
	// quarantined webhooks: `lcpipe quarantine redrive` sends those).
	SkippedNoBody int  `json:"skipped_no_body"`
	DryRun        bool `json:"dry_run"`
}

// ListDeadLettersWithNotices is ListDeadLetters with redrive notices
// applied: notices are not listed, the dead letters they name get
// RedrivenTo.
func ListDeadLettersWithNotices(ctx context.Context, cl *kgo.Client, topic string, f DLQFilter, bar func(int64) *progress.Bar) ([]DeadLetter, error) {
	all, err := ListDeadLetters(ctx, cl, topic, DLQFilter{}, bar)
	if err != nil {
		return nil, err
	}
	dls, _ := applyNotices(all)
	out := dls[:0]
	for i := range dls {
		if f.match(&dls[i]) {
			out = append(out, dls[i])
		}
	}
	return out, nil
}

// applyNotices drops redrive notices from dls and sets RedrivenTo on the
// dead letters they name; it returns the set of redriven IDs too.
func applyNotices(dls []DeadLetter) ([]DeadLetter, map[string]string) {
	done := map[string]string{}
	for i := range dls {
		if dls[i].Stage == StageRedrive {
			done[dls[i].Redriven] = dls[i].Reason
		}
	}
	out := make([]DeadLetter, 0, len(dls))
	for _, d := range dls {
		if d.Stage == StageRedrive {
			continue
		}
		d.RedrivenTo = done[d.ID()]
		out = append(out, d)
	}
	return out, done
}

// DLQRedrive sends dead letters back through the full processor path: each
// selected dead letter's key, body and original headers (without the dlq-*
// ones) are produced to the raw topic with a HeaderRedriven header naming
// it, then a redrive notice goes to the dead-letter topic. The processor
// decodes, de-duplicates and stores it like any webhook; if it fails again
// it goes back to the dead-letter topic once, marked redriven, and a later
// redrive leaves it unless IncludeRedriven: no loop.
func DLQRedrive(ctx context.Context, cl *kgo.Client, o RedriveOptions) (*RedriveResult, error) {
	if o.DLQTopic == "" || o.RawTopic == "" {
		return nil, errors.New("redrive: dead-letter and raw topics are required")
	}
	all, err := ListDeadLetters(ctx, cl, o.DLQTopic, DLQFilter{}, o.Bar)
	if err != nil {
		return nil, err
	}
	dls, done := applyNotices(all)
	res := &RedriveResult{DryRun: o.DryRun, Sent: []DeadLetter{}}
	var recs []*kgo.Record
	for i := range dls {
		d := &dls[i]
		res.Examined++
		if !o.Filter.match(d) {
			continue
		}
		switch {
		case d.Redriven != "" && !o.IncludeRedriven:
			res.SkippedRedriven++
			continue
		case len(d.rec.Value) == 0:
			res.SkippedNoBody++
			continue
		}
		if _, ok := done[d.ID()]; ok && !o.All {
			res.SkippedDone++
			continue
		}
		res.Sent = append(res.Sent, *d)
		recs = append(recs, redriveRecord(d, o.RawTopic))
	}
	if o.DryRun || len(recs) == 0 {
		return res, nil
	}
	results := cl.ProduceSync(ctx, recs...)
	if err := results.FirstErr(); err != nil {
		return nil, fmt.Errorf("redrive: produce to %s: %w", o.RawTopic, err)
	}
	notices := make([]*kgo.Record, 0, len(recs))
	for i, r := range results {
		d := &res.Sent[i]
		d.RedrivenTo = fmt.Sprintf("%s:%d:%d", r.Record.Topic, r.Record.Partition, r.Record.Offset)
		notices = append(notices, &kgo.Record{Topic: o.DLQTopic, Key: d.rec.Key, Headers: []kgo.RecordHeader{
			{Key: wire.HeaderRedriven, Value: []byte(d.ID())},
			{Key: wire.HeaderDLQStage, Value: []byte(StageRedrive)},
			{Key: wire.HeaderDLQError, Value: []byte(d.RedrivenTo)},
			{Key: wire.HeaderDLQAt, Value: []byte(wire.FormatTime(time.Now()))},
			{Key: wire.HeaderAction, Value: []byte(d.Action)},
			{Key: wire.HeaderOrganization, Value: []byte(d.Organization)},
			{Key: wire.HeaderRequestID, Value: []byte(d.RequestID)},
		}})
	}
	if err := cl.ProduceSync(ctx, notices...).FirstErr(); err != nil {
		return res, fmt.Errorf("redrive: records sent, but the notices were not written (a new redrive sends them again; the processor drops what is stored): %w", err)
	}
	return res, nil
}

// redriveRecord is the raw-topic record of a dead letter: its key, body
// and original headers, marked redriven.
func redriveRecord(d *DeadLetter, rawTopic string) *kgo.Record {
	r := &kgo.Record{Topic: rawTopic, Key: d.rec.Key, Value: d.rec.Value}
	for _, h := range d.rec.Headers {
		if wire.IsDLQHeader(h.Key) || h.Key == wire.HeaderRedriven {
			continue
		}
		r.Headers = append(r.Headers, h)
	}
	r.Headers = append(r.Headers, kgo.RecordHeader{Key: wire.HeaderRedriven, Value: []byte(d.ID())})
	return r
}
