// Package spool is ingest's local write-ahead queue for the moments Kafka
// cannot take a webhook. LiveChat gives up on a webhook after about a minute
// of retries, so when the broker is slow or away ingest must still make the
// body durable before answering 200: it appends it here, and a background
// drain hands the records to Kafka, in order, once the broker is back.
//
// Layout: a folder of segment files named by a growing sequence number
// (00000000000000000001.seg, ...). Each record is framed as
//
//	[4-byte big-endian length][4-byte CRC-32C of the payload][payload]
//
// Durability: Append returns only after the frame was written and fsync
// returned. Concurrent appends are group-committed: one writer goroutine
// takes every append waiting at that moment, writes them with one write and
// shares one fsync, so the cost of fsync is paid per batch, not per request.
//
// Crash safety: a kill -9 during a write can leave a torn frame at the end of
// the segment that was being written. It was never acknowledged (fsync had
// not returned), so Open detects it (short frame or CRC mismatch), truncates
// the file at the last good frame and carries on; it never refuses to start.
//
// Drain reads sealed segments oldest first and deletes a segment only after
// every record in it was delivered, so a crash during the drain repeats some
// records (at-least-once) but never drops one.
package spool

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Errors returned by Append.
var (
	// ErrFull means the spool holds MaxBytes already; the caller should
	// answer 503 so the sender retries later.
	ErrFull = errors.New("spool: full")
	// ErrClosed means Close was called.
	ErrClosed = errors.New("spool: closed")
	// ErrTooLarge means one record exceeds MaxRecordBytes.
	ErrTooLarge = errors.New("spool: record too large")
)

const (
	frameHeader = 8
	segSuffix   = ".seg"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Config of a spool.
type Config struct {
	// Dir holds the segment files; created if missing. Required.
	Dir string
	// MaxBytes caps the bytes on disk (frames included). Default 1 GiB.
	MaxBytes int64
	// SegmentBytes is the size after which the writer starts a new segment.
	// Default 16 MiB.
	SegmentBytes int64
	// MaxRecordBytes bounds one record; a frame claiming more is treated as
	// corruption by Open. Default 64 MiB.
	MaxRecordBytes int
	// DrainBatchRecords and DrainBatchBytes bound one delivery. Defaults 1000
	// and 4 MiB.
	DrainBatchRecords int
	DrainBatchBytes   int
	// RetryMin and RetryMax bound the jittered exponential back-off between
	// failed deliveries. Defaults 100 ms and 5 s.
	RetryMin, RetryMax time.Duration
	// Log receives warnings (truncated tails, failed deliveries). Default: discard.
	Log *slog.Logger
	// ExtraBytes, when set, is bytes held elsewhere on the same disk that
	// count toward MaxBytes (ingest's quarantine of webhooks Kafka
	// refused). It is called on every Append: keep it cheap (cached).
	ExtraBytes func() int64
}

// DefaultConfig returns the defaults documented on Config for dir.
func DefaultConfig(dir string) Config {
	return Config{
		Dir:               dir,
		MaxBytes:          1 << 30,
		SegmentBytes:      16 << 20,
		MaxRecordBytes:    64 << 20,
		DrainBatchRecords: 1000,
		DrainBatchBytes:   4 << 20,
		RetryMin:          100 * time.Millisecond,
		RetryMax:          5 * time.Second,
	}
}

func (c *Config) fill() {
	d := DefaultConfig(c.Dir)
	if c.MaxBytes == 0 {
		c.MaxBytes = d.MaxBytes
	}
	if c.SegmentBytes == 0 {
		c.SegmentBytes = d.SegmentBytes
	}
	if c.MaxRecordBytes == 0 {
		c.MaxRecordBytes = d.MaxRecordBytes
	}
	if c.DrainBatchRecords == 0 {
		c.DrainBatchRecords = d.DrainBatchRecords
	}
	if c.DrainBatchBytes == 0 {
		c.DrainBatchBytes = d.DrainBatchBytes
	}
	if c.RetryMin == 0 {
		c.RetryMin = d.RetryMin
	}
	if c.RetryMax == 0 {
		c.RetryMax = d.RetryMax
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// Validate reports every problem of the configuration at once.
func (c Config) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("spool: dir is empty (SPOOL_DIR)"))
	}
	if c.MaxBytes < 0 || c.SegmentBytes < 0 || c.MaxRecordBytes < 0 {
		errs = append(errs, errors.New("spool: sizes must not be negative"))
	}
	if c.MaxBytes > 0 && c.SegmentBytes > c.MaxBytes {
		errs = append(errs, fmt.Errorf("spool: segment size %d exceeds max bytes %d", c.SegmentBytes, c.MaxBytes))
	}
	if c.RetryMin < 0 || c.RetryMax < c.RetryMin {
		errs = append(errs, errors.New("spool: retry bounds must satisfy 0 <= min <= max"))
	}
	return errors.Join(errs...)
}

