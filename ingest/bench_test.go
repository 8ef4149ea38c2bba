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

// cpuSeconds is utime+stime of a process (testenv.ProcCPU); 0 when it
// cannot be read (no broker pid found).
func cpuSeconds(pid string) float64 {
	d, err := testenv.ProcCPU(pid)
	if err != nil {
		return 0
	}
	return d.Seconds()
}

// kafkaPID is the broker's pid: INGEST_BENCH_KAFKA_PID, else the process
// listening on the first broker's port (other suites may run private
// brokers beside the shared one), else the one scripts/services.sh wrote in
// this checkout.
func kafkaPID(b *testing.B, brokers []string) string {
	if p := os.Getenv("INGEST_BENCH_KAFKA_PID"); p != "" {
		return p
	}
	if _, port, err := net.SplitHostPort(brokers[0]); err == nil {
		if n, err := strconv.Atoi(port); err == nil {
			if pid := listeningPID(n); pid != "" {
				return pid
			}
		}
	}
	if p, err := os.ReadFile(filepath.Join(testenv.RepoRoot(b), ".run", "kafka.pid")); err == nil {
		return strings.TrimSpace(string(p))
	}
	b.Log("Kafka's pid not found: the broker's CPU is not reported")
	return ""
}

// listeningPID is the process holding the socket listening on TCP port
// (from /proc/net/tcp{,6} and the processes' file descriptors), "" when
// none is found.
func listeningPID(port int) string {
	sockets := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, _ := os.ReadFile(f)
		for _, line := range strings.Split(string(b), "\n") {
			fl := strings.Fields(line)
			if len(fl) < 10 || fl[3] != "0A" { // 0A: LISTEN
				continue
			}
			i := strings.LastIndexByte(fl[1], ':')
			if p, err := strconv.ParseUint(fl[1][i+1:], 16, 32); err == nil && int(p) == port {
				sockets["socket:["+fl[9]+"]"] = true
			}
		}
	}
	if len(sockets) == 0 {
		return ""
	}
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		if l, err := os.Readlink(fd); err == nil && sockets[l] {
			return strings.Split(fd, "/")[2]
		}
	}
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

