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
// Every record in a segment was acknowledged, so nothing the spool reads
// back is ever thrown away, with one exception: a kill -9 or power loss
// during a write can leave a torn frame at the end of the segment that was
// being written (the newest one). That frame was never acknowledged (fsync
// had not returned), so Open cuts it: a frame that runs past the end of the
// file, a last frame whose checksum fails, or a zero-filled tail. Anything
// else that does not read back — a damaged frame in the middle of a segment
// or in an older segment, a disk I/O error — is a Fault: the file is kept
// whole, the drain delivers what comes before the damage and then stops
// there, the fault is logged and shown in Stats (ingest's /readyz fails with
// it), and the drain retries the read with back-off, so it carries on by
// itself once the disk reads again (or an operator put a repaired copy in
// place; moving the segment out of the folder and restarting also clears
// it, the file then holds the records for a manual replay).
//
// Drain reads sealed segments oldest first and deletes a segment only after
// every record in it was delivered, so a crash during the drain repeats some
// records (at-least-once) but never drops one.
package spool

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
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

const segSuffix = ".seg"

// TornDir is the folder (under Config.Dir) where Open keeps the bytes it
// cut from a torn tail, so even a misjudged tail is never destroyed.
const TornDir = "torn"

// Config of a spool.
type Config struct {
	// Dir holds the segment files; created if missing. Required.
	Dir string
	// MaxBytes caps the bytes on disk (frames included). Default 1 GiB.
	MaxBytes int64
	// SegmentBytes is the size after which the writer starts a new segment.
	// Default 16 MiB.
	SegmentBytes int64
	// MaxRecordBytes bounds one record; a frame claiming more is damage.
	// Default 64 MiB.
	MaxRecordBytes int
	// DrainBatchRecords and DrainBatchBytes bound one delivery. Defaults 1000
	// and 4 MiB.
	DrainBatchRecords int
	DrainBatchBytes   int
	// RetryMin and RetryMax bound the jittered exponential back-off between
	// failed deliveries, and between reads of a segment that does not read
	// back (a Fault). Defaults 100 ms and 5 s.
	RetryMin, RetryMax time.Duration
	// Log receives warnings (cut tails, faults, failed deliveries).
	// Default: discard.
	Log *slog.Logger
	// ExtraBytes, when set, is bytes held elsewhere on the same disk that
	// count toward MaxBytes (ingest's quarantine of webhooks Kafka
	// refused). It is called on every Append: keep it cheap (cached).
	ExtraBytes func() int64
	// Recovered, when set, is called by Open with every record found in
	// the spool (oldest first), before Open returns: the caller can learn
	// what a previous run left (ingest: the keys of spooled records).
	// Records past a Fault are not seen.
	Recovered func(rec []byte)

	// openRead opens a segment for reading (tests inject read errors).
	// Default: os.Open.
	openRead func(path string) (io.ReadCloser, error)
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
	c.MaxBytes = cmp.Or(c.MaxBytes, d.MaxBytes)
	c.SegmentBytes = cmp.Or(c.SegmentBytes, d.SegmentBytes)
	c.MaxRecordBytes = cmp.Or(c.MaxRecordBytes, d.MaxRecordBytes)
	c.DrainBatchRecords = cmp.Or(c.DrainBatchRecords, d.DrainBatchRecords)
	c.DrainBatchBytes = cmp.Or(c.DrainBatchBytes, d.DrainBatchBytes)
	c.RetryMin = cmp.Or(c.RetryMin, d.RetryMin)
	c.RetryMax = cmp.Or(c.RetryMax, d.RetryMax)
	c.Log = cmp.Or(c.Log, slog.New(slog.DiscardHandler))
	if c.openRead == nil {
		c.openRead = func(path string) (io.ReadCloser, error) { return os.Open(path) }
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

// Fault describes spooled records that cannot be read back now: a disk
// read error, or a damaged frame that a crash cannot explain. The file is
// kept; the drain stops in front of it and tries again with back-off.
type Fault struct {
	// Segment is the file name, Offset where the unreadable frame starts.
	Segment string `json:"segment"`
	Offset  int64  `json:"offset"`
	// Error says what is wrong.
	Error string `json:"error"`
	// Since is when it was first seen.
	Since time.Time `json:"since"`
}

func (f *Fault) String() string {
	return fmt.Sprintf("segment %s unreadable at offset %d since %s: %s", f.Segment, f.Offset, f.Since.UTC().Format(time.RFC3339), f.Error)
}

// Stats is a snapshot of the spool's depth.
type Stats struct {
	// Records appended and not yet delivered (records past a Fault are
	// not known, hence not counted).
	Records int64 `json:"records"`
	// Bytes on disk, frames included.
	Bytes int64 `json:"bytes"`
	// Segments on disk, the one being written included.
	Segments int `json:"segments"`
	// MaxBytes is the configured cap.
	MaxBytes int64 `json:"max_bytes"`
	// Fault is set while records cannot be read back (the drain is stopped
	// in front of them); nil when everything reads.
	Fault *Fault `json:"fault,omitempty"`
	// Faults counts the faults seen since Open (a gauge of trouble even
	// when the current one cleared).
	Faults int64 `json:"faults"`
	// TornTails counts tails cut by Open (kept under TornDir).
	TornTails int64 `json:"torn_tails"`
}

type segment struct {
	seq  uint64
	path string
	// size is the bytes of the file that belong to the spool (all of it,
	// once Open cut a torn tail), counted in Spool.bytes.
	size int64
	// records is how many records of it are counted in Spool.records and
	// not yet delivered.
	records int64
	// fault is set when Open could not read all of it: the drain then
	// reads past records as far as the file lets it.
	fault *Fault
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
	fault    *Fault // the drain's current fault

	records atomic.Int64
	bytes   atomic.Int64
	faults  atomic.Int64
	torn    atomic.Int64
}

// Open opens (or creates) the spool in cfg.Dir, validating existing
// segments (a torn tail of the newest one is cut, see the package doc;
// damage elsewhere becomes a Fault, never an error: the spool opens and
// keeps every file), and starts the writer goroutine. It fails only when
// the folder itself cannot be used.
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
	for i, sg := range segs {
		if sg.seq >= s.nextSeq {
			s.nextSeq = sg.seq + 1
		}
		if err := s.scan(&sg, i == len(segs)-1); err != nil {
			return nil, err
		}
		if sg.size == 0 && sg.fault == nil {
			if err := os.Remove(sg.path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("spool: remove empty segment: %w", err)
			}
			continue
		}
		if sg.fault != nil {
			s.faults.Add(1)
			cfg.Log.Error("spool: segment does not read back; kept whole, the drain will stop in front of the damage and retry",
				"segment", sg.fault.Segment, "offset", sg.fault.Offset, "readable_records", sg.records, "error", sg.fault.Error)
		}
		s.sealed = append(s.sealed, sg)
		s.records.Add(sg.records)
		s.bytes.Add(sg.size)
	}
	if err := syncDir(cfg.Dir); err != nil {
		return nil, err
	}
	if len(s.sealed) > 0 {
		cfg.Log.Info("spool holds records from a previous run", "records", s.records.Load(), "bytes", s.bytes.Load(), "segments", len(s.sealed))
		s.signal()
	}
	go s.writer()
	return s, nil
}

// scan reads a segment at Open: it counts its records (handing each to
// Config.Recovered) and decides what a frame that does not read back is.
// Only in the newest segment, and only when it is a torn tail, are bytes
// cut (and kept under TornDir); otherwise sg.fault is set and the file is
// left as it is. The error is for what leaves the spool unusable (the torn
// tail cannot be cut or kept).
func (s *Spool) scan(sg *segment, newest bool) error {
	base := filepath.Base(sg.path)
	fi, err := os.Stat(sg.path)
	if err != nil {
		sg.fault = &Fault{Segment: base, Error: "stat: " + err.Error(), Since: time.Now()}
		return nil
	}
	sg.size = fi.Size()
	f, err := s.cfg.openRead(sg.path)
	if err != nil {
		sg.fault = &Fault{Segment: base, Error: "open: " + err.Error(), Since: time.Now()}
		return nil
	}
	defer f.Close()
	r := newFrameReader(f, sg.size, s.cfg.MaxRecordBytes)
	for {
		p, err := r.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		var fe *frameError
		if err != nil && errors.As(err, &fe) {
			if newest && fe.IO == nil && s.tornTail(sg, fe) {
				return s.cutTail(sg, r.off, fe)
			}
			sg.fault = &Fault{Segment: base, Offset: fe.Off, Error: fe.Error(), Since: time.Now()}
			return nil
		}
		sg.records++
		if s.cfg.Recovered != nil {
			s.cfg.Recovered(p)
		}
	}
}

// tornTail reports whether a frame that failed at Open in the newest
// segment is what a crash during a write leaves: it runs past the end of
// the file, it is the last frame and fails its checksum, or the rest of
// the file is zeros (extended but never written).
func (s *Spool) tornTail(sg *segment, fe *frameError) bool {
	if fe.Torn || fe.End == sg.size {
		return true
	}
	f, err := s.cfg.openRead(sg.path)
	if err != nil {
		return false
	}
	defer f.Close()
	if _, err := io.CopyN(io.Discard, f, fe.Off); err != nil {
		return false
	}
	buf := make([]byte, 64<<10)
	for {
		n, err := f.Read(buf)
		for _, b := range buf[:n] {
			if b != 0 {
				return false
			}
		}
		if errors.Is(err, io.EOF) {
			return true
		}
		if err != nil {
			return false
		}
	}
}

// cutTail moves the bytes after the last good frame to TornDir (fsynced)
// and truncates the segment there.
func (s *Spool) cutTail(sg *segment, good int64, fe *frameError) error {
	b, err := os.ReadFile(sg.path)
	if err != nil || int64(len(b)) != sg.size {
		// Could not keep a copy: keep the file whole instead.
		sg.fault = &Fault{Segment: filepath.Base(sg.path), Offset: fe.Off, Error: fmt.Sprintf("%v (tail not cut: cannot copy it: %v)", fe, err), Since: time.Now()}
		return nil
	}
	dir := filepath.Join(s.cfg.Dir, TornDir)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("spool: keep torn tail: %w", err)
	}
	keep := filepath.Join(dir, fmt.Sprintf("%s.%d.tail", strings.TrimSuffix(filepath.Base(sg.path), segSuffix), good))
	if err := writeFileSync(keep, b[good:]); err != nil {
		return fmt.Errorf("spool: keep torn tail: %w", err)
	}
	if err := os.Truncate(sg.path, good); err != nil {
		return fmt.Errorf("spool: truncate %s: %w", sg.path, err)
	}
	f, err := os.OpenFile(sg.path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("spool: sync %s: %w", sg.path, err)
	}
	serr := f.Sync()
	f.Close()
	if serr != nil {
		return fmt.Errorf("spool: sync %s: %w", sg.path, serr)
	}
	s.torn.Add(1)
	s.cfg.Log.Warn("spool: torn tail of the newest segment cut (a crash during a write; never acknowledged)",
		"segment", filepath.Base(sg.path), "kept_records", sg.records, "kept_bytes", good,
		"cut_bytes", sg.size-good, "copy", keep, "reason", fe.Error())
	sg.size = good
	return nil
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
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

// Pending is the number of records appended and not yet delivered (records
// past a Fault are not known, hence not counted: use Empty to know whether
// the spool holds anything).
func (s *Spool) Pending() int64 { return s.records.Load() }

// Empty reports whether the spool holds nothing to deliver: no record and
// no segment kept for a fault.
func (s *Spool) Empty() bool {
	if s.records.Load() > 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sealed) == 0 && s.activeSg.records == 0
}

