package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/lcpipe/lcpipe/ingest/spool"
	"github.com/lcpipe/lcpipe/internal/kafka"
	"github.com/lcpipe/lcpipe/internal/secret"
	"github.com/lcpipe/lcpipe/internal/telemetry"
	"github.com/lcpipe/lcpipe/internal/testenv"
)

// The test binary doubles as a child process (helper-process pattern): the
// kill -9 test and the load benchmark run ingest, or a bare Fiber app, in a
// process of its own so they can SIGKILL it or measure its RSS.
const childEnv = "LCPIPE_INGEST_TEST_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
		os.Exit(m.Run())
	case "ingest":
		os.Exit(childIngest())
	case "bare":
		os.Exit(childBare())
	case "floor":
		os.Exit(childFloor())
	default:
		fmt.Fprintln(os.Stderr, "unknown child mode")
		os.Exit(2)
	}
}

func childIngest() int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg := DefaultConfig()
	cfg.Addr = os.Getenv("CHILD_ADDR")
	cfg.Kafka = kafka.DefaultConfig()
	cfg.Kafka.Brokers = strings.Split(os.Getenv("CHILD_BROKERS"), ",")
	cfg.Kafka.RawTopic = os.Getenv("CHILD_RAW_TOPIC")
	cfg.Kafka.DLQTopic = os.Getenv("CHILD_DLQ_TOPIC")
	cfg.Kafka.Partitions = 3
	cfg.Secrets = []secret.Secret{"test-secret"}
	cfg.Spool = spool.DefaultConfig(os.Getenv("CHILD_SPOOL_DIR"))
	cfg.Spool.RetryMax = 500 * time.Millisecond
	if d, err := time.ParseDuration(os.Getenv("CHILD_KAFKA_TIMEOUT")); err == nil {
		cfg.KafkaTimeout = d
	}
	if d, err := time.ParseDuration(os.Getenv("CHILD_LINGER")); err == nil {
		cfg.Linger = d
	}
	cfg.Version = "test-child"
	cfg.Log = log
	if os.Getenv("CHILD_REPORT_PRODUCE") != "" {
		var pc produceCounter
		cfg.kafkaOpts = []kgo.Opt{kgo.WithHooks(&pc)}
		defer pc.report()
	}
	// Telemetry as in production: metrics on; CHILD_TRACING=1 records every
	// span (sampler always on) and exports them in batches to an exporter
	// that drops them (the SDK's cost, not the network's).
	topts := telemetry.Options{}
	if os.Getenv("CHILD_TRACING") == "1" {
		topts = telemetry.Options{SpanExporter: tracetest.NewNoopExporter(), Batch: true}
	}
	tcfg := telemetry.Config{Sampler: "always_on"}
	if r := os.Getenv("CHILD_SAMPLE_RATIO"); r != "" { // e.g. 0.01: 1 % of the traces recorded
		tcfg.Sampler, tcfg.SamplerArg = "traceidratio", r
	}
	tel, err := telemetry.New(context.Background(), tcfg, topts)
	if err != nil {
		log.Error("child: telemetry", "error", err)
		return 1
	}
	defer tel.Shutdown(context.Background())
	cfg.Telemetry = tel
	s, err := New(cfg)
	if err != nil {
		log.Error("child: new", "error", err)
		return 1
	}
	defer profile()()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := s.Run(ctx); err != nil {
		log.Error("child: run", "error", err)
		return 1
	}
	return 0
}

// produceCounter counts produce requests and what they carried.
type produceCounter struct{ requests, batches, records atomic.Int64 }

func (p *produceCounter) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if key == 0 && err == nil { // 0: Produce
		p.requests.Add(1)
	}
}

func (p *produceCounter) OnProduceBatchWritten(_ kgo.BrokerMetadata, _ string, _ int32, m kgo.ProduceBatchMetrics) {
	p.batches.Add(1)
	p.records.Add(int64(m.NumRecords))
}

// report is read by the benchmark from the child's stderr: how well the
// producer batched, which drives the broker's CPU per record.
func (p *produceCounter) report() {
	fmt.Fprintf(os.Stderr, "child produce: %d requests, %d partition batches, %d records (%.1f records per request)\n",
		p.requests.Load(), p.batches.Load(), p.records.Load(), float64(p.records.Load())/max(1, float64(p.requests.Load())))
}