// add merges another slice of the same server's load into r.
func (r *loadResult) add(o loadResult) {
	r.requests += o.requests
	r.errors += o.errors
	r.elapsed += o.elapsed
	r.lat = append(r.lat, o.lat...)
	r.peakRSSKB = max(r.peakRSSKB, o.peakRSSKB)
	r.cpuServer += o.cpuServer
	r.cpuKafka += o.cpuKafka
	r.cpuLoad += o.cpuLoad
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
// The machine is shared (two cores, other suites running), so the three
// are measured interleaved: all three run at once (idle ones cost
// nothing), and for each INGEST_BENCH_CONCURRENCY (comma-separated,
// default "16,64") the load goes to each in turn for
// INGEST_BENCH_SECONDS (default 4) after 1 s of warm-up, for
// INGEST_BENCH_ROUNDS rounds (default 4; odd rounds in reverse order),
// after INGEST_BENCH_WARMUP_SECONDS (default 5) of warm-up each. A change
// of the machine's load then falls on all three alike. Each server's
// slices are summed; the per-round ratios are logged to show the spread.
// Then floor and ingest each get INGEST_BENCH_RATE (default 2000) req/s
// open loop for INGEST_BENCH_PACED_SECONDS (default 10), twice,
// alternating: latency when not saturated, and CPU per request at the same
// offered load (closed-loop CPU per request also depends on how well each
// server's producer batches at its own throughput).
//
// Reported: throughput, latency percentiles, peak RSS, CPU µs per request
// of the server, the broker and the load generator (from /proc). It checks
// that the topic holds at least as many records as ingest acknowledged.
//
// INGEST_BENCH_CPUPROFILE=prefix writes a CPU profile of the floor and
// ingest children (prefix-<server>.pprof), INGEST_BENCH_MEMPROFILE their
// allocations. The ingest child records metrics as in production;
// INGEST_BENCH_TRACING=1 turns tracing on with every trace sampled (spans
// exported in batches to an exporter that drops them);
// INGEST_BENCH_SAMPLE_RATIO (e.g. 0.01) samples that share instead.
func BenchmarkIngestVsBareFiber(b *testing.B) {
	concs := envInts("INGEST_BENCH_CONCURRENCY", 16, 64)
	rounds := envInt("INGEST_BENCH_ROUNDS", 4)
	slice := time.Duration(envInt("INGEST_BENCH_SECONDS", 4)) * time.Second
	rate := envInt("INGEST_BENCH_RATE", 2000)
	pacedFor := time.Duration(envInt("INGEST_BENCH_PACED_SECONDS", 10)) * time.Second
	// The shared broker is restarted by other suites' failure tests, and
	// an idle JVM drops compiled code: measuring "Kafka healthy" needs
	// its produce path JIT-compiled again first (in a 2 s warm-up the
	// broker spent about as much CPU compiling as serving).
	warm := time.Duration(envInt("INGEST_BENCH_WARMUP_SECONDS", 5)) * time.Second
	bodies, mean := benchBodies(b)
	kcfg := testenv.KafkaConfig(b)
	kafkaEnv := []string{"CHILD_BROKERS=" + strings.Join(kcfg.Brokers, ","), "CHILD_RAW_TOPIC=" + kcfg.RawTopic,
		"CHILD_DLQ_TOPIC=" + kcfg.DLQTopic, "CHILD_REPORT_PRODUCE=1"}
	b.Logf("bodies: %d variants of the %d fixtures, mean %d bytes; concurrency %v, %d rounds of %s per server after %s warm-up",
		len(bodies), len(fixtures(b)), mean, concs, rounds, slice, warm)

	for range b.N {
		type server struct {
			name, addr, kpid string
			ch               *child
		}
		var servers []*server
		for _, name := range benchServers {
			sv := &server{name: name, addr: freeAddr(b), kpid: kafkaPID(b, kcfg.Brokers)}
			var env []string
			switch name {
			case "bare":
				sv.kpid = ""
			case "ingest":
				env = append(slices.Clone(kafkaEnv), "CHILD_SPOOL_DIR="+b.TempDir(),
					"CHILD_TRACING="+os.Getenv("INGEST_BENCH_TRACING"), "CHILD_SAMPLE_RATIO="+os.Getenv("INGEST_BENCH_SAMPLE_RATIO"))
			default:
				env = slices.Clone(kafkaEnv)
			}
			if p := os.Getenv("INGEST_BENCH_CPUPROFILE"); p != "" && name != "bare" {
				env = append(env, fmt.Sprintf("CHILD_CPUPROFILE=%s-%s.pprof", p, name))
			}
			if p := os.Getenv("INGEST_BENCH_MEMPROFILE"); p != "" && name != "bare" {
				env = append(env, fmt.Sprintf("CHILD_MEMPROFILE=%s-%s.pprof", p, name))
			}
			sv.ch = startChild(b, name, sv.addr, env...)
			servers = append(servers, sv)
		}
		byName := func(n string) *server {
			return servers[slices.IndexFunc(servers, func(s *server) bool { return s.name == n })]
		}

		for _, conc := range concs {
			for _, sv := range servers {
				_ = load(b, sv.addr, sv.ch.cmd.Process.Pid, sv.kpid, bodies, conc, warm, time.Second)
			}
			total := map[string]*loadResult{}
			var ofFloor, over []float64
			for round := range rounds {
				order := slices.Clone(servers)
				if round%2 == 1 {
					slices.Reverse(order)
				}
				this := map[string]loadResult{}
				for _, sv := range order {
					r := load(b, sv.addr, sv.ch.cmd.Process.Pid, sv.kpid, bodies, conc, time.Second, slice)
					this[sv.name] = r
					if total[sv.name] == nil {
						total[sv.name] = &loadResult{}
					}
					total[sv.name].add(r)
				}
				ri, rf := this["ingest"], this["floor"]
				ofFloor = append(ofFloor, 100*ri.rps()/rf.rps())
				over = append(over, ri.perReq(ri.cpuServer)-rf.perReq(rf.cpuServer))
			}
			for _, name := range benchServers {
				r := total[name]
				slices.Sort(r.lat)
				b.Logf("conc %2d, %-6s %s", conc, name, r)
				if r.errors > 0 {
					b.Errorf("%s: %d non-200 answers", name, r.errors)
				}
			}
			ri, rf, rb := *total["ingest"], *total["floor"], *total["bare"]
			b.Logf("conc %2d, per round: ingest/floor %.0f %%, ingest CPU over floor %.1f µs/req", conc, ofFloor, over)
			suffix := "_c" + strconv.Itoa(conc)
			b.ReportMetric(100*ri.rps()/rf.rps(), "ingest/floor_%"+suffix)
			b.ReportMetric(100*ri.rps()/rb.rps(), "ingest/bare_%"+suffix)
			b.ReportMetric(ri.perReq(ri.cpuServer)-rf.perReq(rf.cpuServer), "ingest_over_floor_µs"+suffix)
			b.ReportMetric(ri.perReq(ri.cpuServer), "ingest_cpu_µs"+suffix)
			b.ReportMetric(rf.perReq(rf.cpuServer), "floor_cpu_µs"+suffix)
			b.ReportMetric(ri.perReq(ri.cpuKafka), "kafka_cpu_µs_ingest"+suffix)
			b.ReportMetric(rf.perReq(rf.cpuKafka), "kafka_cpu_µs_floor"+suffix)
			b.ReportMetric(float64(ri.pct(0.99).Microseconds())/1000, "ingest_p99_ms"+suffix)
			b.ReportMetric(float64(ri.peakRSSKB)/1024, "ingest_rss_MB"+suffix)
		}

		var pacedOver []float64
		for round := range 2 {
			var cpu [2]float64
			for i, name := range []string{"floor", "ingest"} {
				if round%2 == 1 {
					name = []string{"ingest", "floor"}[i]
				}
				sv := byName(name)
				p := paced(b, sv.addr, sv.ch.cmd.Process.Pid, sv.kpid, bodies, rate, pacedFor)
				b.Logf("open loop %d req/s for %s, %-6s (latency from scheduled start): p50 %s p99 %s p99.9 %s, errors %d; CPU µs/req: server %.1f, kafka %.1f",
					rate, pacedFor, name, p.pct(0.5), p.pct(0.99), p.pct(0.999), p.errors, p.perReq(p.cpuServer), p.perReq(p.cpuKafka))
				if p.errors > 0 {
					b.Errorf("%s open loop: %d non-200 answers", name, p.errors)
				}
				if name == "ingest" {
					cpu[1] = p.perReq(p.cpuServer)
					b.ReportMetric(float64(p.pct(0.99).Microseconds())/1000, "ingest_paced_p99_ms")
				} else {
					cpu[0] = p.perReq(p.cpuServer)
				}
			}
			pacedOver = append(pacedOver, cpu[1]-cpu[0])
		}
		b.Logf("open loop %d req/s: ingest CPU over floor %.1f µs/req", rate, pacedOver)
		b.ReportMetric(median(pacedOver), "ingest_over_floor_µs_paced")

		st, err := healthStats("http://" + byName("ingest").addr)
		if err != nil {
			b.Fatal(err)
		}
		for _, sv := range servers {
			sv.ch.stop(b)
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
		b.Logf("ingest: accepted %d, spooled %d; topic holds %d records (floor's included)", st.Counters.Accepted, st.Counters.Spooled, stored)
		if stored < st.Counters.Accepted {
			b.Errorf("topic holds %d records, ingest acknowledged %d", stored, st.Counters.Accepted)
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