// Stats is a snapshot of the spool's depth.
type Stats struct {
	// Records appended and not yet delivered.
	Records int64 `json:"records"`
	// Bytes on disk, frames included.
	Bytes int64 `json:"bytes"`
	// Segments on disk, the one being written included.
	Segments int `json:"segments"`
	// MaxBytes is the configured cap.
	MaxBytes int64 `json:"max_bytes"`
}

type segment struct {
	seq     uint64
	path    string
	size    int64
	records int64
}

type appendReq struct {
	rec  []byte
	seal bool // drain asks to seal the active segment
	done chan error
}

// Spool is a durable FIFO of byte records. Append and Drain may be used
// concurrently; Close after Drain returned.
type Spool struct {
	cfg Config

	reqs    chan *appendReq
	stop    chan struct{}
	stopped chan struct{}
	wake    chan struct{} // signals the drain that records arrived

	mu       sync.Mutex // guards the fields below
	sealed   []segment
	active   *os.File
	activeSg segment
	nextSeq  uint64
	closed   bool

	records atomic.Int64
	bytes   atomic.Int64
}

// Open opens (or creates) the spool in cfg.Dir, validating existing
// segments and truncating a torn tail, and starts the writer goroutine.
func Open(cfg Config) (*Spool, error) {
	cfg.fill()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("spool: create %s: %w", cfg.Dir, err)
	}
	s := &Spool{
		cfg:     cfg,
		reqs:    make(chan *appendReq, 4096),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
		wake:    make(chan struct{}, 1),
		nextSeq: 1,
	}
	entries, err := os.ReadDir(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("spool: list %s: %w", cfg.Dir, err)
	}
	var segs []segment
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, segSuffix) {
			continue
		}
		seq, err := strconv.ParseUint(strings.TrimSuffix(name, segSuffix), 10, 64)
		if err != nil {
			continue
		}
		segs = append(segs, segment{seq: seq, path: filepath.Join(cfg.Dir, name)})
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].seq < segs[j].seq })
	for _, sg := range segs {
		if sg.seq >= s.nextSeq {
			s.nextSeq = sg.seq + 1
		}
		if err := s.recover(&sg); err != nil {
			return nil, err
		}
		if sg.records == 0 {
			if err := os.Remove(sg.path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("spool: remove empty segment: %w", err)
			}
			continue
		}
		s.sealed = append(s.sealed, sg)
		s.records.Add(sg.records)
		s.bytes.Add(sg.size)
	}
	if err := syncDir(cfg.Dir); err != nil {
		return nil, err
	}
	if n := s.records.Load(); n > 0 {
		cfg.Log.Info("spool holds records from a previous run", "records", n, "bytes", s.bytes.Load(), "segments", len(s.sealed))
		s.signal()
	}
	go s.writer()
	return s, nil
}