// childBare is the ceiling: Fiber answering 200 to the same requests,
// doing nothing else.
func childBare() int {
	app := fiber.New(fiber.Config{DisableStartupMessage: true, BodyLimit: 5 << 20})
	app.Post(WebhookPath, func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		return c.Status(200).SendString(`{"status":"ok"}`)
	})
	return serveChild(app)
}

// serveChild serves a benchmark's comparison server (bare, floor) on
// CHILD_ADDR, with the /healthz the harness waits for, until SIGTERM.
func serveChild(app *fiber.App) int {
	app.Get("/healthz", func(c *fiber.Ctx) error { return c.SendString("ok") })
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() { <-ctx.Done(); _ = app.Shutdown() }()
	if err := app.Listen(os.Getenv("CHILD_ADDR")); err != nil {
		return 1
	}
	return 0
}

// childFloor is the durable floor: Fiber answering 200 after franz-go's
// ProduceSync of the body was acknowledged (acks=all, idempotent, linger 0,
// no compression: the client ingest builds, from internal/kafka), nothing
// else. Records are keyed round-robin over as many keys as the load
// generator has chats, without reading the body, so they spread over the
// partitions as ingest's do.
func childFloor() int {
	cfg := kafka.DefaultConfig()
	cfg.Brokers = strings.Split(os.Getenv("CHILD_BROKERS"), ",")
	var pc produceCounter
	cl, err := kafka.NewClient(cfg, kgo.ProducerLinger(0), kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.WithHooks(&pc))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child floor:", err)
		return 1
	}
	defer cl.Close()
	defer pc.report()
	topic := os.Getenv("CHILD_RAW_TOPIC")
	keys := make([][]byte, benchChats)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("floor:BENCH%05d", i))
	}
	var seq atomic.Uint64
	app := fiber.New(fiber.Config{DisableStartupMessage: true, BodyLimit: 5 << 20})
	app.Post(WebhookPath, func(c *fiber.Ctx) error {
		// fasthttp reuses the body after the handler: the record keeps a copy.
		rec := &kgo.Record{Topic: topic, Key: keys[seq.Add(1)%benchChats], Value: slices.Clone(c.Body())}
		if err := cl.ProduceSync(c.UserContext(), rec).FirstErr(); err != nil {
			return c.Status(fiber.StatusServiceUnavailable).SendString(`{"error":"not stored"}`)
		}
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		return c.Status(200).SendString(`{"status":"ok"}`)
	})
	defer profile()()
	return serveChild(app)
}

// profile starts a CPU profile into CHILD_CPUPROFILE and, at the end, writes
// the allocations (alloc_space / alloc_objects of the heap profile) into
// CHILD_MEMPROFILE; it returns the function that ends them.
func profile() func() {
	var stopCPU func()
	if path := os.Getenv("CHILD_CPUPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil && pprof.StartCPUProfile(f) == nil {
			stopCPU = func() { pprof.StopCPUProfile(); f.Close() }
		}
	}
	return func() {
		if stopCPU != nil {
			stopCPU()
		}
		if path := os.Getenv("CHILD_MEMPROFILE"); path != "" {
			if f, err := os.Create(path); err == nil {
				_ = pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}
	}
}

// child is a running child process.
type child struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{}
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startChild re-executes the test binary in the given mode with env and
// waits until it answers /healthz. The child is stopped (SIGTERM, then
// SIGKILL) at the end of the test.
func startChild(t testing.TB, mode, addr string, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{childEnv + "=" + mode, "CHILD_ADDR=" + addr}, env...)...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child: %v", err)
	}
	c := &child{cmd: cmd, addr: addr, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(c.done) }()
	t.Cleanup(func() { c.stop(t) })
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			return c
		}
		select {
		case <-c.done:
			t.Fatalf("child %s exited before answering", mode)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("child %s does not answer on %s: %v", mode, addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *child) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
}

func (c *child) stop(t testing.TB) {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(20 * time.Second):
		t.Errorf("child %d did not stop on SIGTERM; killing", c.cmd.Process.Pid)
		c.kill()
	}
}

// rssKB reads a process's resident set (current and peak) from /proc; 0s
// when it cannot be read.
func rssKB(pid int) (cur, peak int64) {
	cur, peak, _ = testenv.ProcRSS(strconv.Itoa(pid))
	return cur, peak
}
