package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
)

// Unauthenticated load. LiveChat authenticates a webhook only by a secret
// inside the body, so ingest must read a body before it can tell an
// attacker from LiveChat. What keeps strangers from starving authentic
// webhooks is therefore a set of bounds on what an unverified request may
// hold, each in Config:
//
//   - MaxConns (and MaxConnsPerIP, for a listener that faces the internet
//     directly) bound the connections served at once.
//   - HeaderTimeout bounds the wait for a request's headers, BodyTimeout the
//     wait for its body after them (slowloris, slow POST); IdleTimeout a
//     kept-alive connection between requests.
//   - Bodies are read by ingest itself (readBody), into a buffer that
//     grows with the bytes that arrive, never sized by what the request
//     announces: a thousand connections announcing 5 MiB and trickling
//     hold a few KiB each. BodyMemory bounds the bodies over smallBody
//     being read or handled at once (their announced size is reserved
//     before the first byte is read; over it the request is refused with
//     503, LiveChat retries). Bodies up to smallBody — nearly every
//     webhook — are not counted, so strangers announcing large bodies can
//     never crowd out ordinary webhooks; MaxConns bounds those.
//   - Refusals (401 and every other 4xx, limits, broken requests) are
//     counted and logged as one summary per RefusalLogInterval, not one
//     line each: a flood of garbage cannot flood the logs.

// bodyBudget bounds the bytes of large bodies being read or handled at
// once.
type bodyBudget struct {
	max  int64
	used atomic.Int64
}

// reserve takes n bytes; false when the budget has no room.
func (b *bodyBudget) reserve(n int64) bool {
	for {
		used := b.used.Load()
		if used+n > b.max {
			return false
		}
		if b.used.CompareAndSwap(used, used+n) {
			return true
		}
	}
}

func (b *bodyBudget) release(n int64) { b.used.Add(-n) }

// smallBody is the largest body not taken from the BodyMemory budget.
const smallBody = 64 << 10

// headerReceived runs after a request's headers were read and before its
// body is: the body gets its own read deadline, BodyTimeout from now.
func (s *Server) headerReceived(*fasthttp.RequestHeader) fasthttp.RequestConfig {
	return fasthttp.RequestConfig{ReadTimeout: s.cfg.BodyTimeout}
}

// Body read errors.
var (
	errBodyTooLarge = errors.New("body too large")
	errBodyShort    = errors.New("body shorter than its Content-Length")
)

// readBody is the first middleware: it reads the request body itself (the
// server streams bodies: it calls the handlers once the headers and at most
// 8 KiB are in) so that memory follows the bytes that arrive, not the size
// a stranger announces. It enforces MaxBodyBytes (413) and BodyMemory
// (503, before reading), answers a body that does not arrive in time with
// 408 and a broken one with 400 (closing the connection: the rest of the
// body is unread), and hands the bytes to the handlers as the request body.
func (s *Server) readBody(c *fiber.Ctx) error {
	stream := c.Context().RequestBodyStream()
	if stream == nil {
		return c.Next()
	}
	n := int64(c.Request().Header.ContentLength()) // -1: chunked
	limit := int64(s.cfg.MaxBodyBytes)
	if n > limit {
		c.Context().SetConnectionClose()
		s.refuse(c, "too_large")
		return s.fail(c, fiber.StatusRequestEntityTooLarge, "body larger than "+strconv.Itoa(s.cfg.MaxBodyBytes)+" bytes")
	}
	want := n
	if n < 0 {
		want = limit
	}
	if want > smallBody {
		if !s.budget.reserve(want) {
			c.Context().SetConnectionClose()
			s.refuse(c, refusalBusy)
			return s.fail(c, fiber.StatusServiceUnavailable, "too many large requests being read, retry later")
		}
		defer s.budget.release(want)
	}
	var pooled *[]byte
	var buf []byte
	if want <= smallBody {
		pooled = bodyBufs.Get().(*[]byte)
		buf = (*pooled)[:0]
	}
	body, err := readAtMost(stream, n, limit, buf)
	if err != nil {
		if pooled != nil {
			bodyBufs.Put(pooled)
		}
		c.Context().SetConnectionClose()
		var ne net.Error
		switch {
		case errors.Is(err, errBodyTooLarge):
			s.refuse(c, "too_large")
			return s.fail(c, fiber.StatusRequestEntityTooLarge, "body larger than "+strconv.Itoa(s.cfg.MaxBodyBytes)+" bytes")
		case errors.As(err, &ne) && ne.Timeout():
			s.refuse(c, "timeout")
			return s.fail(c, fiber.StatusRequestTimeout, "body not received within "+s.cfg.BodyTimeout.String())
		}
		s.refuse(c, "read_error")
		return s.fail(c, fiber.StatusBadRequest, "could not read the request body: "+err.Error())
	}
	c.Request().SetBodyRaw(body) // ends the stream; the handlers see the bytes
	err = c.Next()
	if pooled != nil && cap(body) <= smallBody {
		c.Request().SetBodyRaw(nil)
		*pooled = body[:0]
		bodyBufs.Put(pooled)
	}
	return err
}