// Stats returns the current depth and fault.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	n := len(s.sealed)
	if s.active != nil {
		n++
	}
	fault := s.currentFaultLocked()
	s.mu.Unlock()
	return Stats{Records: s.records.Load(), Bytes: s.bytes.Load(), Segments: n, MaxBytes: s.cfg.MaxBytes,
		Fault: fault, Faults: s.faults.Load(), TornTails: s.torn.Load()}
}

// Fault returns the current fault, nil when every spooled record reads.
func (s *Spool) Fault() *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.currentFaultLocked()
}

// currentFaultLocked is the drain's fault, else the first segment Open
// could not read whole.
func (s *Spool) currentFaultLocked() *Fault {
	if s.fault != nil {
		f := *s.fault
		return &f
	}
	for _, sg := range s.sealed {
		if sg.fault != nil {
			f := *sg.fault
			return &f
		}
	}
	return nil
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
		s.abandonActiveLocked(err)
		return fmt.Errorf("spool: write: %w", err)
	}
	if err := s.active.Sync(); err != nil {
		s.abandonActiveLocked(err)
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

// abandonActiveLocked closes a segment after a failed write or fsync. The
// records of that batch were not acknowledged; cutting them off here (the
// file stays at its last good size) keeps a later Open from mistaking the
// partial write for damage once a newer segment exists. If even that
// fails, the drain reads only the good size and a later Open reports the
// rest as a Fault: the good records are never dropped.
func (s *Spool) abandonActiveLocked(cause error) {
	if s.active != nil {
		if err := s.active.Truncate(s.activeSg.size); err != nil {
			s.cfg.Log.Error("spool: cannot cut a failed write off its segment", "segment", filepath.Base(s.activeSg.path),
				"good_bytes", s.activeSg.size, "write_error", cause, "error", err)
		} else {
			_ = s.active.Sync()
		}
	}
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
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("spool: stat %s: %w", sg.path, err)
	}
	p, err := newFrameReader(f, fi.Size(), s.cfg.MaxRecordBytes).next()
	if errors.Is(err, io.EOF) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("spool: read %s: %w", sg.path, err)
	}
	return p, nil
}
