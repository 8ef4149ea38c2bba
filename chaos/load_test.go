package chaos

import (
	"bytes"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lcpipe/lcpipe/internal/livechat"
	"github.com/lcpipe/lcpipe/internal/simulate"
	"github.com/lcpipe/lcpipe/processor"
)

// The load: the simulator's traffic (internal/simulate), time-compressed by
// Speedup so that a run of minutes holds many whole chats, posted to both
// ingests. Each delivery's attempts alternate between the two instances (a
// load balancer in front of them); a non-200 answer or a failed connection
// is retried like LiveChat does, 3 more times within a minute (1 s, 5 s,
// 20 s later), and counted by code. A delivery never answered 200 is "not
// acknowledged".

// retryAfter are LiveChat's retry delays after the 1st, 2nd and 3rd failure.
var retryAfter = []time.Duration{time.Second, 5 * time.Second, 20 * time.Second}

// attempts is how often a delivery is tried in all.
const attempts = 4

type item struct {
	d       *simulate.Delivery
	id      int
	at      time.Time // when to post (real time)
	attempt int
}

type itemHeap []item

func (h itemHeap) Len() int           { return len(h) }
func (h itemHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h itemHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *itemHeap) Push(x any)        { *h = append(*h, x.(item)) }
func (h *itemHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// expectation is what the simulator knows: the events of the deliveries
// ingest acknowledged, by identity (server-named events: their exact ID) or
// by dedup key (state changes: their ID depends on ingest's received-at,
// which only the log knows).
type expectation struct {
	mu sync.Mutex
	// ackIDs / ackKeys: events of acknowledged deliveries.
	ackIDs, ackKeys map[string]struct{}
	// lostIDs / lostKeys: events of deliveries never acknowledged.
	lostIDs, lostKeys map[string]struct{}
	badBodies         int
}

func newExpectation() *expectation {
	return &expectation{ackIDs: map[string]struct{}{}, ackKeys: map[string]struct{}{},
		lostIDs: map[string]struct{}{}, lostKeys: map[string]struct{}{}}
}

func (e *expectation) add(body []byte, acked bool) {
	w, err := livechat.Decode(body)
	if err != nil {
		e.mu.Lock()
		e.badBodies++
		e.mu.Unlock()
		return
	}
	// The received-at only changes the IDs of state changes, which are
	// compared by dedup key here.
	rows := processor.Transform(processor.Source{Topic: "sim", ReceivedAt: time.UnixMilli(1)}, w, nil, nil)
	e.mu.Lock()
	defer e.mu.Unlock()
	ids, keys := e.ackIDs, e.ackKeys
	if !acked {
		ids, keys = e.lostIDs, e.lostKeys
	}
	for i := range rows {
		if rows[i].DedupKey == "" {
			ids[rows[i].EventID] = struct{}{}
		} else {
			keys[rows[i].DedupKey] = struct{}{}
		}
	}
}

// loadStats are the sender's totals.
type loadStats struct {
	Deliveries, Retries       atomic.Int64 // deliveries made (first attempts), of them the simulator's same-body retries
	Attempts, Acked, NotAcked atomic.Int64
	mu                        sync.Mutex
	codes                     map[string]int // non-200 attempts by answer
	Took                      time.Duration
}

func (s *loadStats) failed(code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[code]++
}

// Codes returns the non-200 answers as "code: n" sorted by count.
func (s *loadStats) Codes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for c, n := range s.codes {
		out = append(out, fmt.Sprintf("%s: %d", c, n))
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

type sender struct {
	cfg    config
	urls   []string
	client *http.Client
	tl     *timeline
	exp    *expectation
	stats  loadStats
	work   chan item
	wg     sync.WaitGroup // deliveries not final yet
}

func newSender(cfg config, urls []string, tl *timeline) *sender {
	tr := &http.Transport{
		MaxIdleConnsPerHost: cfg.Workers,
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		IdleConnTimeout:     30 * time.Second,
	}
	s := &sender{cfg: cfg, urls: urls, tl: tl, exp: newExpectation(), work: make(chan item, cfg.Workers),
		// LiveChat waits 10 s for an answer (ingest keeps its Kafka wait well below).
		client: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
	s.stats.codes = map[string]int{}
	return s
}

// classify names a failed attempt for the summary.
func classify(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.EPIPE), strings.Contains(err.Error(), "server closed idle connection"):
		return "connection reset"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	default:
		msg := err.Error()
		if len(msg) > 60 {
			msg = msg[:60]
		}
		return "error " + msg
	}
}

func (s *sender) post(ctx context.Context, it item) (code string, ok bool) {
	url := s.urls[(it.id+it.attempt)%len(s.urls)]
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(it.d.Body))
	if err != nil {
		return "error " + err.Error(), false
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return classify(err), false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("HTTP %d", resp.StatusCode), false
	}
	return "200", true
}

