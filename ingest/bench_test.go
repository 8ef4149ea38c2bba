package ingest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/valyala/fasthttp"

	"github.com/lcpipe/lcpipe/internal/testenv"
)

// loadResult is one run of the load generator.
type loadResult struct {
	requests, errors int64
	elapsed          time.Duration
	lat              []time.Duration // sorted
	peakRSSKB        int64
	// CPU seconds used during the measured part by the server process,
	// the Kafka broker (0 for the bare run) and the load generator.
	cpuServer, cpuKafka, cpuLoad float64
}

// cpuSeconds is utime+stime of a process from /proc/<pid>/stat.
func cpuSeconds(pid string) float64 {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	k, _ := strconv.ParseFloat(f[12], 64)
	return (u + k) / 100 // CLK_TCK
}

// kafkaPID is the shared broker's pid (scripts/services.sh writes it).
func kafkaPID(b *testing.B) string {
	p, err := os.ReadFile(filepath.Join(testenv.RepoRoot(b), ".run", "kafka.pid"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(p))
}

// perReq is CPU microseconds per measured request.
func (r loadResult) perReq(cpu float64) float64 { return cpu * 1e6 / float64(r.requests) }

func (r loadResult) rps() float64 { return float64(r.requests) / r.elapsed.Seconds() }

func (r loadResult) pct(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(float64(len(r.lat)-1) * p)
	return r.lat[i]
}

func (r loadResult) String() string {
	return fmt.Sprintf("%.0f req/s, p50 %s, p99 %s, p99.9 %s, errors %d, peak RSS %.1f MB; CPU µs/req: server %.0f, kafka %.0f, load generator %.0f",
		r.rps(), r.pct(0.50), r.pct(0.99), r.pct(0.999), r.errors, float64(r.peakRSSKB)/1024,
		r.perReq(r.cpuServer), r.perReq(r.cpuKafka), r.perReq(r.cpuLoad))
}

// benchBodies are the shared fixtures, each in many variants with another
// chat id so records spread over keys and partitions as real traffic does.
// The target is for 1-2 KB bodies while most fixtures are smaller
// (mean 827 B): a variant under 1 KiB gets an extra top-level text field
// (stored raw like any unknown field) that brings it to a size spread
// evenly over 1-2 KiB; larger fixtures stay as they are.
func benchBodies(b *testing.B) (bodies [][]byte, meanSize int) {
	fx := fixtures(b)
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range fx {
			if !yield(n) {
				return
			}
		}
	})
	const filler = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt. "
	total := 0
	for v := range 64 {
		for i, n := range names {
			body := bytes.ReplaceAll(fx[n], []byte("RW4T8ZQK2C"), []byte(fmt.Sprintf("BENCH%05d", v)))
			if len(body) < 1024 {
				want := 1024 + (v*len(names)+i)*389%1024
				field := []byte(`"bench_padding":"",`)
				pad := strings.Repeat(filler, want/len(filler)+1)[:max(0, want-len(body)-len(field))]
				open := bytes.IndexByte(body, '{') + 1
				body = slices.Concat(body[:open], []byte(`"bench_padding":"`+pad+`",`), body[open:])
			}
			bodies = append(bodies, body)
			total += len(body)
		}
	}
	return bodies, total / len(bodies)
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// webhookRequest is a pooled POST of JSON to addr's webhook path; the
// caller sets the body and releases it with fasthttp.ReleaseRequest.
func webhookRequest(addr string) *fasthttp.Request {
	req := fasthttp.AcquireRequest()
	req.SetRequestURI("http://" + addr + WebhookPath)
	req.Header.SetMethod("POST")
	req.Header.SetContentType("application/json")
	return req
}

// sortedLatencies merges the workers' latencies in ascending order.
func sortedLatencies(lats [][]time.Duration) []time.Duration {
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	return all
}

