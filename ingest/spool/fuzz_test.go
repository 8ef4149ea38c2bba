package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// drainNow delivers what the spool holds, synchronously, until it is empty
// or the drain meets a fault (fuzzing cannot afford the background drain's
// back-off).
func drainNow(t *testing.T, s *Spool) (got []string, stalled bool) {
	t.Helper()
	var pos drainPos
	deliver := func(_ context.Context, recs [][]byte) error {
		for _, r := range recs {
			got = append(got, string(r))
		}
		return nil
	}
	for {
		s.mu.Lock()
		if len(s.sealed) == 0 {
			s.mu.Unlock()
			return got, false
		}
		sg := s.sealed[0]
		s.mu.Unlock()
		if pos.seq != sg.seq {
			pos = drainPos{seq: sg.seq}
		}
		err := s.drainSegment(context.Background(), sg, deliver, &pos)
		if errors.Is(err, errStalled) {
			return got, true
		}
		if err != nil {
			t.Fatalf("drain: %v", err)
		}
	}
}

// FuzzSegmentReader writes good frames followed by arbitrary bytes into a
// segment — the newest one, or an older one followed by a good segment —
// and checks what Open and the drain make of it:
//
//   - the frame reader only returns frames whose checksum holds, and any
//     failure is a *frameError;
//   - the good frames are always delivered, first and in order;
//   - an older segment is never changed on disk; the newest one only loses
//     a tail that is kept, byte for byte, under TornDir;
//   - a spool that reports no fault drains completely; one that does keeps
//     the damaged file and reports where.
func FuzzSegmentReader(f *testing.F) {
	frame := func(s string) []byte { return appendFrame(nil, []byte(s)) }
	f.Add(uint8(3), []byte{}, true)
	f.Add(uint8(3), frame("torn")[:5], true)
	f.Add(uint8(2), frame("torn")[:5], false)
	f.Add(uint8(1), append(frame("x"), 0, 0, 0, 0, 0, 0, 0, 0), true)
	f.Add(uint8(4), make([]byte, 40), true)
	f.Add(uint8(4), make([]byte, 40), false)
	bad := frame("checksum")
	bad[len(bad)-1] ^= 1
	f.Add(uint8(2), append(bad, frame("after")...), true)
	f.Add(uint8(2), bad, true)
	f.Add(uint8(0), []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1}, true)
	f.Add(uint8(5), []byte{0, 0, 0, 3, 0, 0, 0, 0, 'a', 'b', 'c'}, false)
	f.Fuzz(func(t *testing.T, good uint8, tail []byte, newest bool) {
		n := int(good % 8)
		var want []string
		var data []byte
		for i := range n {
			rec := fmt.Sprintf("good-%d", i)
			want = append(want, rec)
			data = appendFrame(data, []byte(rec))
		}
		prefix := len(data)
		data = append(data, tail...)

		// The frame reader on its own.
		r := newFrameReader(bytes.NewReader(data), int64(len(data)), 1<<16)
		for {
			p, err := r.next()
			if err != nil {
				var fe *frameError
				if !errors.Is(err, io.EOF) && !errors.As(err, &fe) {
					t.Fatalf("reader error %T %v", err, err)
				}
				if fe != nil && fe.Off != r.off {
					t.Fatalf("error at %d, last good frame ends at %d", fe.Off, r.off)
				}
				break
			}
			if len(p) == 0 || r.off > int64(len(data)) {
				t.Fatalf("frame of %d bytes ending at %d of %d", len(p), r.off, len(data))
			}
			hdr := data[r.off-int64(len(p))-frameHeader:]
			if crc32.Checksum(p, castagnoli) != uint32(hdr[4])<<24|uint32(hdr[5])<<16|uint32(hdr[6])<<8|uint32(hdr[7]) {
				t.Fatal("frame returned with a bad checksum")
			}
		}
		if r.off < int64(prefix) {
			t.Fatalf("reader stopped at %d inside the good frames (%d bytes)", r.off, prefix)
		}

		// Open and drain.
		dir := t.TempDir()
		target := filepath.Join(dir, fmt.Sprintf("%020d%s", 1, segSuffix))
		if err := os.WriteFile(target, data, 0o640); err != nil {
			t.Fatal(err)
		}
		if !newest {
			want2 := frame("later")
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%020d%s", 2, segSuffix)), want2, 0o640); err != nil {
				t.Fatal(err)
			}
		}
		cfg := DefaultConfig(dir)
		cfg.MaxRecordBytes = 1 << 16
		s, err := Open(cfg)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		defer s.Close()
		after, err := os.ReadFile(target)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		switch {
		case !newest && !bytes.Equal(after, data):
			t.Fatalf("older segment changed on disk: %d bytes, was %d", len(after), len(data))
		case newest && !bytes.Equal(after, data):
			if len(after) < prefix || !bytes.Equal(after, data[:len(after)]) {
				t.Fatalf("newest segment cut into its good frames: %d bytes left of %d (good %d)", len(after), len(data), prefix)
			}
			kept, _ := os.ReadFile(filepath.Join(dir, TornDir, fmt.Sprintf("%020d.%d.tail", 1, len(after))))
			if !bytes.Equal(kept, data[len(after):]) {
				t.Fatalf("the cut tail (%d bytes) is not kept whole (%d kept)", len(data)-len(after), len(kept))
			}
		}
		fault := s.Fault()
		got, stalled := drainNow(t, s)
		if len(got) < n || fmt.Sprint(got[:n]) != fmt.Sprint(want) {
			t.Fatalf("good frames not delivered first and in order: %q", got)
		}
		if (fault == nil) == stalled {
			if fault == nil {
				t.Fatalf("drain stalled without a fault reported at Open: %+v", s.Fault())
			}
			t.Fatalf("fault reported at Open (%+v) but the drain read everything", fault)
		}
		if stalled {
			if _, err := os.Stat(target); err != nil {
				t.Fatalf("damaged segment gone: %v", err)
			}
			if s.Empty() {
				t.Fatal("stalled spool reports empty")
			}
		} else if !s.Empty() {
			t.Fatalf("drained spool not empty: %+v", s.Stats())
		}
	})
}
