package spool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"
)

func open(t *testing.T, cfg Config) *Spool {
	t.Helper()
	s, err := Open(cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return s
}

// collect drains s until want records arrived (or fails after 10 s).
func collect(t *testing.T, s *Spool, want int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var mu sync.Mutex
	var got []string
	done := make(chan error, 1)
	dctx, dcancel := context.WithCancel(ctx)
	go func() {
		done <- s.Drain(dctx, func(_ context.Context, recs [][]byte) error {
			mu.Lock()
			defer mu.Unlock()
			for _, r := range recs {
				got = append(got, string(r))
			}
			return nil
		})
	}()
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= want && s.Pending() == 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("drain: got %d of %d records, pending %d", n, want, s.Pending())
		}
		time.Sleep(10 * time.Millisecond)
	}
	dcancel()
	<-done
	return got
}

func TestAppendDrainInOrder(t *testing.T) {
	cfg := DefaultConfig(t.TempDir())
	cfg.SegmentBytes = 1 << 10 // many segments
	s := open(t, cfg)
	ctx := context.Background()
	var want []string
	for i := range 200 {
		rec := fmt.Sprintf("record-%04d", i)
		want = append(want, rec)
		if err := s.Append(ctx, []byte(rec)); err != nil {
			t.Fatalf("append: %v", err)
		}
	}
	if st := s.Stats(); st.Records != 200 || st.Segments < 2 {
		t.Fatalf("stats after appends: %+v", st)
	}
	got := collect(t, s, len(want))
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("drained out of order or incomplete:\n got %v\nwant %v", got, want)
	}
	if st := s.Stats(); st.Records != 0 || st.Bytes != 0 || st.Segments != 0 {
		t.Fatalf("stats after drain: %+v", st)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	left, _ := filepath.Glob(filepath.Join(cfg.Dir, "*.seg"))
	if len(left) != 0 {
		t.Fatalf("segments left after drain: %v", left)
	}
}

func TestConcurrentAppendsSurviveReopen(t *testing.T) {
	cfg := DefaultConfig(t.TempDir())
	s := open(t, cfg)
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				if err := s.Append(context.Background(), []byte(fmt.Sprintf("w%02d-%03d", w, i))); err != nil {
					t.Errorf("append: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := open(t, cfg)
	defer s2.Close()
	if got := s2.Pending(); got != 32*50 {
		t.Fatalf("pending after reopen = %d, want %d", got, 32*50)
	}
	got := collect(t, s2, 32*50)
	// Per writer, records must keep their order.
	last := map[string]string{}
	for _, r := range got {
		w := r[:3]
		if r <= last[w] {
			t.Fatalf("record %s after %s", r, last[w])
		}
		last[w] = r
	}
}

func TestTornTailIsTruncated(t *testing.T) {
	cases := []struct {
		name string
		tail func(frame []byte) []byte
	}{
		{"half header", func(f []byte) []byte { return f[:3] }},
		{"half payload", func(f []byte) []byte { return f[:len(f)-2] }},
		{"bad checksum", func(f []byte) []byte { g := append([]byte(nil), f...); g[len(g)-1] ^= 0xff; return g }},
		{"absurd length", func(f []byte) []byte { return []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1} }},
		{"zeros", func(f []byte) []byte { return make([]byte, 37) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig(t.TempDir())
			cfg.MaxRecordBytes = 1 << 20
			s := open(t, cfg)
			for i := range 5 {
				if err := s.Append(context.Background(), []byte(fmt.Sprintf("ok-%d", i))); err != nil {
					t.Fatal(err)
				}
			}
			s.Close()
			segs, _ := filepath.Glob(filepath.Join(cfg.Dir, "*.seg"))
			sort.Strings(segs)
			f, err := os.OpenFile(segs[len(segs)-1], os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write(tc.tail(appendFrame(nil, []byte("torn-record"))))
			f.Close()

			s2 := open(t, cfg)
			defer s2.Close()
			if s2.Pending() != 5 {
				t.Fatalf("pending = %d, want 5", s2.Pending())
			}
			// Appending after recovery must not be hidden behind the tear.
			if err := s2.Append(context.Background(), []byte("after")); err != nil {
				t.Fatal(err)
			}
			got := collect(t, s2, 6)
			want := "[ok-0 ok-1 ok-2 ok-3 ok-4 after]"
			if fmt.Sprint(got) != want {
				t.Fatalf("got %v, want %s", got, want)
			}
		})
	}
}

func TestFullReturnsErrFull(t *testing.T) {
	cfg := DefaultConfig(t.TempDir())
	cfg.MaxBytes = 1000
	cfg.SegmentBytes = 500
	s := open(t, cfg)
	defer s.Close()
	rec := make([]byte, 92) // 100 bytes framed
	for i := range 10 {
		if err := s.Append(context.Background(), rec); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	if err := s.Append(context.Background(), rec); !errors.Is(err, ErrFull) {
		t.Fatalf("append over cap: %v, want ErrFull", err)
	}
	if s.Writable(1) {
		t.Fatal("full spool reports writable")
	}
	collect(t, s, 10)
	if err := s.Append(context.Background(), rec); err != nil {
		t.Fatalf("append after drain: %v", err)
	}
}

func TestDrainRetriesFailedBatch(t *testing.T) {
	cfg := DefaultConfig(t.TempDir())
	cfg.RetryMin, cfg.RetryMax = time.Millisecond, 5*time.Millisecond
	cfg.DrainBatchRecords = 3
	s := open(t, cfg)
	defer s.Close()
	for i := range 10 {
		s.Append(context.Background(), []byte(fmt.Sprintf("r%d", i)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []string
	fails := 0
	go s.Drain(ctx, func(_ context.Context, recs [][]byte) error {
		if fails < 4 {
			fails++
			return errors.New("broker away")
		}
		for _, r := range recs {
			got = append(got, string(r))
		}
		if len(got) == 10 {
			cancel()
		}
		return nil
	})
	<-ctx.Done()
	if fmt.Sprint(got) != "[r0 r1 r2 r3 r4 r5 r6 r7 r8 r9]" {
		t.Fatalf("got %v", got)
	}
}

func TestAppendAfterClose(t *testing.T) {
	s := open(t, DefaultConfig(t.TempDir()))
	s.Close()
	if err := s.Append(context.Background(), []byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
}

func BenchmarkAppendParallel(b *testing.B) {
	cfg := DefaultConfig(b.TempDir())
	s, err := Open(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	rec := make([]byte, 1500)
	b.SetParallelism(32)
	b.SetBytes(int64(len(rec)))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.Append(context.Background(), rec); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
