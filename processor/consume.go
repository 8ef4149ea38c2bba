package processor

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lcpipe/lcpipe/internal/livechat"
	"github.com/lcpipe/lcpipe/internal/wire"
)

// pollLoop reads the raw topic into batches (process) until ctx ends,
// waiting while the flusher is behind (waitForRoom) and rewinding when the
// flusher asks (rewind). Rebalance callbacks run only between its polls.
func (p *Processor) pollLoop(ctx context.Context) {
	for ctx.Err() == nil {
		p.waitForRoom(ctx)
		if ctx.Err() != nil {
			return
		}
		// Poll at most until the current batch reaches its linger. While
		// the flusher is still busy with an earlier batch, an old batch keeps
		// growing instead (up to its size limits): flushing it earlier would
		// only queue it, and fewer, larger inserts are what ClickHouse (and
		// the materialized views on events) handle best.
		p.q.mu.Lock()
		wait := p.cfg.BatchLinger
		if p.q.cur.records > 0 {
			wait = p.cfg.BatchLinger - time.Since(p.q.cur.started)
			if wait <= 0 {
				if p.q.unsent() == 0 {
					p.q.seal()
				}
				wait = min(p.cfg.BatchLinger, 50*time.Millisecond)
			}
		}
		p.q.mu.Unlock()
		pollCtx, cancel := context.WithTimeout(ctx, wait)
		fetches := p.cl.PollRecords(pollCtx, p.pollMax()) // range mode's rate caps it
		cancel()
		fetches.EachError(func(topic string, part int32, err error) {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.Is(err, kgo.ErrClientClosed) {
				return
			}
			p.log.Warn("fetch error", "topic", topic, "partition", part, "err", err)
		})
		recs := fetches.Records()
		if p.rng != nil { // range mode
			recs = p.rangeClip(ctx, recs)
		}
		p.q.mu.Lock()
		rewind := p.q.rewindReq
		if p.q.drained = len(recs) == 0; p.q.drained {
			p.q.cond.Broadcast()
		}
		p.q.mu.Unlock()
		if rewind {
			p.rewind(recs) // what was just fetched is dropped too
		} else if len(recs) > 0 {
			p.process(recs)
		}
		p.cl.AllowRebalance()
	}
}

// waitForRoom blocks while MaxPendingBatches sealed batches hold rows that
// are not sent to ClickHouse yet, with fetching paused meanwhile.
func (p *Processor) waitForRoom(ctx context.Context) {
	p.q.mu.Lock()
	defer p.q.mu.Unlock()
	if p.q.unsent() < p.cfg.MaxPendingBatches {
		return
	}
	p.cl.PauseFetchTopics(p.kcfg.RawTopic)
	p.stats.Pauses.Add(1)
	p.log.Debug("paused fetching: ClickHouse is behind", "pending_batches", len(p.q.pending))
	defer p.q.wakeOnDone(ctx)()
	for p.q.unsent() >= p.cfg.MaxPendingBatches && ctx.Err() == nil && !p.q.stopped && !p.q.rewindReq {
		p.q.cond.Wait()
	}
	p.cl.ResumeFetchTopics(p.kcfg.RawTopic)
	p.log.Debug("resumed fetching", "pending_batches", len(p.q.pending))
}

type decoded struct {
	w   *livechat.Webhook
	err error
}

// decodeAll decodes records in parallel (decoding is the CPU-heavy part).
func (p *Processor) decodeAll(recs []*kgo.Record) []decoded {
	out := make([]decoded, len(recs))
	workers := min(p.cfg.DecodeWorkers, (len(recs)+63)/64)
	if workers <= 1 {
		for i, r := range recs {
			out[i].w, out[i].err = decodeSafely(r, p.cfg.Decode)
		}
		return out
	}
	var wg sync.WaitGroup
	chunk := (len(recs) + workers - 1) / workers
	for start := 0; start < len(recs); start += chunk {
		end := min(start+chunk, len(recs))
		wg.Go(func() {
			for i := start; i < end; i++ {
				out[i].w, out[i].err = decodeSafely(recs[i], p.cfg.Decode)
			}
		})
	}
	wg.Wait()
	return out
}

// ValidationError is a decoded webhook that lacks what its identity needs.
type ValidationError struct{ Reason string }

func (e *ValidationError) Error() string { return "invalid webhook: " + e.Reason }

func decodeRecord(r *kgo.Record, decode func([]byte) (*livechat.Webhook, error)) (*livechat.Webhook, error) {
	if decode == nil {
		decode = livechat.Decode
	}
	w, err := decode(r.Value)
	if err != nil {
		return nil, err
	}
	w.UseOrganization(wire.Header(r, wire.HeaderOrganization)) // v3.3 bodies: the organization ingest found for the license
	if err := validate(w); err != nil {
		return nil, err
	}
	return w, nil
}

