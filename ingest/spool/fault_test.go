package spool

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// drainer runs Drain in the background and records what it delivered.
type drainer struct {
	mu     sync.Mutex
	got    []string
	cancel context.CancelFunc
	done   chan error
}

func startDrain(t *testing.T, s *Spool) *drainer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &drainer{cancel: cancel, done: make(chan error, 1)}
	go func() {
		d.done <- s.Drain(ctx, func(_ context.Context, recs [][]byte) error {
			d.mu.Lock()
			defer d.mu.Unlock()
			for _, r := range recs {
				d.got = append(d.got, string(r))
			}
			return nil
		})
	}()
	t.Cleanup(d.stop)
	return d
}

func (d *drainer) stop() {
	if d.cancel != nil {
		d.cancel()
		<-d.done
		d.cancel = nil
	}
}

func (d *drainer) records() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.got...)
}

// eventually polls cond until it returns nil or 10 s passed.
func eventually(t *testing.T, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func fastRetry(cfg *Config) {
	cfg.RetryMin, cfg.RetryMax = time.Millisecond, 20*time.Millisecond
}

// fill appends n numbered records and closes the spool; it returns them
// and the segment paths, oldest first.
func fill(t *testing.T, cfg Config, n int) (want, segs []string) {
	t.Helper()
	s := open(t, cfg)
	for i := range n {
		rec := fmt.Sprintf("rec-%04d-%s", i, strings.Repeat("x", 40))
		want = append(want, rec)
		if err := s.Append(context.Background(), []byte(rec)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ = filepath.Glob(filepath.Join(cfg.Dir, "*.seg"))
	sort.Strings(segs)
	return want, segs
}

// frameOffsets lists where each frame of a segment starts.
func frameOffsets(t *testing.T, path string) []int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	r := newFrameReader(f, fi.Size(), 1<<20)
	offs := []int64{0}
	for {
		if _, err := r.next(); err != nil {
			break
		}
		offs = append(offs, r.off)
	}
	return offs[:len(offs)-1]
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x55
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func size(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestDamagedFrameIsNeverCut damages one frame in the middle of a segment
// (an older one, and the newest one): Open must keep the file whole, the
// drain must deliver what comes before the damage, stop there with a
// Fault, keep the file, and carry on once the frame reads again.
func TestDamagedFrameIsNeverCut(t *testing.T) {
	for _, which := range []string{"older segment", "newest segment"} {
		t.Run(which, func(t *testing.T) {
			cfg := DefaultConfig(t.TempDir())
			cfg.SegmentBytes = 1 << 10
			cfg.MaxRecordBytes = 1 << 20
			fastRetry(&cfg)
			want, segs := fill(t, cfg, 60)
			if len(segs) < 3 {
				t.Fatalf("want several segments, got %d", len(segs))
			}
			target := segs[0]
			if which == "newest segment" {
				target = segs[len(segs)-1]
			}
			offs := frameOffsets(t, target)
			if len(offs) < 3 {
				t.Fatalf("segment holds %d frames", len(offs))
			}
			before := size(t, target)
			damageAt := offs[len(offs)/2] + frameHeader + 3 // a payload byte: checksum mismatch
			flipByte(t, target, damageAt)

			s := open(t, cfg)
			defer s.Close()
			if got := size(t, target); got != before {
				t.Fatalf("Open cut the damaged segment from %d to %d bytes", before, got)
			}
			f := s.Stats().Fault
			if f == nil || f.Segment != filepath.Base(target) || !strings.Contains(f.Error, "checksum") {
				t.Fatalf("fault after Open = %+v", f)
			}
			if s.Empty() {
				t.Fatal("spool with a damaged segment reports empty")
			}
			// Everything before the damage arrives, then the drain stops.
			// (Counted before the drain starts: it deletes the segments it
			// delivered.)
			var stopAt int
			for i, seg := range segs {
				if seg == target {
					stopAt = i
				}
			}
			delivered := 0
			for _, seg := range segs[:stopAt] {
				delivered += len(frameOffsets(t, seg))
			}
			delivered += len(offs) / 2
			d := startDrain(t, s)
			eventually(t, func() error {
				if n := len(d.records()); n != delivered {
					return fmt.Errorf("delivered %d, want the %d before the damage", n, delivered)
				}
				if f := s.Stats().Fault; f == nil || f.Offset != offs[len(offs)/2] {
					return fmt.Errorf("fault while stalled = %+v", f)
				}
				return nil
			})
			if _, err := os.Stat(target); err != nil {
				t.Fatalf("damaged segment removed: %v", err)
			}
			if st := s.Stats(); st.Faults != 1 || s.Empty() {
				t.Fatalf("stats while stalled: %+v", st)
			}
			// The disk reads right again: the drain carries on by itself.
			flipByte(t, target, damageAt)
			eventually(t, func() error {
				if s.Pending() != 0 || !s.Empty() {
					return fmt.Errorf("pending %d", s.Pending())
				}
				return nil
			})
			d.stop()
			if got := d.records(); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("delivered out of order, incomplete or twice:\n got %d %v\nwant %d", len(got), got, len(want))
			}
			if f := s.Stats().Fault; f != nil {
				t.Fatalf("fault after recovery: %+v", f)
			}
		})
	}
}

// flakyFile fails every read at or past failAt with EIO while broken is set.
type flakyFile struct {
	f      *os.File
	pos    int64
	failAt int64
	broken *atomic.Bool
}

func (r *flakyFile) Read(p []byte) (int, error) {
	if r.broken.Load() {
		if r.pos >= r.failAt {
			return 0, &os.PathError{Op: "read", Path: r.f.Name(), Err: syscall.EIO}
		}
		if rest := r.failAt - r.pos; int64(len(p)) > rest {
			p = p[:rest]
		}
	}
	n, err := r.f.Read(p)
	r.pos += int64(n)
	return n, err
}

func (r *flakyFile) Close() error { return r.f.Close() }

// injectReadErrors makes reads of the segment named target fail with EIO
// from failAt on, while the returned flag is set.
func injectReadErrors(cfg *Config, target string, failAt int64) *atomic.Bool {
	var broken atomic.Bool
	broken.Store(true)
	cfg.openRead = func(path string) (io.ReadCloser, error) {
		f, err := os.Open(path)
		if err != nil || filepath.Base(path) != filepath.Base(target) {
			return f, err
		}
		return &flakyFile{f: f, failAt: failAt, broken: &broken}, nil
	}
	return &broken
}

// TestReadErrorAtOpenKeepsSegment: a disk error while Open scans the
// newest segment (the only one a crash may tear) is not a torn tail: the
// file stays whole and is drained once it reads again.
func TestReadErrorAtOpenKeepsSegment(t *testing.T) {
	cfg := DefaultConfig(t.TempDir())
	cfg.MaxRecordBytes = 1 << 20
	fastRetry(&cfg)
	want, segs := fill(t, cfg, 50)
	newest := segs[len(segs)-1]
	before := size(t, newest)
	broken := injectReadErrors(&cfg, newest, before/2)
	s := open(t, cfg)
	defer s.Close()
	if got := size(t, newest); got != before {
		t.Fatalf("Open cut the segment it could not read from %d to %d bytes", before, got)
	}
	if f := s.Fault(); f == nil || !strings.Contains(f.Error, "input/output error") {
		t.Fatalf("fault = %+v", f)
	}
	d := startDrain(t, s)
	eventually(t, func() error {
		if f := s.Fault(); f == nil || len(d.records()) == 0 {
			return fmt.Errorf("drain did not deliver the readable records and stall: %d delivered, fault %+v", len(d.records()), f)
		}
		return nil
	})
	if _, err := os.Stat(newest); err != nil {
		t.Fatal("segment removed while unreadable")
	}
	broken.Store(false)
	eventually(t, func() error {
		if !s.Empty() {
			return fmt.Errorf("pending %d", s.Pending())
		}
		return nil
	})
	d.stop()
	if got := d.records(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("delivered %d records, want %d in order", len(got), len(want))
	}
}

// TestReadErrorWhileDraining: a disk error in the middle of a segment while
// draining stops the drain there (the old code skipped the rest of the
// segment and deleted it); once the disk reads again everything arrives,
// once, in order.
func TestReadErrorWhileDraining(t *testing.T) {
	cfg := DefaultConfig(t.TempDir())
	cfg.SegmentBytes = 2 << 10
	cfg.DrainBatchRecords = 4
	fastRetry(&cfg)
	var broken *atomic.Bool
	var target string
	s := open(t, cfg)
	defer s.Close()
	var want []string
	for i := range 80 {
		rec := fmt.Sprintf("rec-%04d-%s", i, strings.Repeat("y", 40))
		want = append(want, rec)
		if err := s.Append(context.Background(), []byte(rec)); err != nil {
			t.Fatal(err)
		}
	}
	segs, _ := filepath.Glob(filepath.Join(cfg.Dir, "*.seg"))
	sort.Strings(segs)
	target = segs[1]
	broken = injectReadErrors(&s.cfg, target, size(t, target)/2)
	d := startDrain(t, s)
	eventually(t, func() error {
		if f := s.Fault(); f == nil || f.Segment != filepath.Base(target) || !strings.Contains(f.Error, "input/output error") {
			return fmt.Errorf("fault = %+v", f)
		}
		return nil
	})
	n := len(d.records())
	if n == 0 || n >= len(want) {
		t.Fatalf("delivered %d before the read error", n)
	}
	if _, err := os.Stat(target); err != nil {
		t.Fatal("segment with a read error was removed")
	}
	if s.Pending() != int64(len(want)-n) {
		t.Fatalf("pending %d, want %d", s.Pending(), len(want)-n)
	}
	broken.Store(false)
	eventually(t, func() error {
		if !s.Empty() {
			return fmt.Errorf("pending %d", s.Pending())
		}
		return nil
	})
	d.stop()
	if got := d.records(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("delivered %d records, want %d, in order, once", len(got), len(want))
	}
	if st := s.Stats(); st.Fault != nil || st.Faults != 1 {
		t.Fatalf("stats after recovery: %+v", st)
	}
}

// TestTornTailOnlyInNewest: the same torn frame is cut from the newest
// segment (kept under TornDir) but is a Fault in an older one, where no
// crash can have left it.
func TestTornTailOnlyInNewest(t *testing.T) {
	cfg := DefaultConfig(t.TempDir())
	cfg.SegmentBytes = 1 << 10
	cfg.MaxRecordBytes = 1 << 20
	fastRetry(&cfg)
	want, segs := fill(t, cfg, 60)
	torn := appendFrame(nil, []byte("never acknowledged"))[:11]
	for _, seg := range []string{segs[0], segs[len(segs)-1]} {
		f, err := os.OpenFile(seg, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.Write(torn)
		f.Close()
	}
	oldSize := size(t, segs[0])
	s := open(t, cfg)
	defer s.Close()
	if size(t, segs[0]) != oldSize {
		t.Fatal("tail of an older segment was cut")
	}
	kept, _ := filepath.Glob(filepath.Join(cfg.Dir, TornDir, "*.tail"))
	if len(kept) != 1 || size(t, kept[0]) != int64(len(torn)) {
		t.Fatalf("torn tail copies: %v", kept)
	}
	st := s.Stats()
	if st.TornTails != 1 || st.Fault == nil || st.Fault.Segment != filepath.Base(segs[0]) {
		t.Fatalf("stats: %+v", st)
	}
	d := startDrain(t, s)
	first := len(frameOffsets(t, segs[0]))
	eventually(t, func() error {
		if n := len(d.records()); n != first {
			return fmt.Errorf("delivered %d, want the %d good frames of the first segment", n, first)
		}
		return nil
	})
	// An operator who judged the older tail harmless cuts it himself.
	if err := os.Truncate(segs[0], oldSize-int64(len(torn))); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		if !s.Empty() {
			return fmt.Errorf("pending %d", s.Pending())
		}
		return nil
	})
	d.stop()
	if got := d.records(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("delivered %d, want %d in order", len(got), len(want))
	}
}
