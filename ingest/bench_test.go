package ingest

import (
	"bytes"
	"context"
	"fmt"
	"net"
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

// kafkaPID is the shared broker's pid: INGEST_BENCH_KAFKA_PID, else the
// one scripts/services.sh wrote in this checkout, else the process running
// Kafka's main class (the services of another worktree of the repository).
func kafkaPID(b *testing.B) string {
	if p := os.Getenv("INGEST_BENCH_KAFKA_PID"); p != "" {
		return p
	}
	if p, err := os.ReadFile(filepath.Join(testenv.RepoRoot(b), ".run", "kafka.pid")); err == nil {
		return strings.TrimSpace(string(p))
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		if cmd, err := os.ReadFile(f); err == nil && bytes.Contains(cmd, []byte("kafka.Kafka")) {
			return filepath.Base(filepath.Dir(f))
		}
	}
	b.Log("Kafka's pid not found: the broker's CPU is not reported")
	return ""
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

// benchBodies are the shared fixtures, each in benchChats variants with
// another chat id so records spread over keys and partitions as real
// traffic does.
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
	// Chat-minor order: the load generator posts bodies in this order, so
	// consecutive requests belong to different chats, as when many chats
	// are live at once. (Chat-major order would send each chat's 22
	// webhooks back to back, and ingest, which stores a chat's webhooks
	// one after the other to keep their order, would serve them one at a
	// time.)
	for i, n := range names {
		for v := range benchChats {
			body := variant(b, fx[n], v)
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

// variant is a fixture about another chat (or agent, customer, group: the
// entity its record is keyed by), so that variants spread over keys as
// many live chats do: ingest stores one key's webhooks one after another.
func variant(b *testing.B, fixture []byte, v int) []byte {
	env, err := parseEnvelope(fixture)
	if err != nil {
		b.Fatal(err)
	}
	e := env.Entity
	out := bytes.ReplaceAll(fixture, []byte(`"`+e+`"`), []byte(fmt.Sprintf(`"%s%05d"`, e, v)))
	if bytes.Equal(out, fixture) { // a number (group id)
		out = bytes.ReplaceAll(fixture, []byte(`": `+e+`,`), []byte(fmt.Sprintf(`": %s%05d,`, e, v)))
	}
	if got, err := parseEnvelope(out); err != nil || got.Entity == e {
		b.Fatalf("variant %d of a fixture about %q: entity %q, %v", v, e, got.Entity, err)
	}
	return out
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
// It reads the CPU time of the server (pid) and the broker as load does:
// at the same offered rate both servers batch alike, so the difference of
// their CPU per request is what the server's own work costs.
func paced(b *testing.B, addr string, pid int, kafkaPid string, bodies [][]byte, rate int, d time.Duration) loadResult {
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
	spid := strconv.Itoa(pid)
	cs0, ck0 := cpuSeconds(spid), cpuSeconds(kafkaPid)
	start := time.Now().Add(50 * time.Millisecond)
	interval := time.Second / time.Duration(rate)
	for i := range n {
		sched <- start.Add(time.Duration(i) * interval)
	}
	close(sched)
	wg.Wait()
	cs1, ck1 := cpuSeconds(spid), cpuSeconds(kafkaPid)
	all := sortedLatencies(lats)
	return loadResult{requests: int64(len(all)), errors: errs.Load(), elapsed: time.Since(start), lat: all,
		cpuServer: cs1 - cs0, cpuKafka: ck1 - ck0}
}

// benchChats is how many chat-id variants of each fixture the load
// generator posts: records are keyed by chat, and with few keys a few
// partitions would take all the load.
const benchChats = 256

// envInts parses a comma-separated list of positive integers.
func envInts(name string, def ...int) []int {
	var out []int
	for _, f := range strings.Split(os.Getenv(name), ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return def
	}
	return out
}

// Servers of BenchmarkIngestVsBareFiber, in the order of even rounds.
var benchServers = []string{"bare", "floor", "ingest"}

// benchRun is one server's closed-loop run at one concurrency in one round.
type benchRun struct {
	server string
	conc   int
	round  int
	res    loadResult
}

// median of xs (xs is reordered).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	if len(xs)%2 == 1 {
		return xs[len(xs)/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}

// BenchmarkIngestVsBareFiber is `make bench-ingest`: the same closed-loop
// load against three servers, each in a child process:
//
//   - bare: a Fiber app that answers 200 (what HTTP alone costs here);
//   - floor: Fiber + franz-go ProduceSync to the same broker and topic,
//     acks=all, 200 after the ack, nothing else (the durable floor);
//   - ingest: real ingest (secret check, blanking, envelope scan, record
//     headers, produce, spool fallback).
//
// For each of INGEST_BENCH_ROUNDS rounds (default 2) every server runs at
// every INGEST_BENCH_CONCURRENCY (comma-separated, default "16,64")
// connections for INGEST_BENCH_SECONDS (default 10) after
// INGEST_BENCH_WARMUP_SECONDS (default 5) of warm-up; odd rounds run the
// servers in reverse order, so a change of the machine's load (two shared
// cores) spreads over all of them. After its closed-loop runs, floor and
// ingest each get INGEST_BENCH_RATE (default 2000) req/s open loop for
// INGEST_BENCH_PACED_SECONDS (default 10): latency when not saturated, and
// CPU per request at the same offered load (the fairest measure of what
// ingest's own work costs over the floor: closed-loop CPU per request also
// depends on how well each server's producer batches at its throughput).
//
// Reported per run: throughput, latency percentiles, peak RSS, CPU µs per
// request of the server, the broker and the load generator (from /proc).
// The summary takes medians over the rounds of the per-round ratios
// (ingest / floor throughput, ingest's CPU over the floor's), which the
// machine's noise disturbs less than absolute figures. It checks that the
// topic holds at least as many records as the servers acknowledged.
//
// INGEST_BENCH_CPUPROFILE=prefix writes a CPU profile of each floor and
// ingest child (prefix-<server>-r<round>.pprof), INGEST_BENCH_MEMPROFILE
// their allocations. The ingest child records metrics as in production;
// INGEST_BENCH_TRACING=1 turns tracing on with every trace sampled (spans
// exported in batches to an exporter that drops them);
// INGEST_BENCH_SAMPLE_RATIO (e.g. 0.01) samples that share instead.
func BenchmarkIngestVsBareFiber(b *testing.B) {
	concs := envInts("INGEST_BENCH_CONCURRENCY", 16, 64)
	rounds := envInt("INGEST_BENCH_ROUNDS", 2)
	rate := envInt("INGEST_BENCH_RATE", 2000)
	pacedFor := time.Duration(envInt("INGEST_BENCH_PACED_SECONDS", 10)) * time.Second
	d := time.Duration(envInt("INGEST_BENCH_SECONDS", 10)) * time.Second
	// The shared broker is restarted by other suites' failure tests, and
	// an idle JVM drops compiled code: measuring "Kafka healthy" needs
	// its produce path JIT-compiled again first (in a 2 s warm-up the
	// broker spent about as much CPU compiling as serving).
	warm := time.Duration(envInt("INGEST_BENCH_WARMUP_SECONDS", 5)) * time.Second
	bodies, mean := benchBodies(b)
	kcfg := testenv.KafkaConfig(b)
	kafkaEnv := []string{"CHILD_BROKERS=" + strings.Join(kcfg.Brokers, ","), "CHILD_RAW_TOPIC=" + kcfg.RawTopic,
		"CHILD_DLQ_TOPIC=" + kcfg.DLQTopic, "CHILD_REPORT_PRODUCE=1"}
	b.Logf("bodies: %d variants of the %d fixtures, mean %d bytes; concurrency %v, %s measured after %s warm-up, %d rounds",
		len(bodies), len(fixtures(b)), mean, concs, d, warm, rounds)

	for range b.N {
		var runs, pacedRuns []benchRun
		var acked int64
		for round := range rounds {
			order := slices.Clone(benchServers)
			if round%2 == 1 {
				slices.Reverse(order)
			}
			for _, server := range order {
				addr := freeAddr(b)
				env := slices.Clone(kafkaEnv)
				switch server {
				case "ingest":
					env = append(env, "CHILD_SPOOL_DIR="+b.TempDir(),
						"CHILD_TRACING="+os.Getenv("INGEST_BENCH_TRACING"), "CHILD_SAMPLE_RATIO="+os.Getenv("INGEST_BENCH_SAMPLE_RATIO"))
				case "bare":
					env = nil
				}
				if p := os.Getenv("INGEST_BENCH_CPUPROFILE"); p != "" && server != "bare" {
					env = append(env, fmt.Sprintf("CHILD_CPUPROFILE=%s-%s-r%d.pprof", p, server, round))
				}
				if p := os.Getenv("INGEST_BENCH_MEMPROFILE"); p != "" && server != "bare" {
					env = append(env, fmt.Sprintf("CHILD_MEMPROFILE=%s-%s-r%d.pprof", p, server, round))
				}
				ch := startChild(b, server, addr, env...)
				kpid := kafkaPID(b)
				if server == "bare" {
					kpid = ""
				}
				for _, conc := range concs {
					r := load(b, addr, ch.cmd.Process.Pid, kpid, bodies, conc, warm, d)
					b.Logf("round %d, %-6s conc %2d: %s", round, server, conc, r)
					runs = append(runs, benchRun{server, conc, round, r})
					if r.errors > 0 {
						b.Errorf("%s: %d non-200 answers", server, r.errors)
					}
				}
				if server != "bare" {
					p := paced(b, addr, ch.cmd.Process.Pid, kpid, bodies, rate, pacedFor)
					b.Logf("round %d, %-6s open loop %d req/s for %s (latency from scheduled start): p50 %s p99 %s p99.9 %s, errors %d; CPU µs/req: server %.1f, kafka %.1f",
						round, server, rate, pacedFor, p.pct(0.5), p.pct(0.99), p.pct(0.999), p.errors, p.perReq(p.cpuServer), p.perReq(p.cpuKafka))
					pacedRuns = append(pacedRuns, benchRun{server, 0, round, p})
					if p.errors > 0 {
						b.Errorf("%s open loop: %d non-200 answers", server, p.errors)
					}
				}
				if server == "ingest" {
					st, err := healthStats("http://" + addr)
					if err != nil {
						b.Fatal(err)
					}
					acked += st.Counters.Accepted
					b.Logf("round %d, ingest stats: accepted %d, spooled %d", round, st.Counters.Accepted, st.Counters.Spooled)
				}
				ch.stop(b)
			}
		}

		// Every 200 of ingest is a record in the topic (the floor's too).
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		ends, err := kadm.NewClient(testenv.KafkaClient(b, kcfg)).ListEndOffsets(ctx, kcfg.RawTopic)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		var stored int64
		ends.Each(func(o kadm.ListedOffset) { stored += o.Offset })
		if stored < acked {
			b.Errorf("topic holds %d records, ingest acknowledged %d", stored, acked)
		}

		var pacedOver []float64
		for round := range rounds {
			var ing, fl *loadResult
			for i := range pacedRuns {
				if r := &pacedRuns[i]; r.round == round && r.server == "ingest" {
					ing = &r.res
				} else if r.round == round && r.server == "floor" {
					fl = &r.res
				}
			}
			if ing != nil && fl != nil && ing.requests > 0 && fl.requests > 0 {
				pacedOver = append(pacedOver, ing.perReq(ing.cpuServer)-fl.perReq(fl.cpuServer))
			}
		}
		b.Logf("open loop %d req/s, per round: ingest CPU over floor %.1f µs/req", rate, pacedOver)
		b.ReportMetric(median(pacedOver), "ingest_over_floor_µs_paced")
		for _, conc := range concs {
			pick := func(server string, round int) (loadResult, bool) {
				for _, r := range runs {
					if r.server == server && r.conc == conc && r.round == round {
						return r.res, true
					}
				}
				return loadResult{}, false
			}
			var ofFloor, ofBare, over, ingCPU, floorCPU, kafkaIng, kafkaFloor, p99, rss []float64
			for round := range rounds {
				ri, ok1 := pick("ingest", round)
				rf, ok2 := pick("floor", round)
				rb, ok3 := pick("bare", round)
				if !ok1 || !ok2 || !ok3 || ri.requests == 0 || rf.requests == 0 {
					continue
				}
				ofFloor = append(ofFloor, 100*ri.rps()/rf.rps())
				ofBare = append(ofBare, 100*ri.rps()/rb.rps())
				ingCPU = append(ingCPU, ri.perReq(ri.cpuServer))
				floorCPU = append(floorCPU, rf.perReq(rf.cpuServer))
				over = append(over, ri.perReq(ri.cpuServer)-rf.perReq(rf.cpuServer))
				kafkaIng = append(kafkaIng, ri.perReq(ri.cpuKafka))
				kafkaFloor = append(kafkaFloor, rf.perReq(rf.cpuKafka))
				p99 = append(p99, float64(ri.pct(0.99).Microseconds())/1000)
				rss = append(rss, float64(ri.peakRSSKB)/1024)
			}
			b.Logf("conc %d, per round: ingest/floor %.1f %%, ingest CPU over floor %.1f µs/req", conc, ofFloor, over)
			suffix := "_c" + strconv.Itoa(conc)
			b.ReportMetric(median(ofFloor), "ingest/floor_%"+suffix)
			b.ReportMetric(median(ofBare), "ingest/bare_%"+suffix)
			b.ReportMetric(median(over), "ingest_over_floor_µs"+suffix)
			b.ReportMetric(median(ingCPU), "ingest_cpu_µs"+suffix)
			b.ReportMetric(median(floorCPU), "floor_cpu_µs"+suffix)
			b.ReportMetric(median(kafkaIng), "kafka_cpu_µs_ingest"+suffix)
			b.ReportMetric(median(kafkaFloor), "kafka_cpu_µs_floor"+suffix)
			b.ReportMetric(median(p99), "ingest_p99_ms"+suffix)
			b.ReportMetric(slices.Max(append(rss, 0)), "ingest_rss_MB"+suffix)
		}
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
		r := request{receivedAt: time.Now(), requestID: "x-1", remoteAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, auth: auth, org: org, env: env, value: env.blankSecret(body)}
		_ = s.buildRecord(&r)
	}
}
