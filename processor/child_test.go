package processor

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/lcpipe/lcpipe/internal/chconn"
	"github.com/lcpipe/lcpipe/internal/kafka"
	"github.com/lcpipe/lcpipe/internal/telemetry"
)

// The crash test and the benchmark run the processor in a child process
// (this test binary re-executed with childEnv set), so it can be killed
// with SIGKILL and its peak RSS measured alone.
const childEnv = "LCPIPE_PROCESSOR_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(runChild())
	}
	os.Exit(m.Run())
}

func runChild() int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	get := func(k string) string { return os.Getenv("CHILD_" + k) }
	kcfg := kafka.DefaultConfig()
	kcfg.Brokers = strings.Split(get("BROKERS"), ",")
	kcfg.RawTopic, kcfg.DLQTopic, kcfg.ClientID = get("RAW"), get("DLQ"), "lcpipe-child"
	chcfg := chconn.DefaultConfig()
	chcfg.Addr, chcfg.Database = strings.Split(get("CH"), ","), get("DB")
	chcfg.MaxOpenConns = 3 // as cmd/lcpipe does for the processor
	cfg := DefaultConfig()
	cfg.Group = get("GROUP")
	cfg.SessionTimeout = 6 * time.Second
	if n, err := strconv.Atoi(get("BATCH_ROWS")); err == nil {
		cfg.BatchRows = n
	}
	if n, err := strconv.ParseInt(get("BATCH_BYTES"), 10, 64); err == nil {
		cfg.BatchBytes = n
	}
	if n, err := strconv.Atoi(get("INSERT_ROWS")); err == nil {
		cfg.InsertRows = n
	}
	if n, err := strconv.Atoi(get("MAX_PENDING")); err == nil {
		cfg.MaxPendingBatches = n
	}
	if d, err := time.ParseDuration(get("LINGER")); err == nil {
		cfg.BatchLinger = d
	}
	if path := get("CPUPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil {
			_ = pprof.StartCPUProfile(f)
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	debug.SetMemoryLimit(256 << 20) // as cmd/lcpipe does by default (GOMEMLIMIT)
	if n, err := strconv.Atoi(get("GOGC")); err == nil {
		debug.SetGCPercent(n)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	conn, err := chconn.Open(ctx, chcfg)
	if err != nil {
		log.Error("clickhouse", "err", err)
		return 2
	}
	defer conn.Close()
	// Telemetry as in production: metrics on (Prometheus reader); with
	// CHILD_TRACING=1 every span is recorded and exported in batches to an
	// exporter that drops them (the SDK's cost, not the network's).
	topts := telemetry.Options{}
	if get("TRACING") == "1" {
		topts = telemetry.Options{SpanExporter: tracetest.NewNoopExporter(), Batch: true}
	}
	tel, err := telemetry.New(ctx, telemetry.Config{}, topts)
	if err != nil {
		log.Error("telemetry", "err", err)
		return 2
	}
	defer tel.Shutdown(context.Background())
	p, err := New(Options{Config: cfg, Kafka: kcfg, ClickHouse: conn, Database: chcfg.Database, Log: log, Telemetry: tel})
	if err != nil {
		log.Error("new", "err", err)
		return 2
	}
	if path := get("HEAPPROFILE"); path != "" {
		go func() {
			time.Sleep(func() time.Duration {
				d, err := time.ParseDuration(get("HEAPPROFILE_AT"))
				if err != nil {
					return 8 * time.Second
				}
				return d
			}())
			if f, err := os.Create(path); err == nil {
				_ = pprof.WriteHeapProfile(f)
				f.Close()
			}
		}()
	}
	if err := p.Run(ctx); err != nil {
		log.Error("run", "err", err)
		return 1
	}
	return 0
}

// startChild starts a processor child process for the env.
func startChild(t testing.TB, e *env, group string, extra ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1",
		"CHILD_BROKERS="+strings.Join(e.kafka.Brokers, ","), "CHILD_RAW="+e.kafka.RawTopic, "CHILD_DLQ="+e.kafka.DLQTopic,
		"CHILD_CH="+strings.Join(e.ch.Addr, ","), "CHILD_DB="+e.ch.Database, "CHILD_GROUP="+group)
	cmd.Env = append(cmd.Env, extra...)
	if os.Getenv("PROCESSOR_TEST_LOG") != "" {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child: %v", err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd
}

// stopChild sends SIGTERM and waits; the child must exit 0.
func stopChild(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("child exit: %v", err)
		}
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		t.Fatal("child did not stop on SIGTERM")
	}
}

func fmtDur(d time.Duration) string { return fmt.Sprintf("%.1fs", d.Seconds()) }
