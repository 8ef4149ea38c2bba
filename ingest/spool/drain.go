package spool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"
)

// Deliver hands a batch of records, in spool order, to their destination.
// It returns nil only when every record of the batch is durable there.
type Deliver func(ctx context.Context, records [][]byte) error

// errStalled: the drain met a Fault and must wait before reading again.
var errStalled = errors.New("spool: drain stalled on a fault")

// drainPos is how far the drain got in the segment it is working on; it
// survives a Fault, so the retry resumes after the records delivered.
type drainPos struct {
	seq       uint64
	off       int64 // bytes of frames delivered
	delivered int64 // records delivered
}

// Drain delivers spooled records in order until ctx is cancelled, then
// returns ctx's error. A failed delivery is retried (the same batch, from
// its first record) with jittered exponential back-off; a segment file is
// deleted only after all its records were delivered. A record that does
// not read back stops the drain in front of it (a Fault, see Stats): the
// read is retried with back-off and the drain carries on once it succeeds.
func (s *Spool) Drain(ctx context.Context, deliver Deliver) error {
	var pos drainPos
	wait := s.cfg.RetryMin
	stalls := 0
	for {
		sg, ok := s.oldestSealed(ctx)
		if !ok {
			return ctx.Err()
		}
		if pos.seq != sg.seq {
			pos = drainPos{seq: sg.seq}
		}
		err := s.drainSegment(ctx, sg, deliver, &pos)
		if err == nil {
			wait, stalls = s.cfg.RetryMin, 0
			continue
		}
		if !errors.Is(err, errStalled) {
			return err
		}
		stalls++
		if stalls%20 == 0 {
			if f := s.Fault(); f != nil {
				s.cfg.Log.Error("spool: drain still stopped on unreadable records", "fault", f.String(), "attempts", stalls)
			}
		}
		t := time.NewTimer(jitter(wait))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		wait = min(wait*2, s.cfg.RetryMax)
	}
}

// oldestSealed waits until a sealed segment exists (sealing the active one
// when it holds the only records) and returns it.
func (s *Spool) oldestSealed(ctx context.Context) (segment, bool) {
	for {
		s.mu.Lock()
		if len(s.sealed) > 0 {
			sg := s.sealed[0]
			s.mu.Unlock()
			return sg, true
		}
		hasActive := s.active != nil && s.activeSg.records > 0
		closed := s.closed
		s.mu.Unlock()
		if hasActive && !closed {
			req := &appendReq{seal: true, done: make(chan error, 1)}
			select {
			case s.reqs <- req:
				select {
				case <-req.done:
				case <-ctx.Done():
					return segment{}, false
				}
				continue
			case <-ctx.Done():
				return segment{}, false
			case <-s.stop:
			}
		}
		select {
		case <-s.wake:
		case <-ctx.Done():
			return segment{}, false
		case <-time.After(time.Second):
		}
	}
}