// recover scans a segment, counts its good frames and truncates whatever
// follows the last good one.
func (s *Spool) recover(sg *segment) error {
	f, err := os.OpenFile(sg.path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("spool: open %s: %w", sg.path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("spool: stat %s: %w", sg.path, err)
	}
	r := newFrameReader(f, s.cfg.MaxRecordBytes)
	var good int64
	var n int64
	for {
		_, err := r.next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				s.cfg.Log.Warn("spool: torn or corrupt tail truncated", "segment", filepath.Base(sg.path),
					"kept_records", n, "kept_bytes", good, "dropped_bytes", fi.Size()-good, "reason", err.Error())
			}
			break
		}
		n++
		good = r.off
	}
	if good < fi.Size() {
		if err := f.Truncate(good); err != nil {
			return fmt.Errorf("spool: truncate %s: %w", sg.path, err)
		}
		if err := f.Sync(); err != nil {
			return fmt.Errorf("spool: sync %s: %w", sg.path, err)
		}
	}
	sg.size, sg.records = good, n
	return nil
}

var errCorrupt = errors.New("corrupt frame")

type frameReader struct {
	br  *bufio.Reader
	off int64
	max int
	hdr [frameHeader]byte
}

func newFrameReader(r io.Reader, max int) *frameReader {
	return &frameReader{br: bufio.NewReaderSize(r, 256<<10), max: max}
}

