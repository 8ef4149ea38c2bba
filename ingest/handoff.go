package ingest

// The hand-off: a verified webhook's record becomes durable in Kafka (the
// broker's ack) or, when Kafka is slow or away, in the local spool; the
// spool drains to Kafka in order once the broker is back, and records the
// broker refuses for good are quarantined.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lcpipe/lcpipe/ingest/spool"
	"github.com/lcpipe/lcpipe/internal/backoff"
	"github.com/lcpipe/lcpipe/internal/wire"
)

// store makes rec durable: Kafka when it acks within KafkaTimeout, else the
// spool. A record never overtakes an earlier one of its key (keyOrder):
// it waits for its turn, and while the spool holds anything, new records
// go to the spool too, behind the spooled ones (a dead broker then costs one
// timeout, not one per request). Only when the spool is full may a record
// go to Kafka past the spool, and only if none of its key is in the spool
// and every spooled record's key is known (no spool Fault); otherwise 503.
func (s *Server) store(ctx context.Context, rec *kgo.Record) (spooled bool, err error) {
	key := string(rec.Key)
	// An earlier request of the key takes at most KafkaTimeout plus a spool
	// append; waiting longer than that means something is stuck: 503, and
	// LiveChat retries.
	t, err := s.order.wait(ctx, key, 2*s.cfg.KafkaTimeout+spoolAppendTimeout)
	if err != nil {
		return false, fmt.Errorf("%w: %v", errTurnTimeout, err)
	}
	defer t.end()

	triedKafka := false
	if s.spool.Empty() {
		triedKafka = true
		perr := s.produce(ctx, s.cfg.KafkaTimeout, rec)
		if perr == nil {
			return false, nil
		}
		s.counters.kafkaErrors.Add(1)
		s.log.WarnContext(ctx, "kafka did not take the webhook in time; spooling it", "error", perr)
	}
	// The client may still hold rec (an abandoned produce): never modify
	// it, encode a copy with the extra header.
	entry := encodeSpoolEntry(rec, kgo.RecordHeader{Key: wire.HeaderSpooled, Value: []byte("1")})
	ofKey := s.order.spooled(key)
	// Counted before the append, so the drain can never deliver it before
	// it was counted.
	s.order.addSpooled(key, 1)
	sctx, span := s.tel.span(ctx, "lcpipe.ingest.spool.append")
	defer span.End()
	actx, cancel := context.WithTimeout(sctx, spoolAppendTimeout)
	defer cancel()
	if err := s.spool.Append(actx, entry); err != nil {
		span.RecordError(err)
		s.order.addSpooled(key, -1)
		if errors.Is(err, spool.ErrFull) && !triedKafka && ofKey == 0 && s.spool.Fault() == nil {
			// Full while Kafka may be back (the drain frees whole
			// segments): Kafka beats a 503, and overtakes nothing.
			if perr := s.produce(ctx, s.cfg.KafkaTimeout, rec); perr == nil {
				return false, nil
			}
			s.counters.kafkaErrors.Add(1)
		}
		return true, err
	}
	s.counters.spooled.Add(1)
	return true, nil
}

// spoolAppendTimeout bounds one spool append (the fsync of a group commit).
const spoolAppendTimeout = 5 * time.Second

// errTurnTimeout: an earlier webhook of the same key is still being stored.
var errTurnTimeout = errors.New("an earlier webhook of this chat is still being stored")

// produce hands records to Kafka and waits at most timeout for every ack.
// It does not wait for the client beyond that: a record whose request is
// already on the wire cannot be cancelled with the idempotent producer, and
// the caller must answer LiveChat in time. Such a record may still be
// written later; the caller spools it too, so it may appear twice, never
// zero times (the processor de-duplicates).
func (s *Server) produce(ctx context.Context, timeout time.Duration, recs ...*kgo.Record) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if s.cfg.beforeProduce != nil {
		if err := s.cfg.beforeProduce(ctx, recs); err != nil {
			return fmt.Errorf("kafka: %w", err)
		}
	}
	if len(recs) == 1 { // a webhook's own record
		w := ackWaiters.Get().(*ackWaiter)
		s.client.Produce(ctx, recs[0], w.promise)
		select {
		case err := <-w.ch:
			ackWaiters.Put(w)
			if err != nil {
				return fmt.Errorf("kafka: produce: %w", err)
			}
			return nil
		case <-ctx.Done():
			// The promise still runs (into w.ch, which has room): w is
			// not reused.
			return fmt.Errorf("kafka: no ack within %s: %w", timeout, ctx.Err())
		}
	}
	results := make(chan error, len(recs))
	for _, r := range recs {
		s.client.Produce(ctx, r, func(_ *kgo.Record, err error) { results <- err })
	}
	var first error
	for range recs {
		select {
		case err := <-results:
			if err != nil && first == nil {
				first = err
			}
		case <-ctx.Done():
			return fmt.Errorf("kafka: no ack within %s: %w", timeout, ctx.Err())
		}
	}
	if first != nil {
		return fmt.Errorf("kafka: produce: %w", first)
	}
	return nil
}

// ackWaiter waits for one record's ack. Pooled with its promise bound to
// its channel, so that handing a webhook to Kafka allocates neither.
type ackWaiter struct {
	ch      chan error
	promise func(*kgo.Record, error)
}

