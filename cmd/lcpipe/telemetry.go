package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/lcpipe/lcpipe/internal/admin"
	"github.com/lcpipe/lcpipe/internal/telemetry"
)

// Admin listener defaults: loopback, one port per long-running command so
// the three run side by side on one host (make run).
var adminDefaults = map[string]string{
	"ingest":     "127.0.0.1:9480",
	"processor":  "127.0.0.1:9481",
	"dashboards": "127.0.0.1:9482",
}

// adminEnv reads the admin listener's variables of a long-running command.
func adminEnv(inv *invocation) admin.Config {
	help := "private admin listener (/healthz, /readyz, /metrics; ingest: /status for lcpipe status); keep it off the public network, empty turns it off (defaults: ingest 127.0.0.1:9480, processor 127.0.0.1:9481, dashboards 127.0.0.1:9482)"
	cfg := admin.Config{
		Addr:  inv.String("ADMIN_ADDR", adminDefaults[inv.name], help),
		Pprof: inv.Bool("ADMIN_PPROF", false, "serve the Go profiler on the admin listener under /debug/pprof/"),
	}
	if v, set := inv.lookup("ADMIN_ADDR"); set && strings.TrimSpace(v) == "" {
		cfg.Addr = "" // set and empty: off
	}
	return cfg
}

// telemetryEnv reads the standard OpenTelemetry variables (the OTLP
// exporters read the rest of OTEL_EXPORTER_OTLP_*: headers, TLS, timeouts).
func telemetryEnv(inv *invocation) telemetry.Config {
	c := telemetry.DefaultConfig()
	c.ServiceName = inv.String("OTEL_SERVICE_NAME", "lcpipe-"+inv.name, "service.name of traces and metrics")
	c.Version = version
	c.ResourceAttributes = inv.String("OTEL_RESOURCE_ATTRIBUTES", "", "extra resource attributes, key=value,... (e.g. deployment.environment=prod)")
	c.TracesExporter = inv.String("OTEL_TRACES_EXPORTER", "", "otlp, console or none; default otlp when an OTLP endpoint is set, else none (no span is recorded)")
	c.MetricsExporter = inv.String("OTEL_METRICS_EXPORTER", "", "otlp, prometheus or none; default otlp when an OTLP endpoint is set; /metrics on the admin listener is always served")
	c.Endpoint = inv.String("OTEL_EXPORTER_OTLP_ENDPOINT", "", "OTLP collector base URL (e.g. http://otel-collector:4318); unset: nothing is pushed, no background connection")
	c.TracesEndpoint = inv.String("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "", "OTLP traces URL, overriding the endpoint for traces")
	c.MetricsEndpoint = inv.String("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "", "OTLP metrics URL, overriding the endpoint for metrics")
	c.Protocol = inv.String("OTEL_EXPORTER_OTLP_PROTOCOL", c.Protocol, "OTLP protocol: http/protobuf or grpc")
	c.Sampler = inv.String("OTEL_TRACES_SAMPLER", c.Sampler, "always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio")
	c.SamplerArg = inv.String("OTEL_TRACES_SAMPLER_ARG", "", "sampling ratio of the traceidratio samplers (0..1, default 1)")
	ms := inv.Int("OTEL_METRIC_EXPORT_INTERVAL", int(c.MetricInterval/time.Millisecond), "milliseconds between OTLP metric pushes")
	c.MetricInterval = time.Duration(ms) * time.Millisecond
	if err := c.Validate(); err != nil {
		inv.errs = append(inv.errs, err)
	}
	return c
}

// startTelemetry builds the process's telemetry (after inv.parse). The
// returned function flushes and stops the exporters.
func startTelemetry(ctx context.Context, inv *invocation, cfg telemetry.Config) (*telemetry.Telemetry, func(), error) {
	tel, err := telemetry.New(ctx, cfg, inv.telOpts)
	if err != nil {
		return nil, nil, err
	}
	if exp := tel.Exporting(); len(exp) > 0 {
		inv.log.Info("telemetry exporting", "to", exp, "service", cfg.ServiceName, "sampler", cfg.Sampler)
	}
	return tel, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(sctx); err != nil {
			inv.log.Warn("telemetry: flush at shutdown incomplete", "error", err)
		}
	}, nil
}

// startAdmin runs the admin listener in the background until ctx ends (or
// the returned stop is called); stop waits for it and returns its error.
// An empty address turns it off (stop then does nothing).
func startAdmin(ctx context.Context, inv *invocation, cfg admin.Config, tel *telemetry.Telemetry, mount func(*admin.Server)) (stop func() error, err error) {
	if cfg.Addr == "" {
		return func() error { return nil }, nil
	}
	cfg.Metrics = tel.MetricsHandler()
	cfg.Log = inv.log.With("component", "admin")
	adm, err := admin.New(cfg)
	if err != nil {
		return nil, err
	}
	if mount != nil {
		mount(adm)
	}
	// Listen now: a taken port fails the start, not the shutdown.
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("admin: listen %s (ADMIN_ADDR): %w", cfg.Addr, err)
	}
	actx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- adm.Serve(actx, ln) }()
	return func() error {
		cancel()
		err := <-done
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		return nil
	}, nil
}