// next returns the next payload; io.EOF at a clean end, otherwise an error
// describing the torn or corrupt frame.
func (fr *frameReader) next() ([]byte, error) {
	if _, err := io.ReadFull(fr.br, fr.hdr[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("%w: short header at %d", errCorrupt, fr.off)
	}
	n := binary.BigEndian.Uint32(fr.hdr[0:4])
	sum := binary.BigEndian.Uint32(fr.hdr[4:8])
	// Records are never empty, so a zero length is a zero-filled tail
	// (a file extended but not written before a crash), not a record.
	if n == 0 || int64(n) > int64(fr.max) {
		return nil, fmt.Errorf("%w: length %d at %d", errCorrupt, n, fr.off)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(fr.br, p); err != nil {
		return nil, fmt.Errorf("%w: short payload at %d", errCorrupt, fr.off)
	}
	if crc32.Checksum(p, castagnoli) != sum {
		return nil, fmt.Errorf("%w: checksum mismatch at %d", errCorrupt, fr.off)
	}
	fr.off += frameHeader + int64(n)
	return p, nil
}

func appendFrame(dst, p []byte) []byte {
	var h [frameHeader]byte
	binary.BigEndian.PutUint32(h[0:4], uint32(len(p)))
	binary.BigEndian.PutUint32(h[4:8], crc32.Checksum(p, castagnoli))
	return append(append(dst, h[:]...), p...)
}

// Append makes rec durable: it returns nil only after the record was written
// and fsynced. ErrFull when the cap would be exceeded. The context bounds the
// wait; a cancelled append may still have been written (it will be drained).
func (s *Spool) Append(ctx context.Context, rec []byte) error {
	if len(rec) > s.cfg.MaxRecordBytes {
		return ErrTooLarge
	}
	if len(rec) == 0 {
		return errors.New("spool: empty record")
	}
	if s.bytes.Load()+s.extra()+int64(len(rec)+frameHeader) > s.cfg.MaxBytes {
		return ErrFull
	}
	select {
	case <-s.stop:
		return ErrClosed
	default:
	}
	req := &appendReq{rec: rec, done: make(chan error, 1)}
	select {
	case s.reqs <- req:
	case <-s.stop:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		return err
	case <-s.stopped:
		// The writer finished; it answered req only if it saw it.
		select {
		case err := <-req.done:
			return err
		default:
			return ErrClosed
		}
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Pending is the number of records appended and not yet delivered.
func (s *Spool) Pending() int64 { return s.records.Load() }

// Stats returns the current depth.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	n := len(s.sealed)
	if s.active != nil {
		n++
	}
	s.mu.Unlock()
	return Stats{Records: s.records.Load(), Bytes: s.bytes.Load(), Segments: n, MaxBytes: s.cfg.MaxBytes}
}

// Writable reports whether the spool accepts a record of n bytes now (not
// closed, room left under MaxBytes).
func (s *Spool) Writable(n int) bool {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	return !closed && s.bytes.Load()+s.extra()+int64(n+frameHeader) <= s.cfg.MaxBytes
}

// extra is Config.ExtraBytes, 0 when unset.
func (s *Spool) extra() int64 {
	if s.cfg.ExtraBytes == nil {
		return 0
	}
	return s.cfg.ExtraBytes()
}

func (s *Spool) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// writer is the single goroutine that writes segments: it group-commits
// every append waiting when it wakes up.
func (s *Spool) writer() {
	defer close(s.stopped)
	var batch []*appendReq
	var buf []byte
	for {
		var first *appendReq
		select {
		case first = <-s.reqs:
		case <-s.stop:
			// Finish what was queued before Close, then stop.
			for {
				select {
				case r := <-s.reqs:
					s.commit([]*appendReq{r}, &buf)
				default:
					s.closeActive()
					return
				}
			}
		}
		batch = append(batch[:0], first)
	more:
		for len(batch) < 4096 {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
			default:
				break more
			}
		}
		s.commit(batch, &buf)
	}
}

// commit writes the batch with one write and one fsync and answers every
// request of it.
func (s *Spool) commit(batch []*appendReq, buf *[]byte) {
	*buf = (*buf)[:0]
	var accepted []*appendReq
	var seal []*appendReq
	var size int64
	used := s.bytes.Load()
	for _, r := range batch {
		if r.seal {
			seal = append(seal, r)
			continue
		}
		fl := int64(len(r.rec) + frameHeader)
		if used+size+fl > s.cfg.MaxBytes {
			r.done <- ErrFull
			continue
		}
		*buf = appendFrame(*buf, r.rec)
		size += fl
		accepted = append(accepted, r)
	}
	if len(accepted) > 0 {
		err := s.write(*buf, int64(len(accepted)))
		for _, r := range accepted {
			r.done <- err
		}
		if err == nil {
			s.signal()
		}
	}
	if len(seal) > 0 {
		s.closeActive()
		for _, r := range seal {
			r.done <- nil
		}
	}
	if cap(*buf) > 8<<20 {
		*buf = nil
	}
}

func (s *Spool) write(p []byte, n int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active == nil {
		seq := s.nextSeq
		s.nextSeq++
		path := filepath.Join(s.cfg.Dir, fmt.Sprintf("%020d%s", seq, segSuffix))
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			return fmt.Errorf("spool: create segment: %w", err)
		}
		// The new directory entry must be durable too, or a crash could
		// lose the whole file despite its own fsync.
		if err := syncDir(s.cfg.Dir); err != nil {
			f.Close()
			return err
		}
		s.active, s.activeSg = f, segment{seq: seq, path: path}
	}
	if _, err := s.active.Write(p); err != nil {
		// A partial write leaves a torn frame; seal the segment where it
		// is so nothing is appended after the tear, and let Open's
		// truncation deal with it on the next start.
		s.abandonActiveLocked()
		return fmt.Errorf("spool: write: %w", err)
	}
	if err := s.active.Sync(); err != nil {
		s.abandonActiveLocked()
		return fmt.Errorf("spool: fsync: %w", err)
	}
	s.activeSg.size += int64(len(p))
	s.activeSg.records += n
	s.records.Add(n)
	s.bytes.Add(int64(len(p)))
	if s.activeSg.size >= s.cfg.SegmentBytes {
		s.sealActiveLocked()
	}
	return nil
}

// abandonActiveLocked closes a segment after a failed write. Its good
// records stay counted (they were acknowledged); the file is recovered
// like a torn tail when it is drained.
func (s *Spool) abandonActiveLocked() {
	s.sealActiveLocked()
}

func (s *Spool) sealActiveLocked() {
	if s.active == nil {
		return
	}
	_ = s.active.Close()
	if s.activeSg.records > 0 {
		s.sealed = append(s.sealed, s.activeSg)
	} else {
		_ = os.Remove(s.activeSg.path)
	}
	s.active = nil
	s.activeSg = segment{}
}

func (s *Spool) closeActive() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sealActiveLocked()
}

