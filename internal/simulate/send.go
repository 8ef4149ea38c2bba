package simulate

import (
	"bytes"
	"cmp"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// Poster delivers one webhook body.
type Poster interface {
	Post(ctx context.Context, d Delivery) error
}

// HTTPPoster POSTs bodies to a webhook URL, as LiveChat does. Anything but
// 200 is an error (LiveChat would retry it).
type HTTPPoster struct {
	URL    string
	Client *http.Client
}

// Post sends one body.
func (p *HTTPPoster) Post(ctx context.Context, d Delivery) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL, bytes.NewReader(d.Body))
	if err != nil {
		return fmt.Errorf("simulate: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.Client.Do(req)
	if err != nil {
		return fmt.Errorf("simulate: post %s: %w", d.Action, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("simulate: post %s: %s: %s", d.Action, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// WriteFiles writes every delivery body to dir as NNNNNNNN_<action>.json, in
// delivery order, plus deliveries.jsonl (one line per file: file, at,
// action, org, retry, late) so a replay can use At as the received time.
func WriteFiles(dir string, ds []Delivery) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("simulate: %w", err)
	}
	var index bytes.Buffer
	for i, d := range ds {
		name := fmt.Sprintf("%08d_%s.json", i, d.Action)
		if err := os.WriteFile(filepath.Join(dir, name), d.Body, 0o644); err != nil {
			return fmt.Errorf("simulate: %w", err)
		}
		fmt.Fprintf(&index, `{"file":%q,"at":%q,"action":%q,"organization_id":%q,"retry":%t,"late":%t}`+"\n",
			name, d.At.UTC().Format(time.RFC3339Nano), d.Action, d.OrgID, d.Retry, d.Late)
	}
	if err := os.WriteFile(filepath.Join(dir, "deliveries.jsonl"), index.Bytes(), 0o644); err != nil {
		return fmt.Errorf("simulate: %w", err)
	}
	return nil
}

// LiveConfig paces the live sender.
type LiveConfig struct {
	// Rate is new chats (threads) per second. Default 1.
	Rate float64
	// Duration stops the sender after this long; 0 runs until cancelled.
	Duration time.Duration
	// Attempts is how often a failed POST is tried in all (LiveChat: the
	// first try and up to 3 retries within about a minute). Default 4.
	Attempts int
	// Keep bounds the ground truth kept for Expect (newest threads). Default 500 000.
	Keep int
	// Drain: when Duration ends, no new chat starts but the deliveries of
	// the chats already started are still sent on schedule, for up to this
	// long, so the ground truth matches what was sent. Default 15 minutes.
	// Cancelling the context stops at once instead.
	Drain time.Duration
}

// DefaultLiveConfig returns the defaults documented on LiveConfig.
func DefaultLiveConfig() LiveConfig {
	return LiveConfig{Rate: 1, Attempts: 4, Keep: 500_000, Drain: 15 * time.Minute}
}

// Validate reports every problem at once.
func (c LiveConfig) Validate() error {
	var errs []error
	if c.Rate <= 0 || c.Rate > 10_000 {
		errs = append(errs, fmt.Errorf("simulate: rate %v must be in (0, 10000] chats/s", c.Rate))
	}
	if c.Attempts < 1 {
		errs = append(errs, errors.New("simulate: attempts must be >= 1"))
	}
	if c.Duration < 0 || c.Drain < 0 || c.Keep < 1 {
		errs = append(errs, errors.New("simulate: duration and drain must be >= 0 and keep >= 1"))
	}
	return errors.Join(errs...)
}

// LiveStats are the live sender's running totals.
type LiveStats struct {
	Chats, Sent, Failed, Retried, Dropped atomic.Int64
}

type queued struct {
	d       Delivery
	attempt int
}

type dq []queued

func (q dq) Len() int           { return len(q) }
func (q dq) Less(i, j int) bool { return q[i].d.At.Before(q[j].d.At) }
func (q dq) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *dq) Push(x any)        { *q = append(*q, x.(queued)) }
func (q *dq) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}

// Live simulates traffic in real time: threads start at Rate per second
// (Poisson arrivals) from now on, and each delivery is posted when its time
// comes; failed posts are retried like LiveChat does (1 s, 5 s, 20 s later).
// The ground truth of what was generated accumulates in the returned
// Dataset (From is the start; To is set when Live returns).
type Live struct {
	cfg   LiveConfig
	g     *Generator
	post  Poster
	log   *slog.Logger
	Stats LiveStats
	ds    *Dataset
}

// NewLive checks the configuration. A nil log discards.
func NewLive(cfg LiveConfig, g *Generator, post Poster, log *slog.Logger) (*Live, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log = cmp.Or(log, slog.New(slog.DiscardHandler))
	return &Live{cfg: cfg, g: g, post: post, log: log}, nil
}

var retryBackoff = []time.Duration{time.Second, 5 * time.Second, 20 * time.Second}

// Run sends until ctx is cancelled, or until Duration passed and the chats
// started by then were delivered (Drain); it returns the ground truth of
// the threads it generated (ctx cancellation is not an error).
func (l *Live) Run(ctx context.Context) (*Dataset, error) {
	start := time.Now().Truncate(time.Millisecond)
	l.ds = &Dataset{Orgs: l.g.orgs, From: start}
	var stopAt, drainUntil time.Time
	if l.cfg.Duration > 0 {
		stopAt = start.Add(l.cfg.Duration)
		drainUntil = stopAt.Add(l.cfg.Drain)
	}
	draining := false
	q := &dq{}
	statusUntil := start
	nextChat := start
	timer := time.NewTimer(0)
	defer timer.Stop()
	report := time.Now().Add(time.Minute)
	for {
		now := time.Now()
		if !stopAt.IsZero() && !draining && !now.Before(stopAt) {
			// Stop starting chats; forget routing-status changes not sent yet.
			draining = true
			l.ds.To = stopAt
			kept := (*q)[:0]
			for _, it := range *q {
				if it.d.ChatID != "" {
					kept = append(kept, it)
				}
			}
			*q = kept
			heap.Init(q)
			var sts []StatusChange
			for _, c := range l.ds.Statuses {
				if c.At.Before(stopAt) {
					sts = append(sts, c)
				}
			}
			l.ds.Statuses = sts
		}
		if draining && (q.Len() == 0 || now.After(drainUntil)) {
			return l.ds, nil
		}
		if !draining && !now.Before(statusUntil) {
			// Routing-status changes a day ahead (few: agents change about hourly).
			changes, ds := l.g.Statuses(statusUntil, statusUntil.Add(24*time.Hour))
			l.ds.Statuses = append(l.ds.Statuses, changes...)
			for _, d := range ds {
				heap.Push(q, queued{d: d})
			}
			statusUntil = statusUntil.Add(24 * time.Hour)
		}
		for !draining && !nextChat.After(now) {
			th, ds := l.g.Thread(nextChat)
			l.ds.Threads = append(l.ds.Threads, th)
			if len(l.ds.Threads) > l.cfg.Keep {
				l.ds.Threads = l.ds.Threads[len(l.ds.Threads)-l.cfg.Keep:]
			}
			for _, d := range ds {
				heap.Push(q, queued{d: d})
			}
			l.Stats.Chats.Add(1)
			gap := -math.Log(1-l.g.rng.Float64()) / l.cfg.Rate
			nextChat = nextChat.Add(time.Duration(gap * float64(time.Second)))
		}
		for q.Len() > 0 && !(*q)[0].d.At.After(now) {
			it := heap.Pop(q).(queued)
			if err := l.post.Post(ctx, it.d); err != nil {
				if ctx.Err() != nil {
					break
				}
				l.Stats.Failed.Add(1)
				if it.attempt+1 < l.cfg.Attempts {
					it.d.At = time.Now().Add(retryBackoff[min(it.attempt, len(retryBackoff)-1)])
					it.attempt++
					l.Stats.Retried.Add(1)
					heap.Push(q, it)
				} else {
					l.Stats.Dropped.Add(1)
					l.log.Warn("delivery given up", "action", it.d.Action, "err", err)
				}
				continue
			}
			l.Stats.Sent.Add(1)
		}
		if time.Now().After(report) {
			report = report.Add(time.Minute)
			l.log.Info("simulator", "chats", l.Stats.Chats.Load(), "sent", l.Stats.Sent.Load(), "failed", l.Stats.Failed.Load(), "given_up", l.Stats.Dropped.Load(), "queued", q.Len())
		}
		wake := nextChat
		if draining {
			wake = drainUntil
		} else if !stopAt.IsZero() && stopAt.Before(wake) {
			wake = stopAt
		}
		if q.Len() > 0 && (*q)[0].d.At.Before(wake) {
			wake = (*q)[0].d.At
		}
		timer.Reset(max(time.Until(wake), time.Millisecond))
		select {
		case <-ctx.Done():
			if !draining {
				l.ds.To = time.Now()
			}
			return l.ds, nil
		case <-timer.C:
		}
	}
}