// load posts bodies round-robin from conc connections, each waiting for its
// answer before the next request (closed loop, steady concurrency), for
// warm-up plus d, and measures the part after warm-up.
func load(b *testing.B, addr string, pid int, kafkaPid string, bodies [][]byte, conc int, warm, d time.Duration) loadResult {
	b.Helper()
	hc := &fasthttp.HostClient{Addr: addr, MaxConns: conc, ReadTimeout: 15 * time.Second, WriteTimeout: 15 * time.Second}
	var next atomic.Int64
	var measuring, stop atomic.Bool
	var errs atomic.Int64
	lats := make([][]time.Duration, conc)
	var wg sync.WaitGroup
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := webhookRequest(addr), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			mine := make([]time.Duration, 0, 1<<16)
			for !stop.Load() {
				req.SetBodyRaw(bodies[int(next.Add(1))%len(bodies)])
				t0 := time.Now()
				err := hc.Do(req, resp)
				lat := time.Since(t0)
				if measuring.Load() {
					if err != nil || resp.StatusCode() != 200 {
						errs.Add(1)
						continue
					}
					mine = append(mine, lat)
				}
			}
			lats[w] = mine
		}()
	}
	time.Sleep(warm)
	spid := strconv.Itoa(pid)
	cs0, ck0, cl0 := cpuSeconds(spid), cpuSeconds(kafkaPid), cpuSeconds("self")
	measuring.Store(true)
	start := time.Now()
	var peak int64
	// Sample RSS during the run: VmHWM of a child includes its start-up,
	// which is the same for both, but sampling shows the steady state.
	for time.Since(start) < d {
		time.Sleep(200 * time.Millisecond)
		if cur, _ := rssKB(pid); cur > peak {
			peak = cur
		}
	}
	measuring.Store(false)
	elapsed := time.Since(start)
	cs1, ck1, cl1 := cpuSeconds(spid), cpuSeconds(kafkaPid), cpuSeconds("self")
	stop.Store(true)
	wg.Wait()
	all := sortedLatencies(lats)
	res := loadResult{requests: int64(len(all)), errors: errs.Load(), elapsed: elapsed, lat: all, peakRSSKB: peak,
		cpuServer: cs1 - cs0, cpuKafka: ck1 - ck0, cpuLoad: cl1 - cl0}
	if kafkaPid == "" {
		res.cpuKafka = 0
	}
	return res
}

// paced posts at a fixed rate (open loop) for d and measures each latency
// from the request's scheduled start, so a stalled server is charged for
// the requests that queued behind it (no coordinated omission).
func paced(b *testing.B, addr string, bodies [][]byte, rate int, d time.Duration) loadResult {
	b.Helper()
	const workers = 128
	hc := &fasthttp.HostClient{Addr: addr, MaxConns: workers, ReadTimeout: 15 * time.Second, WriteTimeout: 15 * time.Second}
	n := int(float64(rate) * d.Seconds())
	sched := make(chan time.Time, n)
	var errs atomic.Int64
	lats := make([][]time.Duration, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := webhookRequest(addr), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			i := w
			for at := range sched {
				if wait := time.Until(at); wait > 0 {
					time.Sleep(wait)
				}
				req.SetBodyRaw(bodies[i%len(bodies)])
				i += workers
				err := hc.Do(req, resp)
				if err != nil || resp.StatusCode() != 200 {
					errs.Add(1)
					continue
				}
				lats[w] = append(lats[w], time.Since(at))
			}
		}()
	}
	start := time.Now().Add(50 * time.Millisecond)
	interval := time.Second / time.Duration(rate)
	for i := range n {
		sched <- start.Add(time.Duration(i) * interval)
	}
	close(sched)
	wg.Wait()
	all := sortedLatencies(lats)
	return loadResult{requests: int64(len(all)), errors: errs.Load(), elapsed: time.Since(start), lat: all}
}

