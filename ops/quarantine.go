package ops

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lcpipe/lcpipe/ingest"
	"github.com/lcpipe/lcpipe/internal/progress"
	"github.com/lcpipe/lcpipe/internal/wire"
)

// Quarantined is one webhook ingest acknowledged and Kafka refused, as
// kept in ingest's quarantine folder.
type Quarantined struct {
	Path         string    `json:"path"`
	Bytes        int64     `json:"bytes"`
	At           time.Time `json:"at"`
	AgeSec       float64   `json:"age_seconds"`
	Action       string    `json:"action"`
	Organization string    `json:"organization_id"`
	RequestID    string    `json:"request_id"`
	ReceivedAt   string    `json:"received_at"`
	BodyBytes    int       `json:"body_bytes"`
	// Error is why the file could not be read or (redrive) sent.
	Error string `json:"error,omitempty"`
}

// ListQuarantine lists the quarantined webhooks, oldest first.
func ListQuarantine(q *ingest.Quarantine) ([]Quarantined, error) {
	files, err := q.List()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	out := make([]Quarantined, 0, len(files))
	for _, f := range files {
		w := Quarantined{Path: f.Path, Bytes: f.Bytes, At: f.At, AgeSec: max(now.Sub(f.At).Seconds(), 0)}
		r, err := q.Read(f.Path)
		if err != nil {
			w.Error = err.Error()
		} else {
			w.Action, w.Organization = wire.Header(r, wire.HeaderAction), wire.Header(r, wire.HeaderOrganization)
			w.RequestID, w.ReceivedAt = wire.Header(r, wire.HeaderRequestID), wire.Header(r, wire.HeaderReceivedAt)
			w.BodyBytes = len(r.Value)
		}
		out = append(out, w)
	}
	return out, nil
}

// QuarantineResult is what a quarantine redrive did.
type QuarantineResult struct {
	// Sent were acknowledged by Kafka (acks=all) and their files removed.
	Sent []Quarantined `json:"sent"`
	// Left are still quarantined, with the reason (Kafka refused them
	// again, or the file does not read).
	Left   []Quarantined `json:"left"`
	DryRun bool          `json:"dry_run"`
}

// RedriveQuarantine re-sends every quarantined webhook to the raw topic,
// exactly as ingest built it (key, body, headers, timestamp), one at a
// time, and removes a file only after Kafka acknowledged its record. A
// record Kafka refuses again stays (Left), so the command can be rerun
// after the cause (max.message.bytes, say) is fixed. A crash between the
// ack and the removal sends it twice; the processor drops the copy.
func RedriveQuarantine(ctx context.Context, cl *kgo.Client, q *ingest.Quarantine, rawTopic string, dryRun bool, bar *progress.Bar) (*QuarantineResult, error) {
	list, err := ListQuarantine(q)
	if err != nil {
		return nil, err
	}
	defer bar.Finish()
	res := &QuarantineResult{Sent: []Quarantined{}, Left: []Quarantined{}, DryRun: dryRun}
	for _, w := range list {
		bar.Add(1)
		if w.Error != "" {
			res.Left = append(res.Left, w)
			continue
		}
		if dryRun {
			res.Sent = append(res.Sent, w)
			continue
		}
		r, err := q.Read(w.Path)
		if err == nil {
			r.Topic = rawTopic
			err = cl.ProduceSync(ctx, r).FirstErr()
		}
		if err != nil {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			w.Error = fmt.Sprintf("kafka refused it again: %v", err)
			res.Left = append(res.Left, w)
			continue
		}
		if err := q.Remove(w.Path); err != nil {
			return res, fmt.Errorf("quarantine: %s was sent but not removed (a new redrive sends it again; the processor drops the copy): %w", w.Path, err)
		}
		res.Sent = append(res.Sent, w)
	}
	return res, nil
}