// drainSegment delivers sg from pos on. It returns errStalled (after
// recording the Fault) when a frame does not read back; the segment is then
// kept and pos says where to resume.
func (s *Spool) drainSegment(ctx context.Context, sg segment, deliver Deliver, pos *drainPos) error {
	base := filepath.Base(sg.path)
	f, err := s.cfg.openRead(sg.path)
	if err != nil {
		return s.stall(sg, pos.off, fmt.Errorf("open: %w", err))
	}
	defer f.Close()
	start := pos.off
	if start > 0 {
		if _, err := io.CopyN(io.Discard, f, start); err != nil {
			return s.stall(sg, start, fmt.Errorf("skip the %d bytes delivered: %w", start, err))
		}
	}
	// A segment written by this process or validated whole at Open ends
	// exactly at its size; one with an Open fault is read as far as the
	// file lets it (the damage may be gone by now).
	size := sg.size
	var src io.Reader = io.LimitReader(f, sg.size-start)
	if sg.fault != nil {
		size, src = -1, f
	}
	r := newFrameReader(src, size, s.cfg.MaxRecordBytes)
	r.off = start // offsets in errors and pos are from the start of the file
	var batch [][]byte
	var batchBytes int
	for {
		batch, batchBytes = batch[:0], 0
		var stop error
		eof := false
		for len(batch) < s.cfg.DrainBatchRecords && batchBytes < s.cfg.DrainBatchBytes {
			p, err := r.next()
			if errors.Is(err, io.EOF) {
				eof = true
				break
			}
			if err != nil {
				stop = err
				break
			}
			batch = append(batch, p)
			batchBytes += len(p)
		}
		if len(batch) > 0 {
			if err := s.deliverWithRetry(ctx, batch, deliver); err != nil {
				return err
			}
			n := int64(len(batch))
			pos.delivered += n
			pos.off = r.off
			s.countDelivered(sg.seq, n, pos.off)
		}
		if stop != nil {
			return s.stall(sg, pos.off, stop)
		}
		if eof {
			break
		}
	}
	if err := os.Remove(sg.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("spool: remove drained segment: %w", err)
	}
	if err := syncDir(s.cfg.Dir); err != nil {
		return err
	}
	s.mu.Lock()
	var left int64
	if len(s.sealed) > 0 && s.sealed[0].seq == sg.seq {
		left = s.sealed[0].records
		s.sealed = s.sealed[1:]
	}
	if s.fault != nil && s.fault.Segment == base {
		s.fault = nil // cannot happen: a fault stops before the end
	}
	s.mu.Unlock()
	s.bytes.Add(-sg.size)
	if left > 0 {
		// Counted records that were not there after all (the file
		// changed under us); never expected.
		s.records.Add(-left)
		s.cfg.Log.Error("spool: segment held fewer records than counted", "segment", base, "missing", left)
	}
	return nil
}

// countDelivered takes n delivered records of segment seq off the counts
// (no more than were counted: records found past an Open fault were not)
// and clears a fault the drain has now read past.
func (s *Spool) countDelivered(seq uint64, n, off int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.sealed) == 0 || s.sealed[0].seq != seq {
		return
	}
	sg := &s.sealed[0]
	n = min(n, sg.records)
	sg.records -= n
	s.records.Add(-n)
	base := filepath.Base(sg.path)
	if f := s.fault; f != nil && f.Segment == base && f.Offset < off {
		s.fault = nil
		s.cfg.Log.Info("spool: unreadable records read back; drain goes on", "segment", base, "offset", f.Offset)
	}
	if sg.fault != nil && sg.fault.Offset < off {
		sg.fault = nil
	}
}

// stall records a Fault at off of sg (logging it when it is new) and
// returns errStalled.
func (s *Spool) stall(sg segment, off int64, cause error) error {
	base := filepath.Base(sg.path)
	s.mu.Lock()
	f := s.fault
	fresh := f == nil || f.Segment != base || f.Offset != off
	if fresh {
		since := time.Now()
		if sg.fault != nil && sg.fault.Offset == off {
			since = sg.fault.Since
		}
		s.fault = &Fault{Segment: base, Offset: off, Error: cause.Error(), Since: since}
	} else {
		f.Error = cause.Error()
	}
	s.mu.Unlock()
	if fresh {
		if sg.fault == nil || sg.fault.Offset != off {
			s.faults.Add(1)
		}
		s.cfg.Log.Error("spool: records do not read back; drain stopped in front of them, file kept, will retry",
			"segment", base, "offset", off, "error", cause)
	}
	return errStalled
}

func (s *Spool) deliverWithRetry(ctx context.Context, batch [][]byte, deliver Deliver) error {
	wait := s.cfg.RetryMin
	for attempt := 1; ; attempt++ {
		err := deliver(ctx, batch)
		if err == nil {
			if attempt > 1 {
				s.cfg.Log.Info("spool: delivery recovered", "attempts", attempt, "records", len(batch))
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if attempt == 1 || attempt%10 == 0 {
			s.cfg.Log.Warn("spool: delivery failed, will retry", "attempt", attempt, "records", len(batch), "error", err)
		}
		t := time.NewTimer(jitter(wait))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		wait = min(wait*2, s.cfg.RetryMax)
	}
}

// jitter returns a duration in [d/2, d] (full jitter on the upper half).
func jitter(d time.Duration) time.Duration {
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}