// Close stops accepting appends, writes and fsyncs those already queued and
// closes the files. Call it after Drain returned.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	<-s.stopped
	return syncDir(s.cfg.Dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("spool: open dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("spool: fsync dir: %w", err)
	}
	return nil
}

// Deliver hands a batch of records, in spool order, to their destination.
// It returns nil only when every record of the batch is durable there.
type Deliver func(ctx context.Context, records [][]byte) error

// Drain delivers spooled records in order until ctx is cancelled, then
// returns ctx's error. A failed delivery is retried (the same batch, from
// its first record) with jittered exponential back-off; a segment file is
// deleted only after all its records were delivered.
func (s *Spool) Drain(ctx context.Context, deliver Deliver) error {
	for {
		sg, ok := s.oldestSealed(ctx)
		if !ok {
			return ctx.Err()
		}
		if err := s.drainSegment(ctx, sg, deliver); err != nil {
			return err
		}
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

func (s *Spool) drainSegment(ctx context.Context, sg segment, deliver Deliver) error {
	f, err := os.Open(sg.path)
	if err != nil {
		return fmt.Errorf("spool: open %s for drain: %w", sg.path, err)
	}
	defer f.Close()
	r := newFrameReader(io.LimitReader(f, sg.size), s.cfg.MaxRecordBytes)
	var delivered int64
	var batch [][]byte
	var batchBytes int
	eof := false
	for !eof {
		batch, batchBytes = batch[:0], 0
		for len(batch) < s.cfg.DrainBatchRecords && batchBytes < s.cfg.DrainBatchBytes {
			p, err := r.next()
			if errors.Is(err, io.EOF) {
				eof = true
				break
			}
			if err != nil {
				// Only possible if the disk changed under us: what
				// was validated at write time no longer reads back.
				s.cfg.Log.Error("spool: unreadable frame while draining; rest of segment skipped",
					"segment", filepath.Base(sg.path), "error", err)
				eof = true
				break
			}
			batch = append(batch, p)
			batchBytes += len(p)
		}
		if len(batch) == 0 {
			break
		}
		if err := s.deliverWithRetry(ctx, batch, deliver); err != nil {
			return err
		}
		delivered += int64(len(batch))
		s.records.Add(-int64(len(batch)))
	}
	if err := os.Remove(sg.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("spool: remove drained segment: %w", err)
	}
	if err := syncDir(s.cfg.Dir); err != nil {
		return err
	}
	s.mu.Lock()
	if len(s.sealed) > 0 && s.sealed[0].seq == sg.seq {
		s.sealed = s.sealed[1:]
	}
	s.mu.Unlock()
	s.bytes.Add(-sg.size)
	if rest := sg.records - delivered; rest > 0 {
		s.records.Add(-rest) // skipped unreadable frames
	}
	return nil
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
		// Full jitter in [wait/2, wait].
		d := wait/2 + time.Duration(rand.Int64N(int64(wait/2)+1))
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		wait = min(wait*2, s.cfg.RetryMax)
	}
}

// Oldest returns the first record of the oldest segment on disk (nil when
// the spool is empty), for the age of the oldest spooled webhook. A segment
// is deleted only once fully delivered, so while one is being drained this
// is its first record even if that one was delivered already: the age is
// then an upper bound.
func (s *Spool) Oldest() ([]byte, error) {
	s.mu.Lock()
	var sg segment
	switch {
	case len(s.sealed) > 0:
		sg = s.sealed[0]
	case s.active != nil && s.activeSg.records > 0:
		sg = s.activeSg
	}
	s.mu.Unlock()
	if sg.path == "" {
		return nil, nil
	}
	f, err := os.Open(sg.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil // drained meanwhile
	}
	if err != nil {
		return nil, fmt.Errorf("spool: open %s: %w", sg.path, err)
	}
	defer f.Close()
	p, err := newFrameReader(f, s.cfg.MaxRecordBytes).next()
	if errors.Is(err, io.EOF) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("spool: read %s: %w", sg.path, err)
	}
	return p, nil
}