// validate rejects webhooks whose natural key is empty: their IDs would
// collide with every other such webhook and drop real events.
func validate(w *livechat.Webhook) error {
	need := func(what string, vals ...string) error {
		for _, v := range vals {
			if v == "" {
				return &ValidationError{Reason: w.Action + " without " + what}
			}
		}
		return nil
	}
	switch b := w.Body.(type) {
	case *livechat.IncomingChat:
		th := b.Chat.Thread
		if th == nil && len(b.Chat.Threads) > 0 {
			th = &b.Chat.Threads[0]
		}
		if th == nil {
			return &ValidationError{Reason: w.Action + " without chat.thread"}
		}
		if err := need("chat.id and thread.id", b.Chat.ID, th.ID); err != nil {
			return err
		}
		for _, e := range th.Events {
			if e.ID == "" {
				return &ValidationError{Reason: w.Action + " with an event without id"}
			}
		}
	case *livechat.IncomingEvent:
		return need("chat_id and event.id", b.ChatID, b.Event.ID)
	case *livechat.EventUpdated:
		return need("chat_id and event.id", b.ChatID, b.Event.ID)
	case *livechat.EventDeleted:
		return need("chat_id and event_id", b.ChatID, b.EventID)
	case *livechat.IncomingRichMessagePostback:
		return need("chat_id and event_id", b.ChatID, b.EventID)
	case *livechat.ChatDeactivated:
		return need("chat_id and thread_id", b.ChatID, b.ThreadID)
	case *livechat.EventsMarkedAsSeen:
		return need("chat_id and user_id", b.ChatID, b.UserID)
	case *livechat.ThreadSummarySet:
		return need("chat_id and thread_id", b.ChatID, b.ThreadID)
	}
	return nil
}

// sourceOf reads the record's metadata; received-at falls back to the
// record timestamp (also stable across replays) when the header is absent.
func sourceOf(r *kgo.Record) Source {
	recv := r.Timestamp
	if h := wire.Header(r, wire.HeaderReceivedAt); h != "" {
		if t, err := wire.ParseTime(h); err == nil {
			recv = t
		}
	}
	return Source{
		Topic:         r.Topic,
		Partition:     r.Partition,
		Offset:        r.Offset,
		ReceivedAt:    recv.UTC(),
		RequestID:     wire.Header(r, wire.HeaderRequestID),
		BodySHA256:    wire.Header(r, wire.HeaderBodySHA256),
		IngestVersion: wire.Header(r, wire.HeaderIngestVersion),
	}
}

// process decodes, transforms and adds records to the current batch,
// sealing full batches.
func (p *Processor) process(recs []*kgo.Record) {
	dec := p.decodeAll(recs)
	p.stats.Records.Add(int64(len(recs)))
	p.q.mu.Lock()
	defer p.q.mu.Unlock()
	for i, r := range recs {
		if p.q.lost[r.Partition] {
			continue // fetched before the loss: the new owner reads it
		}
		b := p.q.cur
		if b.records == 0 {
			b.started = time.Now()
		}
		b.records++
		b.offsets[r.Partition] = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset + 1}
		if _, ok := p.q.from[r.Partition]; !ok {
			p.q.from[r.Partition] = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset}
		}
		if err := dec[i].err; err != nil {
			b.dead = append(b.dead, deadLetter(r, err))
			b.bytes += int64(len(r.Value)) + 256
			if p.tel.tracing && r.Context != nil { // a sampled trace (telemetry.go)
				p.tel.recordSpan(b, r, nil, err, nil)
			}
		} else {
			src := sourceOf(r)
			n := len(b.rows)
			b.rows = p.transformSafely(b, r, src, dec[i].w) // a panic dead-letters r (panic.go)
			for j := n; j < len(b.rows); j++ {
				b.bytes += b.rows[j].size()
			}
			if p.tel.tracing && r.Context != nil { // a sampled trace (telemetry.go)
				p.tel.recordSpan(b, r, dec[i].w, nil, b.rows[n:])
			}
			b.actions[dec[i].w.Action]++
			ms := uint64(max(src.ReceivedAt.UnixMilli(), 0))
			if b.minRecv == 0 || ms < b.minRecv {
				b.minRecv = ms
			}
			b.maxRecv = max(b.maxRecv, ms)
		}
		if b.full(p.cfg) {
			p.q.seal()
		}
	}
}

// deadLetter builds the DLQ record: the original key, value and headers,
// plus why and where from.
func deadLetter(r *kgo.Record, err error) *kgo.Record {
	stage := "decode"
	var de *livechat.DecodeError
	var ve *ValidationError
	var re *RefusedError
	switch {
	case errors.As(err, &de):
		stage = "decode-" + de.Stage
	case errors.As(err, &ve):
		stage = "validate"
	case errors.As(err, &re):
		stage = "insert"
	}
	headers := append([]kgo.RecordHeader(nil), r.Headers...)
	headers = append(headers,
		kgo.RecordHeader{Key: wire.HeaderDLQError, Value: []byte(err.Error())},
		kgo.RecordHeader{Key: wire.HeaderDLQStage, Value: []byte(stage)},
		kgo.RecordHeader{Key: wire.HeaderDLQTopic, Value: []byte(r.Topic)},
		kgo.RecordHeader{Key: wire.HeaderDLQPartition, Value: []byte(wire.FormatOffset(int64(r.Partition)))},
		kgo.RecordHeader{Key: wire.HeaderDLQOffset, Value: []byte(wire.FormatOffset(r.Offset))},
		kgo.RecordHeader{Key: wire.HeaderDLQAt, Value: []byte(wire.FormatTime(time.Now()))},
	)
	return &kgo.Record{Key: r.Key, Value: r.Value, Headers: headers}
}
