package lcapp

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

func TestSecretCache(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	t0 := time.Now()
	var calls atomic.Int32
	var fail atomic.Bool
	var block chan struct{}
	version := atomic.Int32{}
	load := func() (*secretSnapshot, error) {
		calls.Add(1)
		if block != nil {
			<-block
		}
		if fail.Load() {
			return nil, errors.New("store locked")
		}
		v := version.Load()
		return &secretSnapshot{orgs: map[string]bool{"o": true}, secret: string(rune('a' + v))}, nil
	}
	var c secretCache
	s, err := c.get(ctx, t0, time.Second, load, log)
	if err != nil || s.secret != "a" || calls.Load() != 1 {
		t.Fatalf("first load: %v %v", s, err)
	}
	// Fresh: no load.
	if s, _ := c.get(ctx, t0.Add(500*time.Millisecond), time.Second, load, log); s.secret != "a" || calls.Load() != 1 {
		t.Fatal("fresh snapshot reloaded")
	}
	// Stale: the old snapshot is served at once, the reload runs behind.
	version.Store(1)
	if s, _ := c.get(ctx, t0.Add(2*time.Second), time.Second, load, log); s.secret != "a" {
		t.Fatal("stale request did not get the previous snapshot")
	}
	waitFor(t, func() bool { s, _ := c.get(ctx, t0.Add(2*time.Second), time.Second, load, log); return s.secret == "b" })
	// A failing reload keeps the snapshot.
	fail.Store(true)
	c.get(ctx, t0.Add(4*time.Second), time.Second, load, log)
	waitFor(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return !c.reloading })
	if s, err := c.get(ctx, t0.Add(4*time.Second), time.Second, load, log); err != nil || s.secret != "b" {
		t.Fatalf("after failed reload: %v %v", s, err)
	}
	// No snapshot and a failing store: an error (ingest answers 503).
	c.invalidate()
	if _, err := c.get(ctx, t0.Add(5*time.Second), time.Second, load, log); err == nil {
		t.Fatal("no error without snapshot")
	}
	// No snapshot and a store that does not answer: bounded by ctx.
	fail.Store(false)
	block = make(chan struct{})
	defer close(block)
	tctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := c.get(tctx, t0.Add(6*time.Second), time.Second, load, log); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("blocked store: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