// BenchmarkIngestVsBareFiber is `make bench-ingest`: the same closed-loop
// load (INGEST_BENCH_CONCURRENCY connections, default 16, for
// INGEST_BENCH_SECONDS, default 10, after INGEST_BENCH_WARMUP_SECONDS,
// default 5, of warm-up) against a bare Fiber
// app that answers 200 (the ceiling on this machine) and against real
// ingest producing to the real Kafka on loopback, both in child processes.
// Then, for latency when not saturated, INGEST_BENCH_RATE (default 1000)
// req/s for 5 s open loop against each. Reports throughput, latency
// percentiles, peak RSS, CPU per request and the ratio; checks
// that the topic holds at least as many records as ingest acknowledged.
//
// The ingest child records metrics as in production; INGEST_BENCH_TRACING=1
// turns tracing on with every trace sampled (spans exported in batches to
// an exporter that drops them); INGEST_BENCH_SAMPLE_RATIO (e.g. 0.01)
// samples that share of the traces instead.
func BenchmarkIngestVsBareFiber(b *testing.B) {
	conc := envInt("INGEST_BENCH_CONCURRENCY", 16)
	rate := envInt("INGEST_BENCH_RATE", 1000)
	d := time.Duration(envInt("INGEST_BENCH_SECONDS", 10)) * time.Second
	// The shared broker is restarted by other suites' failure tests, and
	// an idle JVM drops compiled code: measuring "Kafka healthy" needs
	// its produce path JIT-compiled again first (in a 2 s warm-up the
	// broker spent about as much CPU compiling as serving).
	warm := time.Duration(envInt("INGEST_BENCH_WARMUP_SECONDS", 5)) * time.Second
	bodies, mean := benchBodies(b)
	kcfg := testenv.KafkaConfig(b)

	for range b.N {
		bareAddr := freeAddr(b)
		bare := startChild(b, "bare", bareAddr)
		rb := load(b, bareAddr, bare.cmd.Process.Pid, "", bodies, conc, warm, d)
		pb := paced(b, bareAddr, bodies, rate, 5*time.Second)
		bare.stop(b)

		ingAddr := freeAddr(b)
		ing := startChild(b, "ingest", ingAddr, "CHILD_BROKERS="+strings.Join(kcfg.Brokers, ","),
			"CHILD_RAW_TOPIC="+kcfg.RawTopic, "CHILD_DLQ_TOPIC="+kcfg.DLQTopic, "CHILD_SPOOL_DIR="+b.TempDir(), "CHILD_REPORT_PRODUCE=1",
			"CHILD_TRACING="+os.Getenv("INGEST_BENCH_TRACING"), "CHILD_SAMPLE_RATIO="+os.Getenv("INGEST_BENCH_SAMPLE_RATIO"))
		ri := load(b, ingAddr, ing.cmd.Process.Pid, kafkaPID(b), bodies, conc, warm, d)
		pi := paced(b, ingAddr, bodies, rate, 5*time.Second)
		st, err := healthStats("http://" + ingAddr)
		if err != nil {
			b.Fatal(err)
		}
		ing.stop(b)

		b.Logf("bodies: %d variants of the %d fixtures, mean %d bytes; concurrency %d, %s measured after %s warm-up",
			len(bodies), len(fixtures(b)), mean, conc, d, warm)
		b.Logf("bare Fiber: %s", rb)
		b.Logf("ingest:     %s", ri)
		b.Logf("fixed rate %d req/s for 5 s (open loop, latency from scheduled start): bare p50 %s p99 %s p99.9 %s; ingest p50 %s p99 %s p99.9 %s; errors %d/%d",
			rate, pb.pct(0.5), pb.pct(0.99), pb.pct(0.999), pi.pct(0.5), pi.pct(0.99), pi.pct(0.999), pb.errors, pi.errors)
		b.Logf("ingest/bare throughput: %.1f %%; ingest stats: accepted %d, spooled %d", 100*ri.rps()/rb.rps(), st.Counters.Accepted, st.Counters.Spooled)
		if ri.errors > 0 || rb.errors > 0 || pi.errors > 0 || pb.errors > 0 {
			b.Errorf("non-200 answers: ingest %d, bare %d", ri.errors, rb.errors)
		}

		// Every 200 is a record in the topic (warm-up requests included).
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		ends, err := kadm.NewClient(testenv.KafkaClient(b, kcfg)).ListEndOffsets(ctx, kcfg.RawTopic)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		var stored int64
		ends.Each(func(o kadm.ListedOffset) { stored += o.Offset })
		if stored < st.Counters.Accepted {
			b.Errorf("topic holds %d records, ingest acknowledged %d", stored, st.Counters.Accepted)
		}

		b.ReportMetric(float64(pi.pct(0.99).Microseconds())/1000, "ingest_paced_p99_ms")
		b.ReportMetric(rb.rps(), "bare_req/s")
		b.ReportMetric(ri.rps(), "ingest_req/s")
		b.ReportMetric(100*ri.rps()/rb.rps(), "ingest/bare_%")
		b.ReportMetric(float64(ri.pct(0.50).Microseconds())/1000, "ingest_p50_ms")
		b.ReportMetric(float64(ri.pct(0.99).Microseconds())/1000, "ingest_p99_ms")
		b.ReportMetric(float64(ri.pct(0.999).Microseconds())/1000, "ingest_p99.9_ms")
		b.ReportMetric(float64(rb.pct(0.99).Microseconds())/1000, "bare_p99_ms")
		b.ReportMetric(float64(ri.peakRSSKB)/1024, "ingest_rss_MB")
		b.ReportMetric(ri.perReq(ri.cpuServer), "ingest_cpu_µs/req")
		b.ReportMetric(ri.perReq(ri.cpuKafka), "kafka_cpu_µs/req")
		b.ReportMetric(rb.perReq(rb.cpuServer), "bare_cpu_µs/req")
	}
}

// BenchmarkHandlerPath measures the CPU work of one webhook before the
// hand-off: envelope scan, secret check, blanking, record and headers.
func BenchmarkHandlerPath(b *testing.B) {
	body := fixtures(b)["incoming_event.json"]
	s := &Server{cfg: DefaultConfig(), secrets: [][32]byte{hashSecret(testSecret)}}
	s.cfg.fill()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		env, err := parseEnvelope(body)
		if err != nil {
			b.Fatal(err)
		}
		auth, org, err := s.authenticate(context.Background(), &env)
		if err != nil {
			b.Fatal(err)
		}
		r := request{receivedAt: time.Now(), requestID: "x-1", remoteAddr: "127.0.0.1:1", auth: auth, org: org, env: env, value: env.blankSecret(body)}
		_ = s.buildRecord(&r)
	}
}
