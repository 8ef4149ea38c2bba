package ingest

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"runtime/metrics"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lcpipe/lcpipe/internal/testenv"
)

// slowAttacker holds one connection open at a time to addr and sends
// garbage slowly on it, reconnecting (after a pause) whenever the server
// cuts it, until ctx is done. Four kinds, by n%4: junk instead of a
// request line, headers that never end, a 64 KB body announced and
// trickled, and a 5 MB one.
func slowAttacker(ctx context.Context, addr string, n int, dials *atomic.Int64) {
	head := []string{
		"\x16\x03\x01garbage-that-is-no-http ",
		"POST /webhooks/livechat HTTP/1.1\r\nHost: ingest\r\nContent-Type: application/json\r\nX-Slow: ",
		"POST /webhooks/livechat HTTP/1.1\r\nHost: ingest\r\nContent-Type: application/json\r\nContent-Length: 65536\r\n\r\n{\"action\":",
		"POST /webhooks/livechat HTTP/1.1\r\nHost: ingest\r\nContent-Type: application/json\r\nContent-Length: 5000000\r\n\r\n{\"action\":",
	}[n%4]
	d := net.Dialer{Timeout: 2 * time.Second}
	for ctx.Err() == nil {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			pause(ctx, time.Second)
			continue
		}
		dials.Add(1)
		cut := make(chan struct{})
		go func() { // the server answers or closes
			var b [256]byte
			for {
				if _, err := c.Read(b[:]); err != nil {
					break
				}
			}
			close(cut)
		}()
		_, err = c.Write([]byte(head))
		for err == nil {
			select {
			case <-cut:
				err = io.EOF
				continue
			case <-ctx.Done():
				err = ctx.Err()
				continue
			case <-time.After(time.Second + time.Duration(rand.IntN(200))*time.Millisecond):
			}
			_ = c.SetWriteDeadline(time.Now().Add(time.Second))
			_, err = c.Write([]byte("x"))
		}
		c.Close()
		<-cut
		pause(ctx, 250*time.Millisecond) // cut: come back a moment later
	}
}

func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// TestSlowGarbageCannotStarveWebhooks opens 1 000 connections that send
// garbage slowly (junk, never-ending headers, a 5 MB body announced and
// trickled) and keeps them open, reconnecting when cut, while authentic
// webhooks are posted: every authentic one is stored, their p99 latency
// stays under 1 s, the bodies announced by strangers do not grow memory
// (bodies are read as they arrive), and the refusals are counted, not
// logged one by one. Loopback only; it lasts as long as the authentic posts take.
func TestSlowGarbageCannotStarveWebhooks(t *testing.T) {
	kcfg := testenv.KafkaConfig(t)
	cfg := testConfig(t, kcfg)
	cfg.HeaderTimeout = 2 * time.Second
	cfg.BodyTimeout = 2 * time.Second
	cfg.BodyMemory = 32 << 20
	cfg.RefusalLogInterval = time.Second
	srv := startServer(t, cfg)
	tmpl := fixtures(t)["incoming_event.agent_message.json"]
	// Warm up the producer before the clock matters.
	if r := postWebhook(t, srv.url, eventBody(tmpl, "WARM", 0)); r.status != 200 {
		t.Fatalf("warm-up: %d %s", r.status, r.body)
	}

	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	liveHeap := func() uint64 { metrics.Read(live); return live[0].Value.Uint64() }
	runtime.GC()
	base := liveHeap()

	const attackers = 1000
	ctx, stop := context.WithCancel(context.Background())
	var dials atomic.Int64
	var wg sync.WaitGroup
	for i := range attackers {
		wg.Go(func() { slowAttacker(ctx, srv.addr, i, &dials) })
	}
	defer func() { stop(); wg.Wait() }()
	// Every attacker connected, and the server holds most of them.
	testenv.Eventually(t, 30*time.Second, func() error {
		if n, d := srv.app.Server().GetOpenConnectionsCount(), dials.Load(); n < attackers*8/10 || d < attackers {
			return fmt.Errorf("%d garbage connections open after %d dials", n, d)
		}
		return nil
	})

	// Peak live heap (as of each GC) and the connections the server holds,
	// while under attack.
	var peak atomic.Uint64
	var openSum, samples atomic.Int64
	sampling, stopSampling := context.WithCancel(context.Background())
	var sampled sync.WaitGroup
	sampled.Go(func() {
		for sampling.Err() == nil {
			if h := liveHeap(); h > peak.Load() {
				peak.Store(h)
			}
			openSum.Add(int64(srv.app.Server().GetOpenConnectionsCount()))
			samples.Add(1)
			pause(sampling, 20*time.Millisecond)
		}
	})
	dialsBefore := dials.Load()

	// Paced (a webhook per worker every 25 ms, about 5 s in all) so the
	// posts span several rounds of the attackers being cut and coming back.
	const workers, perWorker = 8, 200
	lat := make([][]time.Duration, workers)
	var failed atomic.Int64
	start := time.Now()
	var posters sync.WaitGroup
	for w := range workers {
		posters.Go(func() {
			chat := fmt.Sprintf("AUTH%02d", w)
			for seq := range perWorker {
				t0 := time.Now()
				r, err := doRequest("POST", srv.url+WebhookPath, "application/json", eventBody(tmpl, chat, seq))
				lat[w] = append(lat[w], time.Since(t0))
				if err != nil || r.status != 200 {
					failed.Add(1)
					t.Errorf("%s/%d: %d %s %v", chat, seq, r.status, r.body, err)
					return
				}
				pause(ctx, 25*time.Millisecond)
			}
		})
	}
	posters.Wait()
	elapsed := time.Since(start)
	stopSampling()
	sampled.Wait()
	open := openSum.Load() / max(1, samples.Load())
	redials := dials.Load() - dialsBefore
	if failed.Load() > 0 {
		t.Fatalf("%d authentic webhooks failed under attack", failed.Load())
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	p50, p99, worst := all[len(all)/2], all[len(all)*99/100], all[len(all)-1]
	st := srv.Stats().Counters
	t.Logf("%d authentic webhooks in %s beside %d open garbage connections on average (%d reconnections after being cut): p50 %s, p99 %s, max %s; live heap %d MiB before, peak %d MiB; refused %d",
		len(all), elapsed.Round(time.Millisecond), open, redials, p50, p99, worst, base>>20, peak.Load()>>20, st.Refused)
	if p99 >= time.Second {
		t.Fatalf("p99 of authentic webhooks %s under attack, want < 1s", p99)
	}
	// Sustained: most attackers held a connection at any time, and they
	// were cut and came back all along.
	if open < attackers/2 || redials < attackers {
		t.Fatalf("attack not sustained: %d connections open on average, %d reconnections", open, redials)
	}
	// 1 000 connections × 5 MB announced would be 5 GB if bodies were
	// allocated as announced; read as they arrive, each holds a few KiB.
	if grown := int64(peak.Load()) - int64(base); grown > 64<<20 {
		t.Fatalf("live heap grew by %d MiB under attack", grown>>20)
	}
	if st.Refused == 0 { // cut for timeouts or junk, counted for the summary
		t.Fatalf("refusals not counted: %+v", st)
	}
	stop()
	wg.Wait()
	recs := consume(t, kcfg, kcfg.RawTopic, workers*perWorker+1, time.Second)
	acked := map[string]int{"WARM": 1}
	for w := range workers {
		acked[fmt.Sprintf("AUTH%02d", w)] = perWorker
	}
	checkDelivered(t, recs, acked)
}