// bodyBufs are the read buffers of ordinary bodies (up to smallBody),
// reused once the handlers returned: nothing keeps the request's bytes
// past them (the record's value is blankSecret's copy, the envelope's
// strings are copies), and a buffer per request was most of what a
// webhook allocated, so most of the garbage collector's work.
var bodyBufs = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// readAtMost reads a body of n bytes (n < 0: until EOF, at most limit) into
// buf (nil: a new one), growing it as bytes arrive.
func readAtMost(r io.Reader, n, limit int64, buf []byte) ([]byte, error) {
	size := n
	if n < 0 {
		size = limit + 1
	}
	if buf == nil {
		buf = make([]byte, 0, min(size, 16<<10))
	}
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) >= size {
				if n < 0 {
					return nil, errBodyTooLarge
				}
				// All n bytes are in; the stream must be at its end.
				var one [1]byte
				if m, err := r.Read(one[:]); m > 0 || (err != nil && !errors.Is(err, io.EOF)) {
					if err != nil {
						return nil, err
					}
					return nil, errBodyTooLarge
				}
				return buf, nil
			}
			buf = slices.Grow(buf, int(min(int64(cap(buf)), size-int64(cap(buf)))))
		}
		m, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if errors.Is(err, io.EOF) {
			if n >= 0 && int64(len(buf)) != n {
				return nil, errBodyShort
			}
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// refusals counts refused requests by reason and logs them as one summary
// per interval.
type refusals struct {
	log      *slog.Logger
	interval time.Duration
	total    atomic.Int64

	mu      sync.Mutex
	counts  map[string]int64
	samples map[string]string // reason → one remote address and detail
	since   time.Time
}

func newRefusals(log *slog.Logger, interval time.Duration) *refusals {
	return &refusals{log: log, interval: interval, counts: map[string]int64{}, samples: map[string]string{}, since: time.Now()}
}

// add counts one refusal. detail may name the remote address, never the
// body or the secret.
func (r *refusals) add(reason, detail string) {
	r.total.Add(1)
	r.mu.Lock()
	r.counts[reason]++
	if _, ok := r.samples[reason]; !ok {
		r.samples[reason] = detail
	}
	r.mu.Unlock()
}

// flush logs the summary of the refusals since the last flush, if any.
func (r *refusals) flush() {
	r.mu.Lock()
	counts, samples, since := r.counts, r.samples, r.since
	r.counts, r.samples, r.since = map[string]int64{}, map[string]string{}, time.Now()
	r.mu.Unlock()
	if len(counts) == 0 {
		return
	}
	reasons := make([]string, 0, len(counts))
	var n int64
	for k, c := range counts {
		reasons = append(reasons, k)
		n += c
	}
	sort.Strings(reasons)
	var by, ex strings.Builder
	for i, k := range reasons {
		if i > 0 {
			by.WriteString(", ")
			ex.WriteString("; ")
		}
		fmt.Fprintf(&by, "%s=%d", k, counts[k])
		fmt.Fprintf(&ex, "%s: %s", k, samples[k])
	}
	r.log.Warn("requests refused", "count", n, "seconds", int(time.Since(since).Seconds()+0.5),
		"by_reason", by.String(), "examples", ex.String())
}

// run flushes every interval until ctx is done, then once more.
func (r *refusals) run(ctx context.Context) {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			r.flush()
		case <-ctx.Done():
			r.flush()
			return
		}
	}
}

// serverLog receives the HTTP server's own messages (connection limits,
// unparsable requests) as refusals.
type serverLog struct{ r *refusals }

func (l serverLog) Printf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	var reason string
	switch {
	case strings.Contains(msg, "MaxConnsPerIP"):
		reason = "conns_per_ip"
	case strings.Contains(msg, "Concurrency"), strings.Contains(msg, "concurrent connections"):
		reason = "max_conns"
	default:
		// "error when serving connection ...": the request's error went
		// through the error handler, which counted it already.
		return
	}
	if len(msg) > 200 {
		msg = msg[:200]
	}
	l.r.add(reason, msg)
}