var ackWaiters = sync.Pool{New: func() any {
	w := &ackWaiter{ch: make(chan error, 1)}
	w.promise = func(_ *kgo.Record, err error) { w.ch <- err }
	return w
}}

// deliverSpooled is the spool's drain target: it re-creates the records and
// produces them in spool order, returning nil once all were acked.
func (s *Server) deliverSpooled(ctx context.Context, entries [][]byte) error {
	recs := make([]*kgo.Record, 0, len(entries))
	for _, e := range entries {
		r, err := decodeSpoolEntry(e)
		if err != nil {
			// Passed the CRC yet does not decode: a bug, not a lost
			// webhook. Keep the bytes in the dead-letter topic.
			s.log.Error("spool entry does not decode; sent to dead-letter topic", "error", err)
			r = &kgo.Record{Topic: s.cfg.Kafka.DLQTopic, Value: e, Headers: []kgo.RecordHeader{
				{Key: wire.HeaderDLQError, Value: []byte(err.Error())},
				{Key: wire.HeaderDLQStage, Value: []byte("ingest-spool")},
				{Key: wire.HeaderDLQAt, Value: []byte(wire.FormatTime(time.Now()))},
			}}
		} else {
			r.Topic = s.cfg.Kafka.RawTopic
		}
		recs = append(recs, r)
	}
	ctx, span := s.tel.drainSpan(ctx, recs) // telemetry.go
	defer span.End()
	err := s.produce(ctx, s.cfg.DrainTimeout, recs...)
	if err != nil {
		span.RecordError(err)
	}
	if err != nil && isPermanent(err) {
		// Some record of the batch is one Kafka will never take (too
		// large for the topic, say). Retrying the batch would block the
		// spool forever: go one by one and set the refused ones aside.
		err = s.deliverEach(ctx, entries)
	}
	if err != nil {
		s.counters.drainErrors.Add(1)
		return err
	}
	s.counters.drained.Add(int64(len(recs)))
	for _, r := range recs {
		if r.Topic == s.cfg.Kafka.RawTopic {
			s.order.addSpooled(string(r.Key), -1)
		}
	}
	return nil
}

// isPermanent reports produce errors that no retry can fix: the broker
// refuses the record itself (MESSAGE_TOO_LARGE, INVALID_TIMESTAMP,
// CORRUPT_MESSAGE, INVALID_RECORD, POLICY_VIOLATION: backoff.Refused, the
// project's one classification). Everything else (timeouts, unreachable
// or restarting brokers, leadership changes) is transient.
func isPermanent(err error) bool { return backoff.Refused(err) }

// deliverEach produces entries one at a time (fresh records: the batch's
// may still be referenced by the client) and quarantines those refused
// for good.
func (s *Server) deliverEach(ctx context.Context, entries [][]byte) error {
	for _, e := range entries {
		r, err := decodeSpoolEntry(e)
		if err != nil {
			return err // cannot happen: the batch decoded a moment ago
		}
		r.Topic = s.cfg.Kafka.RawTopic
		err = s.produce(ctx, s.cfg.DrainTimeout, r)
		if err == nil {
			continue
		}
		if !isPermanent(err) {
			return err
		}
		if err := s.quarantine(ctx, e, r, err); err != nil {
			return err
		}
	}
	return nil
}

// quarantine keeps a webhook Kafka refuses for good as a file under
// DeadDir (fsynced: it was acknowledged to LiveChat, so it must not be
// lost) and announces it on the dead-letter topic with the reason and the
// original headers, without the body Kafka refused.
func (s *Server) quarantine(ctx context.Context, entry []byte, r *kgo.Record, reason error) error {
	path, err := s.quar.Put(wire.Header(r, wire.HeaderRequestID), entry)
	if err != nil {
		return err
	}
	s.counters.quarantined.Add(1)
	s.log.Error("Kafka refuses a webhook for good; kept on disk for replay", "file", path,
		"request_id", wire.Header(r, wire.HeaderRequestID), "organization_id", wire.Header(r, wire.HeaderOrganization),
		"action", wire.Header(r, wire.HeaderAction), "value_bytes", len(r.Value), "error", reason)
	headers := append(append([]kgo.RecordHeader(nil), r.Headers...),
		kgo.RecordHeader{Key: wire.HeaderDLQError, Value: []byte(fmt.Sprintf("kafka refused the record (%v); body kept by ingest in %s", reason, path))},
		kgo.RecordHeader{Key: wire.HeaderDLQStage, Value: []byte("ingest")},
		kgo.RecordHeader{Key: wire.HeaderDLQTopic, Value: []byte(s.cfg.Kafka.RawTopic)},
		kgo.RecordHeader{Key: wire.HeaderDLQAt, Value: []byte(wire.FormatTime(time.Now()))},
	)
	dl := &kgo.Record{Topic: s.cfg.Kafka.DLQTopic, Key: r.Key, Headers: headers, Timestamp: r.Timestamp}
	if err := s.produce(ctx, s.cfg.DrainTimeout, dl); err != nil {
		s.log.Warn("dead-letter notice not written (the file is the copy)", "file", path, "error", err)
	}
	return nil
}