func (s *sender) worker(ctx context.Context) {
	for {
		var it item
		select {
		case <-ctx.Done():
			return
		case next, ok := <-s.work:
			if !ok {
				return
			}
			it = next
		}
		s.stats.Attempts.Add(1)
		code, ok := s.post(ctx, it)
		if ok {
			s.stats.Acked.Add(1)
			s.exp.add(it.d.Body, true)
			s.wg.Done()
			continue
		}
		s.stats.failed(code)
		if it.attempt+1 < attempts && ctx.Err() == nil {
			next := it
			next.attempt++
			time.AfterFunc(retryAfter[it.attempt], func() {
				select {
				case s.work <- next:
				case <-ctx.Done():
				}
			})
			continue
		}
		s.stats.NotAcked.Add(1)
		s.exp.add(it.d.Body, false)
		s.tl.logf("load: delivery %d (%s) not acknowledged after %d attempts, last: %s", it.id, it.d.Action, attempts, code)
		s.wg.Done()
	}
}

// run generates and posts cfg.Webhooks deliveries at about cfg.Rate per
// second, and returns when every delivery is acknowledged or given up.
func (s *sender) run(ctx context.Context) error {
	scfg := simulate.DefaultConfig()
	scfg.Seed = s.cfg.Seed
	scfg.Orgs = 5
	scfg.RetryRate = s.cfg.RetryRate
	g, err := simulate.New(scfg)
	if err != nil {
		return err
	}
	perThread, err := meanDeliveries(scfg)
	if err != nil {
		return err
	}
	k := s.cfg.Speedup
	span := s.cfg.loadDuration()
	t0 := time.Now()
	// Simulated time runs k times faster and ends an hour before now, so
	// no event is from the future.
	sim0 := t0.Add(-time.Duration(k*float64(span)) - time.Hour).Truncate(time.Millisecond)
	simOf := func(real time.Time) time.Time {
		return sim0.Add(time.Duration(k * float64(real.Sub(t0)))).Truncate(time.Millisecond)
	}
	realOf := func(sim time.Time) time.Time { return t0.Add(time.Duration(float64(sim.Sub(sim0)) / k)) }

	h := &itemHeap{}
	next := 0
	push := func(ds []simulate.Delivery) {
		for i := range ds {
			d := &ds[i]
			heap.Push(h, item{d: d, id: next, at: realOf(d.At)})
			next++
			s.stats.Deliveries.Add(1)
			if d.Retry {
				s.stats.Retries.Add(1)
			}
		}
	}
	_, sts := g.Statuses(sim0, simOf(t0.Add(span)))
	push(sts)
	threadsPerSec := max(float64(s.cfg.Webhooks-len(sts)), 1) / perThread / span.Seconds()
	rng := rand.New(rand.NewPCG(s.cfg.Seed, 7))
	s.tl.logf("load: %d webhooks at ~%.0f/s (%.1f threads/s, %.1f deliveries per thread, %d routing-status changes), simulated time x%.0f, %d workers",
		s.cfg.Webhooks, s.cfg.Rate, threadsPerSec, perThread, len(sts), k, s.cfg.Workers)

	var workers sync.WaitGroup
	for i := 0; i < s.cfg.Workers; i++ {
		workers.Add(1)
		go func() { defer workers.Done(); s.worker(ctx) }()
	}
	nextThread := t0
	report := t0.Add(10 * time.Second)
	for {
		now := time.Now()
		for next < s.cfg.Webhooks && !nextThread.After(now) {
			_, ds := g.Thread(simOf(nextThread))
			push(ds)
			gap := -math.Log(1-rng.Float64()) / threadsPerSec
			nextThread = nextThread.Add(time.Duration(gap * float64(time.Second)))
		}
		for h.Len() > 0 && !(*h)[0].at.After(now) {
			it := heap.Pop(h).(item)
			s.wg.Add(1)
			select {
			case s.work <- it:
			case <-ctx.Done():
				s.wg.Done()
			}
		}
		if ctx.Err() != nil {
			break
		}
		if next >= s.cfg.Webhooks && h.Len() == 0 {
			break
		}
		if now.After(report) {
			report = report.Add(10 * time.Second)
			s.tl.logf("load: %d deliveries made, %d attempts, %d acknowledged, %d not, %d queued", s.stats.Deliveries.Load(),
				s.stats.Attempts.Load(), s.stats.Acked.Load(), s.stats.NotAcked.Load(), h.Len())
		}
		wake := now.Add(50 * time.Millisecond)
		if next < s.cfg.Webhooks && nextThread.Before(wake) {
			wake = nextThread
		}
		if h.Len() > 0 && (*h)[0].at.Before(wake) {
			wake = (*h)[0].at
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(wake)):
		}
	}
	// Every delivery is out; wait for the last answers and retries.
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		close(s.work) // nothing is pending: no retry can send any more
	case <-ctx.Done():
	}
	workers.Wait()
	s.stats.Took = time.Since(t0)
	s.tl.logf("load: done in %s: %d deliveries, %d attempts, %d acknowledged, %d not acknowledged", s.stats.Took.Round(time.Second),
		s.stats.Deliveries.Load(), s.stats.Attempts.Load(), s.stats.Acked.Load(), s.stats.NotAcked.Load())
	return ctx.Err()
}

// meanDeliveries estimates the deliveries per thread of the configuration
// (on a throwaway generator), to pace thread starts.
func meanDeliveries(cfg simulate.Config) (float64, error) {
	cfg.Seed ^= 0x5eed
	g, err := simulate.New(cfg)
	if err != nil {
		return 0, err
	}
	n, at := 0, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const threads = 2000
	for i := 0; i < threads; i++ {
		_, ds := g.Thread(at.Add(time.Duration(i) * time.Second))
		n += len(ds)
	}
	return float64(n) / threads, nil
}
